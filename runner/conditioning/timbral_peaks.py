"""Spectral helpers of the timbral models: scipy.signal.spectrogram's power spectra and the
MIRtoolbox-style peak picking of timbral_util.detect_peaks (roughness, depth, warmth)."""

from __future__ import annotations

import numpy as np


def power_spectrogram(signal: np.ndarray, size: int, hop: int) -> tuple[np.ndarray, int]:
    """scipy.signal.spectrogram(signal, fs, 'hamming', size, size - hop, size, 'constant', True,
    'spectrum') as frames x bins (one frame of the whole signal when it is shorter, zero-padded
    to ``size``, as the package asks for then), and the number of frames."""
    signal = np.asarray(signal, dtype=np.float64)
    length = len(signal)
    if length < size:
        frames = signal[None, :]
    else:
        count = (length - size) // hop + 1
        index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
        frames = signal[index]
    width = frames.shape[1]
    window = 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(width) / width)  # periodic Hamming
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window
    spectrum = np.abs(np.fft.rfft(frames, size)) ** 2 / np.sum(window) ** 2
    spectrum[:, 1:-1 if size % 2 == 0 else None] *= 2.0
    return spectrum, len(frames)


def _final_peaks(array: np.ndarray, maxima: np.ndarray, threshold: float) -> list[int]:
    """The scan of timbral_util.detect_peaks over the local maxima (indexes into the array
    padded with -2 at both ends): keep the peaks that rise ``threshold`` above their valleys."""
    final: list[int] = []
    j, current = 0, int(maxima[0])
    buf_min, buf_max = 2.0, array[current]
    old_min = min(array[:current - 1]) if current > 1 else array[0]
    for jj in range(1, len(maxima)):
        previous, peak = int(maxima[jj - 1]), int(maxima[jj])
        if previous + 1 == peak - 1:
            buf_min = min(buf_min, array[previous])
        else:
            buf_min = min(buf_min, np.min(array[previous:peak - 1]))
        if buf_max - buf_min < threshold:
            if array[peak] > buf_max:
                j, current, buf_max = jj, peak, array[peak]
                old_min, buf_min = min(old_min, buf_min), 2.0
            elif array[peak] - buf_max <= 0:
                buf_max, old_min = max(buf_max, array[peak]), min(old_min, buf_min)
        else:
            if buf_max - old_min < threshold:
                old_min = min(old_min, buf_min)
            else:
                final.append(current)
                old_min = buf_min
            j, current, buf_max, buf_min = jj, peak, array[peak], 2.0
    if buf_max - old_min >= threshold and buf_max - np.min(array[int(maxima[j]) + 1:]) >= threshold:
        final.append(int(maxima[j]))
    return final


Peaks = tuple[np.ndarray, np.ndarray, np.ndarray]


def detect_peaks(array: np.ndarray, freq: np.ndarray, threshold: float = 0.2,
                 unprocessed: np.ndarray | None = None) -> Peaks:
    """timbral_util.detect_peaks: peak indexes, values (of ``unprocessed``) and positions,
    largest first, with the parabolic correction of value and position."""
    array = np.asarray(array, dtype=np.float64).reshape(-1)
    raw = array if unprocessed is None else np.asarray(unprocessed, dtype=np.float64).reshape(-1)
    padded = np.concatenate([[-2.0], array, [-2.0]])
    raw_padded = np.concatenate([[-2.0], raw, [-2.0]])
    freq_padded = np.concatenate([[-1.0], freq, [-1.0]])
    diff = np.diff(padded)
    maxima = np.where((array >= threshold) & (diff[:-1] > 0) & (diff[1:] <= 0))[0] + 1
    if maxima.size == 0:
        return np.array([], dtype=int), np.array([]), np.array([])
    final = np.array(_final_peaks(padded, maxima, threshold), dtype=int)
    final = final[np.argsort(padded[final], kind="quicksort")[::-1]]
    values, positions = [], []
    for idx in final:
        if 1 < idx < len(raw_padded) - 2:
            y0, ym, yp = raw_padded[idx], raw_padded[idx - 1], raw_padded[idx + 1]
            p = (yp - ym) / (2 * (2 * y0 - yp - ym))
            values.append(y0 - 0.25 * (ym - yp) * p)
            neighbour = freq_padded[idx + 1] if p >= 0 else freq_padded[idx - 1]
            positions.append((1 - abs(p)) * freq_padded[idx] + abs(p) * neighbour)
        else:
            values.append(raw_padded[idx])
            positions.append(freq_padded[idx])
    return final - 1, np.array(values), np.array(positions)
