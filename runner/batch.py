"""Library-scale runs: many inputs, mirrored outputs, worker processes, resume, failures.

Each worker process compiles the profile once and reuses it (and its Essentia networks) for
every file it gets. Files are handed out one at a time, so a worker that dies (a decoder
crash, out of memory) costs exactly the file it was working on: it is reported against that
file and a new worker takes its place. Outputs are written atomically, so an interrupted run
(Ctrl-C, kill -9) leaves only complete outputs, and running the same command again skips
them (same profile hash) and does the rest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import yaml

from runner import procs
from runner.errors import ExtractorError, OutputError

FILES_PER_WORKER = 200  # see Batch: bounds what Essentia keeps per file in a long-lived worker
# analyse(input path, output path) -> the result's warnings (or None); it may have
# ``alone(input path) -> bool``: the files it says so about get a worker of their own (see Batch).
Analyse = Callable[[str, str], "list[str] | None"]
Maker = tuple[Callable[..., Analyse], tuple[Any, ...]]  # (factory, args), run in each worker

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .mp4 .aac .aif .aiff .aifc .wma .ape .wv "
    ".mka .webm".split()
)


@dataclass
class Job:
    index: int
    input: Path
    output: Path


@dataclass
class Outcome:
    job: Job
    status: str  # done | skipped | failed
    message: str = ""
    seconds: float = 0.0
    rss_kib: int = 0  # the worker's resident memory after the file (0: not measured)
    warnings: list[str] = field(default_factory=list)  # a done file's metadata.warnings


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[Outcome] = field(default_factory=list)
    warned: list[Outcome] = field(default_factory=list)  # done, with warnings
    analysed: set[str] = field(default_factory=set)  # inputs done or failed in this run
    seconds: float = 0.0
    claimed: list[Outcome] = field(default_factory=list)  # left to another run (see Claims)

    def add(self, outcome: Outcome) -> None:
        """Count one analysed file (done or failed)."""
        self.analysed.add(str(outcome.job.input))
        if outcome.status == "done":
            self.done += 1
            if outcome.warnings:
                self.warned.append(outcome)
        else:
            self.failed += 1
            self.failures.append(outcome)


# -- inputs and outputs -----------------------------------------------------------------------
def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def read_list(list_file: str) -> list[Path]:
    """One path per line; blank lines and lines starting with # are ignored."""
    try:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExtractorError(f"{list_file}: cannot read list: {exc.strerror}") from None
    base = Path(list_file).parent
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() or path.exists() else base / path)
    return paths


def collect(inputs: list[str], list_file: str | None = None) -> list[tuple[Path, Path]]:
    """(file, root) pairs: each input file with the folder its output path is relative to.

    Folders are searched recursively for audio files; files given one by one (or in a list)
    are kept whatever their extension (so a bad one is reported, not silently skipped).
    """
    found: list[tuple[Path, Path]] = []
    listed = read_list(list_file) if list_file else []
    if listed:
        common = Path(os.path.commonpath([str(p.resolve().parent) for p in listed]))
        found += [(p, common) for p in listed]
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for sub in sorted(_walk(path)):
                found.append((sub, path))
        else:
            found.append((path, path.resolve().parent))
    return found


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if is_audio(path):
                yield path


