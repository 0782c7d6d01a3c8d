"""A batch's `--catalog`: outputs go into the catalog as the batch finishes them.

The batch's parent process is the one writer (local workers and a Dask cluster alike report
each finished file to it). Finished outputs are stored in batched transactions (every
``EVERY_FILES`` files or ``EVERY_SECONDS``), so a library run ends with a queryable catalog
and a reader sees it grow; at the end a full update (cheap: unchanged outputs are not read)
removes tracks whose output is gone and reports the counts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.catalog.backend import DEFAULT_NAME, Backend, CatalogError, connect
from runner.catalog.update import (
    Changed,
    UpdateReport,
    _Kinds,
    check_folder,
    finish,
    load,
    prepare,
    print_report,
    update,
)

EVERY_FILES = 50
EVERY_SECONDS = 10.0


class CatalogFeed:
    """Stores finished outputs of ``folder`` in the catalog at ``url``, a batch at a time."""

    def __init__(self, folder: Path, url: str | None = None, audio_root: Path | None = None,
                 every_files: int = EVERY_FILES, every_seconds: float = EVERY_SECONDS) -> None:
        self.folder = folder
        self.db: Backend = connect(url or str(folder / DEFAULT_NAME))
        try:  # before the first batch is stored, not at the final update
            check_folder(self.db, folder)
        except CatalogError:
            self.db.close()
            raise
        self.audio_root = audio_root
        self.every_files, self.every_seconds = every_files, every_seconds
        self.pending: list[Path] = []
        self.last = time.monotonic()
        self.report = UpdateReport()

    def add(self, output: Path) -> None:
        self.pending.append(output)
        if (len(self.pending) >= self.every_files
                or time.monotonic() - self.last >= self.every_seconds):
            self.flush()

    def flush(self) -> None:
        """One transaction for the outputs finished since the last one."""
        self.last = time.monotonic()
        if not self.pending:
            return
        paths, self.pending = self.pending, []
        with self.db.transaction():
            prepare(self.db, self.report)
            kinds = _Kinds(self.db)
            changed: list[Changed] = []
            for path in paths:
                rel = path.relative_to(self.folder).as_posix()
                stat = path.stat()
                row = self.db.execute("SELECT id, size, mtime_ns FROM tracks WHERE output = ?",
                                      (rel,))
                changed.append((path, rel, stat.st_size, stat.st_mtime_ns,
                                tuple(row[0]) if row else None))  # type: ignore[arg-type]
            load(self.db, self.folder, changed, self.report, kinds)
            finish(self.db, self.report, kinds)

    def close(self) -> UpdateReport:
        """The last batch, then a full update: what is gone is removed, the rest counted."""
        try:
            self.flush()
            final = update(self.db, self.folder, audio_root=self.audio_root)
        finally:
            self.db.close()
        final.added += self.report.added
        final.updated += self.report.updated
        final.unchanged -= self.report.added + self.report.updated
        return final  # its skipped list has the batch's too: they are read again, and fail


def feeding(report: Callable[[Any], None], close: Callable[[], None], out_dir: str,
            url: str | None, analysed: str | None = None
            ) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """Wrap a batch's progress callback and closer (runner.batch.reporter): each output done
    goes to the catalog; closing prints the catalog's counts. ``analysed``: the batch's
    input, which (when a folder) becomes the catalog's audio root."""
    root = Path(analysed) if analysed and Path(analysed).is_dir() else None
    feed = CatalogFeed(Path(out_dir), url or None, root)

    def on_outcome(outcome: Any) -> None:
        report(outcome)
        if outcome.status == "done":
            feed.add(Path(outcome.job.output))

    def on_close() -> None:
        close()
        result = feed.close()
        print_report(result)
        sys.stderr.flush()

    return on_outcome, on_close
