"""Signal tools of the Audio Commons timbral models (timbral_models 0.4's timbral_util), in
numpy and Essentia instead of scipy, librosa and pyloudnorm (docs/conditioning.md, Timbre).

Filters are designed in double precision exactly as scipy.signal.butter / cheby1 design them
(analogue prototype, bilinear transform) and run by Essentia's IIR in single precision: the
filtered energies differ from scipy's double-precision lfilter by less than 0.01 dB.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.registry import quiet_essentia

# pyloudnorm's meter: 400 ms blocks, 75 % overlap, absolute gate -70 LUFS, relative -10 LU.
LOUDNESS_BLOCK_S = 0.4
TARGET_LUFS = -24.0
FILTER_CHUNK = 1 << 16  # samples filtered at a time (whole-track filters: integrated loudness)


def iir_filter(b: np.ndarray, a: np.ndarray) -> Any:
    """Essentia's IIR (float32) with these coefficients, from a zero state; it keeps its
    state from one call to the next, so a signal may be filtered a chunk at a time."""
    return quiet_essentia().standard.IIR(numerator=np.asarray(b, dtype=np.float32),
                                         denominator=np.asarray(a, dtype=np.float32))


def iir(b: np.ndarray, a: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """scipy.signal.lfilter(b, a, signal) from a zero state, in Essentia's IIR (float32)."""
    return iir_filter(b, a)(np.ascontiguousarray(signal, dtype=np.float32))


