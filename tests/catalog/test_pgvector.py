"""pgvector: a PostgreSQL server that has it ranks `similar` itself (the `<=>` operator), equal
to the client's ranking; where the catalog's user cannot create it, the client ranks and one
note says why, until a superuser creates it and an update copies the vectors in."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.catalog import similar
from runner.catalog.backend import PostgresBackend
from tests.catalog.conftest import PGVECTOR, database_of, update
from tests.catalog.pg_server import new_database
from tests.catalog.test_query import expected_neighbours, paths, with_models
from tests.test_cli import run

_numbers = itertools.count()


class RecordingBackend(PostgresBackend):
    """The real backend, keeping each statement it runs: which one ranked, and its plan."""

    def __init__(self, url: str) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        super().__init__(url, read_only=True)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.statements.append((sql, tuple(params)))
        return super().execute(sql, params)

    def ranking(self) -> tuple[str, tuple[Any, ...]]:
        found = [s for s in self.statements if "<=>" in s[0]]
        assert len(found) == 1, self.statements
        return found[0]

    def plan(self) -> str:
        sql, params = self.ranking()
        return "\n".join(r[0] for r in self.execute("EXPLAIN " + sql, params))


@pytest.fixture
def clap_catalog(music_outputs: Path, pgvector_admin: str) -> str:
    with_models(music_outputs)  # 512-d clap.embedding vectors
    url = new_database(pgvector_admin, f"pgv{next(_numbers)}")
    result = update(music_outputs, url, "--quiet")
    assert (result.returncode, result.stderr) == (0, "")  # no note: pgvector was created
    return url


def as_pairs(found) -> list[tuple[str, float]]:
    return [(row["path"], row["distance"]) for row in found.rows]


def test_the_server_ranks_with_the_cosine_operator(clap_catalog: str, music_outputs: Path):
    db = RecordingBackend(clap_catalog)
    try:
        column = db.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                            "attrelid = 'vectors'::regclass AND attname = 'embedding'")
        notes: list[str] = []
        found = similar.similar(db, "rock/fast.wav", "clap", 5, notes.append)
        plan = db.plan()
    finally:
        db.close()
    assert column == [("vector",)] and notes == []
    assert not any("SELECT track_id, data FROM vectors" in s for s, _ in db.statements)
    assert "Sort Key: (((embedding)::vector(512) <=> " in plan  # ranked by the server
    expected = expected_neighbours(music_outputs, "clap.embedding", "rock/fast.wav")
    got = as_pairs(found)
    assert [p for p, _ in got] == [p for p, _ in expected]
    assert np.allclose([d for _, d in got], [d for _, d in expected], atol=1e-5)


def test_an_hnsw_index_a_user_adds_serves_the_query(clap_catalog: str):
    import psycopg

    with psycopg.connect(clap_catalog, autocommit=True) as conn:  # as docs/catalog.md says
        conn.execute("CREATE INDEX clap_hnsw ON vectors USING hnsw "
                     "((embedding::vector(512)) vector_cosine_ops) "
                     "WHERE name = 'clap.embedding'")
    db = RecordingBackend(clap_catalog)
    try:
        exact = similar.similar(db, "rock/mid.wav", "clap", 5)
        db.statements.clear()
        db.execute("SET enable_seqscan = off")  # 6 rows: a scan and a sort win otherwise
        db.execute("SET enable_sort = off")
        indexed = similar.similar(db, "rock/mid.wav", "clap", 5)
        plan = db.plan()
    finally:
        db.close()
    assert "Index Scan using clap_hnsw on vectors" in plan
    assert as_pairs(indexed) == as_pairs(exact)  # a graph of 6 nodes is searched in full


def test_a_user_who_cannot_create_pgvector_gets_the_clients_ranking(music_outputs: Path,
                                                                    pgvector_admin: str):
    import psycopg

    name = f"pgv{next(_numbers)}"
    with psycopg.connect(pgvector_admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'librarian'").fetchall():
            conn.execute("CREATE ROLE librarian LOGIN")  # not a superuser
        conn.execute(f'CREATE DATABASE "{name}" OWNER librarian')
    url = pgvector_admin.replace("postgres@", "librarian@").rsplit("/", 1)[0] + "/" + name
    with_models(music_outputs)
    expected = [p for p, _ in expected_neighbours(music_outputs, "clap.embedding",
                                                  "rock/fast.wav")]
    updated = update(music_outputs, url, "--quiet")
    assert (updated.returncode, updated.stderr) == (0, (
        'note: pgvector is on the server but this user cannot create it (permission denied to '
        'create extension "vector"): similar searches rank in the client with numpy until a '
        "superuser runs CREATE EXTENSION vector in this database (then catalog update again)\n"))

    def ranked() -> tuple[list[str], str]:
        result = run("extractor", "similar", "--db", url, "rock/fast.wav", "--json")
        assert result.returncode == 0, result.stderr
        return paths(json.loads(result.stdout)), result.stderr

    assert ranked() == (expected, (
        "note: pgvector is on the server but not created in this database: ranking in the "
        "client with numpy (a superuser runs CREATE EXTENSION vector there, then catalog "
        "update)\n"))
    with psycopg.connect(pgvector_admin.rsplit("/", 1)[0] + "/" + name, autocommit=True) as c:
        c.execute("CREATE EXTENSION vector")
    assert ranked() == (expected, "note: the catalog's vectors are not in pgvector yet: "
                        "ranking in the client with numpy (run catalog update)\n")
    again = update(music_outputs, url, "--quiet")  # no output changed: the vectors copied in
    assert (again.returncode, again.stderr) == (0, "")
    assert ranked() == (expected, "")


@pytest.mark.parametrize("kind", ["sqlite", PGVECTOR])
def test_vectors_without_a_direction_are_never_neighbours(kind: str, music_outputs: Path,
                                                          request, tmp_path: Path):
    """A vector of zeros (pgvector: a NaN distance) or with a NaN (pgvector refuses it) is left
    out by the server as by the client; asking from one is an error of one line."""
    with_models(music_outputs)
    expected = [p for p, _ in expected_neighbours(music_outputs, "clap.embedding",
                                                  "rock/fast.wav")
                if p not in ("jazz/slow.wav", "tones/tone.wav")]
    for track, value in (("jazz/slow.wav", 0.0), ("tones/tone.wav", None)):
        output = music_outputs / track.replace(".wav", ".json")
        doc = json.loads(output.read_text())
        doc["clap"]["embedding"] = [0.0] * 511 + [value]
        output.write_text(json.dumps(doc))
    url = database_of(kind, request, tmp_path)
    assert update(music_outputs, url, "--quiet").returncode == 0
    result = run("extractor", "similar", "--db", url, "rock/fast.wav", "--json")
    assert result.returncode == 0, result.stderr
    assert paths(json.loads(result.stdout)) == expected
    zeros = run("extractor", "similar", "--db", url, "jazz/slow.wav")
    assert (zeros.returncode, zeros.stderr) == (1, (
        "error: this track's clap.embedding vector is all zeros or not finite: it has no "
        "direction to compare by; use --by descriptors\n"))
