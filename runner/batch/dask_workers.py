"""The batch engine on a Dask distributed cluster (``--dask-scheduler tcp://HOST:PORT``).

Same contract as the local worker processes (runner.batch.workers): the parent decides what is up
to date (resume), each file is one task that writes its output atomically, expected failures
come back as failed outcomes, and a worker that dies is reported against the file it was
running. With ``write_on="workers"`` workers and the parent see the inputs and outputs at the
same paths (a shared filesystem): a task writes its output where the parent planned it; with
``"client"`` the parent sends each input and writes what comes back (runner.batch.sending).
Either way the parent reads existing outputs to skip them.

Before the first file the parent asks every worker what it would compute
(runner.batch.agreement) and refuses a cluster that would not compute what it computes; each
task checks again, for workers that join later. A lost scheduler ends the batch in one line.

Each worker thread compiles the profile once and reuses it for all its tasks. Files are handed
out as worker threads free up (never more tasks in flight than the cluster has threads), so the
scheduler does not stack tasks on a worker behind one that may crash and take them down too.

Imported only when the option is given: ``distributed`` is an optional dependency.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import distributed
from distributed.client import FutureCancelledError

from runner import __version__
from runner.analysis import spool
from runner.batch import agreement, sending
from runner.batch.agreement import View
from runner.batch.claims import Claims, claim_next
from runner.batch.inputs import Job, up_to_date
from runner.batch.work import (
    BatchResult,
    FileWork,
    Maker,
    Outcome,
    Report,
    analyse_one,
    pending_jobs,
)
from runner.batch.workers import never_current
from runner.errors import ExtractorError

CONNECT_TIMEOUT = "10s"
# (function, args) that says what a machine would compute (agreement.describe_profile)
Describe = tuple[Callable[..., View], tuple[Any, ...]]
_MAX_CACHED = 4  # profiles kept compiled per worker thread (batches of other users, --set)

_local = threading.local()
_cleaned = False  # this worker process has removed stale spool folders


# -- on the workers ---------------------------------------------------------------------------
def _work(make: Maker, expected: View | None = None, allow_mixed: bool = False) -> FileWork:
    """This thread's per-file work for ``make`` (a compiled profile), built on its first task.
    A worker process's first task also removes what killed runs left in its TMPDIR.

    ``expected``: what the client computes (runner.batch.agreement). A worker that would
    compute otherwise (it joined after the client asked, or its cache changed) refuses
    before its first file, unless ``allow_mixed``: then every output it writes says so
    (metadata.mixed_cluster)."""
    global _cleaned
    cache: dict[str, FileWork] = _local.__dict__.setdefault("works", {})
    key = repr((make, expected, allow_mixed))
    if key not in cache:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before essentia loads libtensorflow
        # Model stages: the cluster's worker threads are the parallelism. Dask's nannies set
        # OMP_NUM_THREADS=1 for that reason (distributed.nanny.pre-spawn-environ); TensorFlow
        # follows the same setting unless the worker's environment says otherwise.
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        if not _cleaned:
            _cleaned = True
            spool.remove_stale()
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        factory, args = make
        work = factory(*args)
        if expected is not None and hasattr(work, "describe"):
            agreement.check_worker(work, expected, allow_mixed,
                                   distributed.get_worker().address)
        cache[key] = work
    return cache[key]


def analyse_task(make: Maker, src: str, dst: str, expected: View | None = None,
                 allow_mixed: bool = False) -> tuple[str, str, float, list[str]]:
    """One file on a Dask worker: (status, message, seconds, warnings), as the local workers
    send.

    Status "fatal" means the profile cannot be compiled there, or the worker would compute
    another analysis than the client (the whole batch stops).
    """
    try:
        analyse = _work(make, expected, allow_mixed)
    except ExtractorError as exc:  # reported to the parent, which stops the batch
        return "fatal", str(exc), 0.0, []
    except Exception as exc:  # noqa: BLE001 - idem, named after the worker
        return "fatal", f"Dask worker {distributed.get_worker().address}: {exc}", 0.0, []
    return analyse_one(analyse, src, dst)


def analyse_sent_task(make: Maker, name: str, data: bytes, output_name: str,
                      expected: View | None = None, allow_mixed: bool = False
                      ) -> sending.SentResult:
    """One file sent by the client (--write-on client): the status as analyse_task's, and
    the files written for it, which the client writes where it planned."""
    try:
        analyse = _work(make, expected, allow_mixed)
    except ExtractorError as exc:
        return "fatal", str(exc), 0.0, [], {}
    except Exception as exc:  # noqa: BLE001 - idem, named after the worker
        return "fatal", f"Dask worker {distributed.get_worker().address}: {exc}", 0.0, [], {}
    return sending.analyse_copy(analyse, name, data, output_name)


def remove_stale_spools() -> None:
    """Run on every worker after one died: what it left in its TMPDIR (runner.analysis.spool)."""
    spool.remove_stale()


def worker_version() -> str:
    """Run on every worker before a batch: a missing or different install fails early."""
    return __version__


# -- in the parent ----------------------------------------------------------------------------
class SchedulerLost(ExtractorError):
    """The scheduler went away during a batch: the outputs written so far stay (exit 1)."""


def _connection_lost(future: distributed.Future) -> bool:
    """Whether ``future`` was cancelled because the client lost the scheduler."""
    if future.status != "cancelled":
        return False
    try:
        future.result(timeout=0)
    except FutureCancelledError as exc:
        return exc.reason == "scheduler-connection-lost"
    except Exception:  # noqa: BLE001 - another end: not this one
        return False
    return False


def connect(address: str) -> distributed.Client:
    """A client for the scheduler at ``address``; unreachable or malformed: one line."""
    from distributed.comm import parse_address, parse_host_port

    try:  # before Client(): a Client that failed on a bad address hangs 20 s when collected
        parse_host_port(parse_address(address)[1])
    except ValueError as exc:
        raise ExtractorError(f"--dask-scheduler {address}: {exc} (expected tcp://HOST:PORT)"
                             ) from None
    # Dask's own log lines in the client (a lost scheduler, its reconnection attempts, the
    # traceback distributed.batched logs when the connection drops mid-send) would come beside
    # the one line the batch says about them.
    for name in ["distributed", "distributed.client", "distributed.batched",
                 *[n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # distributed sets some levels itself
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, ValueError, TypeError, asyncio.TimeoutError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExtractorError(f"cannot reach the Dask scheduler at {address}: {detail}") from None
    try:
        versions = client.run(worker_version)
    except Exception as exc:  # noqa: BLE001 - e.g. the workers cannot import runner
        client.close()
        raise ExtractorError(f"Dask workers at {address} cannot run extractor-profiles "
                             f"{__version__} (install it on every worker): "
                             f"{type(exc).__name__}: {exc}") from None
    wrong = sorted(f"{worker} has {version}" for worker, version in versions.items()
                   if version != __version__)
    if wrong:
        client.close()
        raise ExtractorError(f"Dask workers run another extractor-profiles than this "
                             f"{__version__}: {', '.join(wrong)}")
    return client


class DaskWorkers:
    """Run a FileWork over many files on a Dask cluster; same results as LocalWorkers."""

    def __init__(self, make: Maker, address: str,
                 current: Callable[[Job], bool] = never_current, *, force: bool = False,
                 describe: Describe | None = None, allow_mixed: bool = False,
                 write_on: str = "workers") -> None:
        """``make`` as for LocalWorkers; it must be importable on the workers. ``describe``
        (function, args): what a machine would compute (runner.batch.agreement.describe_profile),
        asked of the client and of every worker by ``survey``; ``allow_mixed``: workers that
        differ run anyway, and their outputs say so. ``write_on``: "workers" (they read the
        inputs and write the outputs at shared paths) or "client" (runner.batch.sending)."""
        self.make = make
        self.address = address
        self.current = current
        self.force = force
        self.describe = describe
        self.allow_mixed = allow_mixed
        self.write_on = write_on
        self._sent: dict[int, int] = {}  # --write-on client: input bytes in flight, by job
        self.expected: View | None = None  # the client's view, once surveyed
        self.views: dict[str, View] = {}  # each worker's, by address
        self.claims = Claims(self.current, force)
        self.crashed = False  # a worker died during the batch
        self._client: distributed.Client | None = None

    def survey(self) -> list[str]:
        """Ask every worker what it would compute; refuse (ExtractorError, one line naming the
        first worker that differs and how) a cluster that would not compute what this client
        computes, unless ``allow_mixed``. Returns the workers' notes on what is left out:
        the announcement describes the machines that compute, not the client."""
        if self.describe is None:
            return []
        function, args = self.describe
        self.expected = function(*args)
        self._client = self._client or connect(self.address)
        try:
            answers = self._client.run(function, *args, on_error="return")
        except Exception as exc:  # noqa: BLE001 - the scheduler went away meanwhile
            self.close()
            raise ExtractorError(f"Dask workers at {self.address} did not answer: "
                                 f"{type(exc).__name__}: {exc}") from None
        failing = {address: answer for address, answer in sorted(answers.items())
                   if isinstance(answer, BaseException)}  # e.g. the profile is not there
        if failing:
            self.close()
            first, exc = next(iter(failing.items()))
            more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
            raise ExtractorError(f"Dask worker {first} cannot compile the profile: {exc}{more}")
        self.views = answers
        differing = {address: found for address in sorted(self.views)
                     if (found := agreement.differences(self.expected, self.views[address]))}
        if differing and not self.allow_mixed:
            self.close()
            first = next(iter(differing))
            raise ExtractorError(agreement.refusal(first, differing[first], len(differing) - 1))
        if self.allow_mixed:  # an output any of them made is up to date
            hashes = {view["hash"] for view in self.views.values()} | {self.expected["hash"]}
            made = self.current
            self.current = lambda job: any(up_to_date(job.output, h) for h in hashes) or made(
                job)
        notes = {view["note"] for view in self.views.values()}
        if len(notes) <= 1:
            return [note for note in notes if note]
        return [f"Dask worker {address}: {view['note'] or 'every model present'}"
                for address, view in sorted(self.views.items())]

    def close(self) -> None:
        """Close the connection ``survey`` opened (``process`` closes it when done)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                client.close(timeout=5)
            except Exception:  # noqa: BLE001 - the scheduler is gone: nothing left to close
                pass

    def process(self, jobs: list[Job], report: Report) -> BatchResult:
        """Run every job that is not current (or all, ``force``); ``report`` hears of each."""
        result = BatchResult()
        started = time.perf_counter()
        pending = pending_jobs(jobs, self.current, self.force, result, report)
        self.claims = Claims(self.current, self.force)
        try:
            if pending:
                pending.reverse()  # pop() from the end keeps the input order
                self._client = self._client or connect(self.address)
                try:
                    self._submit_all(self._client, pending, result, report)
                finally:
                    self.claims.release_all()
        finally:
            self.close()
        result.seconds = time.perf_counter() - started
        return result

    def _submit_all(self, client: distributed.Client, pending: list[Job],
                    result: BatchResult, report: Report) -> None:
        running: dict[str, tuple[Job, distributed.Future]] = {}  # by future key
        finished = distributed.as_completed(loop=client.loop)

        def refill() -> None:
            try:
                threads = client.nthreads()  # workers may come and go
            except OSError:  # CommClosedError: the scheduler went away
                raise self._lost(result) from None
            capacity = max(1, sum(threads.values()))
            while pending and len(running) < capacity and self._room(pending[-1], running):
                job = claim_next(pending, self.claims, result, report)
                if job is None:
                    return
                future = self._submit(client, job)
                if isinstance(future, Outcome):  # not sent (--write-on client: too large)
                    self.claims.release(job)
                    result.add(future)
                    report(future)
                    continue
                running[future.key] = (job, future)
                finished.add(future)

        self.crashed = False
        lost = False  # the scheduler went away: nothing more can be asked of it
        try:
            refill()
            for future in finished:
                job, _ = running.pop(future.key)
                if future.status == "cancelled" and client.status != "running" or (
                        _connection_lost(future)):
                    raise self._lost(result)
                self.crashed = self.crashed or (
                    future.status == "error"
                    and isinstance(future.exception(), distributed.KilledWorker))
                outcome = self._outcome(job, future)
                self._sent.pop(job.index, None)
                future.release()  # else a worker's death would make the scheduler redo it
                self.claims.release(job)
                result.add(outcome)
                report(outcome)
                refill()
        except SchedulerLost:
            lost = True
            raise
        finally:
            if running and not lost:  # interrupted or stopped: leave nothing queued
                client.cancel([future for _, future in running.values()])
            if self.crashed and not lost:  # a dead worker's spool folder: removed by the
                try:                       # others on its machine
                    client.run(remove_stale_spools)
                except Exception:  # noqa: BLE001 - the next run's workers remove it anyway
                    pass

    def _submit(self, client: distributed.Client, job: Job) -> distributed.Future | Outcome:
        """The task for ``job``: paths for workers that share them, else the input's bytes."""
        if self.write_on == "workers":
            return client.submit(analyse_task, self.make, os.path.abspath(job.input),
                                 str(job.output), self.expected, self.allow_mixed,
                                 pure=False, retries=0)
        data = sending.read_input(job)
        if isinstance(data, Outcome):
            return data
        self._sent[job.index] = len(data)
        with warnings.catch_warnings():  # each task carries its input: a "large graph"
            warnings.filterwarnings("ignore", message=".*large graph.*")
            return client.submit(analyse_sent_task, self.make, Path(job.input).name, data,
                                 Path(job.output).name, self.expected, self.allow_mixed,
                                 pure=False, retries=0)

    def _room(self, job: Job, running: dict[str, tuple[Job, distributed.Future]]) -> bool:
        """Whether ``job``'s input may be sent now: --write-on client keeps the inputs in
        flight under sending.IN_FLIGHT_BYTES (one file at least)."""
        if self.write_on == "workers" or not running:
            return True
        return sum(self._sent.values()) + sending.input_size(job) <= sending.IN_FLIGHT_BYTES

    def _lost(self, result: BatchResult) -> SchedulerLost:
        return SchedulerLost(f"lost the Dask scheduler at {self.address} (outputs written in "
                             f"this run, kept: {result.done}); run the same command again "
                             "to resume")

    @staticmethod
    def _outcome(job: Job, future: distributed.Future) -> Outcome:
        """The file's outcome; a worker death or a task error is the failure of that file.
        What a worker sent back (--write-on client) is written here."""
        try:
            status, message, seconds, warned, *sent = future.result()
        except distributed.KilledWorker as exc:
            tries = exc.allowed_failures + 1
            return Outcome(job, "failed", f"{job.input}: the worker crashed (the Dask worker "
                           f"died {tries} time{'s' if tries > 1 else ''} running it)")
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - that file only
            return Outcome(job, "failed", f"{job.input}: Dask task failed: "
                           f"{type(exc).__name__}: {exc}")
        if status == "fatal":
            raise ExtractorError(message)
        given, absolute = str(job.input), os.path.abspath(job.input)
        if given != absolute:  # messages name the file as the user gave it, as locally
            message = message.replace(absolute, given)
        message = message.replace(sending.INPUT, given)
        if sent and status == "done":
            try:
                sending.write_results(job, sent[0])
            except (ExtractorError, ValueError) as exc:
                return Outcome(job, "failed", str(exc), seconds)
        return Outcome(job, status, message, seconds, warnings=warned)