def plan_outputs(pairs: list[tuple[Path, Path]], out_dir: Path, suffix: str
                 ) -> tuple[list[Job], list[str]]:
    """Mirror the input tree under ``out_dir`` (``a/b/song.flac`` -> ``a/b/song.json``).

    Two inputs that would get the same output (``song.mp3`` beside ``song.flac``) keep
    their audio extension instead (``song.mp3.json``, ``song.flac.json``); an input whose
    mirrored path would leave ``out_dir`` is placed by its file name. Returns the jobs and
    notes explaining each such decision.
    """
    out_root = out_dir.resolve()
    notes: list[str] = []
    relative: list[Path] = []
    for path, root in pairs:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            rel = Path(path.name)
        if ".." in rel.parts or rel.is_absolute():
            notes.append(f"{path}: outside its input folder; written as {rel.name}")
            rel = Path(rel.name)
        relative.append(rel)
    targets = [out_root / rel.with_suffix(suffix) for rel in relative]
    counts: dict[Path, int] = {}
    for target in targets:
        counts[target] = counts.get(target, 0) + 1
    jobs: list[Job] = []
    taken: dict[Path, Path] = {}  # output -> the input it belongs to
    for index, ((path, _), rel, target) in enumerate(zip(pairs, relative, targets, strict=True)):
        source = path.resolve()
        if counts[target] > 1:
            target = out_root / rel.parent / (rel.name + suffix)
        if taken.get(target) == source:
            notes.append(f"{path}: listed more than once; analysed once")
            continue
        number = 2
        stem = target.name[: -len(suffix)]
        while target in taken:  # same name, same folder, another file: number it
            target = target.with_name(f"{stem}~{number}{suffix}")
            number += 1
        if target.name != rel.with_suffix(suffix).name:
            notes.append(f"{path}: another input has the same name; output {target.name}")
        if out_root not in target.resolve().parents:
            raise OutputError(f"{path}: output {target} would leave {out_root}")
        taken[target] = source
        jobs.append(Job(index, path, target))
    return jobs, notes


def up_to_date(output: Path, digest: str) -> bool:
    """True when ``output`` exists and was made by a profile with this hash."""
    try:
        text = output.read_text(encoding="utf-8")
        is_yaml = output.suffix in (".yaml", ".yml")
        doc = yaml.safe_load(text) if is_yaml else json.loads(text)
        return doc["metadata"]["profile"]["hash"] == digest
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):  # damaged: recompute
        return False


_TEMPORARY = re.compile(r"^\..+\." + procs.TAG + r"\.[^.]+\.tmp$")
UNOWNED_TEMPORARY_AGE = 3600.0  # a write takes seconds: older temporaries are abandoned


def remove_stale_temporaries(out_dir: Path) -> None:
    """What killed runs left in an output folder: temporary files of interrupted writes
    (see runner.output.write_atomic) whose process is gone, and claims nobody holds (see Claims).
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
                    _drop_claim(Path(path), claim)
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


# -- claims: runs that share an output folder share the work -------------------------------------
CLAIM_SUFFIX = ".claim"


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{CLAIM_SUFFIX}")


def _drop_claim(path: Path, fd: int) -> None:
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
        if job.index in self.held:  # handed back by a worker (see _worker): still ours
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
            _drop_claim(*held)

    def release_all(self) -> None:
        for path, fd in self.held.values():
            _drop_claim(path, fd)
        self.held.clear()


def claim_next(pending: list[Job], claims: Claims, summary: Summary, report: Any
               ) -> Job | None:
    """Pop the next job this run may analyse (claimed), counting and reporting the ones
    before it that it may not: another run holds them, or finished them meanwhile."""
    while pending:
        job = pending.pop()
        outcome = claims.take(job)
        if outcome is None:
            return job
        if outcome.status == "skipped":
            summary.skipped += 1
        else:
            summary.claimed.append(outcome)
        report(outcome)
    return None


# -- workers ------------------------------------------------------------------------------------
def pending_jobs(jobs: list[Job], current: Callable[[Job], bool], force: bool,
                 summary: Summary, report: Any) -> list[Job]:
    """The jobs to run, in input order; up-to-date outputs are counted and reported as skipped.

    Decided in the parent for every backend, so local workers and Dask resume alike.
    """
    pending: list[Job] = []
    for job in jobs:
        if not force and current(job):
            summary.skipped += 1
            report(Outcome(job, "skipped"))
        else:
            pending.append(job)
    return pending


def analyse_one(analyse: Analyse, src: str, dst: str
                ) -> tuple[str, str, float, list[str]]:
    """(status, message, seconds, warnings) for one file: the per-file step of every backend.

    Expected failures (ExtractorError: bad audio, model stage) and bugs alike become a
    failed status, so one file never stops the worker that analyses it.
    """
    started = time.perf_counter()
    try:
        warnings = analyse(src, dst)
        return "done", "", time.perf_counter() - started, list(warnings or [])
    except ExtractorError as exc:
        return "failed", str(exc), time.perf_counter() - started, []
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - one file's bug must not stop the batch
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return "failed", f"{src}: internal error: {detail}", time.perf_counter() - started, []


class _ExtractorWork:
    """The default per-file work: a compiled profile's ``extract(src, dst)``; long tracks
    are analysed alone (``Extractor.wants_own_process``)."""

    def __init__(self, profile: str, overrides: list[str], legacy_base: str,
                 long_tracks_alone: bool = True) -> None:
        from runner.extract import Extractor

        self.extractor = Extractor(profile, list(overrides), legacy_base=legacy_base,
                                   warn=False)
        if long_tracks_alone:  # bench/bench_memory.py mixed compares both
            self.alone = self.extractor.wants_own_process

    def __call__(self, src: str, dst: str) -> list[str]:
        return self.extractor.extract(src, dst)["metadata"]["warnings"]


def _alone(analyse: Analyse, src: str) -> bool:
    alone = getattr(analyse, "alone", None)
    try:
        return bool(alone(src)) if alone is not None else False
    except Exception:  # noqa: BLE001 - an unreadable file is reported by analyse itself
        return False


PARENT_CHECK_SECONDS = 0.5


def _worker(conn: Connection, make: Maker, parent: int) -> None:
    """Build the per-file work once (``make``), then run it on each file the parent sends.

    A worker leaves quietly, without a traceback, whenever its parent goes: at once if the
    parent dies (kill -9, SIGTERM: see _exit_with), on the closed pipe otherwise. Ctrl-C is
    the parent's to handle (workers start with SIGINT ignored, see Batch._start).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(parent)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        _serve(conn, make)
    except (EOFError, OSError, KeyboardInterrupt):  # the parent is gone or stopping
        return


