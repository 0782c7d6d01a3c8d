"""The per-file job a batch runs, and what comes back: any callable ``(src, dst) -> warnings``
built once per worker (``Maker``), its ``Outcome`` per file, the ``BatchResult`` of a batch."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner.batch.inputs import Job
from runner.errors import ExtractorError


class FileWork(Protocol):
    """The per-file job of a batch: analyse ``src``, write ``dst`` (atomically), return the
    result's warnings (or None). Built once per worker by a ``Maker``; it may also have
    ``alone(src) -> bool``: the files it says so about get a fresh worker of their own
    (see LocalWorkers)."""

    def __call__(self, src: str, dst: str) -> list[str] | None: ...


# (factory, args): each worker calls ``factory(*args)`` once and gets the FileWork it runs per
# file. Both must pickle (workers are spawned processes or Dask workers).
Maker = tuple[Callable[..., FileWork], tuple[Any, ...]]
Report = Callable[["Outcome"], None]  # told each file's outcome as it comes (progress)


@dataclass
class Outcome:
    job: Job
    status: str  # done | skipped | failed
    message: str = ""
    seconds: float = 0.0
    rss_kib: int = 0  # the worker's resident memory after the file (0: not measured)
    warnings: list[str] = field(default_factory=list)  # a done file's metadata.warnings


@dataclass
class BatchResult:
    """What a batch did, counted; ``failures_file`` and ``warnings_file`` are the lists the
    epilogue left (None: none)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[Outcome] = field(default_factory=list)
    warned: list[Outcome] = field(default_factory=list)  # done, with warnings
    analysed: set[str] = field(default_factory=set)  # inputs done or failed in this run
    seconds: float = 0.0
    claimed: list[Outcome] = field(default_factory=list)  # left to another run (see Claims)
    failures_file: Path | None = None
    warnings_file: Path | None = None

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


def pending_jobs(jobs: list[Job], current: Callable[[Job], bool], force: bool,
                 result: BatchResult, report: Report) -> list[Job]:
    """The jobs to run, in input order; up-to-date outputs are counted and reported as skipped.

    Decided in the parent for every backend, so local workers and Dask resume alike.
    """
    pending: list[Job] = []
    for job in jobs:
        if not force and current(job):
            result.skipped += 1
            report(Outcome(job, "skipped"))
        else:
            pending.append(job)
    return pending


def analyse_one(analyse: FileWork, src: str, dst: str
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


def wants_alone(analyse: FileWork, src: str) -> bool:
    """Whether the job asks for a fresh worker of its own for ``src`` (a long track)."""
    alone = getattr(analyse, "alone", None)
    try:
        return bool(alone(src)) if alone is not None else False
    except Exception:  # noqa: BLE001 - an unreadable file is reported by analyse itself
        return False


def share_torch_threads(threads: int | None = None) -> None:
    """Threads of torch's CPU kernels in this worker, once its models are loaded: ``threads``,
    or the engine's share of the cores (``TF_NUM_INTRAOP_THREADS``, cores // workers), so that
    workers x threads = the cores rather than workers x cores. Nothing when torch is not loaded."""
    if threads is None:
        share = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
        if not share.isdigit():
            return
        threads = int(share)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, threads))
