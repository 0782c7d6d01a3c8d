"""`extractor similar`: a track's nearest neighbours by cosine distance.

On an embedding the outputs hold (``--by clap``: a vector whose name has "clap",
``--by musicnn``: one with "musicnn", or any vector by its dotted name), or on the track's
numeric descriptors standardised across the tracks of its profile (``--by descriptors``).

Ranking: in SQLite through the sqlite-vec extension (``vec_distance_cosine``) where this
Python can load extensions and sqlite-vec is installed; in PostgreSQL through pgvector where
the server has it (runner/catalog/pgvector.py); otherwise numpy ranks the vectors,
read once into a normalised matrix cached beside the catalog (``catalog.sqlite-vectors/``,
renewed when an update changes the catalog). One note says which, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runner.catalog import pgvector, schema
from runner.catalog.backend import Backend, CatalogError, SqliteBackend
from runner.catalog.query import SHOWN, Found, describe

FAMILIES = ("clap", "musicnn")


def load_sqlite_vec(db: Backend) -> str | None:
    """Load sqlite-vec into ``db``; None when it is loaded (or a PostgreSQL catalog's server
    ranks with pgvector), else why not (for the note)."""
    if not isinstance(db, SqliteBackend):
        return pgvector.why_not(db)
    if getattr(db, "vec_loaded", False):
        return None
    if not hasattr(db.conn, "enable_load_extension"):
        return ("sqlite-vec cannot be loaded: this Python's sqlite3 was built without "
                "extension loading; ranking with numpy instead")
    try:
        import sqlite_vec
    except ImportError:
        return ("sqlite-vec is not installed (pip install 'extractor-profiles[catalog]'); "
                "ranking with numpy instead")
    try:
        db.conn.enable_load_extension(True)
        sqlite_vec.load(db.conn)
        db.conn.enable_load_extension(False)
    except Exception as exc:  # noqa: BLE001 - sqlite3.OperationalError, AttributeError
        return f"sqlite-vec did not load ({exc}); ranking with numpy instead"
    db.vec_loaded = True  # type: ignore[attr-defined]
    return None


def _escape_like(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


def resolve(db: Backend, text: str, vector: str | None = None) -> int:
    """The track a person named: its audio path, its output path, or a unique part of one."""
    root = schema.meta(db, "audio_root")
    if root and text.startswith(root.rstrip("/") + "/"):
        text = text[len(root.rstrip("/")) + 1:]
    rows = db.execute("SELECT id, path, output FROM tracks WHERE path = ? OR output = ?",
                      (text, text))
    if not rows:
        pattern = f"%{_escape_like(text)}%"
        rows = db.execute("SELECT id, path, output FROM tracks WHERE path LIKE ? ESCAPE '\\' "
                          "OR output LIKE ? ESCAPE '\\' ORDER BY path", (pattern, pattern))
    if len(rows) > 1 and vector:  # the same audio in outputs of several profiles
        having = {r[0] for r in db.execute(
            "SELECT track_id FROM vectors WHERE name = ? AND track_id IN (" +
            ", ".join("?" for _ in rows) + ")", [vector, *(r[0] for r in rows)])}
        rows = [r for r in rows if r[0] in having] or rows
    if not rows:
        raise CatalogError(f"{text}: no track of the catalog has this path")
    if len(rows) > 1:
        names = ", ".join(r[1] or r[2] for r in rows[:4]) + (", ..." if len(rows) > 4 else "")
        raise CatalogError(f"{text}: {len(rows)} tracks match ({names}); give more of the path")
    return int(rows[0][0])


def vector_name(db: Backend, by: str) -> str | None:
    """The vector ``--by`` names; None for descriptors."""
    if by == "descriptors":
        return None
    names = sorted(r[0] for r in db.execute("SELECT DISTINCT name FROM vectors"))
    if by == "auto":
        for family in FAMILIES:
            found = [n for n in names if family in n.lower()]
            if found:
                return found[0]
        return None
    found = [n for n in names if n == by] or [n for n in names if by.lower() in n.lower()]
    if not found:
        known = ", ".join(names) if names else "none"
        raise CatalogError(f"--by {by}: the catalog has no such vectors (vectors: {known}); "
                           "use --by descriptors, or analyse with a profile that computes them")
    return found[0]


def _matrix_from_db(db: Backend, name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = db.execute("SELECT track_id, data FROM vectors WHERE name = ? ORDER BY track_id",
                      (name,))
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), np.float32)
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32)
    matrix = matrix.reshape(len(rows), -1).copy()
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms == 0, np.nan, norms)  # zeros have no direction: never a neighbour
    return ids, matrix


def _matrix(db: Backend, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Track ids and unit vectors; from the cache beside an SQLite catalog when current."""
    if not isinstance(db, SqliteBackend):
        return _matrix_from_db(db, name)
    generation = schema.meta(db, "generation") or "0"
    folder = Path(str(db.path) + "-vectors")
    stem = re.sub(r"[^\w.-]", "_", name)
    ids_file = folder / f"{stem}.{generation}.ids.npy"
    data_file = folder / f"{stem}.{generation}.npy"
    if ids_file.exists() and data_file.exists():
        return np.load(ids_file), np.load(data_file, mmap_mode="r")
    ids, matrix = _matrix_from_db(db, name)
    try:
        folder.mkdir(exist_ok=True)
        for old in folder.glob(f"{stem}.*"):
            old.unlink()
        np.save(ids_file, ids)
        np.save(data_file, matrix)
    except OSError:
        pass  # a read-only place: rank from memory every time
    return ids, matrix