def _exit_with(parent: int) -> None:
    """Leave as soon as ``parent`` is gone, removing this process's spool folder: nobody
    would read this file's result, and the work would go on for minutes on a long track."""
    from runner.analysis import spool

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        spool.remove_owned(os.getpid())
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve(conn: Connection, make: Maker) -> None:
    try:
        factory, args = make
        analyse = factory(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("fatal", str(exc)))
        return
    conn.send(("ready", ""))
    used = False
    while True:
        task = conn.recv()
        if task is None:
            return
        index, src, dst = task
        alone = _alone(analyse, src)
        if alone and used:
            conn.send(("again", index))  # the parent gives it to a fresh worker
            continue
        status, message, seconds, warnings = analyse_one(analyse, src, dst)
        used = True
        conn.send((index, status, message, seconds, _rss_kib(), alone, warnings))


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class _Slot:
    process: Any
    conn: Connection
    job: Job | None = None
    ready: bool = False
    done: int = 0  # files this worker has analysed
    retire: bool = False  # replace it by a fresh worker before it gets another file


class Batch:
    """Run one profile over many files with ``jobs`` worker processes."""

    def __init__(self, profile: str, overrides: list[str], legacy_base: str, digest: str,
                 jobs: int | None = None, force: bool = False, *, make: Maker | None = None,
                 current: Callable[[Job], bool] | None = None,
                 files_per_worker: int = FILES_PER_WORKER) -> None:
        """``make`` and ``current`` replace the profile for other per-file work (music-clap).

        ``files_per_worker``: a worker is replaced by a fresh one after that many files (0:
        never). Essentia's networks keep a few tens of KB per file that no API releases;
        replacing a worker every few hundred files bounds that at the cost of one start-up.
        Likewise a file the work's ``alone`` picks (a track longer than 10 minutes) is
        analysed by a fresh worker, replaced after it: what a process keeps from earlier
        files would add to that file's peak (a 5-, a 60- and a 5-minute track in one worker:
        584 MiB; with the long one alone: 533, bench_memory.py mixed), and what it keeps
        from an hour of audio would stay with the next files. That costs up to two worker
        start-ups per long track (about a second each; the Dask backend keeps its workers).

        ``make`` is ``(factory, args)``: each worker calls ``factory(*args)`` once and gets
        the ``analyse(src, dst)`` it runs per file (both must pickle: workers are spawned).
        ``current(job)`` says whether a job's output can be reused (runs in this process).
        """
        self.profile = profile
        self.overrides = overrides
        self.legacy_base = legacy_base
        self.digest = digest
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.force = force
        self.files_per_worker = max(0, files_per_worker)
        self.make: Maker = make or (_ExtractorWork, (profile, overrides, legacy_base))
        self.handed_back: list[Job] = []  # files a used worker gave back (see _worker)
        self.current = current or (lambda job: up_to_date(job.output, self.digest))
        self.claims = Claims(self.current, force)  # renewed by each run
        self.context = multiprocessing.get_context("spawn")  # no fork of a loaded libtensorflow

    def run(self, jobs: list[Job], report: Any) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        pending = pending_jobs(jobs, self.current, self.force, summary, report)
        pending.reverse()  # pop() from the end keeps the input order
        slots: list[_Slot] = []
        self.claims = Claims(self.current, self.force)
        # Model stages: TensorFlow would give every worker as many threads as there are cores;
        # the workers are the parallelism, so each gets its share (spawned children inherit).
        share = str(max(1, (os.cpu_count() or 1) // max(1, min(self.jobs, len(pending)))))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", share)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        finished = False
        try:
            for _ in range(min(self.jobs, len(pending))):
                slots.append(self._start())
            while pending or any(s.job for s in slots):
                for slot in slots:
                    if slot.ready and slot.job is None and pending:
                        slot.job = claim_next(pending, self.claims, summary, report)
                        if slot.job is not None:
                            slot.conn.send((slot.job.index, str(slot.job.input),
                                            str(slot.job.output)))
                if not (pending or any(s.job for s in slots)):
                    break  # the rest was claimed by other runs
                waitables = [s.conn for s in slots] + [s.process.sentinel for s in slots]
                woken = wait(waitables)
                for slot in [s for s in slots if s.conn in woken or s.process.sentinel in woken]:
                    outcome = self._receive(slot)
                    while self.handed_back:
                        pending.append(self.handed_back.pop())  # next to be handed out
                    if outcome is not None:
                        self.claims.release(outcome.job)
                        summary.add(outcome)
                        report(outcome)
                        slot.done += 1
                        if self.files_per_worker and slot.done >= self.files_per_worker:
                            slot.retire = True
                    if slot.retire and slot.job is None and slot.process.is_alive():
                        if pending:
                            self._retire(slot)
                        slot.retire = False
                    if not slot.process.is_alive() and slot in slots:
                        slots.remove(slot)
                        if pending or slot.job:
                            slots.append(self._start())
            finished = True
        finally:
            self._stop(slots, finished)
            self.claims.release_all()
        summary.seconds = time.perf_counter() - started
        return summary

    @staticmethod
    def _stop(slots: list[_Slot], finished: bool) -> None:
        """Idle workers are told to leave; busy ones (the run was interrupted) are stopped
        at once, and the spool folders they were writing removed."""
        for slot in slots:
            if slot.job is not None and not finished:
                slot.process.kill()
                continue
            try:
                slot.conn.send(None)
            except OSError:
                pass
        for slot in slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            if slot.process.exitcode is not None and slot.process.exitcode < 0:
                _remove_spool_of(slot.process.pid)

    @staticmethod
    def _retire(slot: _Slot) -> None:
        """Ask an idle worker to exit; the loop then starts a fresh one in its place."""
        try:
            slot.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        slot.process.join(timeout=30)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()

    def _start(self) -> _Slot:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker, args=(child, self.make, os.getpid()),
            daemon=True,
        )
        with _sigint_ignored():  # inherited from the start: Ctrl-C is the parent's to handle
            process.start()
        child.close()
        return _Slot(process, parent)

    def _receive(self, slot: _Slot) -> Outcome | None:
        """Read one message from a worker, or turn its death into the failure of its file."""
        try:
            if slot.conn.poll():
                message = slot.conn.recv()
                if message[0] == "ready":
                    slot.ready = True
                    return None
                if message[0] == "fatal":
                    raise ExtractorError(message[1])
                if message[0] == "again":
                    job, slot.job = slot.job, None
                    assert job is not None and job.index == message[1]
                    self.handed_back.append(job)
                    slot.retire = True
                    return None
                index, status, text, seconds, rss, alone, warnings = message
                job, slot.job = slot.job, None
                assert job is not None and job.index == index
                slot.retire = slot.retire or alone
                return Outcome(job, status, text, seconds, rss, warnings)
        except (EOFError, OSError):
            pass
        slot.process.join(timeout=5)
        if slot.process.is_alive():
            return None
        job, slot.job = slot.job, None
        slot.ready = False
        _remove_spool_of(slot.process.pid)  # a crash in native code skips every cleanup
        if job is None:
            return None
        code = slot.process.exitcode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return Outcome(job, "failed", f"{job.input}: the worker crashed ({why})")


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile (in the main thread; signals cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _remove_spool_of(pid: int | None) -> None:
    if pid is not None:
        from runner.analysis import spool

        spool.remove_owned(pid)


def write_failures(path: Path, failures: list[Outcome], kept: list[str] | None = None) -> None:
    """JSON lines: {"path": ..., "error": ...}, one per failed file; ``kept``: lines of the
    existing file to keep (see failures_of_others)."""
    from runner.output import write_atomic

    lines = (kept or []) + [json.dumps({"path": str(o.job.input), "error": o.message})
                            for o in failures]
    write_atomic(path, "".join(line + "\n" for line in lines))


def failures_of_others(path: Path, summary: Summary) -> list[str]:
    """The lines of an existing failures file about files that another run had claimed:
    that run reports them, and whichever of the runs sharing a folder ends last leaves a
    list that covers both."""
    if not summary.claimed:
        return []
    claimed = {str(o.job.input) for o in summary.claimed}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    kept = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("path") in claimed:
            kept.append(line)
    return kept


def write_warnings(path: Path, summary: Summary, jobs: list[Job]) -> bool:
    """JSON lines: {"path": ..., "warning": ...}, one per warning of a done file, beside
    failures.jsonl. Lines an earlier run wrote for files this run skipped (up to date) are
    kept; files analysed again replace theirs. Returns whether any line is left (the file
    is removed otherwise)."""
    from runner.output import write_atomic

    inputs = {str(job.input) for job in jobs}
    analysed = summary.analysed
    kept: list[str] = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("path") in inputs - analysed:
                kept.append(line)
    except OSError:
        pass
    kept += [json.dumps({"path": str(o.job.input), "warning": warning})
             for o in summary.warned for warning in o.warnings]
    if kept:
        write_atomic(path, "".join(line + "\n" for line in kept))
    elif path.exists():
        path.unlink()
    return bool(kept)


def reporter(total: int, quiet: bool) -> tuple[Any, Any]:
    """A progress callback and a closer: a rich bar on a terminal, plain lines otherwise."""
    if quiet:
        return (lambda outcome: None), (lambda: None)
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True),
        )
        task = progress.add_task("analysing", total=total, rate="")
        progress.start()
        started = time.perf_counter()
        done = [0]

        def update(outcome: Outcome) -> None:
            done[0] += 1
            rate = done[0] / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=f"{rate:.2f} files/s")
            if outcome.status == "failed":
                progress.console.print(f"[red]failed[/red] {outcome.message}")
            for warning in outcome.warnings:
                progress.console.print(f"[yellow]warning[/yellow] {escape(str(outcome.job.input))}"
                                       f": {escape(warning)}", highlight=False)

        return update, progress.stop
    count = [0]

    def line(outcome: Outcome) -> None:
        count[0] += 1
        detail = f" ({outcome.seconds:.1f} s)" if outcome.status == "done" else ""
        text = outcome.message if outcome.status == "failed" else str(outcome.job.input)
        print(f"[{count[0]}/{total}] {outcome.status} {text}{detail}", file=sys.stderr,
              flush=True)
        for warning in outcome.warnings:
            print(f"warning: {outcome.job.input}: {warning}", file=sys.stderr, flush=True)

    return line, (lambda: None)
