"""Warmth of the timbral models (timbral_models 0.4, Timbral_Warmth.py): per onset segment, the
spectral centroid, the energy share from the fundamental up to 260 Hz and how well a straight
line (log level over log frequency) fits the spectrum above the "warmth region" (3.5 times the
fundamental); with the specific loudness of 1-4 Bark and above 8 Bark, through the package's
regression.

The onsets of several parts of a long signal (excerpts) are pooled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runner.conditioning.timbral_onsets import calculate_onsets
from runner.conditioning.timbral_peaks import detect_peaks

MAX_FRAME = 8192  # the package's max_FFT_frame_size
MAX_REGION = 12000.0  # Hz, the warmth region's upper limit
COEFFICIENTS = np.array([-4.464258317026696, -0.08819320850778556, 0.29156539973575546,
                         17.274733561081554, 8.403340066029507, 45.21212125085579])


@dataclass
class WarmthOnsets:
    """Per-onset values of timbral_warmth, pooled over parts."""

    rms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # energy share, fundamental to 260 Hz
    centroids: list[float] = field(default_factory=list)  # Hz
    fits: list[float] = field(default_factory=list)  # R² of the high-frequency decay


def _tukey(size: int, alpha: float = 0.25) -> np.ndarray:
    """scipy.signal.get_window(('tukey', alpha), size): the periodic Tukey window."""
    m = size + 1
    n = np.arange(m, dtype=np.float64)
    width = int(np.floor(alpha * (m - 1) / 2.0))
    w1 = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * n[:width + 1] / alpha / (m - 1))))
    w3 = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * n[m - width - 1:] / alpha / (m - 1))))
    return np.concatenate([w1, np.ones(m - 2 * width - 2), w3])[:size]


def segment_spectrum(segment: np.ndarray) -> np.ndarray:
    """scipy.signal.spectrogram(segment, fs, nperseg=min(len, 8192), nfft=8192) with its
    defaults (Tukey 0.25 window, 1/8 overlap, mean removed, one-sided density), summed over
    frames, over its maximum (the package's normalisation)."""
    size = min(len(segment), MAX_FRAME)
    step = size - size // 8
    count = (len(segment) - size) // step + 1
    frames = np.stack([segment[i * step:i * step + size] for i in range(count)])
    frames = (frames - frames.mean(axis=1, keepdims=True)) * _tukey(size)
    power = np.abs(np.fft.rfft(frames, MAX_FRAME, axis=1)) ** 2
    power[:, 1:-1] *= 2.0  # one-sided: all but 0 Hz and Nyquist
    spectrum = power.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant segment: NaN, no peak
        return spectrum / np.max(np.abs(spectrum))


def _line_fit(x: np.ndarray, y: np.ndarray) -> float:
    """R² of the least-squares line through (x, y), as scikit-learn's LinearRegression.score."""
    design = np.stack([x, np.ones_like(x)], axis=1)
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    residual = float(np.sum((y - design @ coefficients) ** 2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


def _segment_values(segment: np.ndarray, fs: float) -> tuple[float, float, float] | None:
    """Energy share (fundamental to 260 Hz), centroid and decay fit of one onset segment; None
    when its spectrum has no peak or a zero (the package fails there)."""
    spectrum = segment_spectrum(segment)
    freq = np.fft.rfftfreq(MAX_FRAME, 1.0 / fs)
    index, _, positions = detect_peaks(spectrum, freq, 0.2)
    if positions.size == 0 or not np.all(spectrum > 0):
        return None
    fundamental, fundamental_index = float(positions.min()), int(index.min())
    region = fundamental * 3.5
    region = MAX_REGION if region > MAX_REGION else region
    region_index = int(np.flatnonzero(freq > region)[0])
    ratio = 0.0
    if fundamental < 260:
        top = int(np.flatnonzero(freq > 260)[0])
        ratio = float(np.sum(spectrum[fundamental_index:top]) / float(np.sum(spectrum)))
    centroid = float(np.sum(freq * spectrum) / float(np.sum(spectrum)))
    fit = _line_fit(np.log10(freq[region_index:]), np.log10(spectrum[region_index:]))
    return ratio, centroid, fit


def warmth_onsets(audio: np.ndarray, envelope: np.ndarray, fs: float,
                  pooled: WarmthOnsets) -> bool:
    """Add one signal's (or part's) onset segments to ``pooled`` (``envelope``: its
    sample-and-hold envelope, decay 0.1 s); False when a segment cannot be measured."""
    audio = np.asarray(audio, dtype=np.float64)
    onsets = calculate_onsets(audio, envelope, fs, nperseg=4096)
    if len(onsets) == 1:
        onsets = [0]
    for i, onset in enumerate(onsets):
        segment = audio[onset:] if i == len(onsets) - 1 else audio[onset:onsets[i + 1]]
        values = _segment_values(segment, fs)
        if values is None:
            return False
        pooled.rms.append(float(np.sqrt(np.mean(segment * segment))))
        pooled.ratios.append(values[0])
        pooled.centroids.append(values[1])
        pooled.fits.append(values[2])
    return True


def warmth(pooled: WarmthOnsets, low_region: float, high_level: float) -> float:
    """The package's regression on the pooled onsets, the mean specific loudness of bands
    10-40 (0.1 Bark) and the RMS-weighted one of bands 80-240."""
    if not pooled.rms or not sum(pooled.rms) > 0:
        return float("nan")
    metrics = np.array([np.log10(np.mean(pooled.centroids)), high_level, low_region,
                        np.mean(pooled.fits), np.average(pooled.ratios, weights=pooled.rms), 1.0])
    value = float(np.sum(metrics * COEFFICIENTS))
    return value if np.isfinite(value) else float("nan")
