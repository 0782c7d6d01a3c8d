"""Reading one output file into what the catalog stores: scalars, tags, vectors.

Any profile's output is accepted (music, freesound, highlevel, clap, a user's own): what
identifies it is ``metadata.profile.name`` and ``metadata.profile.hash``, which every output
of this runner carries. The rules, by value:

* a number, string, boolean or null: a scalar under its dotted name (``rhythm.bpm``);
  a list of strings counts as one string, its items joined by a newline (Essentia's
  ``metadata.tags.artist: ["X"]`` is ``X``; ``metadata.warnings`` keeps every warning);
* an object with ``value``, ``probability`` and ``all`` (a classifier's output): the scalars
  ``NAME.value`` and ``NAME.probability``, and one tag row per class of ``all``;
* a list of numbers in a model section (anything but lowlevel, rhythm, tonal, sfx and
  metadata: ``clap.embedding``, ``highlevel.msd_musicnn``...): a vector (float32);
* other lists (frame positions, statistics vectors of the DSP sections, matrices) stay in the
  JSON: ``extractor export --keep-lists`` tables them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from runner.output.reading import parse_json

DSP_SECTIONS = frozenset({"lowlevel", "rhythm", "tonal", "sfx", "metadata"})
CLASS_KEYS = frozenset({"value", "probability", "all"})
LIST_SEPARATOR = "\n"  # between the items of a list of strings stored as one text
Scalar = float | int | str | bool | None


class Unreadable(Exception):
    """An output the catalog skips (and lists): corrupt, or not from a known profile."""


@dataclass
class Record:
    """One output as catalog rows."""

    output: str  # relative to the output folder, with /
    path: str | None  # the audio file, relative to the analysed folder (mirrored layout)
    duration: float | None
    profile: str
    profile_hash: str
    analysed_at: str
    size: int
    mtime_ns: int
    scalars: dict[str, Scalar] = field(default_factory=dict)
    tags: list[tuple[str, str, float | None]] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    # computed where the file is read (a worker process), not by the one writer
    rows: list[tuple[str, float | None, str | None]] = field(default_factory=list)
    kinds: dict[str, str | None] = field(default_factory=dict)


def _parse(path: Path) -> Any:
    try:
        data = path.read_bytes()
        text = data.decode("utf-8") if path.suffix in (".yaml", ".yml") else None
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None
    try:
        if text is not None:
            import yaml

            return yaml.safe_load(text)
        return parse_json(data)
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None
    except ValueError as exc:
        raise Unreadable(f"corrupt JSON ({' '.join(str(exc).split())[:120]})") from None
    except Exception as exc:  # noqa: BLE001 - yaml's own error tree
        raise Unreadable(f"corrupt YAML ({' '.join(str(exc).split())[:120]})") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _walk(node: dict[str, Any], prefix: str, record: Record) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if CLASS_KEYS <= value.keys() and isinstance(value["all"], dict):
                record.scalars[f"{name}.value"] = value["value"]
                record.scalars[f"{name}.probability"] = value["probability"]
                record.tags.extend((name, str(tag), p if _is_number(p) else None)
                                   for tag, p in value["all"].items())
                rest = {k: v for k, v in value.items() if k not in CLASS_KEYS}
                _walk(rest, name + ".", record)
            else:
                _walk(value, name + ".", record)
        elif isinstance(value, list):
            if value and all(isinstance(v, str) for v in value):
                record.scalars[name] = LIST_SEPARATOR.join(value)
            elif (name.split(".", 1)[0] not in DSP_SECTIONS and len(value) >= 2
                  and all(_is_number(v) for v in value)):
                record.vectors[name] = np.asarray(value, dtype=np.float32)
        elif value is None or isinstance(value, (str, bool, int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            record.scalars[name] = value


def read_output(folder: Path, path: Path, size: int, mtime_ns: int) -> Record:
    """One output file as a Record; :class:`Unreadable` with the reason otherwise."""
    doc = _parse(path)
    profile = doc.get("metadata", {}).get("profile") if isinstance(doc, dict) else None
    if not (isinstance(doc.get("metadata"), dict) and isinstance(profile, dict)
            and isinstance(profile.get("name"), str) and isinstance(profile.get("hash"), str)):
        raise Unreadable("not an output of a known profile (no metadata.profile name and hash)")
    rel = PurePosixPath(path.relative_to(folder).as_posix())
    meta = doc["metadata"]
    file_name = (meta.get("tags") or {}).get("file_name")
    if isinstance(file_name, list) and len(file_name) == 1:
        file_name = file_name[0]
    audio = str(rel.parent / file_name) if isinstance(file_name, str) else None
    if audio and audio.startswith("./"):
        audio = audio[2:]
    length = (meta.get("audio_properties") or {}).get("length")
    record = Record(
        output=str(rel), path=audio,
        duration=float(length) if _is_number(length) else None,
        profile=profile["name"], profile_hash=profile["hash"],
        analysed_at=datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc)
        .isoformat(timespec="seconds"),
        size=size, mtime_ns=mtime_ns)
    _walk(doc, "", record)
    record.rows = [scalar_row(name, value) for name, value in record.scalars.items()]
    record.kinds = {name: kind_of(value) for name, value in record.scalars.items()}
    return record


def kind_of(value: Scalar) -> str | None:
    """number, bool or text; None for a null (which says nothing about the kind)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "text"


def scalar_row(name: str, value: Scalar) -> tuple[str, float | None, str | None]:
    """(name, num, text): numbers and booleans in num, strings in text."""
    if isinstance(value, str):
        return name, None, value
    return name, None if value is None else float(value), None
