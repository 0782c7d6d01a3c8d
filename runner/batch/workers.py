"""Local worker processes: the batch engine's own way of running a FileWork over many files.

Each worker process builds the per-file job once (a profile compiled once, its Essentia
networks reused) and runs it on every file it gets. Files are handed out one at a time, so a
worker that dies (a decoder crash, out of memory) costs exactly the file it was working on:
it is reported against that file and a new worker takes its place.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from runner.analysis import spool
from runner.batch.claims import Claims, claim_next
from runner.batch.inputs import Job
from runner.batch.work import (
    BatchResult,
    Maker,
    Outcome,
    Report,
    analyse_one,
    pending_jobs,
    wants_alone,
)
from runner.errors import ExtractorError

FILES_PER_WORKER = 200  # see LocalWorkers: bounds what Essentia keeps per file in a worker


PARENT_CHECK_SECONDS = 0.5


def _worker(conn: Connection, make: Maker, parent: int) -> None:
    """Build the per-file work once (``make``), then run it on each file the parent sends.

    A worker leaves quietly, without a traceback, whenever its parent goes: at once if the
    parent dies (kill -9, SIGTERM: see _exit_with), on the closed pipe otherwise. Ctrl-C is
    the parent's to handle (workers start with SIGINT ignored, see LocalWorkers._start).
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
        alone = wants_alone(analyse, src)
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


def never_current(job: Job) -> bool:
    """No output is reused (every job runs)."""
    return False


class LocalWorkers:
    """Run a FileWork over many files with ``jobs`` worker processes."""

    def __init__(self, make: Maker, current: Callable[[Job], bool] = never_current, *,
                 jobs: int | None = None, force: bool = False,
                 files_per_worker: int = FILES_PER_WORKER) -> None:
        """``make`` is ``(factory, args)``: each worker calls ``factory(*args)`` once and gets
        the FileWork it runs per file (both must pickle: workers are spawned).
        ``current(job)`` says whether a job's output can be reused (runs in this process);
        ``force`` recomputes them all.

        ``files_per_worker``: a worker is replaced by a fresh one after that many files (0:
        never). Essentia's networks keep a few tens of KB per file that no API releases;
        replacing a worker every few hundred files bounds that at the cost of one start-up.
        Likewise a file the work's ``alone`` picks (a track longer than 10 minutes) is
        analysed by a fresh worker, replaced after it: what a process keeps from earlier
        files would add to that file's peak (a 5-, a 60- and a 5-minute track in one worker:
        584 MiB; with the long one alone: 533, bench_memory.py mixed), and what it keeps
        from an hour of audio would stay with the next files. That costs up to two worker
        start-ups per long track (about a second each; the Dask backend keeps its workers).
        """
        self.make = make
        self.current = current
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.force = force
        self.files_per_worker = max(0, files_per_worker)
        self.handed_back: list[Job] = []  # files a used worker gave back (see _serve)
        self.claims = Claims(self.current, force)  # renewed by each batch
        self.context = multiprocessing.get_context("spawn")  # no fork of a loaded libtensorflow

    def process(self, jobs: list[Job], report: Report) -> BatchResult:
        """Run every job that is not current (or all, ``force``); ``report`` hears of each."""
        result = BatchResult()
        started = time.perf_counter()
        pending = pending_jobs(jobs, self.current, self.force, result, report)
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
                        slot.job = claim_next(pending, self.claims, result, report)
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
                        result.add(outcome)
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
        result.seconds = time.perf_counter() - started
        return result

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
        spool.remove_owned(pid)