def _by_vector(db: Backend, track_id: int, name: str, k: int,
               note: Callable[[str], None]) -> list[tuple[int, float]]:
    rows = db.execute("SELECT data FROM vectors WHERE track_id = ? AND name = ?",
                      (track_id, name))
    if not rows:
        raise CatalogError(f"this track has no {name} vector (it was analysed with another "
                           "profile); use --by descriptors")
    query = np.frombuffer(bytes(rows[0][0]), dtype=np.float32)
    if not np.isfinite(query).all() or not query.any():
        raise CatalogError(f"this track's {name} vector is all zeros or not finite: it has no "
                           "direction to compare by; use --by descriptors")
    why = load_sqlite_vec(db)
    if why is None and db.kind == "postgresql":
        return pgvector.nearest(db, name, query, k, track_id)
    if why is None:
        found = db.execute("SELECT track_id, vec_distance_cosine(data, ?) AS d FROM vectors "
                           "WHERE name = ? AND track_id <> ? ORDER BY d, track_id LIMIT ?",
                           (query.tobytes(), name, track_id, k))
        return [(int(i), float(d)) for i, d in found]
    note(why)
    ids, matrix = _matrix(db, name)
    unit = query / np.linalg.norm(query)
    distances = 1.0 - np.asarray(matrix @ unit, dtype=np.float64)
    distances[ids == track_id] = np.inf
    take = min(k, max(0, len(ids) - 1))
    best = np.argpartition(distances, take)[:take] if take < len(ids) else np.arange(len(ids))
    best = best[np.lexsort((ids[best], distances[best]))][:take]
    return [(int(ids[i]), float(distances[i])) for i in best if np.isfinite(distances[i])]


def _by_descriptors(db: Backend, track_id: int, k: int) -> list[tuple[int, float]]:
    """Cosine on z-scored numeric descriptors, among the tracks of the same profile."""
    profile = db.execute("SELECT profile FROM tracks WHERE id = ?", (track_id,))[0][0]
    rows = db.execute("SELECT s.track_id, s.name, s.num FROM scalars s JOIN tracks t ON "
                      "t.id = s.track_id JOIN descriptor_names d ON d.name = s.name WHERE "
                      "t.profile = ? AND d.kind = 'number' AND s.num IS NOT NULL AND "
                      "s.name NOT LIKE 'metadata.%'", (profile,))
    ids = sorted({r[0] for r in rows})
    names = sorted({r[1] for r in rows if r[0] == track_id})
    if len(ids) < 2 or not names:
        return []
    row_of = {t: i for i, t in enumerate(ids)}
    col_of = {n: j for j, n in enumerate(names)}
    matrix = np.full((len(ids), len(names)), np.nan)
    for t, n, v in rows:
        j = col_of.get(n)
        if j is not None:
            matrix[row_of[t], j] = v
    mean, std = np.nanmean(matrix, axis=0), np.nanstd(matrix, axis=0)
    keep = std > 0
    z = np.nan_to_num((matrix[:, keep] - mean[keep]) / std[keep])
    z /= np.where(np.linalg.norm(z, axis=1) == 0, 1, np.linalg.norm(z, axis=1))[:, None]
    distances = 1.0 - z @ z[row_of[track_id]]
    order = sorted((d, t) for t, d in zip(ids, distances, strict=True) if t != track_id)
    return [(t, float(d)) for d, t in order[:k]]


def similar(db: Backend, track: str, by: str = "auto", k: int = 10,
            note: Callable[[str], None] = lambda line: None) -> Found:
    schema.check_readable(db)
    if k < 1:
        raise CatalogError(f"--k {k}: must be at least 1")
    name = vector_name(db, by)
    track_id = resolve(db, track, name)
    if name is None:
        ranked = _by_descriptors(db, track_id, k)
    else:
        ranked = _by_vector(db, track_id, name, k, note)
    described = describe(db, [t for t, _ in ranked], SHOWN)
    rows = [{**described[t], "distance": round(d, 6)} for t, d in ranked]
    return Found(["distance", *SHOWN], rows, schema.meta(db, "audio_root"))
