"""`catalog update`: bring the catalog in step with a folder of outputs, in one transaction.

Incremental: an output whose size and modification time are those recorded is not read
again; a new or changed one is (and its profile hash recorded); a track whose output is gone
is removed. Everything happens in one transaction, so an update killed at any moment leaves
the previous catalog as it was, and readers see either the old catalog or the new one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.catalog import pgvector, schema
from runner.catalog.backend import Backend, CatalogError
from runner.catalog.loading import Record, Unreadable, read_output

RESULT_SUFFIXES = (".json", ".yaml", ".yml")
SKIP_NAMES = {"failures.jsonl"}


@dataclass
class UpdateReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (output, reason)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (f"catalog: {self.added} added, {self.updated} updated, {self.removed} removed, "
                f"{self.unchanged} unchanged")
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        return text


def result_files(folder: Path) -> list[Path]:
    """Per-track outputs under ``folder``: not frame files, failure lists or hidden files."""
    return [p for p in sorted(folder.rglob("*")) if p.suffix in RESULT_SUFFIXES
            and not p.stem.endswith("_frames") and p.name not in SKIP_NAMES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and p.is_file()]


def _delete(db: Backend, track_id: int) -> None:
    for table in ("scalars", "tags", "vectors"):
        db.execute(f"DELETE FROM {table} WHERE track_id = ?", (track_id,))


def _store(db: Backend, record: Record, track_id: int | None) -> int:
    columns = (record.output, record.path, record.duration, record.profile,
               record.profile_hash, record.analysed_at, record.size, record.mtime_ns)
    if track_id is None:
        rows = db.execute("INSERT INTO tracks (output, path, duration, profile, profile_hash, "
                          "analysed_at, size, mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                          "RETURNING id", columns)
        track_id = int(rows[0][0])
    else:
        _delete(db, track_id)
        db.execute("UPDATE tracks SET output = ?, path = ?, duration = ?, profile = ?, "
                   "profile_hash = ?, analysed_at = ?, size = ?, mtime_ns = ? WHERE id = ?",
                   (*columns, track_id))
    db.executemany("INSERT INTO scalars (track_id, name, num, text) VALUES (?, ?, ?, ?)",
                   [(track_id, *row) for row in record.rows])
    if record.tags:
        db.executemany("INSERT INTO tags (track_id, taxonomy, tag, probability) "
                       "VALUES (?, ?, ?, ?)", [(track_id, *t) for t in record.tags])
    if record.vectors:
        db.executemany(pgvector.store_sql(db), [pgvector.store_row(db, track_id, n, v)
                                                for n, v in record.vectors.items()])
    return track_id


class _Kinds:
    """The kind of every scalar name, as recorded and as this update finds them."""

    def __init__(self, db: Backend) -> None:
        self.known: dict[str, str | None] = dict(
            db.execute("SELECT name, kind FROM descriptor_names"))
        self.changed: dict[str, str] = {}
        self.merged = dict(self.known)  # known, then changed

    def see(self, record: Record) -> None:
        for name, kind in record.kinds.items() - self.merged.items():  # usually none
            old = self.merged.get(name)
            if kind is None and old is None:
                kind = "number"  # a null first: numbers are the usual case (NaN -> null)
            elif kind is None or kind == old:
                continue
            elif old is not None and {kind, old} != {"number", "bool"}:
                kind = "text"  # mixed kinds across tracks: text is what every value has
            elif old is not None:
                kind = "number"
            if kind != old:
                self.changed[name] = self.merged[name] = kind

    def save(self, db: Backend) -> None:
        db.executemany("INSERT INTO descriptor_names (name, kind) VALUES (?, ?) ON CONFLICT "
                       "(name) DO UPDATE SET kind = excluded.kind", list(self.changed.items()))


PARALLEL_FROM = 200  # outputs to read before worker processes pay for themselves


def _read(job: tuple[Path, Path, int, int]) -> Record | str:
    """One output as a Record, or why it was skipped (picklable either way)."""
    try:
        return read_output(*job)
    except Unreadable as exc:
        return str(exc)


def _exit_with(parent: int) -> None:
    """A reader leaves as soon as its parent is gone (an update killed with kill -9)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _read_all(jobs: list[tuple[Path, Path, int, int]]) -> Iterator[Record | str]:
    """Parsing JSON is half an update's time: spread it over the cores for large updates,
    in order, while this process writes."""
    if len(jobs) < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        yield from map(_read, jobs)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                             initializer=_exit_with, initargs=(os.getpid(),)) as pool:
        yield from pool.map(_read, jobs, chunksize=32)


Changed = tuple[Path, str, int, int, "tuple[int, int, int] | None"]  # path, rel, size, mtime, row


