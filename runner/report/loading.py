"""Read a folder of per-track outputs (any profile) for the report.

A library report must not die on one damaged file: an unreadable or corrupt JSON is skipped
and counted, and so is a JSON that is not a per-track result (a batch's failure list, a CLAP
store's ``clap.json``, a summary document). Frame files (``*_frames.json``) are left out.
Outputs of several profiles for the same audio (the music profile in one folder, the clap
profile in another) are merged into one track when their ``metadata.audio_properties.
md5_encoded`` agree, so the embedding map and the descriptors meet in one row. Large folders
are read by one process per core; a worker sends back only the Track (tracks.py), never the
document.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.output.reading import parse_json
from runner.report.tracks import Track, merge, track_from_doc

SKIPPED_NAMES = {"failures.jsonl", "warnings.jsonl"}


@dataclass
class Library:
    """Everything read from an output folder."""

    folder: Path
    tracks: list[Track] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    not_results: list[Path] = field(default_factory=list)


def result_files(folder: Path) -> list[Path]:
    """The JSON files under ``folder`` that may be per-track outputs, in a stable order."""
    return [p for p in sorted(folder.rglob("*.json"))
            if p.is_file() and not p.stem.endswith("_frames") and p.name not in SKIPPED_NAMES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def read_result(path: Path) -> Any:
    """One output document; ValueError/OSError for a file that is not readable JSON."""
    return parse_json(path.read_bytes())


def is_result(doc: Any) -> bool:
    """A per-track output has a ``metadata`` object and at least one other section."""
    return (isinstance(doc, dict) and isinstance(doc.get("metadata"), dict)
            and any(isinstance(value, dict) for key, value in doc.items() if key != "metadata")
            and "summary" not in doc)


# Left to itself the report reads in parallel from this many bytes of outputs: below that,
# starting the workers (about a second) costs more than they save.
PARALLEL_FROM_BYTES = 32 * 2**20


def read_one(path: Path) -> tuple[str, Any]:
    """("result", Track) | ("unreadable", reason) | ("other", None) for one file.

    Runs in worker processes: only the Track travels back, never the document."""
    try:
        doc = read_result(path)
    except OSError as exc:
        return "unreadable", exc.strerror or str(exc)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return "unreadable", " ".join(str(exc).split())[:200]
    if not is_result(doc):
        return "other", None
    return "result", track_from_doc(doc, path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_all(files: list[Path], jobs: int | None) -> list[tuple[str, Any]]:
    """Parsing JSON is most of a large report's time: spread it over the cores (``jobs``
    processes; None: one per core where the outputs are large enough to be worth it)."""
    if jobs is None:
        large = sum(_size(path) for path in files) >= PARALLEL_FROM_BYTES
        jobs = (os.cpu_count() or 1) if large else 1
    workers = min(jobs, len(files))
    if workers <= 1:
        return [read_one(path) for path in files]
    chunk = max(1, min(64, len(files) // (workers * 4)))
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(read_one, files, chunksize=chunk))


def load_library(folder: Path, jobs: int | None = None) -> Library:
    """Read every output under ``folder`` (``jobs`` processes; None: see _read_all); corrupt
    files and non-results are counted, not fatal. Outputs of the same audio become one
    track. The workers are spawned: a script that calls this with workers needs the usual
    ``if __name__ == "__main__":`` guard (the `extractor` command has it)."""
    library = Library(folder=folder)
    parts: dict[str | int, list[Track]] = {}
    files = result_files(folder)
    for n, (path, (kind, value)) in enumerate(zip(files, _read_all(files, jobs), strict=True)):
        if kind == "unreadable":
            library.unreadable.append((path, value))
        elif kind == "other":
            library.not_results.append(path)
        else:
            parts.setdefault(value.audio_id if value.audio_id is not None else n,
                             []).append(value)
    library.tracks = [group[0] if len(group) == 1 else merge(group)
                      for group in parts.values()]
    return library
