"""Claims: runs that share an output folder share the work (a lock per output), and what
killed runs left in that folder is removed before a batch starts."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from runner import procs
from runner.batch.inputs import Job
from runner.batch.work import BatchResult, Outcome, Report

_TEMPORARY = re.compile(r"^\..+\." + procs.TAG + r"\.[^.]+\.tmp$")
UNOWNED_TEMPORARY_AGE = 3600.0  # a write takes seconds: older temporaries are abandoned


def remove_stale_temporaries(out_dir: Path) -> None:
    """What killed runs left in an output folder: temporary files of interrupted writes
    (see write.write_atomic) whose process is gone, and claims nobody holds (see Claims).
    Another run's live writes and claims are left alone: runs may share the folder."""
    if not out_dir.is_dir():
        return
    for dirpath, _, filenames in os.walk(out_dir):
        for name in filenames:
            if not name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            if name.endswith(CLAIM_SUFFIX):
                claim = Claims.try_lock(Path(path))
                if isinstance(claim, int):
                    drop_claim(Path(path), claim)
                continue
            if not name.endswith(".tmp"):
                continue
            try:
                last_used = os.stat(path).st_mtime
            except OSError:
                continue
            owner = _TEMPORARY.match(name)
            if (procs.gone(int(owner[1]), owner[2], last_used) if owner
                    else time.time() - last_used > UNOWNED_TEMPORARY_AGE):
                try:
                    os.unlink(path)
                except OSError:
                    pass


CLAIM_SUFFIX = ".claim"


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{CLAIM_SUFFIX}")


def drop_claim(path: Path, fd: int) -> None:
    """Remove a claim file while holding its lock, then let the lock go."""
    try:
        os.unlink(path)
    except OSError:
        pass
    os.close(fd)


class Claims:
    """A claim per output, so that runs writing to the same folder never analyse a file twice.

    Before a file is handed to a worker, its run takes an exclusive ``flock`` on
    ``.<output name>.claim`` beside the output (the file says which process holds it); a run
    that finds the claim taken leaves the file to the run that holds it (outcome "claimed").
    A claim is held until the file's outcome is known, after the output is written, and a
    run that gets a claim checks the output again: what another run finished meanwhile is
    skipped. The kernel drops a lock when its process ends, however it ends (kill -9, a
    crash, a lost NFS client once its lease expires), so a dead run's claims are simply taken
    over: there is no staleness to guess. Where the file system has no locks, files are
    analysed without claims (``unsupported`` says why), as before.
    """

    def __init__(self, current: Callable[[Job], bool], force: bool) -> None:
        self.current = current
        self.force = force
        self.started = time.time()
        self.held: dict[int, tuple[Path, int]] = {}  # job index -> (claim file, descriptor)
        self.unsupported: str | None = None

    @staticmethod
    def try_lock(path: Path) -> int | str:
        """The locked descriptor of claim file ``path``, or who holds it (text).

        A holder removes the file before it lets the lock go, so a lock taken on a file that
        is no longer at ``path`` is worthless: try again on the new one.
        """
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                finally:
                    os.close(fd)
                return holder or "another run"
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def take(self, job: Job) -> Outcome | None:
        """Claim ``job``'s output: None when this run should analyse it, or the outcome
        that says why not (claimed by another run, or finished by one meanwhile)."""
        if job.index in self.held:  # handed back by a worker (see LocalWorkers): still ours
            return None
        path = claim_path(job.output)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            got = self.try_lock(path)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                self.unsupported = f"{path.parent}: no file locks ({exc.strerror})"
            return None  # unwritable: the write reports it, as without claims
        if isinstance(got, str):
            return Outcome(job, "claimed", f"{job.input}: claimed by another run ({got})")
        try:
            os.ftruncate(got, 0)
            os.pwrite(got, f"pid {os.getpid()} on {procs.host()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        except OSError:
            pass
        self.held[job.index] = (path, got)
        if self._finished_meanwhile(job):
            self.release(job)
            return Outcome(job, "skipped")
        return None

    def _finished_meanwhile(self, job: Job) -> bool:
        if not self.force:
            return self.current(job)
        try:  # --force recomputes what existed before this run, not what another run made
            return job.output.stat().st_mtime > self.started and self.current(job)
        except OSError:
            return False

    def release(self, job: Job) -> None:
        held = self.held.pop(job.index, None)
        if held is not None:
            drop_claim(*held)

    def release_all(self) -> None:
        for path, fd in self.held.values():
            drop_claim(path, fd)
        self.held.clear()


def claim_next(pending: list[Job], claims: Claims, result: BatchResult, report: Report
               ) -> Job | None:
    """Pop the next job this run may analyse (claimed), counting and reporting the ones
    before it that it may not: another run holds them, or finished them meanwhile."""
    while pending:
        job = pending.pop()
        outcome = claims.take(job)
        if outcome is None:
            return job
        if outcome.status == "skipped":
            result.skipped += 1
        else:
            result.claimed.append(outcome)
        report(outcome)
    return None
