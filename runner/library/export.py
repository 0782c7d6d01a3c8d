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

import yaml

from runner.errors import OutputError
from runner.output import write_atomic, write_bytes_atomic
from runner.tree import flatten

SKIP_NAMES = {"failures.jsonl"}
TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
RESULT_SUFFIXES = (".json", ".yaml", ".yml")


def table_format(output: str | Path) -> str | None:
    """The table format an output's extension names; None for any other (``t.xlsx`` must
    not silently get CSV)."""
    return TABLE_FORMATS.get(Path(output).suffix.lower())


def result_files(folder: Path) -> list[Path]:
    """Per-track outputs under ``folder`` (not frame files, not failure lists)."""
    files = [p for p in sorted(folder.rglob("*")) if p.suffix in RESULT_SUFFIXES
             and p.is_file() and not p.stem.endswith("_frames") and p.name not in SKIP_NAMES
             and not p.name.startswith(".")]
    return files


def _load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(text)
    return json.loads(text)


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def table(folder: Path, keep_lists: bool = False
          ) -> tuple[list[str], list[dict[str, Any]], list[tuple[Path, str]]]:
    """Columns and rows for every result under ``folder``, and the files that could not be
    read (path, reason): one damaged file must not cost the table of 50,000."""
    rows_raw: list[tuple[str, dict[str, Any]]] = []
    unreadable: list[tuple[Path, str]] = []
    for path in result_files(folder):
        try:
            doc = _load(path)
        except OSError as exc:
            unreadable.append((path, exc.strerror or str(exc)))
            continue
        except (ValueError, yaml.YAMLError) as exc:
            unreadable.append((path, " ".join(str(exc).split())[:200]))
            continue
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
    return list(columns), rows, unreadable


def export(folder: Path, out: Path, fmt: str, keep_lists: bool = False
           ) -> tuple[int, list[tuple[Path, str]]]:
    """Write the table; returns the number of rows and the results skipped as unreadable."""
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder")
    columns, rows, unreadable = table(folder, keep_lists)
    if not rows:
        detail = f" ({len(unreadable)} unreadable: {unreadable[0][0]}, ...)" if unreadable else ""
        raise OutputError(f"{folder}: no results found{detail}")
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
        data_buffer = io.BytesIO()
        pq.write_table(pa.table(arrays), data_buffer)
        write_bytes_atomic(out, data_buffer.getvalue())
    else:
        raise OutputError(f"unknown table format '{fmt}' (csv or parquet)")
    return len(rows), unreadable
