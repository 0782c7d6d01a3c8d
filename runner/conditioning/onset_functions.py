"""Essentia's complex-domain and HFC onset detection functions, every frame at once.

RhythmExtractor2013 (method degara) and OnsetRate spend most of their time in a per-bin
``atan2`` (CartesianToPolar) and in OnsetDetection's per-bin ``fmod``, ``cos`` and ``sin``, one
frame at a time: 1.3 s of a 4-minute track. The complex-domain function only needs the phase
*difference* ``phi - (2 phi1 - phi2)``, which is the angle of ``u * conj(u1)**2 * u2`` for the
unit vectors ``u = X / |X|``: complex products over whole blocks of frames instead of
trigonometry per bin, about four times faster (docs/conditioning.md, Speed).

The frames are those of Essentia's streaming FrameCutter (``startFromZero`` or centred, the
last frame zero-padded, silent frames kept), windowed and transformed by Essentia's own
Windowing (normalised Hann, zero-phase) and FFT, so the spectra are Essentia's to the bit.
The functions agree with Essentia's within float32 rounding (about 1e-6 of their largest
value), and the beats, tempo and onsets found from them are Essentia's, to the bit:
tests/test_onset_functions.py compares them on signals made in the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from runner.registry import quiet_essentia

BLOCK = 128  # frames transformed together: the block and its spectra stay in the cache


def frame_starts(length: int, size: int, hop: int, start_from_zero: bool) -> np.ndarray:
    """Where the streaming FrameCutter's frames start (negative: zero-padded in front).

    Centred frames start ``(size + 1) // 2`` samples before each hop and stop after the first
    frame whose centre reaches the end; frames from zero stop after the first one that reaches
    the end. No samples, no frames."""
    if length <= 0:
        return np.zeros(0, dtype=np.int64)
    if start_from_zero:
        last = max(0, -(-(length - size) // hop))  # the first k with k * hop + size >= length
        return np.arange(last + 1, dtype=np.int64) * hop
    return np.arange(-(-length // hop) + 1, dtype=np.int64) * hop - (size + 1) // 2


def _frames(signal: np.ndarray, starts: np.ndarray, size: int, hop: int) -> np.ndarray:
    """The frames at ``starts`` (consecutive, ``hop`` apart), zero outside the signal: a view
    of the signal where they lie inside it."""
    first, last = int(starts[0]), int(starts[-1])
    if first >= 0 and last + size <= signal.size:
        step = signal.strides[0]
        return as_strided(signal[first:], shape=(starts.size, size), strides=(hop * step, step),
                          writeable=False)
    frames = np.zeros((starts.size, size), dtype=np.float32)
    for row, start in enumerate(starts):
        lo, hi = max(0, int(start)), min(signal.size, int(start) + size)
        if hi > lo:
            frames[row, lo - start:hi - start] = signal[lo:hi]
    return frames


# Each thread keeps its own FFTs (a Dask worker runs tasks in several): Essentia's Python calls
# hold the GIL today, but its algorithm objects are not documented as safe to share.
_THREAD = threading.local()


def _essentia_fft(size: int) -> tuple[Any, np.ndarray]:
    """This thread's Essentia FFT of ``size`` (its plan made once) and Essentia's normalised
    Hann window of that size, unrotated."""
    ffts = _THREAD.__dict__.setdefault("ffts", {})
    if size not in ffts:
        standard = quiet_essentia().standard
        window = standard.Windowing(type="hann", zeroPhase=False)(
            np.ones(size, dtype=np.float32))
        ffts[size] = (standard.FFT(size=size), window)
    return ffts[size]


def spectra(signal: np.ndarray, size: int, hop: int, start_from_zero: bool
            ) -> Iterator[np.ndarray]:
    """The complex spectra (complex64, ``size // 2 + 1`` bins) of the FrameCutter's frames,
    as Essentia's Windowing (hann, zero-phase) and FFT give them, to the bit, BLOCK frames at a
    time. Essentia's own FFT, not numpy's: where a bin is zero to rounding, its phase is
    rounding noise that the complex-domain function of the next two frames depends on, and
    only the same FFT gives the same noise (beats one frame apart on click tracks otherwise)."""
    signal = np.ascontiguousarray(signal, dtype=np.float32).reshape(-1)
    fft, window = _essentia_fft(size)
    # the algorithm's own compute, without the wrapper's checks of each argument's type (its
    # frames are contiguous float32 rows): as much time as the FFTs themselves
    compute = getattr(fft, "__compute__", fft)
    half = size // 2
    starts = frame_starts(signal.size, size, hop, start_from_zero)
    for at in range(0, starts.size, BLOCK):
        windowed = _frames(signal, starts[at:at + BLOCK], size, hop) * window
        rotated = np.concatenate([windowed[:, half:], windowed[:, :half]], axis=1)
        yield np.array([compute(frame) for frame in rotated], dtype=np.complex64)


def onset_functions(signal: np.ndarray, size: int, hop: int, start_from_zero: bool,
                    sample_rate: float = 44100.0, hfc: bool = True
                    ) -> dict[str, np.ndarray]:
    """OnsetDetection's ``complex`` (and, with ``hfc``, ``hfc``) of every frame, as Essentia's
    chain FrameCutter -> Windowing (hann) -> FFT -> CartesianToPolar -> OnsetDetection computes
    them: float32, one value per frame."""
    bins = size // 2 + 1
    before = last = np.ones(bins, dtype=np.complex64)  # unit vectors of phase 0, two frames
    # back and one frame back (OnsetDetection starts from phases of 0)
    last_magnitude = np.zeros(bins, dtype=np.float32)
    weights = (np.arange(bins) * np.float32(sample_rate / 2.0 / (bins - 1))).astype(np.float32)
    complex_values, hfc_values = [], []
    for spectrum in spectra(signal, size, hop, start_from_zero):
        magnitude = np.abs(spectrum)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = spectrum / magnitude
        unit[magnitude == 0] = 1.0  # atan2(0, 0) is 0
        units = np.concatenate([before[None], last[None], unit])
        magnitudes = np.concatenate([last_magnitude[None], magnitude])
        # |S1 - S * e^{i (phi - 2 phi1 + phi2)}|, with S * e^{i phi} the spectrum itself
        rotation = np.conj(units[1:-1]) ** 2 * units[:-2]
        complex_values.append(np.abs(magnitudes[:-1] - spectrum * rotation).sum(axis=1))
        if hfc:
            hfc_values.append(magnitude @ weights)
        before, last, last_magnitude = units[-2], units[-1], magnitudes[-1]
    empty = [np.zeros(0, dtype=np.float32)]
    values = {"complex": np.concatenate(complex_values or empty).astype(np.float32)}
    if hfc:
        values["hfc"] = np.concatenate(hfc_values or empty).astype(np.float32)
    return values
