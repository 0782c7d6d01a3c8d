"""Fixtures shared by the catalog tests: a small library analysed once per session by the real
commands, and a database of each kind (SQLite file, PostgreSQL server) per test; the vector
tests add a third kind, a PostgreSQL server with pgvector (pgserver's bundled PostgreSQL 16)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.catalog.pg_server import binaries, new_database, pgvector_binaries, server
from tests.conftest import SR, click_track, tone, write_audio
from tests.test_cli import run

TIMBRE = Path(__file__).parent.parent / "data" / "timbre.yaml"
BACKENDS = ["sqlite", "postgresql"]
PGVECTOR = "postgresql+pgvector"  # only the vector tests run on it too


def minor_clicks(seconds: float, bpm: float, seed: int) -> np.ndarray:
    """Clicks on every beat over an A minor chord (A2 A3 C4 E4 A4 C5)."""
    x = click_track(seconds, bpm=bpm, seed=seed).astype(np.float64)
    t = np.arange(len(x)) / SR
    major = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    minor = sum(0.2 * np.sin(2 * np.pi * f * t)
                for f in (110.0, 220.0, 261.63, 329.63, 440.0, 523.25))
    x = x - major + minor
    return (x / max(1.0, np.abs(x).max())).astype(np.float32)


TRACKS = {  # audio path -> signal maker (bpm and key known)
    "rock/fast.wav": lambda: click_track(4.0, bpm=126, seed=1),
    "rock/mid.wav": lambda: minor_clicks(4.0, bpm=124, seed=2),
    "jazz/slow.wav": lambda: minor_clicks(4.0, bpm=90, seed=3),
    "jazz/slower.wav": lambda: click_track(4.0, bpm=80, seed=4),
    "tones/tone.wav": lambda: tone(3.0, 330.0),
    "tones/o'neil; drop.wav": lambda: tone(3.0, 440.0),
}


@pytest.fixture(scope="session")
def analysed(tmp_path_factory) -> dict[str, Path]:
    """The library and its outputs by two profiles: music (built in) and timbre (a user's)."""
    root = tmp_path_factory.mktemp("catalog")
    lib = root / "lib"
    for rel, make in TRACKS.items():
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        write_audio(lib / rel, make())
    folders = {"lib": lib, "music": root / "music", "timbre": root / "timbre"}
    for command in (["streaming-extractor-music", str(lib), str(folders["music"])],
                    ["extractor", "run", str(TIMBRE), str(lib), str(folders["timbre"])]):
        result = run(*command, "-j", "2", "--quiet")
        assert result.returncode == 0, result.stderr
    return folders


@pytest.fixture
def music_outputs(analysed, tmp_path) -> Path:
    """A copy of the music outputs this test may change."""
    return Path(shutil.copytree(analysed["music"], tmp_path / "music"))


@pytest.fixture
def timbre_outputs(analysed, tmp_path) -> Path:
    return Path(shutil.copytree(analysed["timbre"], tmp_path / "timbre"))


@pytest.fixture(scope="session")
def pg_admin() -> str:
    if binaries() is None:
        missing = ("PostgreSQL is not installed (no initdb on PATH or under "
                   "/usr/lib/postgresql/*/bin): apt-get install postgresql")
        if os.environ.get("CI"):  # .ci/run installs it: a skip there would hide the half
            pytest.fail(missing)
        pytest.skip(missing)
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed "
                        "(pip install 'extractor-profiles[catalog]')")
    with server() as url:
        yield url


@pytest.fixture(scope="session")
def pgvector_admin() -> str:
    """A second server, whose PostgreSQL (16, from the pgserver wheel) has pgvector; Debian's
    has not, so the other server shows the client's ranking."""
    bin_dir = pgvector_binaries()
    if bin_dir is None:
        missing = ("pgserver is not installed (its wheel bundles a PostgreSQL 16 with "
                   "pgvector): pip install 'extractor-profiles[test]'")
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed "
                        "(pip install 'extractor-profiles[catalog]')")
    with server(bin_dir) as url:
        yield url


_numbers = itertools.count()


def database_of(kind: str, request, tmp_path: Path) -> str:
    """An empty catalog location of one kind (a fresh database on a server)."""
    if kind == "sqlite":
        return str(tmp_path / "cat.sqlite")
    admin = "pgvector_admin" if kind == PGVECTOR else "pg_admin"
    return new_database(request.getfixturevalue(admin), f"t{next(_numbers)}")


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """An empty catalog location: an SQLite file, or a fresh PostgreSQL database."""
    return database_of(request.param, request, tmp_path)


@pytest.fixture(params=[*BACKENDS, PGVECTOR])
def vector_db_url(request, tmp_path) -> str:
    """db_url's kinds and a database on the PostgreSQL server with pgvector."""
    return database_of(request.param, request, tmp_path)


def update(folder: Path, db: str, *more: str) -> subprocess.CompletedProcess:
    return run("extractor", "catalog", "update", str(folder), "--db", db, *more)


def find(db: str, *args: str) -> subprocess.CompletedProcess:
    return run("extractor", "find", "--db", db, *args)


def find_json(db: str, *args: str) -> list[dict]:
    result = find(db, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def has_pgvector(url: str) -> bool:
    """Whether the server of a catalog URL offers pgvector (asked, not inferred)."""
    if not url.startswith("postgresql"):
        return False
    import psycopg

    with psycopg.connect(url) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_available_extensions "
                                 "WHERE name = 'vector'").fetchall())
