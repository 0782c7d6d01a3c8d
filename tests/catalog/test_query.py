"""`extractor find` and `extractor similar` on SQLite and PostgreSQL catalogs of real outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner.catalog.query import WhereParser, parse_key
from tests.catalog.conftest import find, find_json, has_pgvector, update
from tests.test_cli import run

ALL = ["jazz/slow.wav", "jazz/slower.wav", "rock/fast.wav", "rock/mid.wav",
       "tones/o'neil; drop.wav", "tones/tone.wav"]
NUMPY_NOTE = ("note: sqlite-vec cannot be loaded: this Python's sqlite3 was built without "
              "extension loading; ranking with numpy instead\n")
NO_PGVECTOR_NOTE = ("note: the PostgreSQL server has no pgvector: ranking in the client with "
                    "numpy (docs/catalog.md says how to add it)\n")


@pytest.fixture
def music_db(music_outputs, db_url) -> str:
    assert update(music_outputs, db_url, "--audio-root", "/music").returncode == 0
    return db_url


@pytest.fixture
def timbre_db(timbre_outputs, vector_db_url) -> str:
    assert update(timbre_outputs, vector_db_url).returncode == 0
    return vector_db_url


def paths(rows: list[dict]) -> list[str]:
    return [r["path"] for r in rows]


def test_find_by_tempo_and_key(music_db):
    assert paths(find_json(music_db)) == ALL
    assert paths(find_json(music_db, "--bpm", "120..130", "--key", "A minor")) == ["rock/mid.wav"]
    assert paths(find_json(music_db, "--bpm", "130..120", "--key", "Am")) == ["rock/mid.wav"]
    assert paths(find_json(music_db, "--bpm", "120..130", "--key", "A")) == [
        "rock/fast.wav", "rock/mid.wav"]
    assert paths(find_json(music_db, "--limit", "2")) == ALL[:2]
    row = find_json(music_db, "--bpm", "120..130", "--key", "A major")[0]
    assert row["tonal.key_key"] == "A" and 124 < row["rhythm.bpm"] < 128


def test_find_where(music_db):
    where = ("(rhythm.bpm > 100 or rhythm.bpm < 85) and tonal.key_scale = 'minor' "
             "and not path like 'tones/%'")
    assert paths(find_json(music_db, "--where", where)) == ["rock/mid.wav"]
    assert paths(find_json(music_db, "--where", "tonal.key_key in ('D', 'E')")) == [
        "tones/o'neil; drop.wav"]
    assert paths(find_json(music_db, "--where", "path = 'tones/o''neil; drop.wav'")) == [
        "tones/o'neil; drop.wav"]
    assert paths(find_json(music_db, "--where", "rhythm.bpm between 89 and 91",
                           "--where", "duration >= 4")) == ["jazz/slow.wav"]
    assert find_json(music_db, "--where", "highlevel.mood_happy.value = 'happy'") == []
    assert paths(find_json(music_db, "--where", "highlevel.mood_happy.value is null",
                           "--limit", "1")) == ALL[:1]
    assert paths(find_json(music_db, "--where", '"rhythm.bpm" >= 1e2')) == [
        "rock/fast.wav", "rock/mid.wav"]


@pytest.mark.parametrize("where, error", [
    ("rhythm.bpm > 120; DROP TABLE tracks", "unexpected text at character 17"),
    ("1 = 1", "expected a descriptor name, found '1' at character 1"),
    ("rhythm.bpm > 120 or 1=1 --", "unexpected text at character 25"),
    ("rhythm.bpm >", "unexpected end at character 13"),
    ("rhythm.bpm = tonal.key_key", "expected a number or a 'quoted string', found "
                                   "'tonal.key_key' at character 14"),
    ("rhythm.bpm ~ 3", "unexpected text at character 12"),
    ("(rhythm.bpm > 3", "unexpected end at character 16"),
])
def test_where_is_parsed_never_run_as_sql(where, error):
    with pytest.raises(Exception) as caught:
        WhereParser(where).parse()
    assert str(caught.value) == (f"--where {where!r}: {error} (e.g. \"rhythm.bpm > 120 and "
                                 "tonal.key_scale = 'minor'\")")


def test_where_becomes_parameters():
    sql, params, names = WhereParser("tonal.key_key = 'A'' OR 1=1' and duration < 3").parse()
    assert "A' OR 1=1" in params and "OR 1=1" not in sql
    assert params == ["tonal.key_key", "A' OR 1=1", 3.0]
    assert names == ["tonal.key_key", "duration"]


def test_an_injection_attempt_finds_nothing_and_breaks_nothing(music_db):
    assert find_json(music_db, "--where", "path = 'x'' OR ''1''=''1'") == []
    assert len(find_json(music_db)) == 6


def test_find_outputs(music_db):
    listed = find(music_db, "--paths", "--key", "A minor", "--bpm", "85..95")
    assert listed.stdout == "/music/jazz/slow.wav\n"
    playlist = find(music_db, "--m3u", "--bpm", "120..130")
    assert playlist.stdout == ("#EXTM3U\n#EXTINF:4,fast.wav\n/music/rock/fast.wav\n"
                               "#EXTINF:4,mid.wav\n/music/rock/mid.wav\n")
    table = find(music_db, "--bpm", "120..130", "--where", "tonal.key_strength > 0")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].strip() == "2 tracks"
    assert "rock/mid.wav" in lines[5] and "A minor" in lines[5]
    assert "tonal.key_strength" in table.stdout


@pytest.mark.parametrize("text, key", [("A minor", ("A", "minor")), ("f# MAJOR", ("F#", "major")),
                                       ("Bbm", ("Bb", "minor")), ("A#", ("Bb", None)),
                                       ("Db maj", ("C#", "major"))])
def test_key_spellings(text, key):
    assert parse_key(text) == key


def test_bad_filters_are_one_line(music_db):
    bad = find(music_db, "--bpm", "fast")
    assert (bad.returncode, bad.stderr) == (1, "error: --bpm fast: expected a range like "
                                               "120..130\n")
    bad = find(music_db, "--key", "H minor")
    assert bad.stderr == 'error: --key H minor: expected a key like "A minor", "F# major" or "Am"\n'


def expected_neighbours(folder: Path, name: str, track: str) -> list[tuple[str, float]]:
    """Cosine distances computed here from the JSON files themselves."""
    section, *rest = name.split(".")
    vectors = {}
    for path in folder.rglob("*.json"):
        doc = json.loads(path.read_text())
        node = doc[section]
        for part in rest:
            node = node[part]
        v = np.asarray(node, np.float32).astype(np.float64)
        vectors[path.relative_to(folder).with_suffix(".wav").as_posix()] = v / np.linalg.norm(v)
    query = vectors.pop(track)
    return sorted(((p, 1 - float(v @ query)) for p, v in vectors.items()), key=lambda x: x[1])


def test_similar_by_a_vector_ranks_by_cosine(timbre_outputs, timbre_db):
    result = run("extractor", "similar", "--db", timbre_db, "tones/tone.wav", "--by",
                 "timbre.mfcc.mean", "--k", "4", "--json")
    assert result.returncode == 0, result.stderr
    if has_pgvector(timbre_db):
        assert result.stderr == ""  # the server ranked (tests/catalog/test_pgvector.py)
    elif timbre_db.startswith("postgresql"):
        assert result.stderr == NO_PGVECTOR_NOTE
    elif not hasattr(__import__("sqlite3").Connection, "enable_load_extension"):
        assert result.stderr == NUMPY_NOTE
    got = [(r["path"], r["distance"]) for r in json.loads(result.stdout)]
    expected = expected_neighbours(timbre_outputs, "timbre.mfcc.mean", "tones/tone.wav")[:4]
    assert [p for p, _ in got] == [p for p, _ in expected]
    assert np.allclose([d for _, d in got], [d for _, d in expected], atol=2e-6)
    again = run("extractor", "similar", "--db", timbre_db, "tone.wav", "--by", "mfcc",
                "--k", "4", "--json")  # a part of the path; the cached matrix, if any
    assert json.loads(again.stdout) == json.loads(result.stdout)


def test_similar_by_descriptors(music_db):
    found = find_json(music_db)  # noqa: F841 - the catalog answers before similar runs
    result = run("extractor", "similar", "--db", music_db, "rock/fast.wav", "--by",
                 "descriptors", "--k", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and "rock/fast.wav" not in paths(rows)
    distances = [r["distance"] for r in rows]
    assert distances == sorted(distances)
    assert paths(rows)[0] == "jazz/slower.wav"  # the other click track over an A major chord


def test_similar_errors(music_db):
    no_clap = run("extractor", "similar", "--db", music_db, "rock/fast.wav", "--by", "clap")
    assert (no_clap.returncode, no_clap.stderr) == (
        1, "error: --by clap: the catalog has no such vectors (vectors: none); use --by "
           "descriptors, or analyse with a profile that computes them\n")
    vague = run("extractor", "similar", "--db", music_db, "rock/")
    assert vague.stderr == ("error: rock/: 2 tracks match (rock/fast.wav, rock/mid.wav); give "
                            "more of the path\n")
    missing = run("extractor", "similar", "--db", music_db, "pop/x.wav")
    assert missing.stderr == "error: pop/x.wav: no track of the catalog has this path\n"


DEBIAN_PYTHON = "/usr/bin/python3.11"


@pytest.mark.skipif(not os.path.exists(DEBIAN_PYTHON), reason="no Debian python3.11 here")
def test_similar_through_sqlite_vec_agrees_with_numpy(timbre_outputs, tmp_path):
    """Debian's Python can load SQLite extensions (this venv's pyenv Python cannot): the
    sqlite-vec ranking must equal the numpy one, with no note."""
    pytest.importorskip("sqlite_vec")
    db = str(tmp_path / "t.sqlite")
    assert update(timbre_outputs, db).returncode == 0
    args = ["similar", "--db", db, "rock/mid.wav", "--by", "timbre.mfcc.mean", "--json"]
    numpy_way = run("extractor", *args)
    paths_ = [str(Path(__file__).parents[2]),
              *(p for p in sys.path if p.endswith("site-packages"))]
    code = "import sys; from runner.cli import main; sys.exit(main(sys.argv[1:]))"
    vec_way = subprocess.run([DEBIAN_PYTHON, "-c", code, *args], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths_)))
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import sqlite3; sqlite3.connect(':memory:')"
                            ".enable_load_extension(True)"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Debian's python3.11 cannot load SQLite extensions either")
    assert vec_way.returncode == 0, vec_way.stderr
    assert vec_way.stderr == ""
    a, b = json.loads(numpy_way.stdout), json.loads(vec_way.stdout)
    assert paths(a) == paths(b)
    assert np.allclose([r["distance"] for r in a], [r["distance"] for r in b], atol=2e-6)
    shutil.rmtree(tmp_path / "t.sqlite-vectors", ignore_errors=True)


def with_models(music_outputs: Path) -> None:
    """Give each real output what the highlevel and clap profiles add (their models are not
    available here): a classifier output and a 512-d embedding, made up but shaped as the
    output schema says (runner.output.schema)."""
    rng = np.random.default_rng(0)
    for path in sorted(music_outputs.rglob("*.json")):
        doc = json.loads(path.read_text())
        happy = 0.9 if "rock/" in path.as_posix() else 0.2
        doc["highlevel"] = {"mood_happy": {
            "value": "happy" if happy > 0.5 else "non_happy", "probability": max(happy, 1 - happy),
            "all": {"happy": happy, "non_happy": 1 - happy}}}
        doc["clap"] = {"embedding": rng.standard_normal(512).tolist()}
        path.write_text(json.dumps(doc))


def test_highlevel_tags_and_clap_vectors(music_outputs, vector_db_url):
    db_url = vector_db_url
    with_models(music_outputs)
    assert update(music_outputs, db_url).returncode == 0
    happy = find_json(db_url, "--bpm", "120..130", "--key", "A minor", "--where",
                      "highlevel.mood_happy.value = 'happy'", "--limit", "20")
    assert paths(happy) == ["rock/mid.wav"] and happy[0]["highlevel.mood_happy.value"] == "happy"
    from runner.catalog import connect

    conn = connect(db_url, read_only=True)
    tags = conn.execute("SELECT t.path, g.tag, g.probability FROM tags g JOIN tracks t ON "
                        "t.id = g.track_id WHERE g.taxonomy = 'highlevel.mood_happy' AND "
                        "g.tag = 'happy' ORDER BY g.probability DESC, t.path")
    conn.close()
    assert tags[:2] == [("rock/fast.wav", "happy", 0.9), ("rock/mid.wav", "happy", 0.9)]
    result = run("extractor", "similar", "--db", db_url, "rock/fast.wav", "--k", "5", "--json")
    assert result.returncode == 0, result.stderr
    expected = expected_neighbours(music_outputs, "clap.embedding", "rock/fast.wav")
    rows = json.loads(result.stdout)
    assert paths(rows) == [p for p, _ in expected]  # --by clap by default
    assert np.allclose([r["distance"] for r in rows], [d for _, d in expected], atol=1e-5)
