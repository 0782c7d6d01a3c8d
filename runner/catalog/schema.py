"""The catalog's tables, its ``descriptors`` view, and its schema version.

Tables (the same in SQLite and PostgreSQL; docs/catalog.md shows queries):

* ``tracks``: one row per output file (``output``, relative to the output folder), the audio
  file it describes (``path``), ``duration``, ``profile``, ``profile_hash``, ``analysed_at``,
  and the output's ``size``/``mtime_ns`` that make updates incremental.
* ``scalars``: one row per track and scalar descriptor, by its dotted name
  (``rhythm.bpm``); numbers and booleans in ``num``, strings in ``text``.
* ``descriptor_names``: every scalar name seen and its kind (number, bool, text).
* ``tags``: class probabilities per taxonomy (``highlevel.mood_happy``: happy 0.8, ...).
* ``vectors``: embeddings and other number vectors of model sections, float32 blobs.
* view ``descriptors``: one column per scalar name (``SELECT "rhythm.bpm" FROM
  descriptors``), rebuilt when an update brings new names, so a profile of your own adds its
  descriptors without any schema change by hand.

The catalog holds nothing the outputs do not: an older schema is migrated by rebuilding it
from them (the next update reads every output again).
"""

from __future__ import annotations

from runner.catalog.backend import Backend, CatalogError

SCHEMA_VERSION = 2  # 2: a list of strings is kept whole (joined by newlines)
VIEW_COLUMNS_MAX = 1500  # SQLite allows 2000 columns, PostgreSQL 1664 in a view

TABLES = [
    """CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tracks (
        id {ID},
        output TEXT NOT NULL UNIQUE,
        path TEXT,
        duration {REAL},
        profile TEXT NOT NULL,
        profile_hash TEXT NOT NULL,
        analysed_at TEXT NOT NULL,
        size {BIGINT} NOT NULL,
        mtime_ns {BIGINT} NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS tracks_by_path ON tracks (path)""",
    """CREATE TABLE IF NOT EXISTS scalars (
        track_id {BIGINT} NOT NULL,
        name TEXT NOT NULL,
        num {REAL},
        text TEXT,
        PRIMARY KEY (track_id, name)){WITHOUT_ROWID}""",
    """CREATE TABLE IF NOT EXISTS descriptor_names (name TEXT PRIMARY KEY, kind TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tags (
        track_id {BIGINT} NOT NULL,
        taxonomy TEXT NOT NULL,
        tag TEXT NOT NULL,
        probability {REAL},
        PRIMARY KEY (track_id, taxonomy, tag)){WITHOUT_ROWID}""",
    """CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (taxonomy, tag, probability)""",
    """CREATE TABLE IF NOT EXISTS vectors (
        track_id {BIGINT} NOT NULL,
        name TEXT NOT NULL,
        dim INTEGER NOT NULL,
        data {BLOB} NOT NULL,
        PRIMARY KEY (track_id, name))""",
    """CREATE INDEX IF NOT EXISTS vectors_by_name ON vectors (name)""",
]
# SQLite answers find's EXISTS tests with a primary-key lookup per track, so it does without
# these (and an update writes about twice as fast); PostgreSQL may turn them into joins.
POSTGRES_INDEXES = [
    """CREATE INDEX IF NOT EXISTS scalars_by_number ON scalars (name, num)
        WHERE num IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS scalars_by_text ON scalars (name, text)
        WHERE text IS NOT NULL""",
]
DROP = ["DROP VIEW IF EXISTS descriptors", "DROP TABLE IF EXISTS vectors",
        "DROP TABLE IF EXISTS tags", "DROP TABLE IF EXISTS descriptor_names",
        "DROP TABLE IF EXISTS scalars", "DROP TABLE IF EXISTS tracks"]


def literal(text: str) -> str:
    """A string as an SQL literal (names come from outputs: quote, never trust)."""
    return "'" + text.replace("'", "''") + "'"


def identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def meta(db: Backend, key: str) -> str | None:
    if not _has_table(db, "catalog_meta"):
        return None
    rows = db.execute("SELECT value FROM catalog_meta WHERE key = ?", (key,))
    return rows[0][0] if rows else None


def set_meta(db: Backend, key: str, value: str) -> None:
    db.execute("INSERT INTO catalog_meta (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def _has_table(db: Backend, name: str) -> bool:
    if db.kind == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() " \
              "AND table_name = ?"
    return bool(db.execute(sql, (name,)))


def version(db: Backend) -> int | None:
    """The schema version of an existing catalog; None for an empty database."""
    if not _has_table(db, "tracks"):
        return None
    found = meta(db, "schema_version")
    return int(found) if found is not None else 0


def check_readable(db: Backend) -> None:
    """Refuse, in one line, a catalog that find/similar cannot read."""
    found = version(db)
    if found is None:
        raise CatalogError(f"{db.location}: no catalog here (make one with "
                           "`extractor catalog update OUTPUT_DIR`)")
    if found != SCHEMA_VERSION:
        raise CatalogError(f"{db.location}: catalog schema version {found}, this extractor "
                           f"reads version {SCHEMA_VERSION}; run `extractor catalog update "
                           "OUTPUT_DIR` to migrate it")


def ensure(db: Backend) -> str | None:
    """Create or migrate the tables (inside the caller's transaction). Returns a note when an
    older catalog was rebuilt; refuses a newer one, which this version would damage."""
    found = version(db)
    note = None
    if found is not None and found > SCHEMA_VERSION:
        raise CatalogError(f"{db.location}: catalog schema version {found} is newer than this "
                           f"extractor's ({SCHEMA_VERSION}); upgrade extractor-profiles")
    if found is not None and found < SCHEMA_VERSION:
        for statement in DROP:  # derived data: rebuilt from the outputs by this update
            db.execute(statement)
        note = (f"{db.location}: catalog schema version {found} migrated to {SCHEMA_VERSION} "
                "(rebuilt from the outputs)")
    for statement in TABLES + (POSTGRES_INDEXES if db.kind == "postgresql" else []):
        db.execute(statement)
    set_meta(db, "schema_version", str(SCHEMA_VERSION))
    return note


def rebuild_view(db: Backend) -> list[str]:
    """The ``descriptors`` view: a column per scalar name, each a lookup by primary key, so
    a query reads only the columns it names. Returns the names left out (over the limit)."""
    names = db.execute("SELECT name, kind FROM descriptor_names ORDER BY name")
    kept, left = names[:VIEW_COLUMNS_MAX], [n for n, _ in names[VIEW_COLUMNS_MAX:]]
    columns = ["t.id AS track_id", "t.path AS path", "t.output AS output",
               "t.duration AS duration", "t.profile AS profile"]
    reserved = {"track_id", "path", "output", "duration", "profile"}
    for name, kind in kept:
        if name in reserved:
            continue
        column = "text" if kind == "text" else "num"
        columns.append(f"(SELECT s.{column} FROM scalars s WHERE s.track_id = t.id AND "
                       f"s.name = {literal(name)}) AS {identifier(name)}")
    db.execute("DROP VIEW IF EXISTS descriptors")
    db.execute("CREATE VIEW descriptors AS SELECT " + ",\n ".join(columns) + " FROM tracks t")
    return left
