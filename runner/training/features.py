"""Labelled results -> a feature matrix: descriptors chosen by dotted globs, and/or embeddings.

The default selection is Gaia's ``basic`` preprocessing as its classification projects set it
up: every number and fixed-size vector of numbers, without ``metadata.*``, without
derivatives and extremes (``*.dmean*``, ``*.dvar*``, ``*.min``, ``*.max``), without matrices
(``*.cov``, ``*.icov``), strings or frame lists (whose length varies from track to track;
beat and onset positions always),
and without other models' outputs (``highlevel.*``). A track whose result lacks a selected
descriptor, or holds a non-finite value (null: an undefined statistic), is left out and
reported, never filled with zeros: a zero is a value the classifier would learn from.

Embeddings: the per-patch ``.npy`` files written beside each result by ``--keep-embeddings``
(``song.json`` -> ``song.<model id>.npy``), averaged over patches as the heads of MTG's
models see them; or a groundtruth path that is itself a ``.npy`` vector (``music-clap
--dump``: one CLAP vector per track).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import TrainingError
from runner.tree import flatten

DEFAULT_EXCLUDE = ("metadata.*", "highlevel.*", "*.dmean", "*.dmean2", "*.dvar", "*.dvar2",
                   "*.min", "*.max", "*.cov", "*.icov",
                   # positions in time, even where every track has as many
                   "*.beats_position", "*.onset_times", "*_ticks")


@dataclass(frozen=True)
class Column:
    """One selected descriptor: ``size`` 0 for a number, else the length of its vector."""

    name: str
    size: int

    @property
    def width(self) -> int:
        return max(self.size, 1)


@dataclass
class Features:
    matrix: np.ndarray  # (tracks, values), float32
    ids: list[str]
    labels: list[str]
    columns: list[Column]  # descriptors, in the matrix's column order
    embedding: str | None  # the embedding model whose mean vector follows the descriptors
    embedding_size: int = 0
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (id, why)


def embeddings_path(result: Path, model_id: str) -> Path:
    """Where ``--keep-embeddings`` wrote a result's embeddings (runner.extract's naming)."""
    return result.with_name(f"{result.stem}.{model_id}.npy")


def load_result(path: Path) -> dict[str, Any]:
    """A result's descriptors, flat (``lowlevel.mfcc.mean``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        doc = yaml.safe_load(text)
    else:
        doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("not a result (no descriptors)")
    return flatten(doc)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape(value: Any) -> int | None:
    """0 for a number (or null: an undefined number), n for a list of n numbers, else None."""
    if value is None or _number(value):
        return 0
    if isinstance(value, list) and all(v is None or _number(v) for v in value):
        return len(value)
    return None


def select(flats: list[dict[str, Any]], globs: list[str] | None) -> list[Column]:
    """The columns: names matching ``globs`` (default: Gaia's basic selection, see above)."""
    shapes: dict[str, set[int | None]] = {}
    for flat in flats:
        for name, value in flat.items():
            shapes.setdefault(name, set()).add(_shape(value))
    fixed = {n: next(iter(s)) for n, s in shapes.items() if len(s) == 1 and None not in s}
    if globs is None:
        return [Column(n, fixed[n]) for n in sorted(fixed)
                if not any(fnmatchcase(n, p) for p in DEFAULT_EXCLUDE)]
    chosen: list[Column] = []
    for pattern in globs:
        names = sorted(n for n in shapes if fnmatchcase(n, pattern))
        if not names:
            raise TrainingError(f"--descriptors '{pattern}' matches no descriptor of the "
                                "results")
        for name in names:
            if name not in fixed:
                raise TrainingError(f"--descriptors '{pattern}': '{name}' is not a number or "
                                    "a vector of the same size in every result (strings, "
                                    "frame lists and matrices cannot be features)")
            if all(c.name != name for c in chosen):
                chosen.append(Column(name, fixed[name]))
    return chosen


def row(flat: dict[str, Any], columns: list[Column]) -> tuple[list[float] | None, str]:
    """One track's values in column order, or (None, why) where one is absent or not finite."""
    values: list[float] = []
    for column in columns:
        if column.name not in flat:
            return None, f"no descriptor '{column.name}'"
        value = flat[column.name]
        items = value if isinstance(value, list) else [value]
        if len(items) != column.width or (column.size and not isinstance(value, list)):
            return None, f"'{column.name}' has another shape than {column.width} values"
        for item in items:
            if item is None or not _number(item) or not math.isfinite(item):
                return None, f"'{column.name}' is not finite ({item})"
        values.extend(float(v) for v in items)
    return values, ""


def _embedding(result: Path, model_id: str) -> tuple[np.ndarray | None, str]:
    path = result if result.suffix == ".npy" else embeddings_path(result, model_id)
    try:
        patches = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, f"no embeddings of '{model_id}' ({path.name}: {exc.__class__.__name__})"
    if patches.ndim == 1:  # one vector per track (music-clap --dump)
        patches = patches[None, :]
    if patches.ndim != 2 or patches.shape[0] == 0:
        return None, f"{path.name} is not (patches, width) embeddings"
    mean = patches.mean(axis=0)
    if not np.all(np.isfinite(mean)):
        return None, f"{path.name} holds non-finite values"
    return mean.astype(np.float32), ""


def build(results: list[tuple[str, Path, str]], globs: list[str] | None,
          embedding: str | None, use_descriptors: bool = True) -> Features:
    """(id, result path, label) -> Features; unreadable results and gaps are ``left_out``."""
    left_out: list[tuple[str, str]] = []
    loaded: list[tuple[str, Path, str, dict[str, Any]]] = []
    for track_id, path, label in results:
        if path.suffix == ".npy":  # a vector itself (music-clap --dump): no descriptors
            loaded.append((track_id, path, label, {}))
            continue
        try:
            loaded.append((track_id, path, label, load_result(path)))
        except (OSError, ValueError) as exc:
            left_out.append((track_id, f"{path}: not a readable result ({exc})"))
    columns = (select([f for _, p, _, f in loaded if p.suffix != ".npy"], globs)
               if use_descriptors and loaded else [])
    rows: list[np.ndarray] = []
    ids: list[str] = []
    labels: list[str] = []
    for track_id, path, label, flat in loaded:
        values, why = row(flat, columns)
        if values is None:
            left_out.append((track_id, why))
            continue
        vector = np.asarray(values, dtype=np.float32)
        if embedding:
            emb, why = _embedding(path, embedding)
            if emb is None:
                left_out.append((track_id, why))
                continue
            vector = np.concatenate([vector, emb])
        rows.append(vector)
        ids.append(track_id)
        labels.append(label)
    if not rows:
        raise TrainingError(f"no track has every selected feature ({len(left_out)} left out"
                            f"{': ' + left_out[0][1] if left_out else ''})")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise TrainingError("embeddings of different widths in one training set")
    matrix = np.vstack(rows)
    if matrix.shape[1] == 0:
        raise TrainingError("no feature selected (give --descriptors or --embeddings)")
    emb_size = matrix.shape[1] - sum(c.width for c in columns)
    return Features(matrix, ids, labels, columns, embedding, emb_size, left_out)
