"""Library-scale runs: many inputs, mirrored outputs, worker processes, resume, failures.

Each worker process compiles the profile once and reuses it (and its Essentia networks) for
every file it gets. Files are handed out one at a time, so a worker that dies (a decoder
crash, out of memory) costs exactly the file it was working on: it is reported against that
file and a new worker takes its place. Outputs are written atomically, so an interrupted run
(Ctrl-C, kill -9) leaves only complete outputs, and running the same command again skips
them (same profile hash) and does the rest.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import yaml

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


def remove_stale_temporaries(out_dir: Path) -> None:
    """Temporary files of writes that a kill -9 interrupted (see write.write_atomic)."""
    if not out_dir.is_dir():
        return
    for dirpath, _, filenames in os.walk(out_dir):
        for name in filenames:
            if name.startswith(".") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(dirpath, name))
                except OSError:
                    pass


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
    if os.environ.get("EXTRACTOR_FAULT_INJECT") == os.path.basename(src):
        os.abort()  # fault injection for the tests: a worker dying in native code
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

        self.extractor = Extractor(profile, overrides, legacy_base=legacy_base, warn=False)
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


def _worker(conn: Connection, make: Maker) -> None:
    """Build the per-file work once (``make``), then run it on each file the parent sends."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        factory, args = make
        analyse = factory(*args)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("fatal", str(exc)))
        return
    conn.send(("ready", ""))
    used = False
    while True:
        try:
            task = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if task is None:
            return
        index, src, dst = task
        alone = _alone(analyse, src)
        if alone and used:
            conn.send(("again", index))  # the parent gives it to a fresh worker
            continue
        try:
            status, message, seconds, warnings = analyse_one(analyse, src, dst)
        except KeyboardInterrupt:
            return
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
        self.context = multiprocessing.get_context("spawn")  # no fork of a loaded libtensorflow

    def run(self, jobs: list[Job], report: Any) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        pending = pending_jobs(jobs, self.current, self.force, summary, report)
        pending.reverse()  # pop() from the end keeps the input order
        slots: list[_Slot] = []
        # Model stages: TensorFlow would give every worker as many threads as there are cores;
        # the workers are the parallelism, so each gets its share (spawned children inherit).
        share = str(max(1, (os.cpu_count() or 1) // max(1, min(self.jobs, len(pending)))))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", share)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        try:
            for _ in range(min(self.jobs, len(pending))):
                slots.append(self._start())
            while pending or any(s.job for s in slots):
                for slot in slots:
                    if slot.ready and slot.job is None and pending:
                        slot.job = pending.pop()
                        slot.conn.send((slot.job.index, str(slot.job.input),
                                        str(slot.job.output)))
                waitables = [s.conn for s in slots] + [s.process.sentinel for s in slots]
                woken = wait(waitables)
                for slot in [s for s in slots if s.conn in woken or s.process.sentinel in woken]:
                    outcome = self._receive(slot)
                    while self.handed_back:
                        pending.append(self.handed_back.pop())  # next to be handed out
                    if outcome is not None:
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
        finally:
            for slot in slots:
                try:
                    slot.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
            for slot in slots:
                slot.process.join(timeout=5)
                if slot.process.is_alive():
                    slot.process.kill()
        summary.seconds = time.perf_counter() - started
        return summary

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
            target=_worker, args=(child, self.make),
            daemon=True,
        )
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
        if job is None:
            return None
        code = slot.process.exitcode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return Outcome(job, "failed", f"{job.input}: the worker crashed ({why})")


def write_failures(path: Path, failures: list[Outcome]) -> None:
    """JSON lines: {"path": ..., "error": ...}, one per failed file."""
    from runner.write import write_atomic

    lines = [json.dumps({"path": str(o.job.input), "error": o.message}) for o in failures]
    write_atomic(path, "".join(line + "\n" for line in lines))


def write_warnings(path: Path, summary: Summary, jobs: list[Job]) -> bool:
    """JSON lines: {"path": ..., "warning": ...}, one per warning of a done file, beside
    failures.jsonl. Lines an earlier run wrote for files this run skipped (up to date) are
    kept; files analysed again replace theirs. Returns whether any line is left (the file
    is removed otherwise)."""
    from runner.write import write_atomic

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
