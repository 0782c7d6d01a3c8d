"""Read a folder of per-track outputs (any profile) for the report.

A library report must not die on one damaged file: an unreadable or corrupt JSON is skipped
and counted, and so is a JSON that is not a per-track result (a batch's failure list, a CLAP
store's ``clap.json``, a summary document). Frame files (``*_frames.json``) are left out.
Outputs of several profiles for the same audio (the music profile in one folder, the clap
profile in another) are merged into one track when their ``metadata.audio_properties.
md5_encoded`` agree, so the embedding map and the descriptors meet in one row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIPPED_NAMES = {"failures.jsonl", "warnings.jsonl"}


@dataclass
class Result:
    """One track: the output documents made for its audio, and where they are."""

    paths: list[Path]
    docs: list[dict[str, Any]]


@dataclass
class Library:
    """Everything read from an output folder."""

    folder: Path
    results: list[Result] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    not_results: list[Path] = field(default_factory=list)


def result_files(folder: Path) -> list[Path]:
    """The JSON files under ``folder`` that may be per-track outputs, in a stable order."""
    return [p for p in sorted(folder.rglob("*.json"))
            if p.is_file() and not p.stem.endswith("_frames") and p.name not in SKIPPED_NAMES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def _reject_constant(name: str) -> float:
    """NaN and Infinity in a file (Python's json writes them) read as NaN: dropped later."""
    return math.nan


def read_result(path: Path) -> dict[str, Any]:
    """One output document; ValueError/OSError for a file that is not readable JSON."""
    text = path.read_text(encoding="utf-8")
    return json.loads(text, parse_constant=_reject_constant)


def is_result(doc: Any) -> bool:
    """A per-track output has a ``metadata`` object and at least one other section."""
    return (isinstance(doc, dict) and isinstance(doc.get("metadata"), dict)
            and any(isinstance(value, dict) for key, value in doc.items() if key != "metadata")
            and "summary" not in doc)


def audio_id(doc: dict[str, Any]) -> str | None:
    """What identifies the audio across profiles: the MD5 of the encoded stream."""
    props = doc.get("metadata", {}).get("audio_properties")
    if isinstance(props, dict) and isinstance(props.get("md5_encoded"), str):
        return props["md5_encoded"] or None
    return None


def load_library(folder: Path) -> Library:
    """Read every output under ``folder``; corrupt files and non-results are counted, not
    fatal."""
    library = Library(folder=folder)
    by_audio: dict[str, Result] = {}
    for path in result_files(folder):
        try:
            doc = read_result(path)
        except OSError as exc:
            library.unreadable.append((path, exc.strerror or str(exc)))
            continue
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            library.unreadable.append((path, " ".join(str(exc).split())[:200]))
            continue
        if not is_result(doc):
            library.not_results.append(path)
            continue
        key = audio_id(doc)
        if key is not None and key in by_audio:
            by_audio[key].paths.append(path)
            by_audio[key].docs.append(doc)
            continue
        result = Result(paths=[path], docs=[doc])
        library.results.append(result)
        if key is not None:
            by_audio[key] = result
    return library
