"""The one batch flow every command runs: clean the output folder, run the per-file job on
every input (local workers or Dask), show progress, list failures and warnings.

A command builds its jobs (inputs.collect, inputs.plan_outputs) and its workers
(workers.LocalWorkers or dask_workers.DaskWorkers, given a FileWork), calls process_batch,
then ends with report.finish, which prints its closing line and returns the exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from runner.batch.claims import Claims, remove_stale_temporaries
from runner.batch.inputs import Job
from runner.batch.report import progress, record_lists
from runner.batch.work import BatchResult, Report


class Workers(Protocol):
    """Where the per-file job runs: local worker processes or a Dask cluster."""

    claims: Claims

    def process(self, jobs: list[Job], report: Report) -> BatchResult: ...


# Wraps a batch's progress callback and its closer, to see each outcome as it comes (a
# catalog fed as files finish: runner.catalog.feed).
ProgressWrapper = Callable[[Report, Callable[[], None]], tuple[Report, Callable[[], None]]]


def process_batch(workers: Workers, jobs: list[Job], folder: Path, failures: Path | None,
                  *, failures_chosen: bool = False, quiet: bool = False,
                  wrap_progress: ProgressWrapper | None = None) -> BatchResult:
    """Run ``jobs`` on ``workers``, with what killed runs left in ``folder`` removed first;
    failed files are listed in ``failures`` (None: nowhere), warnings beside it
    (report.record_lists). Resume, claims and crash isolation are the workers' part."""
    remove_stale_temporaries(folder)
    update, close = progress(len(jobs), quiet)
    if wrap_progress is not None:
        update, close = wrap_progress(update, close)
    try:
        result = workers.process(jobs, update)
    finally:
        close()
    record_lists(result, jobs, failures, failures_chosen)
    return result
