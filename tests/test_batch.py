"""Library-scale runs: folders, lists, mirrored outputs, resume, failures, crashes, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
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
    """A worker that dies in native code (SIGABRT in the middle of a file, its spool folder
    written) costs that file only; the batch goes on and removes what the worker left."""
    from runner.batch import LocalWorkers
    from tests.work import AbortInTheMiddle

    (library / "c" / "broken.mp3").unlink()
    out = tmp_path / "out"
    jobs, _ = plan_outputs(collect([str(library)]), out, ".json")
    seen = []
    engine = LocalWorkers((AbortInTheMiddle, ("beats", "song.flac")), jobs=1)
    summary = engine.process(jobs, seen.append)
    assert [o.message for o in seen if o.status == "failed"] == [
        f"{library / 'a' / 'b' / 'song.flac'}: the worker crashed (signal 6)"]
    assert summary.done == 2 and summary.failed == 1
    assert outputs(out) == ["a/b/song.wav.json", "c/tone.json"]  # the batch went on
    assert spool_folders() == []


def spool_folders(folder: Path | None = None) -> list[str]:
    from runner.analysis.spool import PREFIX

    return sorted(n for n in os.listdir(folder or tempfile.gettempdir()) if n.startswith(PREFIX))


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
    from runner.batch import Job, LocalWorkers

    jobs = [Job(i, tmp_path / f"in{i}.wav", tmp_path / f"out{i}.txt") for i in range(5)]
    seen = []
    engine = LocalWorkers((_pid_writer, ()), jobs=1, files_per_worker=per_worker)
    summary = engine.process(jobs, seen.append)
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
    from runner.batch import Job, LocalWorkers

    names = ["short0", "long1", "short2", "short3", "long4", "long5", "short6"]
    jobs = [Job(i, tmp_path / f"{n}.wav", tmp_path / f"{n}.txt") for i, n in enumerate(names)]
    seen = []
    engine = LocalWorkers((_PidWriterWithLongTracks, ()), jobs=workers)
    summary = engine.process(jobs, seen.append)
    assert summary.done == len(names) and summary.failed == 0
    assert sorted(o.job.index for o in seen) == list(range(len(names)))  # each file once
    pid = {n: (tmp_path / f"{n}.txt").read_text() for n in names}
    for name in names:
        sharing = [n for n in names if n != name and pid[n] == pid[name]]
        assert not name.startswith("long") or not sharing, (name, sharing)
    if workers == 1:  # in order, each long track in a process of its own
        assert pid["short2"] == pid["short3"] and pid["short0"] != pid["short2"]


# -- two runs, one job: claims -----------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def counted_run(log: Path, seconds: float, workers: int, lib: Path, out: Path,
                **popen: object) -> subprocess.Popen:
    """A batch process whose per-file work is tests.work.Counted (see there)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.work", str(log), str(seconds), str(workers), str(lib),
         str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **{"env": dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), **popen})


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def empty_inputs(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        (folder / f"t{i:02d}.wav").write_bytes(b"")  # Counted never reads them
    return folder


def test_two_runs_at_once_analyse_each_file_once(tmp_path):
    """Two batches on the same folder share the work: each file is analysed by one of them
    (the other reports it claimed or, once written, up to date); both exit 0."""
    lib = empty_inputs(tmp_path / "lib", 12)
    log, out, gate = tmp_path / "analyses.log", tmp_path / "out", tmp_path / "go"
    env = dict(os.environ, COUNTED_GATE=str(gate))  # analyses end once both runs are working
    first = counted_run(log, 0.1, 2, lib, out, env=env)
    wait_for(lambda: log.exists() and log.read_text())  # the first run is under way
    second = counted_run(log, 0.1, 2, lib, out, env=env)
    # however loaded the machine: the second run's workers have started analyses of their own
    wait_for(lambda: len({line.split()[0] for line in log.read_text().splitlines()}) >= 3)
    gate.touch()
    results = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], results
    analysed = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert sorted(analysed) == sorted(str(p) for p in lib.iterdir())  # each once
    counts = [json.loads(stdout) for stdout, _ in results]
    assert counts[0]["done"] + counts[1]["done"] == 12
    assert counts[0]["done"] >= 1 and counts[1]["done"] >= 1  # they did run at the same time
    assert counts[1]["claimed"] >= 1  # and the second met the first's claims
    assert len(list(out.glob("*.json"))) == 12
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # claims removed


def test_the_claims_of_a_killed_run_are_taken_over(tmp_path):
    """kill -9 leaves a claim file, but its lock died with the process: the next run takes
    the file over (nothing is reported claimed) and removes the leftovers."""
    lib = empty_inputs(tmp_path / "lib", 3)
    log, out = tmp_path / "analyses.log", tmp_path / "out"
    killed = counted_run(log, 60, 1, lib, out, start_new_session=True)
    wait_for(lambda: log.exists() and log.read_text())
    claim = out / ".t00.json.claim"
    assert claim.read_text().startswith(f"pid {killed.pid} on ")
    os.killpg(killed.pid, signal.SIGKILL)  # the run and its worker
    killed.communicate()
    worker = int(log.read_text().split()[0])
    wait_for(lambda: not Path(f"/proc/{worker}").exists() or
             Path(f"/proc/{worker}/stat").read_text().split(") ")[1][0] in "ZX")
    assert claim.exists()  # left behind, unlocked
    again = counted_run(log, 0.05, 1, lib, out)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert json.loads(stdout) == {"done": 3, "skipped": 0, "claimed": 0, "failed": 0}
    assert sorted(p.name for p in out.iterdir()) == ["t00.json", "t01.json", "t02.json"]


