"""pgvector on a PostgreSQL catalog: the server ranks `similar` and `music-clap --db`.

Where the server has the pgvector extension, ``catalog update`` creates it in the catalog's
database (``CREATE EXTENSION IF NOT EXISTS vector``: pgvector is not a trusted extension, so
this takes a superuser, or one who created it before) and keeps each vector twice: its float32
bytes in ``vectors.data``, which every backend reads, and a pgvector ``vectors.embedding``
column, which the server orders by cosine distance (``<=>``, ``ORDER BY ... LIMIT k``).

The search is exact, a scan of one vector name's rows (100,000 x 512-d: about 0.3 s here), so
its ranking equals the client's. The query is written as ``embedding::vector(n) <=> ...`` with
the name as a literal, so that an HNSW index a user adds (docs/catalog.md: minutes to build,
approximate answers) serves it. Without pgvector the client ranks with numpy, saying why in
one note.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runner.catalog import schema
from runner.catalog.backend import Backend, CatalogError

COLUMN = "embedding"
CLIENT = "ranking in the client with numpy"


def text(vector: np.ndarray) -> str:
    """A float32 vector as pgvector's text form; the shortest repr of each float32 value
    (held exactly by a float64) reads back as that same float32."""
    return "[" + ",".join(map(repr, np.asarray(vector, np.float32).tolist())) + "]"


def _has_column(db: Backend) -> bool:
    return bool(db.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND "
        "table_name = 'vectors' AND column_name = ?", (COLUMN,)))


def _extension(db: Backend) -> tuple[bool, bool]:
    """(the server has pgvector, the catalog's database has it created)."""
    rows = db.execute("SELECT installed_version FROM pg_available_extensions "
                      "WHERE name = 'vector'")
    return bool(rows), bool(rows and rows[0][0])


def enable(db: Backend) -> str | None:
    """Inside an update's transaction: the extension, the column, and the vectors of an older
    catalog copied into it. Returns a note when pgvector is on the server but cannot be
    created here; None otherwise (SQLite, a server without it, or done)."""
    db.pgvector = False
    if db.kind != "postgresql":
        return None
    available, created = _extension(db)
    if not available:
        return None
    if not created:
        try:
            with db.transaction():  # a savepoint: a refusal leaves the update going
                db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except CatalogError as exc:
            why = str(exc).split(": ", 1)[-1]
            return (f"pgvector is on the server but this user cannot create it ({why}): "
                    "similar searches rank in the client with numpy until a superuser runs "
                    "CREATE EXTENSION vector in this database (then catalog update again)")
    if not _has_column(db):
        db.execute(f"ALTER TABLE vectors ADD COLUMN {COLUMN} vector")
        rows = db.execute("SELECT track_id, name, data FROM vectors")
        db.executemany(f"UPDATE vectors SET {COLUMN} = ?::vector WHERE track_id = ? AND name = ?",
                       [(_value(np.frombuffer(bytes(data), np.float32)), track_id, name)
                        for track_id, name, data in rows])
    db.pgvector = True
    return None


def store_sql(db: Backend) -> str:
    """How an update inserts a track's vectors (with the pgvector column where there is one)."""
    if getattr(db, "pgvector", False):
        return (f"INSERT INTO vectors (track_id, name, dim, data, {COLUMN}) "
                "VALUES (?, ?, ?, ?, ?::vector)")
    return "INSERT INTO vectors (track_id, name, dim, data) VALUES (?, ?, ?, ?)"


def store_row(db: Backend, track_id: int, name: str, vector: np.ndarray) -> tuple:
    """A vector's row; pgvector refuses NaN, so a vector with one has no pgvector value (the
    client leaves such a vector out of a ranking too)."""
    row = (track_id, name, len(vector), vector.tobytes())
    return (*row, _value(vector)) if getattr(db, "pgvector", False) else row


def _value(vector: np.ndarray) -> str | None:
    return text(vector) if np.isfinite(vector).all() else None


def why_not(db: Backend) -> str | None:
    """None when the server can rank this catalog's vectors, else the note saying why not."""
    if db.kind != "postgresql":
        return f"not a PostgreSQL catalog: {CLIENT}"
    if _has_column(db):
        return None
    available, created = _extension(db)
    if not available:
        return (f"the PostgreSQL server has no pgvector: {CLIENT} (docs/catalog.md says how "
                "to add it)")
    if not created:
        return (f"pgvector is on the server but not created in this database: {CLIENT} (a "
                "superuser runs CREATE EXTENSION vector there, then catalog update)")
    return f"the catalog's vectors are not in pgvector yet: {CLIENT} (run catalog update)"


def _finite(distance: float | None) -> bool:
    """A vector of zeros has no direction: pgvector's distance to it is NaN, and it sorts
    last; the client leaves it out, and so does this."""
    return distance is not None and np.isfinite(distance)


def _search_size(db: Backend, k: int) -> None:
    """An HNSW index (if a user made one) returns at most ef_search rows: ask for k + 1."""
    if k + 1 > 40:  # pgvector's default
        db.execute("SELECT set_config('hnsw.ef_search', ?, false)", (str(min(k + 1, 1000)),))


# Ties by track id, as the client ranks: sorted here, since an index serves only ORDER BY d
# (WITH TIES: tracks as near as the k-th come too, so the cut is the client's).
ORDER = "ORDER BY d FETCH FIRST (?) ROWS WITH TIES"


def distance_sql(name: str, dim: int, column: str = COLUMN) -> str:
    """The cosine distance to a ``?`` query, in the form an index on one name can serve."""
    return f"({column}::vector({int(dim)}) <=> ?::vector({int(dim)}))"


def nearest(db: Backend, name: str, query: np.ndarray, k: int,
            leave_out: int) -> list[tuple[int, float]]:
    """The k tracks nearest ``query`` by cosine distance among the vectors called ``name``
    (``leave_out``: the query's own track), nearest first, ties by track id."""
    _search_size(db, k)
    rows = db.execute(
        f"SELECT track_id, {distance_sql(name, len(query))} AS d FROM vectors "
        f"WHERE name = {schema.literal(name)} AND dim = ? AND track_id <> ? "
        f"{ORDER}", (text(query), len(query), leave_out, k))
    rows = [(int(t), float(d)) for t, d in rows if _finite(d)]
    return sorted(rows, key=lambda r: (r[1], r[0]))[:k]


def nearest_of_model(db: Backend, name: str, used: str, pin: str, queries: Sequence[np.ndarray],
                     k: int) -> list[list[tuple[str, float]]]:
    """For each query, the k (path, cosine similarity) best among the vectors called ``name``
    whose output records scalar ``used`` = ``pin``; best first, ties by track id."""
    found = []
    _search_size(db, k)
    for query in queries:
        distance = distance_sql(name, len(query), "v." + COLUMN)
        rows = db.execute(
            f"SELECT COALESCE(t.path, t.output), {distance} AS d, v.track_id FROM vectors v "
            "JOIN tracks t ON t.id = v.track_id "
            "JOIN scalars s ON s.track_id = v.track_id AND s.name = ? "
            f"WHERE v.name = {schema.literal(name)} AND v.dim = ? AND s.text = ? "
            f"{ORDER}", (text(query), used, len(query), pin, k))
        best = sorted((r for r in rows if _finite(r[1])), key=lambda r: (r[1], r[2]))[:k]
        found.append([(path, 1.0 - float(d)) for path, d, _ in best])
    return found
