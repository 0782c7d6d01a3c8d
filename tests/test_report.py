"""The library report's data: hand-written outputs of every profile, damaged ones included.

The page itself is checked in a real browser in test_report_browser.py.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.cli import main
from runner.errors import OutputError
from runner.report import data
from runner.report.build import build_report, json_links
from runner.report.html import json_for_script, runtime_cache, vega_runtime
from runner.report.loading import load_library
from runner.report.tracks import Track


def music_doc(name: str = "song.wav", bpm: Any = 120.0, key: str = "C", scale: str = "major",
              md5: str | None = None, warnings: list[str] | None = None, **rhythm: Any
              ) -> dict[str, Any]:
    """The parts of a music-profile output the report reads."""
    doc: dict[str, Any] = {
        "metadata": {"profile": {"name": "music", "hash": "x"}, "warnings": warnings or [],
                     "tags": {"file_name": name},
                     "audio_properties": {"length": 30.0, "md5_encoded": md5 or name}},
        "lowlevel": {"average_loudness": 0.9, "loudness_ebu128": {"integrated": -12.5}},
        "rhythm": {"bpm": bpm, "danceability": 1.5, "bpm_histogram_first_peak_bpm": bpm,
                   "bpm_histogram_first_peak_weight": 0.6,
                   "bpm_histogram_second_peak_bpm": 0.0,
                   "bpm_histogram_second_peak_weight": 0.0, **rhythm},
        "tonal": {"key_key": key, "key_scale": scale, "key_strength": 0.7},
    }
    return doc


def freesound_doc(name: str = "loop.wav", bpm: float = 120.0, loop: float = 120.0
                  ) -> dict[str, Any]:
    return {
        "metadata": {"profile": {"name": "freesound_music"}, "warnings": [],
                     "tags": {"file_name": name}, "audio_properties": {"length": 4.0}},
        "lowlevel": {"average_loudness": 0.5, "loudness_ebu128": {"integrated": -20.0}},
        "rhythm": {"bpm": bpm, "bpm_loop": loop, "bpm_loop_confidence": 0.8},
        "tonal": {"key": {"key": "F#", "scale": "minor", "strength": 0.8}},
    }


def taxonomy(classes: dict[str, float]) -> dict[str, Any]:
    top = max(classes, key=lambda c: classes[c])
    return {"value": top, "probability": classes[top], "all": classes}


def write(folder: Path, name: str, doc: Any) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def tracks_of(folder: Path) -> list[Track]:
    return load_library(folder).tracks


def test_an_empty_folder_is_one_error_line(tmp_path, capsys):
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path}: no results found")):
        build_report(tmp_path, tmp_path / "r.html")
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}: no results found\n"
    assert not (tmp_path / "r.html").exists()


def test_one_track(tmp_path):
    write(tmp_path, "out/song.json", music_doc(key="D", bpm=100.0))
    tracks = tracks_of(tmp_path / "out")
    assert [t.name for t in tracks] == ["song.wav"]
    summary = data.library_summary(tracks, 0, 0)
    assert summary["tracks"] == 1 and summary["duration_s"] == 30.0
    assert summary["profiles"] == {"music": 1}
    assert data.tempo(tracks) == {"tracks": 1, "ambiguous": 0, "median_bpm": 100.0}
    keys = data.keys(tracks)
    assert len(keys) == 24
    assert [(r["label"], r["tracks"]) for r in keys if r["tracks"]] == [("D", 1)]
    assert keys[2]["key"] == "D" and keys[12]["label"] == "Am"  # C major's relative minor
    assert data.loudness_danceability(tracks)["x"] == "loudness_lufs"
    assert data.taxonomies(tracks) == [] and data.embedding_maps(tracks) == []
    built = build_report(tmp_path / "out", tmp_path / "report.html")
    assert built.sections == ["library", "tempo", "keys", "loudness", "tracks"]
    assert built.tracks == 1 and built.size == (tmp_path / "report.html").stat().st_size


def test_silence_is_listed_but_charted_nowhere(tmp_path):
    write(tmp_path, "quiet.json", music_doc("quiet.wav", bpm=738.0, warnings=[
        "silent: the signal's RMS level is below -90 dBFS; descriptors describe silence"]))
    write(tmp_path, "song.json", music_doc("song.wav", bpm=90.0, key="A", scale="minor"))
    tracks = tracks_of(tmp_path)
    assert [t.silent for t in tracks] == [True, False]
    assert data.library_summary(tracks, 0, 0)["silent"] == 1
    assert data.tempo(tracks)["tracks"] == 1
    assert sum(r["tracks"] for r in data.keys(tracks)) == 1
    table = data.dataset(tracks, ["quiet.json", "song.json"], [])
    row = dict(zip(table["fields"], table["rows"][0], strict=True))
    assert row["silent"] is True and row["warnings"].startswith("silent: ")


def test_only_silence_leaves_every_chart_out(tmp_path):
    write(tmp_path, "quiet.json", music_doc(warnings=["silent: every sample is 0"]))
    built = build_report(tmp_path, tmp_path / "r.html")
    assert built.sections == ["library", "tracks"]


def test_missing_sections_leave_their_charts_out(tmp_path):
    doc = music_doc()
    del doc["rhythm"], doc["tonal"]
    write(tmp_path, "lowlevel.json", doc)
    tracks = tracks_of(tmp_path)
    assert data.tempo(tracks) is None and data.keys(tracks) is None
    assert data.loudness_danceability(tracks) is None  # loudness without danceability
    assert build_report(tmp_path, tmp_path / "r.html").sections == ["library", "tracks"]


def test_non_finite_and_null_values_are_missing(tmp_path):
    text = json.dumps(music_doc(bpm=None)).replace('"danceability": 1.5', '"danceability": NaN')
    text = text.replace('"integrated": -12.5', '"integrated": -Infinity')
    write(tmp_path, "odd.json", text)
    write(tmp_path, "zero.json", music_doc("zero.wav", bpm=0.0))  # no beat found
    tracks = tracks_of(tmp_path)
    odd = tracks[0]
    assert odd.bpm is None and odd.danceability is None and odd.loudness_lufs is None
    assert odd.average_loudness == 0.9
    assert tracks[1].bpm is None
    assert data.tempo(tracks) is None
    assert data.loudness_danceability(tracks)["x"] == "average_loudness"
    build_report(tmp_path, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    payload = re.search(r'id="report-data">(.*?)</script>', page).group(1)
    assert "NaN" not in payload and "Infinity" not in payload
    assert json.loads(payload)["data"]["rows"][0][3] is None
    with pytest.raises(ValueError):
        json_for_script({"x": math.nan})


def test_damaged_files_are_skipped_and_counted(tmp_path, capsys):
    write(tmp_path, "good.json", music_doc())
    write(tmp_path, "broken.json", '{"metadata": {"profile": ')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    write(tmp_path, "failures.jsonl", "{}")
    write(tmp_path, "clap.json", {"model": "clap-630k-audioset"})  # a store's, not a result
    write(tmp_path, "song_frames.json", {"frames": []})
    library = load_library(tmp_path)
    assert len(library.tracks) == 1
    assert sorted(p.name for p, _ in library.unreadable) == ["binary.json", "broken.json"]
    assert [p.name for p in library.not_results] == ["clap.json"]
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"warning: {tmp_path / 'binary.json'}: skipped, not a readable "
                             "result (")
    assert err[-1].startswith(f"1 tracks -> {tmp_path / 'r.html'} (")
    assert err[-1].endswith("; 2 unreadable skipped; 1 JSON files that are not results left out")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "unreadable files skipped" in page


@pytest.mark.parametrize(("doc", "expected"), [
    (music_doc(bpm=140.0, bpm_histogram_first_peak_bpm=70.0), "histogram first peak 70 BPM"),
    (music_doc(bpm=62.0, bpm_histogram_first_peak_bpm=185.0), "histogram first peak 185 BPM"),
    (music_doc(bpm=120.0, bpm_histogram_first_peak_bpm=121.0), None),
    (music_doc(bpm=120.0, bpm_histogram_first_peak_bpm=180.0), None),  # 3:2 is no octave
    (music_doc(bpm=120.0, bpm_histogram_second_peak_bpm=240.0,
               bpm_histogram_second_peak_weight=0.4), "histogram second peak 240 BPM"),
    (music_doc(bpm=120.0, bpm_histogram_second_peak_bpm=240.0,
               bpm_histogram_second_peak_weight=0.1), None),  # too weak to be a rival
    (freesound_doc(bpm=120.0, loop=60.5), "loop tempo 60 BPM"),
    (freesound_doc(bpm=120.0, loop=119.0), None),
])
def test_octave_ambiguity(tmp_path, doc, expected):
    write(tmp_path, "t.json", doc)
    assert data.octave_ambiguity(tracks_of(tmp_path)[0]) == expected


def test_keys_fold_enharmonic_spellings_onto_the_circle(tmp_path):
    for n, (key, scale) in enumerate([("Db", "major"), ("C#", "major"), ("Ab", "minor"),
                                      ("G#", "minor"), ("H", "major"), ("C", "dorian")]):
        write(tmp_path, f"{n}.json", music_doc(f"{n}.wav", key=key, scale=scale))
    write(tmp_path, "fs.json", freesound_doc())
    counts = {r["label"]: r["tracks"] for r in data.keys(tracks_of(tmp_path)) if r["tracks"]}
    assert counts == {"C#": 2, "G#m": 2, "F#m": 1}


def test_taxonomies_of_every_model_section(tmp_path):
    for n, happy in enumerate([0.9, 0.8, 0.2]):
        doc = music_doc(f"{n}.wav")
        doc["highlevel"] = {"mood_happy": taxonomy({"happy": happy, "non_happy": 1 - happy}),
                            "danceability": taxonomy({"danceable": 0.7,
                                                      "not_danceable": 0.3})}
        doc["mine"] = {"style": taxonomy({"a": 0.1, "b": 0.2, "c": 0.7})}
        write(tmp_path, f"{n}.json", doc)
    charts = {c.name: c for c in data.taxonomies(tracks_of(tmp_path))}
    assert sorted(charts) == ["highlevel.danceability", "highlevel.mood_happy", "mine.style"]
    happy = charts["highlevel.mood_happy"]
    assert (happy.tracks, happy.classes) == (3, 2)
    assert happy.rows == [{"class": "happy", "tracks": 2, "mean_probability": 0.6333},
                          {"class": "non_happy", "tracks": 1, "mean_probability": 0.3667}]
    assert [r["class"] for r in charts["mine.style"].rows] == ["c", "b", "a"]


def test_danceability_axis_prefers_what_more_tracks_have(tmp_path):
    doc = freesound_doc()
    doc["highlevel"] = {"danceability": taxonomy({"danceable": 0.7, "not_danceable": 0.3})}
    write(tmp_path, "a.json", doc)
    tracks = tracks_of(tmp_path)
    assert tracks[0].danceable == 0.7
    assert data.danceability_axis(tracks) == ("danceable", "danceable (classifier probability)")


def test_embedding_maps_pca_and_merge_across_profiles(tmp_path):
    for n in range(4):
        write(tmp_path, f"music/{n}.json", music_doc(f"{n}.wav", md5=f"md5-{n}"))
        clap = {"metadata": {"profile": {"name": "clap"},
                             "audio_properties": {"md5_encoded": f"md5-{n}"}},
                "clap": {"embedding": [float(n), 2.0 * n] + [0.0] * 510}}
        write(tmp_path, f"clap/{n}.json", clap)
    odd = music_doc("odd.wav", md5="md5-odd")
    odd["highlevel"] = {"musicnn": [1.0] * 200, "tags": ["rock"] * 10}
    write(tmp_path, "music/odd.json", odd)
    write(tmp_path, "music/bad.json", {**music_doc("bad.wav", md5="bad"),
                                      "highlevel": {"musicnn": [1.0] * 199 + [None]}})
    tracks = tracks_of(tmp_path)
    assert len(tracks) == 6  # the clap outputs joined their music outputs
    merged = next(t for t in tracks if t.name == "2.wav")
    assert merged.profiles == ["music", "clap"] and merged.bpm == 120.0
    assert merged.path == tmp_path / "music" / "2.json"  # the descriptors' JSON is linked
    assert merged.paths == [tmp_path / "music" / "2.json", tmp_path / "clap" / "2.json"]
    assert merged.embeddings["clap.embedding"].tolist()[:3] == [2.0, 4.0, 0.0]
    odd_track = next(t for t in tracks if t.name == "odd.wav")
    assert list(odd_track.embeddings) == ["highlevel.musicnn"]  # not the list of tags
    maps = data.embedding_maps(tracks)
    assert [m["name"] for m in maps] == ["clap.embedding"]  # musicnn: in one track only
    points = maps[0]["points"]
    assert len(points) == 4 and maps[0]["method"] == "PCA" and maps[0]["dimensions"] == 512
    xs = [x for _, x, _ in points]
    assert abs(xs[0] - xs[3]) == pytest.approx(3 * math.sqrt(5))  # all on one line
    assert all(abs(y) < 1e-9 for _, _, y in points)
    assert data.embedding_maps(tracks, "umap")[0]["method"] == (
        "PCA (UMAP not installed or too few tracks)")


def test_json_links_are_relative_and_quoted(tmp_path):
    path = write(tmp_path, "out/My Album/song #1.json", music_doc())
    assert json_links([path], tmp_path / "out", tmp_path / "reports") == [
        "../out/My%20Album/song%20%231.json"]
    assert json_links([path], tmp_path / "out", tmp_path / "out") == [
        "My%20Album/song%20%231.json"]


def test_the_page_needs_nothing_from_the_network(tmp_path):
    write(tmp_path, "out/a.json", music_doc())
    build_report(tmp_path / "out", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("<script") == 3 and "vegaEmbed" in page
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)  # the page, not code
    assert "<script" not in markup and "vegaEmbed" not in markup
    assert not re.search(r"<(img|iframe|link)\b", markup)


def test_usage_errors(tmp_path, capsys):
    write(tmp_path, "a.json", music_doc())
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: not a folder\n"
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path), "-j", "0"])
    assert capsys.readouterr().err.endswith(
        "error: argument -j/--jobs: must be a whole number of at least 1, not '0'\n")
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.pdf")]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'r.pdf'}: the report is an HTML page: name it .html\n")


def test_worker_processes_read_the_same_library(tmp_path):
    """Worker processes read the same tracks as one process does."""
    for n in range(210):
        doc = music_doc(f"{n}.wav", bpm=60.0 + n, key=["C", "A", "Eb"][n % 3])
        doc["highlevel"] = {"mood_happy": taxonomy({"happy": n / 210, "non_happy": 1 - n / 210})}
        doc["lowlevel"]["mfcc"] = {"mean": [0.5] * 13}  # a descriptor vector, no embedding
        write(tmp_path, f"d{n % 7}/{n:03d}.json", doc)
    write(tmp_path, "d0/broken.json", "{")
    one, two = load_library(tmp_path, jobs=1), load_library(tmp_path, jobs=2)
    assert len(two.tracks) == 210 and one.tracks == two.tracks
    assert one.unreadable == two.unreadable and len(two.unreadable) == 1


def test_the_vega_runtime_is_bundled_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = runtime_cache(importlib.metadata.version("vl-convert-python"))
    cached.parent.mkdir(parents=True)
    cached.write_text("window.vega = ")  # an interrupted write: bundled again
    bundled = vega_runtime.__wrapped__()
    assert "window.vegaEmbed=" in bundled and "</script" not in bundled.lower()
    assert cached.read_text() == bundled
    cached.write_text(cached.read_text().replace("window.vegaEmbed=", "window.vegaEmbed =  "))
    assert vega_runtime.__wrapped__() == cached.read_text()  # read back, not bundled


def test_classes_in_another_order_or_missing_count_alike(tmp_path):
    outputs = [{"a": 0.5, "b": 0.5}, {"b": 0.25, "a": 0.75}, {"a": 1.0}, {"c": 1.0, "a": 0.0}]
    for n, classes in enumerate(outputs):
        doc = music_doc(f"{n}.wav")
        doc["highlevel"] = {"style": taxonomy(classes)}
        write(tmp_path, f"{n}.json", doc)
    (chart,) = data.taxonomies(tracks_of(tmp_path))
    assert chart.classes == 3
    assert {r["class"]: r["mean_probability"] for r in chart.rows} == {
        "a": 0.5625, "b": 0.1875, "c": 0.25}


def test_umap_maps_two_clusters_apart_when_installed():
    """--map umap: umap-learn's UMAP (the test extra installs it) on 24 tracks in two clusters;
    importing umap imports TensorFlow where installed, which crashed the process beside
    Essentia's libtensorflow, so data._import_umap hides it."""
    if data._import_umap() is None and not os.environ.get("CI"):
        pytest.skip("umap-learn is not installed")
    rng = np.random.default_rng(0)
    axis = np.eye(32)[0] * 3
    vectors = np.vstack([rng.normal(0, 0.1, (12, 32)) + axis,
                         rng.normal(0, 0.1, (12, 32)) - axis])
    xy = data.umap_2d(vectors)
    assert xy is not None and xy.shape == (24, 2)
    first, second = xy[:12], xy[12:]
    gap = np.linalg.norm(first.mean(axis=0) - second.mean(axis=0))
    assert gap > 3 * max(first.std(axis=0).max(), second.std(axis=0).max())
    assert data.umap_2d(vectors[:15]) is None  # too few tracks: PCA instead
