"""Library-scale runs: folders, lists, mirrored outputs, resume, failures, crashes, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runner.batch import collect, plan_outputs
from tests.conftest import click_track, tone, write_audio
from tests.test_cli import command, run


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "lib"
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    write_audio(root / "a" / "b" / "song.wav", click_track(3.0, bpm=120))
    write_audio(root / "a" / "b" / "song.flac", click_track(3.0, bpm=90, seed=2))
    write_audio(root / "c" / "tone.wav", tone(2.0, 330.0))
    (root / "c" / "broken.mp3").write_bytes(b"not audio" * 100)
    (root / "c" / "notes.txt").write_text("ignored: not an audio extension")
    return root


def outputs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json"))


def test_folder_mirrors_tree_and_reports_failures(tmp_path, library):
    out = tmp_path / "out"
    result = run("streaming-extractor-beats", str(library), "--output", str(out), "-j", "2")
    assert result.returncode == 1  # one file failed
    assert outputs(out) == ["a/b/song.flac.json", "a/b/song.wav.json", "c/tone.json"]
    assert "note: " in result.stderr and "another input has the same name" in result.stderr
    assert "3 done, 0 skipped (up to date), 1 failed" in result.stderr
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failures == [{"path": str(library / "c" / "broken.mp3"),
                         "error": f"{library / 'c' / 'broken.mp3'}: unsupported or corrupt "
                                  "audio (no sample rate in its header)"}]
    doc = json.loads((out / "a" / "b" / "song.wav.json").read_text())
    assert abs(doc["rhythm"]["bpm"] - 120) < 3


def test_resume_skips_up_to_date_outputs(tmp_path, library):
    out = tmp_path / "out"
    (library / "c" / "broken.mp3").unlink()
    first = run("streaming-extractor-beats", str(library), str(out), "-j", "1")
    assert first.returncode == 0, first.stderr
    assert "3 done, 0 skipped" in first.stderr
    assert not (out / "failures.jsonl").exists()
    again = run("streaming-extractor-beats", str(library), str(out))
    assert "0 done, 3 skipped (up to date), 0 failed" in again.stderr
    forced = run("streaming-extractor-beats", str(library), str(out), "--force", "--quiet")
    assert forced.returncode == 0 and forced.stderr == ""
    changed = run("streaming-extractor-beats", str(library), str(out),
                  "--set", "options.rhythm.minTempo=50")
    assert "3 done, 0 skipped" in changed.stderr  # another profile hash: recomputed


def test_list_file(tmp_path, library):
    listing = tmp_path / "files.txt"
    listing.write_text(f"# my picks\n{library / 'c' / 'tone.wav'}\n\n"
                       f"{library / 'a' / 'b' / 'song.wav'}\n")
    out = tmp_path / "out"
    result = run("extractor", "run", "beats", "--list", str(listing), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert outputs(out) == ["a/b/song.json", "c/tone.json"]


def test_worker_crash_costs_one_file(tmp_path, library):
    (library / "c" / "broken.mp3").unlink()
    out = tmp_path / "out"
    env = dict(os.environ, EXTRACTOR_FAULT_INJECT="song.flac", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([command("streaming-extractor-beats"), str(library), str(out),
                             "-j", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1
    assert "the worker crashed (signal 6)" in result.stderr
    assert outputs(out) == ["a/b/song.wav.json", "c/tone.json"]  # the batch went on


def test_kill_9_leaves_complete_outputs_and_a_rerun_finishes(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(8):
        write_audio(lib / f"t{i}.wav", click_track(4.0, bpm=100 + 5 * i, seed=i))
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([command("streaming-extractor-rhythm"), str(lib), str(out), "-j", "2",
                             "--quiet"], env=env, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.rglob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, mid-batch
    proc.wait()
    written = list(out.rglob("*.json"))
    assert 2 <= len(written) < 8
    for path in written:  # every output that exists is complete and valid
        assert json.loads(path.read_text())["metadata"]["profile"]["name"] == "rhythm"
    again = run("streaming-extractor-rhythm", str(lib), str(out))
    assert again.returncode == 0, again.stderr
    assert f"{8 - len(written)} done, {len(written)} skipped" in again.stderr
    assert len(list(out.rglob("*.json"))) == 8
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_plan_outputs_never_leave_the_output_folder(tmp_path):
    a, b = tmp_path / "x" / "song.mp3", tmp_path / "y" / "song.mp3"
    for path in (a, b):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    pairs = collect([str(a), str(b)])
    jobs, notes = plan_outputs(pairs, tmp_path / "out", ".json")
    targets = [j.output for j in jobs]
    assert len(set(targets)) == 2
    assert all((tmp_path / "out").resolve() in t.parents for t in targets)
    assert any("same name" in n for n in notes)


def test_usage_errors(tmp_path, library):
    result = run("streaming-extractor-music", str(library))
    assert result.returncode == 2
    assert "needs an output folder: --output DIR" in result.stderr


def _pid_writer() -> object:
    """Per-file work for the test below: write the worker's pid (module level: it pickles)."""
    def analyse(src: str, dst: str) -> None:
        Path(dst).write_text(str(os.getpid()))
    return analyse


@pytest.mark.parametrize("per_worker, workers", [(2, 3), (0, 1)])
def test_workers_are_renewed_after_files_per_worker(tmp_path, per_worker, workers):
    """A worker is replaced by a fresh process after N files (memory stays bounded)."""
    from runner.batch import Batch, Job

    jobs = [Job(i, tmp_path / f"in{i}.wav", tmp_path / f"out{i}.txt") for i in range(5)]
    seen = []
    engine = Batch("", [], "", "", jobs=1, make=(_pid_writer, ()), current=lambda job: False,
                   files_per_worker=per_worker)
    summary = engine.run(jobs, seen.append)
    assert summary.done == 5 and summary.failed == 0
    pids = {(tmp_path / f"out{i}.txt").read_text() for i in range(5)}
    assert len(pids) == workers
    assert all(o.rss_kib > 0 for o in seen)  # each result carries its worker's memory


class _PidWriterWithLongTracks:
    """Per-file work for the test below: writes the worker's pid; files named long* are long."""

    def __call__(self, src: str, dst: str) -> None:
        Path(dst).write_text(str(os.getpid()))

    def alone(self, src: str) -> bool:
        return Path(src).name.startswith("long")


@pytest.mark.parametrize("workers", [1, 2])
def test_long_tracks_get_a_fresh_worker_of_their_own(tmp_path, workers):
    """A long track is analysed by a worker that has analysed nothing else, and that worker
    analyses nothing after it (what a process keeps from other files adds to the peak)."""
    from runner.batch import Batch, Job

    names = ["short0", "long1", "short2", "short3", "long4", "long5", "short6"]
    jobs = [Job(i, tmp_path / f"{n}.wav", tmp_path / f"{n}.txt") for i, n in enumerate(names)]
    seen = []
    engine = Batch("", [], "", "", jobs=workers, make=(_PidWriterWithLongTracks, ()),
                   current=lambda job: False)
    summary = engine.run(jobs, seen.append)
    assert summary.done == len(names) and summary.failed == 0
    assert sorted(o.job.index for o in seen) == list(range(len(names)))  # each file once
    pid = {n: (tmp_path / f"{n}.txt").read_text() for n in names}
    for name in names:
        sharing = [n for n in names if n != name and pid[n] == pid[name]]
        assert not name.startswith("long") or not sharing, (name, sharing)
    if workers == 1:  # in order, each long track in a process of its own
        assert pid["short2"] == pid["short3"] and pid["short0"] != pid["short2"]
