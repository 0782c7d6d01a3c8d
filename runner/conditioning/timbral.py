"""The Audio Commons timbral attributes (timbral_models 0.4, Andy Pearce, University of Surrey,
Apache-2.0): brightness, roughness, depth, hardness, warmth, sharpness, booming and
reverberation, re-implemented on numpy and Essentia (docs/conditioning.md, "Timbre").

The package itself cannot run unpatched here (librosa 0.10+ made its onset calls keyword-only;
it declares the retired ``sklearn`` PyPI name), so its published algorithms are followed step
by step and tested against the patched package on the same audio
(tests/test_timbral.py, tests/data/timbral_reference.json).

Speed: audio up to ``WHOLE_SECONDS`` long is analysed whole, exactly as the package does. Longer
audio is analysed on a bounded, evenly spaced set of windows or excerpts (each attribute is an
average over windows): the cost stops growing with the track's length. Hardness, depth and
warmth, built on onsets, have their own bounds (runner/conditioning/timbral_onset_based.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.conditioning.timbral_dsp import highpass, loudness_gain
from runner.conditioning.timbral_loudness import window_patterns
from runner.conditioning.timbral_onset_based import onset_attributes
from runner.conditioning.timbral_peaks import detect_peaks, power_spectrogram
from runner.conditioning.timbral_reverb import estimate_rt60, reverberation
from runner.derive import function

WHOLE_SECONDS = 30.0
EXCERPTS = 10  # excerpts of EXCERPT_SECONDS each beyond WHOLE_SECONDS
EXCERPT_SECONDS = 3.0
PREROLL_SECONDS = 0.5  # filters settle before an excerpt's first frame
MAX_LOUDNESS_WINDOWS = 96
MAX_ROUGHNESS_FRAMES = 160

NAN = float("nan")
SHORTEST = 4096  # one of the package's loudness windows: less is mostly zero padding
SHORT_WARNING = ("too short for the timbral attributes: {:.3f} s of audio (under 4096 samples); "
                 "conditioning.brightness ... warmth are null")
QUIET_WARNING = ("too quiet for the timbral attributes: nothing above -70 LUFS; "
                 "conditioning.brightness ... warmth are null")


def excerpts(signal: np.ndarray, fs: float, hop: int) -> list[tuple[np.ndarray, int]]:
    """The whole signal, or evenly spaced excerpts (starting on the ``hop`` grid), each with the
    number of leading samples that only let the filters settle."""
    if len(signal) <= WHOLE_SECONDS * fs:
        return [(signal, 0)]
    length, preroll = int(EXCERPT_SECONDS * fs), int(PREROLL_SECONDS * fs)
    starts = np.linspace(preroll + hop, len(signal) - length, EXCERPTS).astype(int) // hop * hop
    return [(signal[s - preroll:s + length], preroll) for s in starts]


def evenly(count: int, limit: int) -> np.ndarray:
    """At most ``limit`` indexes spread evenly over ``count`` items (all when they fit)."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).astype(int))


def brightness(audio: np.ndarray, fs: float) -> float:
    """Energy ratio above 2 kHz and spectral centroid above 100 Hz, power-weighted over
    2048-point frames (hop 512), after a 20 Hz high-pass; linear model of their logs."""
    ratios, ratio_weights, centroids, centroid_weights = [], [], [], []
    for part, preroll in excerpts(audio, fs, 512):
        part = highpass(part, 20.0, fs, passes=3)
        above = highpass(part, 2000.0, fs, passes=3)[preroll:]
        centroid_part = highpass(part, 100.0, fs, passes=3)[preroll:]
        every, _ = power_spectrogram(part[preroll:], 2048, 512)
        high, _ = power_spectrogram(above, 2048, 512)
        centroid_spec, _ = power_spectrogram(centroid_part, 2048, 512)
        total, high_total = every.sum(axis=1), high.sum(axis=1)
        ratios.append(high_total[total > 0] / total[total > 0])
        ratio_weights.append(total[total > 0])
        freq = np.arange(centroid_spec.shape[1]) * fs / 2048
        power = centroid_spec.sum(axis=1)
        centroids.append((centroid_spec @ freq)[power > 0] / power[power > 0])
        centroid_weights.append(power[power > 0])
    ratio_weight, centroid_weight = np.concatenate(ratio_weights), np.concatenate(centroid_weights)
    if not ratio_weight.sum() > 0 or not centroid_weight.sum() > 0:
        return NAN  # no energy above 20 Hz (a constant signal): no brightness to rate
    ratio = np.average(np.concatenate(ratios), weights=ratio_weight)
    centroid = np.average(np.concatenate(centroids), weights=centroid_weight)
    return float(4.613128018020465 * np.log10(ratio) + 17.378889309312974 * np.log10(centroid)
                 + 17.434733750553022)


