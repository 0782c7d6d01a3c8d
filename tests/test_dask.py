"""--dask-scheduler: the batch on a Dask LocalCluster gives what local workers give.

Same outputs, resume, failures.jsonl, exit code, --force and crash isolation; the real
commands run in subprocesses against one two-worker cluster shared by the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import click_track, tone, write_audio
from tests.test_cli import MINI, command

ROOT = Path(__file__).resolve().parent.parent
CRASH = "crash.wav"  # a worker aborts in the middle of this file (tests.work.AbortInTheMiddle)


def env() -> dict[str, str]:
    """Subprocesses import this checkout's runner, whatever the console scripts point at."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([command(args[0]), *args[1:]], capture_output=True, text=True,
                          cwd=cwd, env=env(), timeout=300)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    import distributed

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        env={"PYTHONPATH": env()["PYTHONPATH"], "TF_CPP_MIN_LOG_LEVEL": "3"},
        scheduler_kwargs={"allowed_failures": 1},  # a crashing file: two worker deaths, not 4
    ) as cluster, distributed.Client(cluster) as client:
        import runner

        where = client.run(lambda: __import__("runner").__file__)
        assert set(where.values()) == {runner.__file__}  # the workers run this checkout
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dask") / "lib"
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    write_audio(root / "a" / "b" / "song.wav", click_track(3.0, bpm=120))
    write_audio(root / "c" / "tone.wav", tone(2.0, 330.0))
    (root / "c" / "broken.mp3").write_bytes(b"not audio" * 100)
    return root


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.json"))}


def test_same_outputs_failures_and_resume_as_local_workers(tmp_path, library, scheduler):
    # Relative paths from another directory: the workers get absolute ones, messages do not.
    shutil.copytree(library, tmp_path / "lib")
    shutil.copy(MINI, tmp_path / "mini.yaml")
    local = run("extractor", "run", "mini.yaml", "lib", "local", "-j", "1", cwd=tmp_path)
    assert local.returncode == 1, local.stderr
    first = run("extractor", "run", "mini.yaml", "lib", "out", "--dask-scheduler", scheduler,
                cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "2 done, 0 skipped (up to date), 1 failed" in first.stderr
    assert "failed lib/c/broken.mp3: unsupported or corrupt audio" in first.stderr
    out = tmp_path / "out"
    assert sorted(contents(out)) == ["a/b/song.json", "c/tone.json"]
    assert contents(out) == contents(tmp_path / "local")  # byte for byte
    failures = (out / "failures.jsonl").read_text()
    assert failures == (tmp_path / "local" / "failures.jsonl").read_text()
    assert json.loads(failures)["path"] == "lib/c/broken.mp3"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    again = run("extractor", "run", "mini.yaml", "lib", "out", "--dask-scheduler", scheduler,
                cwd=tmp_path)
    assert again.returncode == 1
    assert "0 done, 2 skipped (up to date), 1 failed" in again.stderr
    # The same profile hash either way: local workers resume what Dask wrote.
    mixed = run("extractor", "run", "mini.yaml", "lib", "out", "-j", "1", cwd=tmp_path)
    assert "0 done, 2 skipped (up to date), 1 failed" in mixed.stderr

    (tmp_path / "lib" / "c" / "broken.mp3").unlink()
    before = (out / "c" / "tone.json").stat().st_mtime_ns
    forced = run("extractor", "run", "mini.yaml", "lib", "out", "--force", "--quiet",
                 "--dask-scheduler", scheduler, cwd=tmp_path)
    assert forced.returncode == 0 and forced.stderr == ""
    assert (out / "c" / "tone.json").stat().st_mtime_ns != before  # recomputed
    assert not (out / "failures.jsonl").exists()  # its only failure is gone


def test_worker_crash_costs_one_file(tmp_path, library, scheduler):
    """A Dask worker that dies in native code in the middle of a file (SIGABRT, its spool
    folder written) costs that file; the others are written, and the dead worker's spool
    folder is removed by the workers left on its machine."""
    from runner.batch import collect, plan_outputs
    from runner.batch.dask_workers import DaskWorkers
    from tests.test_batch import spool_folders
    from tests.work import AbortInTheMiddle

    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    (lib / "c" / "broken.mp3").unlink()
    write_audio(lib / "c" / CRASH, click_track(6.0))
    out = tmp_path / "out"
    jobs, _ = plan_outputs(collect([str(lib)]), out, ".json")
    seen = []
    engine = DaskWorkers((AbortInTheMiddle, ("beats", CRASH)), scheduler)
    summary = engine.process(jobs, seen.append)
    assert [o.message for o in seen if o.status == "failed"] == [
        f"{lib / 'c' / CRASH}: the worker crashed (the Dask worker died 2 times running it)"]
    assert summary.done == 2 and summary.failed == 1
    assert sorted(contents(out)) == ["a/b/song.json", "c/tone.json"]  # the batch went on
    assert spool_folders() == []


def test_summary_command_runs_on_dask(tmp_path, library, scheduler):
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    (lib / "c" / "broken.mp3").unlink()
    result = run("streaming-extractor-summary", str(lib), str(tmp_path / "summary.json"),
                 "--dask-scheduler", scheduler)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["summary"]["tracks"] == 2


def test_unreachable_or_malformed_scheduler_is_one_line(tmp_path, library):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for address, message in [
        (f"tcp://127.0.0.1:{port}", f"error: cannot reach the Dask scheduler at "
         f"tcp://127.0.0.1:{port}: Timed out trying to connect"),
        ("localhost", "error: --dask-scheduler localhost: missing port number in address "
         "'localhost' (expected tcp://HOST:PORT)"),
    ]:
        result = run("streaming-extractor-beats", str(library), str(tmp_path / "out"),
                     "--dask-scheduler", address)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def test_jobs_and_dask_together_is_a_usage_error(tmp_path, library):
    result = run("streaming-extractor-beats", str(library), str(tmp_path / "out"), "-j", "2",
                 "--dask-scheduler", "tcp://127.0.0.1:8786")
    assert result.returncode == 2
    assert "--jobs is for local workers" in result.stderr


def test_without_distributed_says_what_to_install(tmp_path, library):
    code = ("import sys; sys.modules['distributed'] = None; from runner.cli import beats; "
            f"sys.exit(beats([{str(library)!r}, {str(tmp_path / 'out')!r}, "
            "'--dask-scheduler', 'tcp://127.0.0.1:8786']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env(), timeout=120)
    assert result.returncode == 2
    assert result.stderr == ("error: usage: --dask-scheduler needs Dask: "
                             "pip install 'extractor-profiles[dask]'\n")
