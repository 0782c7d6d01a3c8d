"""--write-on client (issue 25 item 2): a Dask worker that cannot see the client's files (its
own mount namespace hides the library and the output folder) analyses the bytes the client
sends; the client writes the outputs, the failures file, and resumes, as a local batch does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import click_track, tone, write_audio
from tests.dask_cluster import Cluster, can_hide_folders
from tests.test_cli import MINI, command

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not can_hide_folders(),
                                reason="needs mount namespaces (unshare -m) to hide folders")


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([command("extractor"), "run", *args], capture_output=True, text=True,
                          env=env(), cwd=cwd, timeout=300)


@pytest.fixture
def client_side(tmp_path) -> Path:
    """The client's folder: a library (two songs in subfolders, one broken file), the
    profile, an output folder; none of it is visible to the worker."""
    side = tmp_path / "client"
    (side / "lib" / "a" / "b").mkdir(parents=True)
    (side / "lib" / "c").mkdir()
    write_audio(side / "lib" / "a" / "b" / "song.wav", click_track(3.0, bpm=120))
    write_audio(side / "lib" / "c" / "tone.wav", tone(2.0, 330.0))
    (side / "lib" / "c" / "broken.mp3").write_bytes(b"not audio" * 100)
    (side / "out").mkdir()
    shutil.copy(MINI, side / "mini.yaml")
    return side


@pytest.fixture
def cluster(tmp_path, client_side) -> Iterator[Cluster]:
    root = tmp_path / "cluster"
    root.mkdir()
    grid = Cluster(root, env())
    (root / "models").mkdir()
    try:
        grid.add_worker("apart", root / "models", hide=(client_side,))
        yield grid
    finally:
        grid.close()


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.json"))}


def test_outputs_failures_and_resume_without_a_shared_filesystem(client_side, cluster):
    local = run("mini.yaml", "lib", "local", "-j", "1", cwd=client_side)
    assert local.returncode == 1, local.stderr
    shared = run("mini.yaml", "lib", "out", "--dask-scheduler", cluster.address, cwd=client_side)
    assert shared.returncode == 1  # the worker sees neither the profile nor lib/
    worker = cluster.worker("apart")
    assert shared.stderr.splitlines()[-1] == (
        f"error: Dask worker {worker} cannot compile the profile: "
        f"{client_side / 'mini.yaml'}: no such profile file")

    first = run("mini.yaml", "lib", "out", "--dask-scheduler", cluster.address,
                "--write-on", "client", cwd=client_side)
    assert first.returncode == 1, first.stderr
    assert "2 done, 0 skipped (up to date), 1 failed" in first.stderr
    assert "failed lib/c/broken.mp3: unsupported or corrupt audio" in first.stderr
    out = client_side / "out"
    assert contents(out) == contents(client_side / "local")  # byte for byte
    assert (out / "failures.jsonl").read_text() == (
        client_side / "local" / "failures.jsonl").read_text()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    again = run("mini.yaml", "lib", "out", "--dask-scheduler", cluster.address,
                "--write-on", "client", cwd=client_side)
    assert "0 done, 2 skipped (up to date), 1 failed" in again.stderr


def test_an_input_over_the_limit_is_refused_and_the_run_goes_on(client_side, cluster):
    huge = client_side / "lib" / "huge.wav"
    with open(huge, "wb") as handle:  # sparse: 1.5 GiB on paper, nothing on disk
        handle.truncate(3 << 29)
    result = run("mini.yaml", "lib", "out", "--dask-scheduler", cluster.address,
                 "--write-on", "client", cwd=client_side)
    assert result.returncode == 1
    assert "2 done, 0 skipped (up to date), 2 failed" in result.stderr, result.stderr
    failures = [json.loads(line) for line in
                (client_side / "out" / "failures.jsonl").read_text().splitlines()]
    assert {"path": "lib/huge.wav", "error": "lib/huge.wav: 1.5 GiB, more than --write-on "
            "client sends to a worker (1 GiB); analyse it with --write-on workers or on one "
            "machine"} in failures


def test_write_on_needs_a_dask_scheduler(client_side):
    result = run("mini.yaml", "lib", "out", "--write-on", "client", cwd=client_side)
    assert result.returncode == 2
    assert result.stderr == ("error: usage: --write-on is for --dask-scheduler (local workers "
                             "write here)\n")
