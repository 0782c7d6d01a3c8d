"""The conditioning profile's RhythmExtractor2013 (degara) and OnsetRate, their onset detection
functions computed every frame at once (runner/conditioning/onset_functions.py,
beats_and_onsets.py), against Essentia's algorithms on the same signals: the same frames, the
functions within float rounding, and the same beats, tempo and onsets, to the bit."""

from __future__ import annotations

import essentia
import essentia.standard as es
import essentia.streaming as ess
import numpy as np
import pytest

from runner.conditioning import beats_and_onsets as bo
from runner.conditioning.onset_functions import frame_starts, onset_functions
from tests.conftest import SR, click_track
from tests.data.make_demo import demo

essentia.log.infoActive = False
essentia.log.warningActive = False


def _streaming_frames(signal: np.ndarray, size: int, hop: int, from_zero: bool) -> np.ndarray:
    source = ess.VectorInput(signal)
    cutter = ess.FrameCutter(frameSize=size, hopSize=hop, startFromZero=from_zero,
                             silentFrames="keep")
    pool = essentia.Pool()
    source.data >> cutter.signal
    cutter.frame >> (pool, "frames")
    essentia.run(source)
    return np.asarray(pool["frames"]) if "frames" in pool.descriptorNames() else np.zeros((0, size))


@pytest.mark.parametrize("from_zero", [True, False])
@pytest.mark.parametrize("length", [1, 5, 511, 512, 513, 1023, 1024, 1025, 2047, 2048, 2049,
                                    3072, 3073, 44117])
def test_frame_starts_are_the_streaming_framecutters(length, from_zero):
    """Frame k of a ramp holds its own sample numbers: where each frame starts, and how many
    there are, for lengths around the frame and hop sizes."""
    ramp = np.arange(1, length + 1, dtype=np.float32)
    for size, hop in ((2048, 1024), (1024, 512)):
        frames = _streaming_frames(ramp, size, hop, from_zero)
        starts = frame_starts(length, size, hop, from_zero)
        assert len(starts) == len(frames), (size, hop)
        for start, frame in zip(starts, frames, strict=True):
            index = np.arange(start, start + size)
            expected = np.where((index >= 0) & (index < length), index + 1, 0)
            assert np.array_equal(frame, expected.astype(np.float32))


def _essentia_functions(signal: np.ndarray, size: int, hop: int, from_zero: bool) -> dict:
    """Essentia's chain, frame by frame, on the streaming FrameCutter's frames."""
    window, fft, polar = es.Windowing(type="hann"), es.FFT(size=size), es.CartesianToPolar()
    detectors = {m: es.OnsetDetection(method=m, sampleRate=SR) for m in ("complex", "hfc")}
    values: dict[str, list] = {"complex": [], "hfc": []}
    for frame in _streaming_frames(signal, size, hop, from_zero):
        magnitude, phase = polar(fft(window(frame.astype(np.float32))))
        for method, detector in detectors.items():
            values[method].append(detector(magnitude, phase))
    return {m: np.asarray(v, dtype=np.float32) for m, v in values.items()}


