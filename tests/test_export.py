"""`extractor export`: a folder of results as one CSV or Parquet table."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import click_track, write_audio
from tests.test_cli import run


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    lib = root / "lib"
    (lib / "x").mkdir(parents=True)
    write_audio(lib / "fast.wav", click_track(4.0, bpm=140))
    write_audio(lib / "x" / "slow.wav", click_track(4.0, bpm=90, seed=5))
    out = root / "out"
    result = run("streaming-extractor-beats", str(lib), "--output", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return out


def test_csv_has_a_row_per_track_and_expanded_vectors(tmp_path, results):
    table = tmp_path / "t.csv"
    result = run("extractor", "export", str(results), str(table))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(table.open()))
    assert sorted(r["path"] for r in rows) == ["fast.json", "x/slow.json"]
    columns = set(rows[0])
    assert {"rhythm.bpm", "rhythm.beats_count", "metadata.audio_properties.codec"} <= columns
    assert {f"rhythm.beats_loudness_band_ratio.mean.{i}" for i in range(6)} <= columns
    assert "rhythm.beats_position" not in columns  # length varies per track
    bpm = {r["path"]: float(r["rhythm.bpm"]) for r in rows}
    assert bpm["fast.json"] > bpm["x/slow.json"]


def test_parquet_and_kept_lists(tmp_path, results):
    pq = pytest.importorskip("pyarrow.parquet")
    table = tmp_path / "t.parquet"
    result = run("extractor", "export", str(results), str(table), "--keep-lists")
    assert result.returncode == 0, result.stderr
    data = pq.read_table(table).to_pylist()
    assert len(data) == 2
    beats = json.loads(data[0]["rhythm.beats_position"])
    assert len(beats) == int(data[0]["rhythm.beats_count"])


def test_export_of_an_empty_folder_fails_cleanly(tmp_path):
    result = run("extractor", "export", str(tmp_path), str(tmp_path / "t.csv"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path}: no results found"


def test_an_unknown_table_extension_is_refused(tmp_path, results):
    """t.xlsx never silently holds CSV: the extension names the format, or --format does."""
    result = run("extractor", "export", str(results), str(tmp_path / "t.xlsx"))
    assert result.returncode == 2
    assert result.stderr == (f"error: usage: {tmp_path / 't.xlsx'}: no table format for the "
                             "extension '.xlsx' (supported: .csv, .parquet, .pq; or give "
                             "--format csv or --format parquet)\n")
    assert not (tmp_path / "t.xlsx").exists()
    forced = run("extractor", "export", str(results), str(tmp_path / "t.txt"), "--format", "csv")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "t.txt").read_text().startswith("path,")


def test_an_unreadable_result_is_skipped_named_and_counted(tmp_path, results):
    """One damaged file does not cost the table: it is skipped with a warning, listed in the
    summary line, and the exit code says something was left out (1)."""
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(results, folder)
    (folder / "cut.json").write_text('{"metadata": {"profile": ')  # a write cut short
    (folder / "x" / "bytes.yaml").write_bytes(b"\xff\xfe\x00")
    table = tmp_path / "t.csv"
    result = run("extractor", "export", str(folder), str(table))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"warning: {folder / 'cut.json'}: skipped, not a readable result (Expecting value: "
        "line 1 column 26 (char 25))",
        f"warning: {folder / 'x' / 'bytes.yaml'}: skipped, not a readable result ('utf-8' "
        "codec can't decode byte 0xff in position 0: invalid start byte)",
        f"2 tracks -> {table}; 2 unreadable skipped: {folder / 'cut.json'}, "
        f"{folder / 'x' / 'bytes.yaml'}",
    ]
    rows = list(csv.DictReader(table.open()))
    assert sorted(r["path"] for r in rows) == ["fast.json", "x/slow.json"]


def test_an_unwritable_table_is_one_line(results):
    result = run("extractor", "export", str(results), "/proc/t.csv")
    assert result.returncode == 1
    assert result.stderr == ("error: /proc/t.csv: cannot write output: cannot create a file "
                             "in /proc (No such file or directory)\n")
