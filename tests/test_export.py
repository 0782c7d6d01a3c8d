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