def _with_silence(seconds: float) -> np.ndarray:
    """Digital silence, music, silence again, music: frames of zeros in the middle."""
    music = demo(seconds).astype(np.float32)
    half = len(music) // 2
    return np.concatenate([np.zeros(SR // 3, np.float32), music[:half],
                           np.zeros(SR // 2, np.float32), music[half:]])


SIGNALS = {
    "demo": lambda: demo(12.0).astype(np.float32),
    "clicks 93 BPM": lambda: click_track(10.0, bpm=93.0),
    "clicks 140 BPM": lambda: click_track(10.0, bpm=140.0, seed=3),
    "noise": lambda: (np.random.default_rng(5).standard_normal(SR * 6) * 0.1).astype(np.float32),
    "silences": lambda: _with_silence(10.0),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_onset_functions_are_essentias_within_float_rounding(name):
    signal = SIGNALS[name]()
    for size, hop, from_zero in ((2048, 1024, True), (1024, 512, False)):
        theirs = _essentia_functions(signal, size, hop, from_zero)
        ours = onset_functions(signal, size, hop, from_zero)
        for method in ("complex", "hfc"):
            assert ours[method].dtype == np.float32
            assert ours[method].shape == theirs[method].shape
            scale = max(float(np.abs(theirs[method]).max()), 1e-30)
            error = np.abs(ours[method] - theirs[method]).max() / scale
            assert error < 1e-5, (method, size, error)  # float32 rounding: about 1e-6
        assert np.abs(theirs["complex"]).max() > 0


def _streaming_onset_rate(signal: np.ndarray) -> tuple[np.ndarray, float]:
    source, rate, pool = ess.VectorInput(signal), ess.OnsetRate(), essentia.Pool()
    source.data >> rate.signal
    rate.onsetTimes >> (pool, "times")
    rate.onsetRate >> (pool, "rate")
    essentia.run(source)
    times = np.asarray(pool["times"]) if "times" in pool.descriptorNames() else np.zeros(0)
    return times.reshape(-1).astype(np.float32), float(pool["rate"])


@pytest.mark.parametrize("name", sorted(SIGNALS) + ["silence", "5 samples", "a tenth of a second"])
def test_beats_tempo_and_onsets_are_essentias_to_the_bit(name):
    """RhythmExtractor2013 (degara) and the streaming OnsetRate (the profile's algorithms)
    against the derive functions that replace them: every output equal."""
    signal = {"silence": lambda: np.zeros(SR * 3, np.float32),
              "5 samples": lambda: np.full(5, 0.3, np.float32),
              "a tenth of a second": lambda: click_track(0.1)}.get(name, SIGNALS.get(name))()
    bpm, ticks, confidence, estimates, intervals = es.RhythmExtractor2013(method="degara")(signal)
    ours = bo.rhythm_extractor_2013(signal, method="degara", minTempo=40, maxTempo=208, sampleRate=44100.0)
    assert np.array_equal(ours["ticks"], ticks)
    assert ours["bpm"] == pytest.approx(float(bpm), rel=0, abs=0)
    assert ours["confidence"] == confidence
    assert np.array_equal(ours["estimates"], estimates)
    assert np.array_equal(ours["bpmIntervals"], intervals)
    times, rate = _streaming_onset_rate(signal)
    onsets = bo.onset_rate(signal, sampleRate=44100.0)
    assert np.array_equal(onsets["onsetTimes"], times)
    assert onsets["onsetRate"] == rate
    if name in ("demo", "clicks 93 BPM", "clicks 140 BPM"):  # signals with a beat
        assert len(ticks) > 8 and len(times) > 8 and bpm > 0


def test_the_tempo_range_reaches_the_tracker():
    """minTempo and maxTempo are TempoTapDegara's, as in RhythmExtractor2013: a click track at
    150 BPM read with maxTempo 100."""
    signal = click_track(10.0, bpm=150.0)
    theirs = es.RhythmExtractor2013(method="degara", maxTempo=100)(signal)
    ours = bo.rhythm_extractor_2013(signal, method="degara", minTempo=40, maxTempo=100, sampleRate=44100.0)
    assert np.array_equal(ours["ticks"], theirs[1]) and ours["bpm"] == float(theirs[0])
    assert ours["bpm"] < 110


def test_multifeature_is_essentias_algorithm():
    signal = click_track(6.0, bpm=120.0)
    theirs = es.RhythmExtractor2013(method="multifeature")(signal)
    ours = bo.rhythm_extractor_2013(signal, method="multifeature", minTempo=40, maxTempo=208, sampleRate=44100.0)
    assert ours["bpm"] == float(theirs[0]) and np.array_equal(ours["ticks"], theirs[1])
    assert ours["confidence"] == float(theirs[2])


@pytest.mark.parametrize("ticks, bpm", [([], 0.0), ([1.0], 0.0), ([1.0, 1.5], 120.0),
                                        ([0.0, 0.5, 1.0, 1.6, 2.1], None)])
def test_tempo_from_ticks(ticks, bpm):
    """Fewer than two beats: 0; otherwise the mean tempo of the intervals near the most frequent
    (here 120, 120, 100 and 120 BPM: 100 is more than 5 BPM off and left out)."""
    found, estimates, intervals = bo.tempo_from_ticks(np.asarray(ticks, dtype=np.float32))
    assert len(intervals) == max(0, len(ticks) - 1)
    if bpm is not None:
        assert found == pytest.approx(bpm, abs=1e-3)
    else:
        assert found == pytest.approx(120.0, abs=1e-3) and len(estimates) == 3


def _clicks_at(rate: int, bpm: float, seconds: float) -> np.ndarray:
    """Short noise bursts every beat, made at ``rate`` (the first on sample 0)."""
    rng = np.random.default_rng(11)
    signal = np.zeros(int(seconds * rate), np.float32)
    burst = (rng.standard_normal(rate // 100) * np.exp(-np.arange(rate // 100) / (rate / 1000)))
    for beat in np.arange(0.0, seconds - 0.1, 60.0 / bpm):
        start = int(round(beat * rate))
        signal[start:start + burst.size] += 0.5 * burst.astype(np.float32)
    return signal


@pytest.mark.parametrize("method", ["degara", "multifeature"])
def test_the_analysis_rate_is_honoured(method):
    """At 48 kHz, Essentia's algorithms read a 120 BPM click track as 110 BPM (they assume
    44100 Hz); the derive functions read 120 BPM, beats on the clicks, onsets on the clicks,
    as Essentia does on the same clicks made at 44.1 kHz."""
    signal = _clicks_at(48000, 120.0, 12.0)
    assert float(es.RhythmExtractor2013(method=method)(signal)[0]) == pytest.approx(110.25, abs=1)
    ours = bo.rhythm_extractor_2013(signal, method=method, minTempo=40, maxTempo=208,
                                    sampleRate=48000.0)
    assert ours["bpm"] == pytest.approx(120.0, abs=0.6)
    offsets = (ours["ticks"] + 0.25) % 0.5 - 0.25  # distance to the nearest click
    # (multifeature's beats lag clicks by 20-35 ms, at 44.1 kHz too)
    assert len(ours["ticks"]) >= 18 and np.abs(offsets).max() < 0.04
    onsets = bo.onset_rate(signal, sampleRate=48000.0)
    offsets = (onsets["onsetTimes"] + 0.25) % 0.5 - 0.25
    assert len(onsets["onsetTimes"]) >= 20 and np.abs(offsets).max() < 0.03
    assert onsets["onsetRate"] == pytest.approx(2.0, abs=0.15)
    native = es.RhythmExtractor2013(method=method)(_clicks_at(44100, 120.0, 12.0))
    assert float(native[0]) == pytest.approx(ours["bpm"], abs=0.6)
