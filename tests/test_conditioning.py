"""The conditioning profile (issue 23 item 1): flat features with known answers on audio made
here. One Extractor, a few seconds of audio per case."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from runner.conditioning.features import CHROMA_NAMES
from runner.conditioning.rhythm import complexity, syncopation
from runner.extract import Extractor
from tests.conftest import SR, click_track, tone, write_audio

SCHEMA = Path(__file__).parent.parent / "schemas" / "conditioning.output.schema.json"


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return Extractor("conditioning")


@pytest.fixture(scope="module")
def analyse(extractor, tmp_path_factory):
    folder = tmp_path_factory.mktemp("conditioning")

    def run(name: str, signal: np.ndarray) -> dict:
        doc, _ = extractor.analyse(str(write_audio(folder / f"{name}.wav", signal)))
        return doc

    return run


def chord(seconds: float, freqs: tuple[float, ...]) -> np.ndarray:
    """Harmonic tones (four partials each) held for ``seconds``."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum((0.5 ** k) * np.sin(2 * np.pi * f * (k + 1) * t) for f in freqs for k in range(4))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_click_track_tempo_and_regular_beats(analyse):
    doc = analyse("clicks", click_track(8.0, bpm=120.0))
    cond = doc["conditioning"]
    assert cond["bpm_is_defined"] is True
    assert abs(cond["bpm"] - 120.0) < 1.0
    assert cond["beat_count"] >= 12
    assert cond["beat_regularity"] < 0.02  # s: every beat interval is 0.5 s
    assert cond["syncopation_index"] < 0.1  # every click is on a beat
    assert cond["rhythmic_complexity"] < 0.2  # one inter-onset interval
    assert abs(cond["onset_density"] - 2.0) < 0.3  # clicks per second
    # the beat grid reads these (rhythm.beats_position: seconds)
    beats = np.asarray(doc["rhythm"]["beats_position"])
    assert len(beats) == cond["beat_count"] and np.allclose(np.diff(beats), 0.5, atol=0.03)
    assert doc["metadata"]["warnings"] == []
    assert set(cond) >= {"lufs", "lra", "true_peak", "rms_bass", "key", *CHROMA_NAMES}
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def test_sine_levels(analyse):
    """A 1 kHz sine with a peak of -20 dBFS in both channels: EBU R128 calibrates a stereo
    1 kHz sine at -23 dBFS to -23 LUFS, so this one is -20 LUFS; its RMS is 3.01 dB below its
    peak, all within the 250-2000 Hz band; its true peak is its peak."""
    cond = analyse("sine", tone(4.0, 1000.0, amp=0.1))["conditioning"]
    assert abs(cond["lufs"] - -20.0) < 0.1
    assert abs(cond["lra"]) < 0.1
    assert abs(cond["true_peak"] - -20.0) < 0.05
    assert abs(cond["rms_body"] - -23.01) < 0.1
    assert max(cond["rms_bass"], cond["rms_mid"], cond["rms_air"]) < -60
    assert cond["bpm_is_defined"] is False and cond["bpm"] is None


def test_c_major_chord(analyse):
    cond = analyse("chord", chord(3.0, (261.63, 329.63, 392.0)))["conditioning"]
    top = sorted(CHROMA_NAMES, key=lambda name: cond[name])[-3:]
    assert set(top) == {"chroma_C", "chroma_E", "chroma_G"}
    assert max(cond[name] for name in CHROMA_NAMES) == 1.0
    assert (cond["key"], cond["scale"]) == ("C", "major")
    assert cond["harmonic_movement"] < 0.01  # one chord held


def test_silence_is_null_not_numbers(analyse):
    doc = analyse("silence", np.zeros(2 * SR, dtype=np.float32))
    cond = doc["conditioning"]
    nulls = ["bpm", "beat_regularity", "lufs", "lra", "true_peak", "rms_bass", "rms_air",
             "spectral_flatness", "spectral_kurtosis", "key", "scale", "chroma_C",
             "harmonic_variance", "syncopation_index"]
    assert {name: cond[name] for name in nulls} == dict.fromkeys(nulls)
    assert (cond["bpm_is_defined"], cond["beat_count"], cond["onset_count"]) == (False, 0, 0)
    assert doc["metadata"]["warnings"][0].startswith("silent: digital silence")


def test_a_tenth_of_a_second(analyse):
    doc = analyse("short", tone(0.1, 440.0))
    cond = doc["conditioning"]
    assert cond["lufs"] is None and cond["lra"] is None and cond["bpm"] is None
    assert doc["metadata"]["warnings"] == [
        "too short for EBU R128: 0.10 s of audio (under 0.4 s); conditioning.lufs and lra "
        "are null"]
    assert abs(cond["duration"] - 0.1) < 0.011


def test_syncopation_and_complexity_definitions():
    beats = np.arange(0.0, 8.0, 0.5)
    assert syncopation(beats, beats) == 0.0
    assert syncopation(beats, beats[:-1] + 0.25) == 0.5  # every onset on the "and"
    assert syncopation(beats, beats[:-1] + 0.125) == 1.0  # every onset on a sixteenth
    assert complexity(beats, beats) == 0.0
    # intervals of 1, 2 and 1 sixteenths in turn: two classes, p = 2/3 and 1/3
    onsets = np.sort(np.concatenate([beats[:-1], beats[:-1] + 0.125, beats[:-1] + 0.375]))
    p = np.array([2 / 3, 1 / 3])
    assert complexity(beats, onsets) == pytest.approx(-(p * np.log2(p)).sum() / 4, abs=0.02)
    assert np.isnan(syncopation(beats, np.array([9.0])))
