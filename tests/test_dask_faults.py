"""Faults on a real Dask cluster (issue 25 item 4): ``dask scheduler`` and ``dask worker``
processes as users start them, the real command as a user runs it.

kill -9 of a worker in the middle of a file: the file is retried, no output is partial. The
scheduler going away: one line, exit 1, and the same command resumes once it is back. A file
that crashes every worker that takes it: failed after the configured tries, in failures.jsonl,
and the run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import click_track, write_audio
from tests.dask_cluster import Cluster
from tests.test_cli import MINI, command

ROOT = Path(__file__).resolve().parent.parent
FILES = 6


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "lib"
    root.mkdir()
    for index in range(FILES):
        write_audio(root / f"clicks{index}.wav", click_track(20.0, bpm=100 + 5 * index))
    return root


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    grid = Cluster(tmp_path, env())
    (tmp_path / "models").mkdir()
    try:
        yield grid
    finally:
        grid.close()


def start_batch(library: Path, out: Path, scheduler: str) -> subprocess.Popen:
    return subprocess.Popen([command("extractor"), "run", str(MINI), str(library), str(out),
                             "--dask-scheduler", scheduler], env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def busy(grid: Cluster, address: str, timeout: float = 120.0) -> None:
    """Wait until the worker at ``address`` is running a file."""
    import distributed

    with distributed.Client(grid.address, timeout="20s") as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.processing(workers=[address]).get(address):
                return
            time.sleep(0.05)
    raise AssertionError(f"{address} never got a file")


def complete_outputs(out: Path) -> list[str]:
    """The outputs, each parsed whole (a partial one would not parse). A worker killed while
    writing leaves its hidden temporary (.NAME.PID@HOST.RANDOM.tmp), never a partial
    NAME.json; the next run removes it."""
    return sorted(json.loads(p.read_text())["metadata"]["tags"]["file_name"]
                  for p in out.glob("*.json"))


def test_kill_9_of_a_worker_mid_file_retries_that_file(cluster, library, tmp_path):
    a = cluster.add_worker("a", tmp_path / "models")
    cluster.add_worker("b", tmp_path / "models")
    victim = cluster.pid(a)
    batch = start_batch(library, tmp_path / "out", cluster.address)
    busy(cluster, a)
    os.kill(victim, signal.SIGKILL)
    _, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 0, stderr
    assert f"{FILES} done, 0 skipped (up to date), 0 failed" in stderr
    assert complete_outputs(tmp_path / "out") == sorted(p.name for p in library.iterdir())
    assert cluster.pid(cluster.worker("a")) != victim  # its nanny started a new one


def test_the_scheduler_going_away_is_one_line_and_the_rerun_resumes(cluster, library,
                                                                     tmp_path):
    cluster.add_worker("a", tmp_path / "models")
    out = tmp_path / "out"
    batch = start_batch(library, out, cluster.address)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    cluster.processes["scheduler"].kill()
    _, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 1
    last = stderr.splitlines()[-1]
    assert last.startswith(f"error: lost the Dask scheduler at {cluster.address} (outputs "
                           "written in this run, kept: "), stderr
    assert last.endswith("); run the same command again to resume")
    assert "Traceback" not in stderr and "distributed" not in stderr
    kept = complete_outputs(out)
    assert 1 <= len(kept) < FILES

    # Dask workers (and their nannies) stop when their scheduler goes away: the user starts
    # both again (docs/distributed.md), then the same command.
    cluster.start_scheduler()
    cluster.add_worker("a-again", tmp_path / "models")
    again = start_batch(library, out, cluster.address)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    skipped = int(stderr.rsplit(" skipped", 1)[0].rsplit(", ", 1)[1])
    assert skipped >= len(kept)
    assert f"{FILES - skipped} done, {skipped} skipped (up to date), 0 failed" in stderr
    assert len(complete_outputs(out)) == FILES
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # the rerun removed it


def test_a_file_that_crashes_every_worker_fails_after_the_tries_and_the_run_goes_on(
        cluster, library, tmp_path):
    """The scheduler allows one death per task (allowed-failures 1): two workers die on
    crash.wav, it is listed in failures.jsonl, the other files are written."""
    from runner.batch import collect, plan_outputs, process_batch
    from runner.batch.dask_workers import DaskWorkers
    from tests.work import AbortInTheMiddle

    cluster.processes["scheduler"].kill()
    cluster.processes["scheduler"].wait()
    cluster.start_scheduler({"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})
    for name in ("a", "b"):
        cluster.add_worker(name, tmp_path / "models")
    write_audio(library / "crash.wav", click_track(6.0))
    out = tmp_path / "out"
    jobs, _ = plan_outputs(collect([str(library)]), out, ".json")
    engine = DaskWorkers((AbortInTheMiddle, ("beats", "crash.wav")), cluster.address)
    result = process_batch(engine, jobs, out, out / "failures.jsonl", quiet=True)
    assert result.done == FILES and result.failed == 1
    failure = json.loads((out / "failures.jsonl").read_text())
    assert failure["path"] == str(library / "crash.wav")
    assert failure["error"] == (f"{library / 'crash.wav'}: the worker crashed (the Dask worker "
                                "died 2 times running it)")
    assert len(complete_outputs(out)) == FILES