def _bilinear(zeros: np.ndarray, poles: np.ndarray, gain: float,
              fs: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Analogue zeros/poles/gain to digital (b, a), as scipy's bilinear_zpk + zpk2tf."""
    fs2 = 2.0 * fs
    zd = (fs2 + zeros) / (fs2 - zeros)
    pd = (fs2 + poles) / (fs2 - poles)
    zd = np.append(zd, -np.ones(len(poles) - len(zeros)))
    kd = gain * np.real(np.prod(fs2 - zeros) / np.prod(fs2 - poles))
    return np.real(kd * np.poly(zd)), np.real(np.poly(pd))


def _transform(poles: np.ndarray, gain: float, wn: float | tuple[float, float],
               btype: str) -> tuple[np.ndarray, np.ndarray]:
    """Prewarp and map a low-pass prototype (no zeros) to low, high or band pass."""
    warped = 4.0 * np.tan(np.pi * np.atleast_1d(wn) / 2.0)
    degree = len(poles)
    if btype == "low":
        return _bilinear(np.array([]), poles * warped[0], gain * warped[0] ** degree)
    if btype == "high":
        return _bilinear(np.zeros(degree), warped[0] / poles, gain * np.real(1.0 / np.prod(-poles)))
    bw, w0 = warped[1] - warped[0], np.sqrt(warped[0] * warped[1])
    scaled = poles * bw / 2.0
    band = np.concatenate([scaled + np.sqrt(scaled ** 2 - w0 ** 2 + 0j),
                           scaled - np.sqrt(scaled ** 2 - w0 ** 2 + 0j)])
    return _bilinear(np.zeros(degree), band, gain * bw ** degree)


Coefficients = tuple[np.ndarray, np.ndarray]


def butter(order: int, wn: float | tuple[float, float], btype: str) -> Coefficients:
    """scipy.signal.butter(order, wn, btype) with wn relative to Nyquist."""
    poles = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    return _transform(poles, 1.0, wn, btype)


def cheby1(order: int, ripple_db: float, wn: float) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.cheby1(order, ripple_db, wn) low pass, wn relative to Nyquist."""
    eps = np.sqrt(10 ** (0.1 * ripple_db) - 1.0)
    mu = np.arcsinh(1.0 / eps) / order
    theta = np.pi * np.arange(-order + 1, order, 2) / (2 * order)
    poles = -np.sinh(mu + 1j * theta)
    gain = np.real(np.prod(-poles))
    if order % 2 == 0:
        gain /= np.sqrt(1 + eps * eps)
    return _transform(poles, gain, wn, "low")


def highpass(signal: np.ndarray, crossover: float, fs: float, passes: int = 1) -> np.ndarray:
    """timbral_util.filter_audio_highpass (2nd-order Butterworth), applied ``passes`` times."""
    b, a = butter(2, crossover / (0.5 * fs), "high")
    for _ in range(passes):
        signal = iir(b, a, signal)
    return signal


def lowpass(signal: np.ndarray, crossover: float, fs: float, passes: int = 1) -> np.ndarray:
    """timbral_util.filter_audio_lowpass (2nd-order Butterworth), applied ``passes`` times."""
    b, a = butter(2, crossover / (0.5 * fs), "low")
    for _ in range(passes):
        signal = iir(b, a, signal)
    return signal


def _rbj(kind: str, gain_db: float, q: float, fc: float, fs: float) -> Coefficients:
    """pyloudnorm's RBJ-cookbook biquads for the K-weighting (high shelf, high pass)."""
    amp = 10 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * fc / fs
    alpha = np.sin(w0) / (2.0 * q)
    cos, root = np.cos(w0), 2 * np.sqrt(amp) * alpha
    if kind == "high_shelf":
        b = amp * np.array([(amp + 1) + (amp - 1) * cos + root, -2 * ((amp - 1) + (amp + 1) * cos),
                            (amp + 1) + (amp - 1) * cos - root])
        a = np.array([(amp + 1) - (amp - 1) * cos + root, 2 * ((amp - 1) - (amp + 1) * cos),
                      (amp + 1) - (amp - 1) * cos - root])
    else:
        b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
        a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    return b / a[0], a / a[0]


def _k_weighted_squares(signal: np.ndarray, fs: float) -> np.ndarray:
    """The squares of pyloudnorm's K-weighted signal, and a zero after them (a block's end may
    be the signal's): filtered a chunk at a time, so no whole-track copy but this one."""
    shelf = iir_filter(*_rbj("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0, fs))
    high_pass = iir_filter(*_rbj("high_pass", 0.0, 0.5, 38.0, fs))
    squares = np.empty(len(signal) + 1, dtype=np.float32)
    for start in range(0, len(signal), FILTER_CHUNK):
        part = high_pass(shelf(np.ascontiguousarray(signal[start:start + FILTER_CHUNK],
                                                    dtype=np.float32)))
        np.multiply(part, part, out=squares[start:start + len(part)])
    squares[-1] = 0.0
    return squares


def integrated_loudness(signal: np.ndarray, fs: float) -> float:
    """pyloudnorm.Meter(fs).integrated_loudness(signal) of a mono signal (BS.1770-4 gating)."""
    squares = _k_weighted_squares(signal, fs)
    block = LOUDNESS_BLOCK_S
    count = int(np.round((len(signal) / fs - block) / (block * 0.25))) + 1
    index = np.arange(count)
    lower = (block * (index * 0.25) * fs).astype(int)  # pyloudnorm's own rounding
    upper = np.minimum((block * (index * 0.25 + 1) * fs).astype(int), len(signal))
    bounds = np.stack([lower, upper], axis=1).reshape(-1)
    energy = np.add.reduceat(squares, bounds, dtype=np.float64)[::2] / (block * fs)
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10.0 * np.log10(energy)
        gated = energy[levels >= -70.0]
        relative = -0.691 + 10.0 * np.log10(np.mean(gated)) - 10.0 if gated.size else -np.inf
        kept = energy[(levels > relative) & (levels > -70.0)]
        return float(-0.691 + 10.0 * np.log10(np.mean(kept) if kept.size else 0.0))


def loudness_gain(signal: np.ndarray, fs: float) -> float:
    """The gain of timbral_util.loud_norm: to -24 LUFS, less if the peak would then pass 1
    (inf or NaN when nothing is above the -70 LUFS gate)."""
    padded = signal
    if len(signal) < fs * LOUDNESS_BLOCK_S:
        padded = np.pad(signal, (0, int(fs * LOUDNESS_BLOCK_S) - len(signal)))
    gain = 10.0 ** ((TARGET_LUFS - integrated_loudness(padded, fs)) / 20.0)
    peak = max(float(np.max(signal)), -float(np.min(signal))) * gain  # no |signal| copy
    return gain / max(peak, 1.0)


def loudness_normalise(signal: np.ndarray, fs: float) -> np.ndarray:
    """timbral_util.loud_norm: scale to -24 LUFS, then down to a peak of 1 if it clips
    (single precision, like the decoded audio it scales)."""
    return np.asarray(signal, dtype=np.float32) * np.float32(loudness_gain(signal, fs))


def window_audio(signal: np.ndarray, length: int = 4096) -> np.ndarray:
    """timbral_util.window_audio: consecutive windows, the last zero-padded (a whole extra
    window of zeros when the length is a multiple, as the original pads)."""
    remainder = len(signal) % length
    padded = np.pad(signal, (0, length - remainder))
    return padded.reshape(-1, length)
