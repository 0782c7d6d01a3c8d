"""Depth of the timbral models (timbral_models 0.4, Timbral_Depth.py): after a 20 Hz high-pass,
the power-weighted spectral centroid below 2 kHz and energy share below 500 Hz of 4096-point
frames, the mean decay time of the onsets (RMS envelope falling 40 dB, or the next onset), and
the lowest peak of the long-term spectrum, through the package's regression.

Frames, onsets and spectra of several parts of a long signal (excerpts) are pooled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from runner.conditioning.timbral_attack import rms_envelope
from runner.conditioning.timbral_dsp import butter
from runner.conditioning.timbral_onsets import calculate_onsets, hold_envelope
from runner.conditioning.timbral_peaks import detect_peaks, power_spectrogram

NFFT, HOP = 4096, 1024  # the package's nfft, and its "hop" (passed as the overlap: 3072)
RMS_STEP = 256
POWER_FLOOR = 10 ** (-60 / 20.0)  # frames below: no centroid or ratio (counted as 0)
DECAY_FLOOR = 10 ** (-40 / 20.0)
COEFFICIENTS = np.array([-0.0043703565847874465, 32.83743202462131, 4.750862716905235,
                         -14.217438690256062, 3.8782339862813924, -0.8544826091735516,
                         66.69534393444391])


@dataclass
class DepthParts:
    """Per-frame and per-onset values of timbral_depth, pooled over parts."""

    centroids: list[np.ndarray] = field(default_factory=list)  # Hz below 2 kHz, per frame
    ratios: list[np.ndarray] = field(default_factory=list)  # energy share below 500 Hz
    powers: list[np.ndarray] = field(default_factory=list)  # the frames' weights
    durations: list[float] = field(default_factory=list)  # s, per onset
    spectrum: np.ndarray | None = None  # summed over all frames


BLOCK = 256  # samples per block of the blocked recursion


@lru_cache(maxsize=16)
def _block_operators(a1: float, a2: float) -> tuple[np.ndarray, np.ndarray]:
    """For 1 / (1 + a1 z^-1 + a2 z^-2) over ``BLOCK`` samples: the zero-state response matrix
    (lower-triangular Toeplitz of the impulse response) and the responses to the two previous
    outputs (rows: y[-1], y[-2])."""
    g = [0.0] * BLOCK
    y1 = y2 = 0.0
    for n in range(BLOCK):
        y1, y2 = (1.0 if n == 0 else 0.0) - a1 * y1 - a2 * y2, y1
        g[n] = y1
    response = np.array(g)
    index = np.arange(BLOCK)[:, None] - np.arange(BLOCK)[None, :]
    toeplitz = np.where(index >= 0, response[np.maximum(index, 0)], 0.0)
    earlier = np.concatenate([[0.0], response[:-1]])
    return toeplitz, np.stack([-a1 * response - a2 * earlier, -a2 * response])


def biquad(b: np.ndarray, a: np.ndarray, x: np.ndarray, passes: int = 1) -> np.ndarray:
    """scipy.signal.lfilter(b, a, x) of a second-order filter from a zero state, ``passes``
    times, in double precision: the zeros directly; the poles block by block (every block's
    zero-state response at once, then the two outputs carried from block to block)."""
    b, a = np.asarray(b, dtype=np.float64) / a[0], np.asarray(a, dtype=np.float64) / a[0]
    toeplitz, carried = _block_operators(float(a[1]), float(a[2]))
    y = np.asarray(x, dtype=np.float64)
    length = len(y)
    for _ in range(passes):
        v = b[0] * y
        v[1:] += b[1] * y[:-1]
        v[2:] += b[2] * y[:-2]
        blocks = np.pad(v, (0, -length % BLOCK)).reshape(-1, BLOCK) @ toeplitz.T
        states = np.zeros((len(blocks), 2))
        tail = carried[:, -2:].tolist()
        last = blocks[:, -2:].tolist()
        p = q = 0.0
        for k, (z2, z1) in enumerate(last):
            states[k] = p, q
            p, q = (z1 + p * tail[0][1] + q * tail[1][1], z2 + p * tail[0][0] + q * tail[1][0])
        y = (blocks + states @ carried).reshape(-1)[:length]
    return y


def _spectra(signal: np.ndarray) -> np.ndarray:
    """The package's Hamming power spectrogram (frames x bins), or one zero-padded frame of a
    signal no longer than 4096 samples."""
    return power_spectrogram(signal, NFFT, HOP if len(signal) > NFFT else NFFT)[0]


def _decay_times(filtered: np.ndarray, fs: float) -> list[float]:
    """Per onset: the time from the RMS envelope's peak until it falls 40 dB below the largest
    RMS (or until the next onset)."""
    onsets = calculate_onsets(filtered, hold_envelope(filtered, fs), fs)
    rms = rms_envelope(filtered, RMS_STEP, RMS_STEP, normalise=True)
    frames = (np.array(onsets) / float(RMS_STEP)).astype(int)
    rate = fs / float(RMS_STEP)
    durations = []
    for i, frame in enumerate(frames):
        segment = rms[frame:] if frame == frames[-1] else rms[frame:frames[i + 1]]
        if segment.size == 0:
            continue
        after = segment[int(np.argmax(segment)):]
        below = np.flatnonzero(after < DECAY_FLOOR)
        durations.append((len(after) if below.size == 0 else int(below[0])) / rate)
    return durations


def depth_part(audio: np.ndarray, fs: float, pooled: DepthParts) -> None:
    """Add one signal's (or part's) frames, onsets and spectrum to ``pooled``."""
    filtered = biquad(*butter(2, 20.0 / (0.5 * fs), "high"), audio, passes=3)
    centroid_band = biquad(*butter(2, 2000.0 / (0.5 * fs), "low"), filtered, passes=3)
    ratio_band = biquad(*butter(2, 500.0 / (0.5 * fs), "low"), filtered, passes=3)
    scale = 1.0 / np.max(np.abs(filtered))
    spec = _spectra(filtered * scale)
    centroid_spec, ratio_spec = _spectra(centroid_band * scale), _spectra(ratio_band * scale)
    freq = np.fft.rfftfreq(NFFT, 1.0 / fs)
    power = spec.sum(axis=1)
    loud = power > POWER_FLOOR
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = (centroid_spec @ freq) / centroid_spec.sum(axis=1)
        pooled.centroids.append(np.where(loud, centroid, 0.0))
        pooled.ratios.append(np.where(loud, ratio_spec.sum(axis=1) / power, 0.0))
    pooled.powers.append(power)
    pooled.durations.extend(_decay_times(filtered * scale, fs))
    total = spec.sum(axis=0)
    pooled.spectrum = total if pooled.spectrum is None else pooled.spectrum + total


def _lowest_peak(spectrum: np.ndarray, fs: float) -> float:
    """log10 of the lowest peak frequency of the normalised long-term spectrum (0 when the
    strongest peak is at 0 Hz)."""
    freq = np.fft.rfftfreq(NFFT, 1.0 / fs)
    normalised = (spectrum - spectrum.min()) / (spectrum.max() - spectrum.min())
    _, _, positions = detect_peaks(normalised, freq, 0.01, normalised)
    if positions.size == 0:
        return float("nan")
    return float(np.log10(positions.min())) if positions[0] > 0 else 0.0


def depth(pooled: DepthParts, fs: float) -> float:
    """The package's regression on the pooled values (NaN when they cannot be formed)."""
    powers = np.concatenate(pooled.powers)
    if not powers.sum() > 0 or not pooled.durations or pooled.spectrum is None:
        return float("nan")
    centroid = min(float(np.average(np.concatenate(pooled.centroids), weights=powers)), 2000.0)
    ratio = float(np.average(np.concatenate(pooled.ratios), weights=powers))
    with np.errstate(divide="ignore"):
        duration = float(np.log10(np.mean(pooled.durations)))
    sigmoid = ratio ** 10 / (ratio ** 10 + 0.2)
    metrics = np.array([centroid, ratio, duration, _lowest_peak(pooled.spectrum, fs),
                        ratio * duration, sigmoid * duration, 1.0])
    value = float(np.sum(metrics * COEFFICIENTS))
    return value if np.isfinite(value) else float("nan")
