"""One small interface over SQLite (standard library) and PostgreSQL (psycopg 3).

The catalog's SQL is written once, with ``?`` placeholders and a few type words that
differ between the two (``{REAL}``, ``{BLOB}``, ``{ID}``); each backend fills them in. Every
database error a person can cause (a locked or read-only file, a server that does not
answer) becomes a :class:`CatalogError` of one line.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from runner.errors import ExtractorError

DEFAULT_NAME = "catalog.sqlite"
BUSY_MS = 10_000  # how long a writer waits for another one ($EXTRACTOR_CATALOG_BUSY_MS)


class CatalogError(ExtractorError):
    """A catalog that cannot be opened, read or written, or a query that cannot be run."""


class Backend:
    """What the catalog needs from a database: run SQL, one transaction at a time."""

    kind = ""
    types: dict[str, str] = {}
    location = ""
    pgvector = False  # a PostgreSQL catalog's vectors are in a pgvector column (catalog.pgvector)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        """Fill in this database's type words."""
        return text.format(**self.types) if "{" in text else text


class SqliteBackend(Backend):
    kind = "sqlite"
    types = {"REAL": "REAL", "BLOB": "BLOB", "ID": "INTEGER PRIMARY KEY", "BIGINT": "INTEGER",
             "WITHOUT_ROWID": " WITHOUT ROWID"}

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.location = str(path)
        self.read_only = read_only
        if read_only and not path.exists():
            raise CatalogError(f"{path}: no catalog here (make one with "
                               "`extractor catalog update OUTPUT_DIR`)")
        try:
            if read_only:
                self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                            isolation_level=None, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(path), isolation_level=None,
                                            check_same_thread=False)
            busy_ms = int(os.environ.get("EXTRACTOR_CATALOG_BUSY_MS", BUSY_MS))
            self.conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not read_only:
                # WAL: readers see the last committed catalog while an update writes; a
                # killed update leaves only an uncommitted tail that the next open drops.
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                # an update's pages stay in memory until it commits (64 MB at most)
                self.conn.execute("PRAGMA cache_size = -65536")
        except (sqlite3.Error, OSError) as exc:
            raise CatalogError(self._explain(exc)) from None

    def _explain(self, exc: BaseException) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return (f"{self.path}: the catalog is locked by another writer (an update or a "
                    "batch with --catalog); try again when it has finished")
        if "readonly" in text or "read-only" in text:
            return f"{self.path}: the catalog is read-only here (file or folder permissions)"
        if "not a database" in text or "malformed" in text:
            return f"{self.path}: not a catalog ({text}); delete it and run catalog update"
        return f"{self.path}: {text}"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(self.sql(sql), tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise CatalogError(self._explain(exc)) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.executemany(self.sql(sql), rows)
        except sqlite3.Error as exc:
            raise CatalogError(self._explain(exc)) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        # IMMEDIATE: take the write lock now, so two writers meet at the start, not the end
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class PostgresBackend(Backend):
    kind = "postgresql"
    types = {"REAL": "DOUBLE PRECISION", "BLOB": "BYTEA",
             "ID": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BIGINT": "BIGINT",
             "WITHOUT_ROWID": ""}

    def __init__(self, url: str, read_only: bool = False) -> None:
        try:
            import psycopg
        except ImportError:
            raise CatalogError("a PostgreSQL catalog needs psycopg 3: "
                               "pip install 'extractor-profiles[catalog]'") from None
        self.psycopg = psycopg
        info = _conninfo(url)
        where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"
        self.location = f"postgresql://{where}/{info.get('dbname') or ''}"
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or ["no reply"])[-1].strip()
            raise CatalogError(f"cannot connect to PostgreSQL at {where}: {first}") from None
        if read_only:
            self.execute("SET default_transaction_read_only = on")

    def sql(self, text: str) -> str:
        return super().sql(text).replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(self.sql(sql), tuple(params))
            return cur.fetchall() if cur.description else []
        except self.psycopg.Error as exc:
            raise CatalogError(f"{self.location}: {str(exc).strip().splitlines()[0]}") from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(self.sql(sql), list(rows))
        except self.psycopg.Error as exc:
            raise CatalogError(f"{self.location}: {str(exc).strip().splitlines()[0]}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def close(self) -> None:
        self.conn.close()


def _conninfo(url: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - psycopg's ProgrammingError for a bad URL
        raise CatalogError(f"not a PostgreSQL URL: {url} ({exc})") from None


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path:
    """``sqlite:///abs/x.db``, ``path/to/x.sqlite`` or a folder (its catalog.sqlite)."""
    path = Path(url[len("sqlite://"):] if url.startswith("sqlite://") else url).expanduser()
    return path / DEFAULT_NAME if path.is_dir() else path


def connect(url: str, read_only: bool = False) -> Backend:
    """A backend for a URL: ``postgresql://...`` or an SQLite file (or its folder)."""
    if is_postgres(url):
        return PostgresBackend(url, read_only)
    return SqliteBackend(sqlite_path(url), read_only)
