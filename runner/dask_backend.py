"""The batch engine on a Dask distributed cluster (``--dask-scheduler tcp://HOST:PORT``).

Same contract as the local worker processes in runner.batch: the parent decides what is up
to date (resume), each file is one task that writes its output atomically, expected failures
come back as failed outcomes, and a worker that dies is reported against the file it was
running. Workers and the parent must see the inputs and outputs at the same paths (a shared
filesystem): a task writes its output where the parent planned it, and the parent reads
existing outputs to skip them.

Each worker thread compiles the profile once and reuses it for all its tasks. Files are handed
out as worker threads free up (never more tasks in flight than the cluster has threads), so the
scheduler does not stack tasks on a worker behind one that may crash and take them down too.

Imported only when the option is given: ``distributed`` is an optional dependency.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import distributed

from runner import __version__
from runner.batch import Job, Outcome, Summary, analyse_one, pending_jobs, up_to_date
from runner.errors import ExtractorError

CONNECT_TIMEOUT = "10s"
_MAX_CACHED = 4  # profiles kept compiled per worker thread (batches of other users, --set)

_local = threading.local()


# -- on the workers ---------------------------------------------------------------------------
def _extractor(profile: str, overrides: tuple[str, ...], legacy_base: str) -> Any:
    """This thread's compiled Extractor for the profile, built on its first task."""
    cache: dict[tuple[Any, ...], Any] = _local.__dict__.setdefault("extractors", {})
    key = (profile, overrides, legacy_base)
    if key not in cache:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before essentia loads libtensorflow
        # Model stages: the cluster's worker threads are the parallelism. Dask's nannies set
        # OMP_NUM_THREADS=1 for that reason (distributed.nanny.pre-spawn-environ); TensorFlow
        # follows the same setting unless the worker's environment says otherwise.
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        from runner.extract import Extractor

        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[key] = Extractor(profile, list(overrides), legacy_base=legacy_base, warn=False)
    return cache[key]


def analyse_task(profile: str, overrides: tuple[str, ...], legacy_base: str, src: str,
                 dst: str) -> tuple[str, str, float, list[str]]:
    """One file on a Dask worker: (status, message, seconds, warnings), as the local workers
    send.

    Status "fatal" means the profile cannot be compiled there (the whole batch stops).
    """
    try:
        extractor = _extractor(profile, overrides, legacy_base)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the batch
        return "fatal", str(exc), 0.0, []
    return analyse_one(lambda s, d: extractor.extract(s, d)["metadata"]["warnings"], src, dst)


def worker_version() -> str:
    """Run on every worker before a batch: a missing or different install fails early."""
    return __version__


# -- in the parent ----------------------------------------------------------------------------
def connect(address: str) -> distributed.Client:
    """A client for the scheduler at ``address``; unreachable or malformed: one line."""
    from distributed.comm import parse_address, parse_host_port

    try:  # before Client(): a Client that failed on a bad address hangs 20 s when collected
        parse_host_port(parse_address(address)[1])
    except ValueError as exc:
        raise ExtractorError(f"--dask-scheduler {address}: {exc} (expected tcp://HOST:PORT)"
                             ) from None
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


class DaskBatch:
    """Run one profile over many files on a Dask cluster; same results as runner.batch.Batch."""

    def __init__(self, profile: str, overrides: list[str], legacy_base: str, digest: str,
                 address: str, force: bool = False) -> None:
        # Workers may run in another directory: a profile given as a path travels absolute.
        path = os.path.expanduser(profile)
        self.profile = os.path.abspath(path) if os.path.exists(path) else profile
        self.overrides = tuple(overrides)
        self.legacy_base = legacy_base
        self.digest = digest
        self.address = address
        self.force = force

    def run(self, jobs: list[Job], report: Any) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        pending = pending_jobs(jobs, lambda job: up_to_date(job.output, self.digest), self.force,
                               summary, report)
        if pending:
            pending.reverse()  # pop() from the end keeps the input order
            client = connect(self.address)
            try:
                self._run(client, pending, summary, report)
            finally:
                client.close()
        summary.seconds = time.perf_counter() - started
        return summary

    def _run(self, client: distributed.Client, pending: list[Job], summary: Summary,
             report: Any) -> None:
        running: dict[str, tuple[Job, distributed.Future]] = {}  # by future key
        finished = distributed.as_completed(loop=client.loop)

        def refill() -> None:
            capacity = max(1, sum(client.nthreads().values()))  # workers may come and go
            while pending and len(running) < capacity:
                job = pending.pop()
                future = client.submit(analyse_task, self.profile, self.overrides,
                                       self.legacy_base, os.path.abspath(job.input),
                                       str(job.output), pure=False, retries=0)
                running[future.key] = (job, future)
                finished.add(future)

        try:
            refill()
            for future in finished:
                job, _ = running.pop(future.key)
                outcome = self._outcome(job, future)
                future.release()  # else a worker's death would make the scheduler redo it
                summary.add(outcome)
                report(outcome)
                refill()
        finally:
            if running:  # interrupted or stopped by a fatal error: leave nothing queued
                client.cancel([future for _, future in running.values()])

    @staticmethod
    def _outcome(job: Job, future: distributed.Future) -> Outcome:
        """The file's outcome; a worker death or a task error is the failure of that file."""
        try:
            status, message, seconds, warnings = future.result()
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
        return Outcome(job, status, message, seconds, warnings=warnings)
