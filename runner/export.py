"""Flatten a folder of per-track outputs into one table (CSV or Parquet) for pandas/polars.

A row per track; a column per scalar descriptor (dotted names as in the JSON). Vectors of
numbers whose length is the same in every track (``lowlevel.mfcc.mean``: 13) are expanded
into one column per element (``lowlevel.mfcc.mean.0`` ...); values whose shape varies from
track to track (beat positions, onset times) and matrices (cov, icov) are left out unless
``keep_lists`` is set, which stores them as JSON text.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from runner.errors import OutputError
from runner.tree import flatten
from runner.write import write_atomic

SKIP_NAMES = {"failures.jsonl"}


def result_files(folder: Path) -> list[Path]:
    """Per-track outputs under ``folder`` (not frame files, not failure lists)."""
    files = [p for p in sorted(folder.rglob("*.json")) + sorted(folder.rglob("*.yaml"))
             if not p.stem.endswith("_frames") and p.name not in SKIP_NAMES
             and not p.name.startswith(".")]
    return files


def _load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".yaml":
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def table(folder: Path, keep_lists: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows for every result under ``folder``."""
    rows_raw: list[tuple[str, dict[str, Any]]] = []
    for path in result_files(folder):
        try:
            doc = _load(path)
        except (OSError, ValueError) as exc:
            raise OutputError(f"{path}: not a readable result: {exc}") from None
        if not isinstance(doc, dict) or "metadata" not in doc:
            continue
        rows_raw.append((str(path.relative_to(folder)), flatten(doc)))
    lengths: dict[str, set[int]] = {}
    for _, flat in rows_raw:
        for name, value in flat.items():
            if isinstance(value, list):
                lengths.setdefault(name, set()).add(len(value) if _is_number_list(value) else -1)
    fixed = {n for n, ls in lengths.items() if len(ls) == 1 and -1 not in ls}
    columns: dict[str, None] = {"path": None}
    rows: list[dict[str, Any]] = []
    for rel, flat in rows_raw:
        row: dict[str, Any] = {"path": rel}
        for name, value in flat.items():
            if isinstance(value, list):
                if name in fixed:
                    for i, item in enumerate(value):
                        row[f"{name}.{i}"] = item
                elif keep_lists:
                    row[name] = json.dumps(value)
                continue
            row[name] = value
        for name in row:
            columns.setdefault(name, None)
        rows.append(row)
    return list(columns), rows


def export(folder: Path, out: Path, fmt: str, keep_lists: bool = False) -> int:
    """Write the table; returns the number of rows."""
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder")
    columns, rows = table(folder, keep_lists)
    if not rows:
        raise OutputError(f"{folder}: no results found")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(out, buffer.getvalue())
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise OutputError("Parquet needs pyarrow: pip install 'extractor-profiles[table]'"
                              ) from None
        data = {c: [row.get(c) for row in rows] for c in columns}
        arrays = {}
        for name, values in data.items():
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
                arrays[name] = pa.array([None if v is None else str(v) for v in values])
        tmp = out.with_name(f".{out.name}.tmp")
        pq.write_table(pa.table(arrays), tmp)
        tmp.replace(out)
    else:
        raise OutputError(f"unknown table format '{fmt}' (csv or parquet)")
    return len(rows)
