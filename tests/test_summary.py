"""The summary profile: per-track outputs (reused), statistics and distributions across tracks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import click_track, write_audio
from tests.test_cli import run


@pytest.fixture
def library(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for i, bpm in enumerate((90, 120, 150)):
        write_audio(lib / f"t{i}.wav", click_track(6.0, bpm=bpm, seed=i))
    return lib


def test_summary_of_a_folder_then_reuse(tmp_path, library):
    out = tmp_path / "summary.json"
    first = run("streaming-extractor-summary", str(library), str(out))
    assert first.returncode == 0, first.stderr
    assert "(3 analysed, 0 reused, 0 failed" in first.stderr
    doc = json.loads(out.read_text())
    summary = doc["summary"]
    assert summary["tracks"] == 3 and summary["failed"] == 0
    assert summary["total_duration"] == pytest.approx(18.0, abs=0.05)
    bpms = sorted(row["bpm"] for row in summary["rows"])
    assert bpms == pytest.approx([90, 120, 150], abs=3)
    stats = summary["statistics"]
    assert stats["mean"]["bpm"] == pytest.approx(np.mean(bpms), rel=1e-5)
    assert stats["stdev"]["bpm"] == pytest.approx(np.std(bpms), rel=1e-4)  # population
    assert stats["median"]["bpm"] == pytest.approx(bpms[1], rel=1e-6)
    assert (stats["min"]["bpm"], stats["max"]["bpm"]) == pytest.approx((bpms[0], bpms[2]))
    assert sum(summary["distributions"]["key"].values()) == 3
    assert sum(summary["distributions"]["key_scale"].values()) == 3
    assert doc["metadata"]["profile"]["name"] == "summary"
    again = run("streaming_extractor_summary", str(library), str(out))
    assert "(0 analysed, 3 reused, 0 failed" in again.stderr
    assert json.loads(out.read_text())["summary"]["rows"] == summary["rows"]


def test_summary_of_a_list_with_a_bad_file(tmp_path, library):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"junk" * 200)
    listing = tmp_path / "files.txt"
    listing.write_text(f"{library / 't0.wav'}\n{bad}\n")
    out = tmp_path / "s.json"
    result = run("streaming-extractor-summary", "--list", str(listing), str(out))
    assert result.returncode == 1  # one file failed, the summary is still written
    summary = json.loads(out.read_text())["summary"]
    assert (summary["tracks"], summary["failed"]) == (1, 1)


def test_a_profile_without_summary_section_is_refused(tmp_path, library):
    result = run("streaming-extractor-summary", str(library), str(tmp_path / "s.json"),
                 "--profile", "beats")
    assert result.returncode == 2
    assert "'beats' is not a library profile" in result.stderr


KEYS_PROFILE = """\
name: keys
extends: tonal
summary:
  descriptors:
    tuning: tonal.tuning_frequency
    seconds: metadata.audio_properties.length
  distributions:
    tonic: tonal.key_key
    mode: tonal.key_scale
  joint_distributions:
    tonic_mode: [tonic, mode]
  total_duration: seconds
"""


def test_a_summary_profile_names_its_own_joint_distribution_and_duration(tmp_path, library):
    """The names a summary counts together and sums as the duration are the profile's own
    (data, not `key`, `scale`, `duration` hard-coded), and a wrong one is refused."""
    profile = tmp_path / "keys.yaml"
    profile.write_text(KEYS_PROFILE)
    out = tmp_path / "keys.json"
    result = run("streaming-extractor-summary", str(library), str(out), "--profile",
                 str(profile), "-q")
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())["summary"]
    tonic_mode = summary["distributions"]["tonic_mode"]
    assert sum(tonic_mode.values()) == 3
    assert set(tonic_mode) == {f"{row['tonic']} {row['mode']}" for row in summary["rows"]}
    assert "key_scale" not in summary["distributions"]
    assert summary["total_duration"] == pytest.approx(18.0, abs=0.05)

    profile.write_text(KEYS_PROFILE.replace("[tonic, mode]", "[tonic, scale]"))
    refused = run("streaming-extractor-summary", str(library), str(out), "--profile",
                  str(profile))
    assert refused.returncode == 2
    assert refused.stderr == (f"error: {profile}:11: summary.joint_distributions.tonic_mode: "
                              "'scale' is not one of the distributions (tonic, mode)\n")
    profile.write_text(KEYS_PROFILE.replace("total_duration: seconds", "total_duration: secs"))
    refused = run("streaming-extractor-summary", str(library), str(out), "--profile",
                  str(profile))
    assert refused.returncode == 2
    assert refused.stderr == (f"error: {profile}:12: summary.total_duration: 'secs' is not one "
                              "of the descriptors (did you mean 'seconds'?)\n")