def test_a_file_another_live_run_holds_is_left_to_it(tmp_path, library):
    """The real command: a file whose claim is held is not analysed, is reported as claimed
    (exit 0, nothing failed), and the next run, once the claim is gone, does it."""
    from runner.batch import Claims, claim_path, drop_claim

    (library / "c" / "broken.mp3").unlink()
    out = tmp_path / "out"
    held = claim_path(out / "c" / "tone.json")
    held.parent.mkdir(parents=True)
    fd = Claims.try_lock(held)
    assert isinstance(fd, int)
    os.write(fd, b"pid 4242 on elsewhere since 2026-01-01 00:00:00\n")
    result = run("streaming-extractor-beats", str(library), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert f"claimed {library / 'c' / 'tone.wav'}" in result.stderr
    assert ("2 done, 0 skipped (up to date), 1 claimed by another run, 0 failed"
            in result.stderr)
    assert outputs(out) == ["a/b/song.flac.json", "a/b/song.wav.json"]
    assert held.exists()  # another run's claim: left alone
    drop_claim(held, fd)
    again = run("streaming-extractor-beats", str(library), "--output", str(out))
    assert "1 done, 2 skipped (up to date), 0 failed" in again.stderr
    assert not held.exists()


def test_two_commands_at_once_on_one_folder(tmp_path):
    """Two streaming-extractor-beats on the same folder at once: as many analyses as files."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(6):
        write_audio(lib / f"t{i}.wav", click_track(3.0, bpm=100 + 7 * i, seed=i))
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([command("streaming-extractor-beats"), str(lib), "--output",
                               str(out), "-j", "1"], stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    done = [int(e.strip().splitlines()[-1].split(" done")[0]) for e in errors]
    assert sum(done) == 6, errors
    assert len(list(out.glob("*.json"))) == 6


def test_stale_temporaries_and_free_claims_are_removed_live_ones_kept(tmp_path):
    """What a run removes from its output folder at the start: only what nobody uses."""
    from runner import procs
    from runner.batch import Claims, drop_claim, remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    files = {
        "dead": f".a.json.{dead}@{procs.host()}.k2j3h4g5.tmp",
        "live": f".b.json.{procs.tag()}.k2j3h4g5.tmp",  # another run writing right now
        "other host": f".c.json.{dead}@elsewhere.k2j3h4g5.tmp",
        "unowned old": ".d.json.k2j3h4g5.tmp",
        "unowned new": ".e.json.k2j3h4g5.tmp",
        "free claim": ".f.json.claim",
        "held claim": ".g.json.claim",
    }
    for name in files.values():
        (tmp_path / name).write_text("x")
    os.utime(tmp_path / files["unowned old"], (time.time() - 7200, time.time() - 7200))
    fd = Claims.try_lock(tmp_path / files["held claim"])
    remove_stale_temporaries(tmp_path)
    left = {key for key, name in files.items() if (tmp_path / name).exists()}
    assert left == {"live", "other host", "unowned new", "held claim"}
    drop_claim(tmp_path / files["held claim"], fd)


# -- the parent goes: its workers leave, quietly, and nothing is left ---------------------------
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_leave_at_once_and_quietly_when_their_parent_is_killed(tmp_path, how):
    """Only the parent is killed (the workers are not in the signal): each worker notices,
    leaves without a traceback, and does not finish its minute-long file."""
    lib = empty_inputs(tmp_path / "lib", 4)
    log = tmp_path / "analyses.log"
    batch = counted_run(log, 60, 2, lib, tmp_path / "out")
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 2)
    workers = [int(line.split()[0]) for line in log.read_text().splitlines()]
    batch.send_signal(how)
    _, stderr = batch.communicate(timeout=60)
    started = time.time()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 30)
    assert time.time() - started < 30  # long before their files would have ended
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    assert not list((tmp_path / "out").glob("*.json"))  # no file was finished


@pytest.mark.parametrize("how", ["kill -9 the parent", "Ctrl-C"])
def test_a_stopped_batch_leaves_no_spool_and_no_traceback(tmp_path, how):
    """The real command, stopped in the middle of a file: the workers' spool folders go with
    them (SIGKILL of the parent: the workers remove theirs; Ctrl-C: the parent stops the
    workers, removes them and says 'interrupted')."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(2):
        write_audio(lib / f"t{i}.wav", click_track(20.0, seed=i))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmpdir))
    batch = subprocess.Popen([command("streaming-extractor-beats"), str(lib), "--output",
                              str(tmp_path / "out"), "-j", "2"], stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True)
    wait_for(lambda: spool_folders(tmpdir))  # a worker is in the middle of a file
    workers = {int(name.split("-")[2].split("@")[0]) for name in spool_folders(tmpdir)}
    if how == "Ctrl-C":
        os.killpg(batch.pid, signal.SIGINT)  # as a terminal does: the whole group
    else:
        batch.kill()
    _, stderr = batch.communicate(timeout=60)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 30)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    if how == "Ctrl-C":
        assert batch.returncode == 130 and stderr.splitlines()[-1] == "error: interrupted"
    assert spool_folders(tmpdir) == []


def test_each_workers_torch_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """LocalWorkers sets TF_NUM_INTRAOP_THREADS to cores // workers for its children; a worker
    whose models use torch (CREPE, CLAP, hub models) takes that many threads, not all cores."""
    torch = pytest.importorskip("torch")
    from runner.batch.work import share_torch_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
        share_torch_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "not a number")
        share_torch_threads()  # left alone
        assert torch.get_num_threads() == 1
        share_torch_threads(3)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
