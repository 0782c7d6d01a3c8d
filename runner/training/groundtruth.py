"""Labelled tracks from Gaia's files as they are, or from a plain CSV.

Gaia's groundtruth YAML (``type: singleClass``, ``className``, ``groundTruth: {id: label}``)
names tracks by id; its filelist YAML (``{id: path}``) says where each id's descriptors are.
A CSV (``path,label``, header optional) names the paths itself. Relative paths are read from
the folder of the file that names them. Every problem is one line naming the file (and the
line, where there is one): a duplicate id, a label that is a number, an empty filelist, an
id the filelist lacks.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.errors import TrainingError

CSV_SUFFIXES = (".csv",)


@dataclass(frozen=True)
class Track:
    id: str
    path: Path  # a result (JSON/YAML) or an audio file
    label: str


@dataclass(frozen=True)
class Groundtruth:
    name: str  # className (Gaia) or the CSV's stem: the taxonomy's name
    tracks: tuple[Track, ...]
    source: Path

    @property
    def counts(self) -> dict[str, int]:
        """Tracks per class, classes sorted by name."""
        return dict(sorted(Counter(t.label for t in self.tracks).items()))


class _NoDuplicates(yaml.SafeLoader):
    """YAML whose mappings refuse a key given twice (PyYAML keeps the last one silently)."""


def _mapping(loader: _NoDuplicates, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise TrainingError(f"{loader.name}:{line}: duplicate id '{key}' (first at line "
                                f"{seen[key]})")
        seen[key] = line
    return loader.construct_mapping(node)


_NoDuplicates.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    loader = _NoDuplicates(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise TrainingError(f"{where}: not YAML ({getattr(exc, 'problem', exc)})") from None
    finally:
        loader.dispose()


def _label(where: str, track_id: str, label: Any) -> str:
    """A class name; a number (``3``, ``0.5``) or anything else is refused."""
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise TrainingError(f"{where}: the label of '{track_id}' is {label!r}, not a class name")
    text = str(label).strip()
    try:
        float(text)
    except ValueError:
        if not text:
            raise TrainingError(f"{where}: '{track_id}' has an empty label") from None
        return text
    raise TrainingError(f"{where}: the label of '{track_id}' is the number {text}: labels are "
                        f"class names (a classifier, not a regression); name the class, e.g. "
                        f"'class_{text}'")


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def read_filelist(path: Path) -> dict[str, Path]:
    """Gaia's filelist: ``{id: path}``, paths relative to the filelist's folder."""
    data = _read_yaml(path, "filelist")
    if data is None or data == {}:
        raise TrainingError(f"{path}: the filelist is empty")
    if not isinstance(data, dict):
        raise TrainingError(f"{path}: a filelist is a mapping 'id: path' (Gaia's format), "
                            f"not a {type(data).__name__}")
    return {str(k): _resolve(path.parent, v) for k, v in data.items()}


def read_gaia(path: Path, filelist: Path | None) -> Groundtruth:
    """Gaia's groundtruth YAML with its filelist (without one: the ids are the paths)."""
    data = _read_yaml(path, "groundtruth")
    if not isinstance(data, dict):
        raise TrainingError(f"{path}: not a Gaia groundtruth (a mapping with type, className "
                            "and groundTruth)")
    kind = data.get("type", "singleClass")
    if kind != "singleClass":
        raise TrainingError(f"{path}: type is '{kind}'; only Gaia's 'singleClass' groundtruth "
                            "can be trained")
    truth = data.get("groundTruth")
    if not isinstance(truth, dict):
        raise TrainingError(f"{path}: no 'groundTruth' mapping (Gaia's format: type, "
                            "className, groundTruth: {id: label})")
    if not truth:
        raise TrainingError(f"{path}: the groundTruth is empty")
    labels = {str(k): _label(str(path), str(k), v) for k, v in truth.items()}
    files = read_filelist(filelist) if filelist is not None else {
        k: _resolve(path.parent, k) for k in labels}
    absent = [k for k in labels if k not in files]
    if absent:
        raise TrainingError(f"{filelist}: {len(absent)} ids of {path} are not in the filelist: "
                            f"{_some(absent)}")
    name = str(data.get("className") or path.stem)
    return Groundtruth(name, tuple(Track(k, files[k], v) for k, v in labels.items()), path)


def read_csv(path: Path) -> Groundtruth:
    """``path,label`` rows (an optional header ``path,label``); the id is the path."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TrainingError(f"{path}: cannot read the CSV ({exc})") from None
    tracks: list[Track] = []
    first: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if number == 1 and [c.strip().lower() for c in row] == ["path", "label"]:
            continue
        if len(row) != 2:
            raise TrainingError(f"{path}:{number}: expected 'path,label', got {len(row)} "
                                "fields")
        track_id = row[0].strip()
        if track_id in first:
            raise TrainingError(f"{path}:{number}: duplicate id '{track_id}' (first at line "
                                f"{first[track_id]})")
        first[track_id] = number
        label = _label(f"{path}:{number}", track_id, row[1])
        tracks.append(Track(track_id, _resolve(path.parent, track_id), label))
    if not tracks:
        raise TrainingError(f"{path}: the CSV names no track")
    return Groundtruth(path.stem, tuple(tracks), path)


def read(path: Path, filelist: Path | None = None) -> Groundtruth:
    """A groundtruth by its extension: ``.csv`` is ``path,label``, anything else Gaia's YAML."""
    if path.suffix.lower() in CSV_SUFFIXES:
        if filelist is not None:
            raise TrainingError(f"{path}: a CSV names its paths itself; --filelist is for "
                                "Gaia's groundtruth YAML")
        return read_csv(path)
    return read_gaia(path, filelist)


def check_classes(truth: Groundtruth, where: str | None = None) -> None:
    """At least two classes (one class only cannot be a classifier)."""
    counts = truth.counts
    if len(counts) < 2:
        (label, count), = counts.items() if counts else (("none", 0),)
        raise TrainingError(f"{where or truth.source}: one class only ('{label}', {count} "
                            "tracks): a classifier needs at least two")


def _some(items: list[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