def load(db: Backend, folder: Path, changed: list[Changed], report: UpdateReport,
         kinds: _Kinds) -> None:
    """Read new and changed outputs and store them (inside the caller's transaction)."""
    jobs = [(folder, path, size, mtime) for path, _, size, mtime, _ in changed]
    for (_, rel, _, _, previous), record in zip(changed, _read_all(jobs), strict=True):
        if isinstance(record, str):
            report.skipped.append((rel, record))
            if previous:  # its old rows describe an output that no longer reads
                _delete(db, previous[0])
                db.execute("DELETE FROM tracks WHERE id = ?", (previous[0],))
                report.removed += 1
            continue
        kinds.see(record)
        _store(db, record, previous[0] if previous else None)
        if previous:
            report.updated += 1
        else:
            report.added += 1


def finish(db: Backend, report: UpdateReport, kinds: _Kinds) -> None:
    """New descriptor names into the view; a new generation when anything changed."""
    if kinds.changed or schema.meta(db, "view_names") is None:
        kinds.save(db)
        left = schema.rebuild_view(db)
        schema.set_meta(db, "view_names", str(len(kinds.known) + len(kinds.changed)))
        if left:
            report.notes.append(f"the descriptors view has {schema.VIEW_COLUMNS_MAX} "
                                f"columns; {len(left)} more names are only in the "
                                "scalars table")
    if report.added or report.updated or report.removed:
        generation = int(schema.meta(db, "generation") or 0) + 1
        schema.set_meta(db, "generation", str(generation))


def prepare(db: Backend, report: UpdateReport) -> None:
    """The tables, created or migrated, and pgvector's column where the server has it."""
    for note in (schema.ensure(db), pgvector.enable(db)):
        if note and note not in report.notes:
            report.notes.append(note)


def check_folder(db: Backend, folder: Path, replace: bool = False) -> None:
    """A catalog mirrors one folder of outputs (every subfolder included): an update from
    another folder would remove every track it holds. Refused in one line unless ``replace``
    (a catalog without tracks takes any folder)."""
    held = schema.meta(db, "output_root")
    if replace or held is None or held == str(folder.resolve()):
        return
    if not db.execute("SELECT 1 FROM tracks LIMIT 1"):
        return
    raise CatalogError(f"{db.location}: this catalog holds the outputs of {held}; updating it "
                       f"from {folder} would remove them all. Update it from a folder that "
                       "holds both (subfolders are read), or use --replace to switch folders")


def update(db: Backend, folder: Path, progress: Callable[[str], None] | None = None,
           audio_root: Path | None = None, replace: bool = False) -> UpdateReport:
    """Update the catalog in ``db`` from the outputs under ``folder`` (one transaction).
    ``audio_root``: the analysed folder, so that playlists name the audio files in full;
    ``replace``: the catalog may have held another folder's outputs (check_folder)."""
    if not folder.is_dir():
        raise CatalogError(f"{folder}: not a folder of outputs")
    report = UpdateReport()
    files = result_files(folder)
    if progress:
        progress(f"catalog: {len(files)} outputs in {folder}")
    with db.transaction():
        prepare(db, report)
        check_folder(db, folder, replace)
        # where the outputs are: the report's links to each track's JSON
        schema.set_meta(db, "output_root", str(folder.resolve()))
        if audio_root is not None:
            schema.set_meta(db, "audio_root", str(audio_root.resolve()))
        known = {row[1]: (row[0], row[2], row[3]) for row in
                 db.execute("SELECT id, output, size, mtime_ns FROM tracks")}
        kinds = _Kinds(db)
        changed: list[Changed] = []
        for path in files:
            rel = path.relative_to(folder).as_posix()
            try:
                stat = path.stat()
            except OSError as exc:
                report.skipped.append((rel, exc.strerror or str(exc)))
                continue
            previous = known.pop(rel, None)
            if previous and previous[1:] == (stat.st_size, stat.st_mtime_ns):
                report.unchanged += 1
            else:
                changed.append((path, rel, stat.st_size, stat.st_mtime_ns, previous))
        load(db, folder, changed, report, kinds)
        for track_id, _, _ in known.values():
            _delete(db, track_id)
            db.execute("DELETE FROM tracks WHERE id = ?", (track_id,))
            report.removed += 1
        finish(db, report, kinds)
    return report


def print_report(report: UpdateReport, quiet: bool = False) -> None:
    """Skipped outputs by name (at most 10), notes, then the counts."""
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for rel, reason in report.skipped[:10]:
        print(f"skipped: {rel}: {reason}", file=sys.stderr)
    if len(report.skipped) > 10:
        print(f"skipped: ... and {len(report.skipped) - 10} more", file=sys.stderr)
    if not quiet or report.skipped:
        print(report.line(), file=sys.stderr)
