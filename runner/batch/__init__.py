"""The batch engine: one per-file job (any FileWork) over many inputs, for every command.

Modules, in the order a batch uses them: ``inputs`` (collect the files, plan mirrored
outputs, is an output up to date), ``work`` (the per-file job protocol, outcomes, counts),
``claims`` (runs sharing an output folder share the work; stale temporaries removed),
``workers`` (local worker processes) or ``dask_workers`` (a Dask cluster, imported only for
--dask-scheduler, with ``agreement``: one analysis whichever worker runs it, and ``sending``:
--write-on client), ``report`` (progress and the shared epilogue: failures.jsonl,
warnings.jsonl, the closing line, the exit code), ``engine`` (the flow that ties them).
``extract_job`` is the profile commands' per-file job.

Outputs are written atomically, so an interrupted batch (Ctrl-C, kill -9) leaves only
complete outputs, and running the same command again skips them and does the rest.
"""

from runner.batch.claims import Claims, claim_path, drop_claim, remove_stale_temporaries
from runner.batch.engine import Workers, process_batch
from runner.batch.inputs import AUDIO_EXTENSIONS, Job, collect, plan_outputs, up_to_date
from runner.batch.report import Words, finish, progress, tally
from runner.batch.work import BatchResult, FileWork, Maker, Outcome
from runner.batch.workers import FILES_PER_WORKER, LocalWorkers

__all__ = [
    "AUDIO_EXTENSIONS", "FILES_PER_WORKER", "BatchResult", "Claims", "FileWork", "Job",
    "LocalWorkers", "Maker", "Outcome", "Words", "Workers", "claim_path", "collect",
    "drop_claim", "finish", "plan_outputs", "process_batch", "progress", "remove_stale_temporaries",
    "tally", "up_to_date",
]
