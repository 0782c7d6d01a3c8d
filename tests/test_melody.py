"""The melody profile: Essentia's PredominantPitchMelodia after EqualLoudness, its contour's
statistics and summary (tonal.melody.*, docs/profiles.md)."""

from __future__ import annotations

import numpy as np
import pytest

from runner import compile
from runner import profile as load
from runner.derive import melody_contour
from runner.extract import Extractor
from tests.conftest import SR, tone, write_audio


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return Extractor("melody")


def _essentia_melodia(path: str) -> dict:
    """Essentia's own streaming PredominantPitchMelodia after EqualLoudness, summarised."""
    import essentia
    import essentia.streaming as es

    pool = essentia.Pool()
    loader = es.MonoLoader(filename=path)
    eqloud, melodia = es.EqualLoudness(), es.PredominantPitchMelodia()
    loader.audio >> eqloud.signal
    eqloud.signal >> melodia.signal
    melodia.pitch >> (pool, "pitch")
    melodia.pitchConfidence >> None
    essentia.run(loader)
    return melody_contour(pool["pitch"])


def test_a_440_hz_tone_is_within_10_cents_as_essentia_melodia_finds_it(tmp_path, extractor):
    path = str(write_audio(tmp_path / "a.wav", tone(2.0, 440.0)))
    doc, _ = extractor.analyse(path)
    melody = doc["tonal"]["melody"]
    # the profile's chain is PredominantPitchMelodia's own where no frame is silent
    essentia_melody = _essentia_melodia(path)
    assert melody["voiced_fraction"] == pytest.approx(essentia_melody["voiced_fraction"], rel=1e-6)
    assert melody["mean_pitch_hz"] == pytest.approx(essentia_melody["mean_pitch_hz"], rel=1e-6)
    assert melody["pitch"]["mean"] == pytest.approx(float(essentia_melody["pitch"].mean()),
                                                    rel=1e-5)  # float32 sums
    assert abs(1200 * np.log2(melody["mean_pitch_hz"] / 440.0)) < 10
    assert abs(100 * (melody["median_midi"] - 69)) < 10
    assert abs(1200 * np.log2(melody["pitch"]["median"] / 440.0)) < 10
    assert melody["voiced_fraction"] > 0.9
    assert set(melody["pitch"]) == {"mean", "stdev", "median", "min", "max", "dmean", "dvar"}
    assert doc["metadata"]["warnings"] == []


@pytest.mark.parametrize("samples", [SR, 5])
def test_silence_and_a_few_samples_give_no_melody(tmp_path, extractor, samples):
    """Essentia's PredominantPitchMelodia fills silent frames with random noise, and found a
    "melody" in a second of digital silence in some runs (voiced_fraction 0.1-0.16 here):
    the profile's chain keeps them silent."""
    audio = write_audio(tmp_path / "s.wav", np.zeros(samples, dtype=np.float32))
    doc, _ = extractor.analyse(str(audio))
    melody = doc["tonal"]["melody"]
    assert (melody["voiced_fraction"], melody["mean_pitch_hz"], melody["median_midi"]) == (
        0.0, None, None)
    assert melody["pitch"]["max"] == 0.0
    assert doc["metadata"]["warnings"][-1] == (
        "melody: no frame with a melody: its mean and median pitch are null")


def test_the_contour_summary_counts_voiced_frames_only():
    values = melody_contour(np.array([0.0, 220.0, 440.0, 880.0, 0.0], dtype=np.float32))
    assert values["pitch"].tolist() == [0.0, 220.0, 440.0, 880.0, 0.0]
    assert values["voiced_fraction"] == 0.6
    assert values["mean_pitch_hz"] == pytest.approx(1540 / 3)
    assert values["median_midi"] == pytest.approx(69.0)
    assert melody_contour(np.zeros(0))["voiced_fraction"] == 0.0


def test_the_melody_profile_combines_with_the_music_profile(write_profile):
    plan = compile.compile_profile(load.load_profile("melody"))
    assert [n.algorithm for n in plan.nodes.values() if n.streaming] == [
        "EqualLoudness", "FrameCutter", "Windowing", "Spectrum", "SpectralPeaks",
        "PitchSalienceFunction", "PitchSalienceFunctionPeaks"]
    assert [n.algorithm for n in plan.nodes.values() if not n.streaming] == [
        "PitchContours", "PitchContoursMelody", None]  # and the derive function
    both = write_profile("""
        name: music-and-melody
        extends: [music, melody]
        """)
    names = {d.name for d in compile.compile_profile(load.load_profile(str(both))).descriptors}
    assert {"tonal.melody.pitch", "tonal.melody.voiced_fraction", "tonal.melody.mean_pitch_hz",
            "tonal.melody.median_midi", "rhythm.bpm", "tonal.key_key"} <= names
