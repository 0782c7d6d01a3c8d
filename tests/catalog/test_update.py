"""`extractor catalog update`: incremental, one transaction, bad outputs skipped and listed;
the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from runner.catalog import connect
from runner.tree import flatten
from tests.catalog.conftest import find_json, update
from tests.test_cli import command, run


def counts(db: str) -> dict[str, int]:
    conn = connect(db, read_only=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}")[0][0]
                for t in ("tracks", "scalars", "tags", "vectors")}
    finally:
        conn.close()


def test_update_is_incremental_and_lists_what_it_skips(music_outputs, db_url):
    first = update(music_outputs, db_url)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[-1] == ("catalog: 6 added, 0 updated, 0 removed, "
                                            "0 unchanged")
    again = update(music_outputs, db_url, "--quiet")
    assert (again.returncode, again.stderr) == (0, "")
    changed = music_outputs / "rock" / "fast.json"
    doc = json.loads(changed.read_text())
    doc["rhythm"]["bpm"] = 127.5
    changed.write_text(json.dumps(doc))
    (music_outputs / "jazz" / "slower.json").unlink()
    (music_outputs / "broken.json").write_text('{"metadata": {"profile": ')
    (music_outputs / "other.json").write_text('{"rhythm": {"bpm": 120}}')
    third = update(music_outputs, db_url)
    assert third.returncode == 1
    assert third.stderr.splitlines()[1:] == [
        "skipped: broken.json: corrupt JSON (Expecting value: line 1 column 26 (char 25))",
        "skipped: other.json: not an output of a known profile (no metadata.profile name "
        "and hash)",
        "catalog: 0 added, 1 updated, 1 removed, 4 unchanged, 2 skipped"]
    rows = find_json(db_url, "--bpm", "127.4..127.6")
    assert [r["path"] for r in rows] == ["rock/fast.wav"]
    assert counts(db_url)["tracks"] == 5


def test_catalog_agrees_with_the_outputs_value_for_value(music_outputs, timbre_outputs,
                                                         db_url, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(music_outputs, both / "music")
    shutil.copytree(timbre_outputs, both / "timbre")
    several = sorted((both / "music").rglob("*.json"))[0]  # lists of several strings kept whole
    doc = json.loads(several.read_text())
    doc["metadata"]["warnings"] = ["silent: no signal", "too short: 0.100 s of audio"]
    doc["metadata"]["tags"]["artist"] = ["A", "B"]
    several.write_text(json.dumps(doc))
    assert update(both, db_url).returncode == 0
    conn = connect(db_url, read_only=True)
    files = sorted(both.rglob("*.json"))
    assert len(files) == 12
    for path in files:
        flat = flatten(json.loads(path.read_text()))
        output = path.relative_to(both).as_posix()
        (track_id, duration, profile), = conn.execute(
            "SELECT id, duration, profile FROM tracks WHERE output = ?", (output,))
        assert duration == flat["metadata.audio_properties.length"]
        assert profile == flat["metadata.profile.name"]
        scalars = {n: t if t is not None else v for n, v, t in conn.execute(
            "SELECT name, num, text FROM scalars WHERE track_id = ?", (track_id,))}
        vectors = {n: np.frombuffer(bytes(d), dtype=np.float32) for n, d in conn.execute(
            "SELECT name, data FROM vectors WHERE track_id = ?", (track_id,))}
        expected = {n: v for n, v in flat.items() if not isinstance(v, list)}
        expected.update({n: "\n".join(v) for n, v in flat.items() if isinstance(v, list)
                         and v and all(isinstance(s, str) for s in v)})
        assert scalars == expected  # every scalar, exactly (numbers are doubles in both)
        expected_vectors = {n: v for n, v in flat.items() if n.startswith("timbre.")
                            and isinstance(v, list)}
        assert vectors.keys() == expected_vectors.keys()
        for name, vector in vectors.items():
            assert np.array_equal(vector, np.asarray(expected_vectors[name], np.float32))
    conn.close()


def test_the_view_has_a_column_per_descriptor(music_outputs, db_url):
    assert update(music_outputs, db_url).returncode == 0
    conn = connect(db_url, read_only=True)
    rows = conn.execute('SELECT path, "rhythm.bpm", "tonal.key_key", "tonal.key_scale" '
                        'FROM descriptors WHERE "rhythm.bpm" BETWEEN 120 AND 130 ORDER BY path')
    conn.close()
    assert [(p, k, s) for p, _, k, s in rows] == [("rock/fast.wav", "A", "major"),
                                                  ("rock/mid.wav", "A", "minor")]


def _big_library(source: Path, folder: Path, copies: int) -> Path:
    """``copies`` outputs (copies of real ones): an update that takes a few seconds."""
    originals = sorted(source.rglob("*.json"))
    folder.mkdir()
    for i in range(copies):
        shutil.copy(originals[i % len(originals)], folder / f"t{i:05d}.json")
    return folder


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its JSON readers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_kill_9_during_an_update_leaves_the_old_catalog(music_outputs, db_url, tmp_path):
    assert update(music_outputs, db_url).returncode == 0
    copies = 3000  # enough that the update is still reading on a fast, idle machine
    big = _big_library(music_outputs, tmp_path / "big", copies)
    for path in music_outputs.rglob("*.json"):
        shutil.copy(path, big / path.name)
    total = copies + 6
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([command("extractor"), "catalog", "update", str(big), "--db",
                             db_url, "--replace"], stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(f"catalog: {total} outputs in ")
    deadline = time.time() + 30  # its readers started: the update is under way
    while time.time() < deadline and proc.poll() is None and not children(proc.pid):
        time.sleep(0.05)
    # a reader is served the committed catalog while the update writes (WAL in SQLite)
    assert counts(db_url)["tracks"] == 6
    assert proc.poll() is None, "the update ended before it could be killed"
    readers = children(proc.pid)
    assert readers, f"the update reads {total} outputs in worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in readers):
        time.sleep(0.1)
    assert not [pid for pid in readers if Path(f"/proc/{pid}").exists()]
    assert counts(db_url)["tracks"] == 6  # the old catalog, whole
    assert len(find_json(db_url, "--limit", "100")) == 6
    assert {r["path"] for r in find_json(db_url)} == {
        "rock/fast.wav", "rock/mid.wav", "jazz/slow.wav", "jazz/slower.wav", "tones/tone.wav",
        "tones/o'neil; drop.wav"}
    # nothing left behind blocks the next update (no lock, no half-built table); the small
    # library, since writing the 3,000 copies adds 20 s and proves no more
    again = update(music_outputs, db_url)
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[-1] == "catalog: 0 added, 0 updated, 0 removed, 6 unchanged"


def test_an_older_schema_is_migrated_a_newer_refused(music_outputs, db_url):
    assert update(music_outputs, db_url).returncode == 0
    conn = connect(db_url)
    conn.execute("UPDATE catalog_meta SET value = '0' WHERE key = 'schema_version'")
    conn.close()
    stale = run("extractor", "find", "--db", db_url)
    assert stale.returncode == 1
    where = connect(db_url, read_only=True).location
    assert stale.stderr == (f"error: {where}: catalog schema version 0, this extractor reads "
                            "version 2; run `extractor catalog update OUTPUT_DIR` to migrate "
                            "it\n")
    migrated = update(music_outputs, db_url)
    assert migrated.stderr.splitlines()[1:] == [
        f"note: {where}: catalog schema version 0 migrated to 2 (rebuilt from the outputs)",
        "catalog: 6 added, 0 updated, 0 removed, 0 unchanged"]
    conn = connect(db_url)
    conn.execute("UPDATE catalog_meta SET value = '7' WHERE key = 'schema_version'")
    conn.close()
    newer = update(music_outputs, db_url)
    assert newer.returncode == 1
    assert newer.stderr.splitlines()[-1] == (
        f"error: {where}: catalog schema version 7 is newer than this extractor's (2); "
        "upgrade extractor-profiles")


def test_a_locked_sqlite_catalog_is_one_line(music_outputs, tmp_path, monkeypatch):
    db = tmp_path / "cat.sqlite"
    assert update(music_outputs, str(db)).returncode == 0
    monkeypatch.setenv("EXTRACTOR_CATALOG_BUSY_MS", "200")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        locked = update(music_outputs, str(db))
    finally:
        holder.rollback()
        holder.close()
    assert locked.returncode == 1
    assert locked.stderr.splitlines()[-1] == (
        f"error: {db}: the catalog is locked by another writer (an update or a batch with "
        "--catalog); try again when it has finished")


def _read_only(*paths: Path) -> list[str]:
    """Make ``paths`` read-only even for root (the tests' usual user): the immutable attribute
    (chattr +i), or permissions for anyone else; the command that undoes it."""
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(path.stat().st_mode & ~0o222)
        return ["chmod", "-R", "u+w", *map(str, paths)]
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:  # a file system without the attribute (tmpfs, overlayfs)
        pytest.skip(f"cannot make a file read-only for root here: {done.stderr.strip()}")
    return ["chattr", "-i", *map(str, paths)]


def test_a_read_only_sqlite_catalog_refuses_updates_in_one_line_and_answers_queries(
        music_outputs, tmp_path):
    """A catalog on a read-only file in a read-only folder (a shared, mounted library): an
    update is one line and exit 1, the catalog unchanged; find and similar still answer."""
    folder = tmp_path / "shared"
    folder.mkdir()
    db = folder / "cat.sqlite"
    assert update(music_outputs, str(db)).returncode == 0
    before = counts(str(db))
    (music_outputs / "rock" / "fast.json").unlink()  # something for an update to change
    undo = _read_only(db, folder)
    try:
        refused = update(music_outputs, str(db))
        found = run("extractor", "find", "--db", str(db), "--paths")
        similar = run("extractor", "similar", "--db", str(db), "jazz/slow.wav", "--k", "2",
                      "--by", "descriptors")
    finally:
        subprocess.run(undo, check=True)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"error: {db}: the catalog is read-only here (file or folder permissions)")
    assert counts(str(db)) == before
    assert found.returncode == 0 and len(found.stdout.splitlines()) == before["tracks"]
    assert similar.returncode == 0, similar.stderr


def test_an_update_from_another_folder_is_refused_not_a_silent_wipe(music_outputs,
                                                                     timbre_outputs, db_url):
    """A catalog mirrors one folder: updating it from another would remove every track, so it
    is one line and nothing changes; --replace switches; a parent of both keeps both."""
    assert update(music_outputs, db_url).returncode == 0
    before = counts(db_url)
    other = update(timbre_outputs, db_url)
    assert other.returncode == 1 and other.stderr.splitlines()[-1].endswith(
        f"this catalog holds the outputs of {music_outputs.resolve()}; updating it from "
        f"{timbre_outputs} would remove them all. Update it from a folder that holds both "
        "(subfolders are read), or use --replace to switch folders")
    assert counts(db_url) == before
    both = update(music_outputs.parent, db_url, "--replace")
    assert both.returncode == 0, both.stderr
    assert counts(db_url)["tracks"] == 2 * before["tracks"]  # music and timbre, 6 tracks each
    switched = update(timbre_outputs, db_url, "--replace")
    assert switched.returncode == 0 and counts(db_url)["tracks"] == before["tracks"]


def test_an_unreachable_postgresql_is_one_line(music_outputs):
    result = update(music_outputs, "postgresql://someone@127.0.0.1:9/library")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to PostgreSQL at 127.0.0.1:9: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_folder_and_missing_catalog(tmp_path):
    result = update(tmp_path / "nope", str(tmp_path / "c.sqlite"))
    assert (result.returncode, result.stderr) == (
        1, f"error: {tmp_path / 'nope'}: not a folder of outputs\n")
    missing = run("extractor", "find", "--db", str(tmp_path / "c2.sqlite"))
    assert (missing.returncode, missing.stderr) == (
        1, f"error: {tmp_path / 'c2.sqlite'}: no catalog here (make one with `extractor "
           "catalog update OUTPUT_DIR`)\n")


@pytest.mark.parametrize("spelling", ["sqlite", "folder"])
def test_db_spellings(music_outputs, spelling):
    db = f"sqlite://{music_outputs}/x.sqlite" if spelling == "sqlite" else str(music_outputs)
    assert update(music_outputs, db).returncode == 0
    name = "x.sqlite" if spelling == "sqlite" else "catalog.sqlite"
    assert (music_outputs / name).is_file()