def loudness_windows(audio: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """Specific loudness patterns and RMS of the 4096-sample windows (a bounded, evenly spaced
    subset of them on long audio), shared by sharpness, booming, warmth and hardness."""
    count = len(audio) // 4096 + 1  # window_audio's windows, the last zero-padded
    starts = evenly(count, MAX_LOUDNESS_WINDOWS) * 4096
    padded = np.pad(audio[starts[-1]:], (0, 4096))  # only the last can run past the end
    windows = np.array([audio[s:s + 4096] if s + 4096 <= len(audio) else padded[:4096]
                        for s in starts], dtype=np.float64)
    total, patterns = window_patterns(windows, fs)
    rms = np.sqrt(np.mean(windows * windows, axis=1))
    return {"total": total, "patterns": patterns, "rms": rms}


def sharpness(loud: dict[str, np.ndarray]) -> float:
    """Fastl's sharpness (acum) of each window's specific loudness, RMS²-weighted, log."""
    patterns = loud["patterns"]
    z = np.arange(1, 241)
    weights = np.where(z <= 140, 1.0, 0.00012 * (z / 10.0) ** 4 - 0.0056 * (z / 10.0) ** 3
                       + 0.1 * (z / 10.0) ** 2 - 0.81 * (z / 10.0) + 3.5)
    bark = np.arange(0.1, 24.0 + 0.1, 0.1)[:240]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = 0.11 * (patterns * weights * bark * 0.1).sum(axis=1) / (patterns * 0.1).sum(axis=1)
    values = np.where(loud["total"] > 0, values, 0.0)
    mean = np.average(values, weights=loud["rms"] ** 2)
    return float(102.50508921364404 * np.log10(mean) + 34.432655185001735)


def bark_level(loud: dict[str, np.ndarray], low: int, high: int, weighted: bool) -> float:
    """timbral_util.weighted_bark_level: mean (or RMS-weighted mean) over windows of the
    specific loudness under a (numerically flat) window over 0.1-Bark bands ``low``..``high``."""
    centre = (low + high) / 2.0
    shape = np.exp(-((np.arange(low, high) - centre) ** 2) / 2.0 * 0.01 ** 2)
    shape = (shape - shape.min()) / (shape - shape.min()).max()
    weight = np.zeros(240)
    weight[low:high] = shape
    values = loud["patterns"] @ weight
    return float(np.average(values, weights=loud["rms"]) if weighted else np.mean(values))


def booming(loud: dict[str, np.ndarray]) -> float:
    """Hatano and Hashimoto's booming index of each window (low-frequency-weighted loudness times
    the share of loudness below 280 Hz), RMS²-weighted, with the level of bands 0-7 Bark."""
    z = np.arange(0.1, 24.05, 0.1)
    f = 600 * np.sinh(z / 6.0)
    centres = np.log10([25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800,
                        1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300, 8000, 10000, 12500])
    index = (np.log10(f) - centres[0]) / float(centres[1] - centres[0]) + 1
    weighting = 2.13 * np.exp(-0.151 * index)
    weighting[:4] = [0.8, 1.05, 1.10, 1.18]
    below = int(np.where(f >= 280)[0][0])
    patterns = loud["patterns"]
    with np.errstate(invalid="ignore", divide="ignore"):
        band_sum = 10 * np.log10(np.sum(10 ** (patterns * weighting / 10.0), axis=1))
        values = band_sum * patterns[:, :below].sum(axis=1) / patterns.sum(axis=1)
    values = np.where(loud["total"] > 0, values, 0.0)
    mean = np.average(values, weights=loud["rms"] ** 2)
    return float(43.67402696195865 * np.log10(mean) - 10.90054738389845
                 * np.log10(bark_level(loud, 0, 70, weighted=False)) + 26.836530575185435)


def _plomp_roughness(freqs: np.ndarray, levels: np.ndarray) -> float:
    """Vassilakis' roughness of every pair of spectral peaks (Plomp and Levelt's curve)."""
    f2, f1 = np.meshgrid(freqs, freqs)
    v2, v1 = np.meshgrid(levels, levels)
    s = np.tril(0.24 / (0.0207 * np.minimum(f1, f2) + 18.96))
    pd = np.exp(-3.51 * s * np.abs(f2 - f1)) - np.exp(-5.75 * s * np.abs(f2 - f1))
    return float(np.sum((v1 * v2) ** 0.1 * 0.5 * ((2 * v2) / (v1 + v2)) ** 3.11 * pd))


def roughness(audio: np.ndarray, fs: float) -> float:
    """Mean roughness of the spectral peaks of 50 ms Hamming frames (50 % overlap, 4096-point
    FFT, peaks above 1 % of the normalised spectrogram), log-linear model."""
    lead = 512  # the package pads 512 zeros in front; read through it, not copied
    length = len(audio) + lead
    step = int(fs * 0.05)
    count = int(length / (step - step / 2))
    filled = 0
    while int(filled * step / 2.0) + step <= length:
        filled += 1
    if length <= step:
        filled = 1
    chosen = evenly(filled, MAX_ROUGHNESS_FRAMES)
    window = np.hamming(step + 2)[1:-1]
    if length > step:
        index = (chosen * (step / 2.0)).astype(int)[:, None] + np.arange(step) - lead
        frames = np.where(index >= 0, audio[np.maximum(index, 0)], 0) * window
    else:
        frames = np.pad(audio, (lead, 0))[None, :]
    size = 2 ** int(np.log(step) / np.log(2) + 1)
    spec = np.abs(np.fft.fft(frames, size, axis=1))[:, :size // 2 + 1]
    freq = fs / 2 * np.linspace(0, 1, size // 2 + 1)
    low = 0.0 if filled < count else spec.min()  # the unfilled frames are zeros
    normalised = (spec - low) / (spec.max() - low)
    values = []
    for row, raw in zip(normalised, spec, strict=True):
        _, levels, freqs = detect_peaks(row, freq, 0.01, raw)
        values.append(_plomp_roughness(freqs, levels) if len(freqs) > 1 else 0.0)
    mean = float(np.mean(values)) * filled / max(count, 1)  # the unfilled frames count as 0
    return 0.0 if mean < 0.01 else float(np.log10(mean) * 13.98779569 + 48.97606571545886)


ATTRIBUTES = ("brightness", "roughness", "sharpness", "booming", "reverberation", "hardness",
              "depth", "warmth")


@function(inputs=("signal",), outputs=ATTRIBUTES, types=dict.fromkeys(ATTRIBUTES, "real"),
          input_types={"signal": "vector_real"}, ranges={"sampleRate": "(0,inf)"},
          sampleRate=44100.0)
def timbral_attributes(signal: Any, sampleRate: float) -> dict[str, float]:  # noqa: N803
    """The Audio Commons timbral attributes of the mono signal (nominally 0-100, not clipped):
    timbral_models 0.4's algorithms (docs/conditioning.md, Timbre)."""
    return timbre(signal, float(sampleRate))


def timbre(signal: Any, fs: float) -> dict[str, float]:
    """The attributes of a mono signal (0-100 nominally; the package's regressions can leave
    that range, and are not clipped, as the package does by default)."""
    raw = np.asarray(signal, dtype=np.float32).reshape(-1)
    if not np.any(raw):  # digital silence (or no samples): nothing to rate
        return dict.fromkeys(ATTRIBUTES, NAN)
    if len(raw) < SHORTEST:
        return {**dict.fromkeys(ATTRIBUTES, NAN), "warning": SHORT_WARNING.format(len(raw) / fs)}
    gain = loudness_gain(raw, fs)
    audio = raw * np.float32(gain)  # loudness_normalise(raw, fs), the gain kept for the below
    if not np.all(np.isfinite(audio)):  # below the -70 LUFS gate: no gain makes it -24 LUFS
        return {**dict.fromkeys(ATTRIBUTES, NAN), "warning": QUIET_WARNING}
    loud = loudness_windows(audio, fs)
    return {
        "brightness": brightness(audio, fs),
        "roughness": roughness(audio, fs),
        "sharpness": sharpness(loud),
        "booming": booming(loud),
        "reverberation": reverberation(estimate_rt60([p for p, _ in excerpts(raw, fs, 184)], fs)),
        **onset_attributes(signal, gain, fs,
                           lambda low, high, weighted: bark_level(loud, low, high, weighted)),
    }
