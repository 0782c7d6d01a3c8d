"""End-to-end: the installed commands on audio files made by the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import click_track, tone, write_audio

MINI = Path(__file__).with_name("data") / "mini.yaml"


def command(name: str) -> str:
    """The console script installed beside this Python (pip install -e .)."""
    path = Path(sys.executable).with_name(name)
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e .)"
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([command(args[0]), *args[1:]], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_run_profile_writes_valid_json(tmp_path, clicks_wav):
    out = tmp_path / "nested" / "out.json"
    result = run("extractor", "run", str(MINI), str(clicks_wav), str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow or Essentia chatter
    doc = json.loads(out.read_text())
    assert abs(doc["rhythm"]["bpm"] - 120) < 2
    assert doc["rhythm"]["beats_count"] == len(doc["rhythm"]["beats_position"])
    assert doc["metadata"]["profile"]["name"] == "mini"
    assert doc["metadata"]["audio_properties"]["codec"] == "pcm_s16le"
    assert doc["metadata"]["audio_properties"]["number_channels"] == 2
    assert doc["metadata"]["audio_properties"]["lossless"] is True
    assert len(doc["lowlevel"]["mfcc"]["mean"]) == 13
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_profile_hash_changes_with_overrides(tmp_path, clicks_wav):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("extractor", "run", str(MINI), str(clicks_wav), str(a)).returncode == 0
    assert run("extractor", "run", str(MINI), str(clicks_wav), str(b),
               "--set", "graph.fc.params.frameSize=1024").returncode == 0
    ha = json.loads(a.read_text())["metadata"]["profile"]["hash"]
    hb = json.loads(b.read_text())["metadata"]["profile"]["hash"]
    assert ha != hb


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.wav", None, "missing.wav: no such file"),
        ("empty.wav", b"", "empty.wav: empty file"),
        ("noise.mp3", bytes(np.random.default_rng(1).integers(0, 255, 4000, dtype=np.uint8)),
         "noise.mp3: unsupported or corrupt audio"),
        ("notes.txt", b"not audio at all\n", "notes.txt: not a supported audio file"),
    ],
)
def test_bad_audio_gives_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run("extractor", "run", str(MINI), str(path), str(tmp_path / "o.json"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.json").exists()


def test_bad_profile_gives_one_line_with_location(tmp_path, clicks_wav):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINI.read_text().replace("hopSize: 1024}", "hopsize: 1024}", 1))
    result = run("extractor", "run", str(bad), str(clicks_wav), str(tmp_path / "o.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {bad}:7: graph.fc.params.hopsize: FrameCutter has no parameter 'hopsize' "
        "(did you mean 'hopSize'?)"
    )
    debug = run("extractor", "run", str(bad), str(clicks_wav), str(tmp_path / "o.json"),
                "--debug")
    assert "Traceback" in debug.stderr


def test_validate_and_schema_commands(tmp_path):
    result = run("extractor", "validate", str(MINI))
    assert result.returncode == 0, result.stderr
    assert "stage 1: bl, nbeats" in result.stdout
    assert "shared: fc also serves fc2" in result.stdout
    schema = run("extractor", "schema", str(MINI))
    assert json.loads(schema.stdout)["properties"]["rhythm"]["required"] == [
        "beats_count", "beats_loudness", "beats_position", "bpm"]
    fmt = run("extractor", "schema", "profile")
    assert json.loads(fmt.stdout)["title"] == "extractor profile"


def test_stereo_downmix_and_trim(tmp_path):
    left, right = tone(4.0, 440.0), tone(4.0, 880.0) * 0.0
    path = write_audio(tmp_path / "st.wav", np.stack([left, right], axis=1))
    out = tmp_path / "o.json"
    result = run("extractor", "run", str(MINI), str(path), str(out),
                 "--set", "audio.downmix=left", "--set", "audio.start_time=1",
                 "--set", "audio.end_time=3")
    assert result.returncode == 0, result.stderr
    props = json.loads(out.read_text())["metadata"]["audio_properties"]
    assert props["analysis"]["length"] == pytest.approx(2.0, abs=0.01)
    assert props["analysis"]["downmix"] == "left"


def test_resampling_to_analysis_rate(tmp_path):
    path = write_audio(tmp_path / "lo.wav", click_track(6.0, sr=22050), sr=22050)
    out = tmp_path / "o.json"
    assert run("extractor", "run", str(MINI), str(path), str(out)).returncode == 0
    props = json.loads(out.read_text())["metadata"]["audio_properties"]
    assert props["sample_rate"] == 22050
    assert props["analysis"]["sample_rate"] == 44100
    assert props["analysis"]["length"] == pytest.approx(6.0, abs=0.01)
