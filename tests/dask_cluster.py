"""A real Dask cluster for tests: a ``dask scheduler`` process and ``dask worker`` processes
(each behind its nanny, as users start them) on a free localhost port, each worker with an
environment of its own (its model cache: EXTRACTOR_MODELS)."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A scheduler process and named worker processes, each with its own environment."""

    def __init__(self, root: Path, base_env: dict[str, str]) -> None:
        self.root = root
        self.base_env = base_env
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.start_scheduler()

    def start_scheduler(self, env: dict[str, str] | None = None) -> None:
        """(Re)start the scheduler at ``self.address``; workers that outlived one rejoin."""
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port",
                                  self.address.rsplit(":", 1)[1], "--no-dashboard"], env or {})

    def _start(self, name: str, args: list[str], env: dict[str, str],
               hide: tuple[Path, ...] = ()) -> None:
        """``hide``: folders this process does not see (an empty tmpfs over each, in a mount
        namespace of its own), as on a machine that does not share them."""
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        line = [sys.executable, "-m", "dask", *args]
        if hide:
            mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in hide)
            line = ["unshare", "-m", "sh", "-c", f"{mounts} && exec {shlex.join(line)}"]
        self.processes[name] = subprocess.Popen(
            line, stdout=log, stderr=subprocess.STDOUT, env=dict(self.base_env, **env),
            cwd=self.root, start_new_session=True)  # its own group: close() ends its children

    def add_worker(self, name: str, models: Path, hide: tuple[Path, ...] = ()) -> str:
        """Start a worker whose model cache is ``models``; its address once it has joined.
        Its TMPDIR is its own, as on a machine of its own (a dead worker's spool folder is
        removed by the next worker process that takes a file there)."""
        tmp = self.root / f"tmp-{name}"
        tmp.mkdir(exist_ok=True)
        self._start(name, ["worker", self.address, "--name", name, "--nthreads", "1",
                           "--no-dashboard", "--death-timeout", "60"],
                    {"EXTRACTOR_MODELS": str(models), "TMPDIR": str(tmp),
                     "XDG_CACHE_HOME": str(self.root / f"xdg-{name}")}, hide)
        return self.worker(name)

    def pid(self, address: str) -> int:
        """The process id of the worker at ``address`` (its nanny restarts it when it dies)."""
        import distributed

        with distributed.Client(self.address, timeout="20s") as client:
            return client.run(os.getpid, workers=[address])[address]

    def worker(self, name: str, timeout: float = 60.0) -> str:
        import distributed

        with distributed.Client(self.address, timeout="20s") as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for address, info in client.scheduler_info()["workers"].items():
                    if info.get("name") == name:
                        return address
                time.sleep(0.2)
        raise AssertionError(f"worker {name} did not join: "
                             f"{(self.root / f'{name}.log').read_text()[-2000:]}")

    def close(self, grace: float = 5.0) -> None:
        """SIGTERM to every process group, then SIGKILL to what is left after ``grace``
        seconds in all (a nanny whose scheduler is gone can take 20 s to give up politely;
        nothing here needs a polite exit)."""
        for process in reversed(list(self.processes.values())):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # the nanny's worker too, if it outlived it
            process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def can_hide_folders() -> bool:
    """Whether this machine lets a process mount over folders in a namespace of its own."""
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
