"""A beets library's items through the batch engine: what ``beet extract`` runs.

Each item's output is ``FOLDER/<item id>.json``, kept: an item whose output was made by a
profile with the same hash (the same profile, options and models), after the audio file last
changed (and of a file of the same name), is not analysed again, and
its fields are read back from that output (so a run that stopped between the analysis and
the database still fills them in). The beets side (items, the database, tags in files) stays
in beetsplug/extractor.py; this module knows nothing of beets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from runner import batch, compile
from runner import output as write
from runner import profile as load
from runner.batch.extract_job import ExtractorWork
from runner.batch.inputs import Job
from runner.library.beets_fields import FieldValue, beets_fields
from runner.models.stage import prepare


def current(job: Job, digest: str) -> bool:
    """An output made by a profile with this hash, of a file of this name (an item id that
    beets gave again to another file after a removal does not reuse the old one's output),
    no older than the audio file."""
    try:
        if job.output.stat().st_mtime < job.input.stat().st_mtime:
            return False
        doc = json.loads(job.output.read_text(encoding="utf-8"))
        return (doc["metadata"]["profile"]["hash"] == digest
                and doc["metadata"]["tags"]["file_name"] == job.input.name)
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: analyse
        return False


@dataclass
class ItemsResult:
    """A batch over items: the engine's counts, each item's fields (from its up-to-date
    output), and the message of each item that failed."""

    batch: batch.BatchResult
    fields: dict[int, dict[str, FieldValue]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    outputs: dict[int, Path] = field(default_factory=dict)  # item id -> its output
    interrupted: bool = False  # Ctrl-C: the fields are those of the items analysed so far

    def tags_written(self, item_id: int) -> None:
        """The audio file changed because its tags were written: its output stays current
        (a rerun would analyse it again otherwise)."""
        self.outputs[item_id].touch()


def analyse_items(items: dict[int, Path], folder: Path, *, profile: str = "music",
                  overrides: list[str] | None = None, jobs: int | None = None,
                  force: bool = False, quiet: bool = False,
                  note: Callable[[str], None] = print,
                  reserved: frozenset[str] = frozenset()) -> ItemsResult:
    """Analyse ``items`` (item id -> audio file) with ``profile`` on local workers, outputs
    kept in ``folder``; ``note`` hears the profile's notes (models left out, ...);
    ``reserved``: beets' own field names (see beets_fields)."""
    overrides = list(overrides or [])
    plan = compile.compile_profile(load.load_profile(profile, overrides, "music"))
    notes = list(plan.profile.notes)
    stage = prepare(plan, warn=False, load=False)  # completes plan.digest as workers will
    if stage is not None and stage.missing:
        notes.append(stage.note())
    if not quiet:
        for line in notes:
            note(line)
    write.prepare_folder(folder)
    jobs_list = [Job(index, path, folder / f"{item_id}.json")
                 for index, (item_id, path) in enumerate(items.items())]
    workers = batch.LocalWorkers((ExtractorWork, (profile, overrides, "music")),
                                 partial(current, digest=plan.digest), jobs=jobs,
                                 force=force)
    try:
        result = batch.process_batch(workers, jobs_list, folder, folder / "failures.jsonl",
                                     quiet=quiet)
        interrupted = False
    except KeyboardInterrupt:  # the engine stopped its workers; keep what was analysed
        result, interrupted = batch.BatchResult(), True
    outcome = ItemsResult(result, interrupted=interrupted)
    failed = {str(o.job.input): o.message for o in result.failures}
    for item_id, job in zip(items, jobs_list, strict=True):
        outcome.outputs[item_id] = job.output
        if str(job.input) in failed:
            outcome.failed[item_id] = failed[str(job.input)]
        elif current(job, plan.digest):
            with job.output.open(encoding="utf-8") as handle:
                outcome.fields[item_id] = beets_fields(json.load(handle), reserved)
    return outcome
