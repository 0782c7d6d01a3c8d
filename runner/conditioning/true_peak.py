"""True peak of each channel: the largest absolute value of the signal 4x oversampled, as
ITU-R BS.1770-4 (Annex 2) measures it, computed only where it can be the largest.

The interpolator is a 49-tap Kaiser-windowed sinc (beta 8) at the 4x rate, cut off at the input
Nyquist frequency: the original samples pass unchanged (phase 0 is the identity, so the true
peak is never below the sample peak) and each of the three in-between phases is a 12-tap FIR,
normalised to unit gain at DC. On sines up to 18 kHz it reads the crest within 0.005 dB, as
Essentia's Resample (libsamplerate, quality 1) does, which cost 12 s per channel-pair of a
4-minute track; this costs about 0.1 s.

Why it is cheap: an interpolated value is a weighted sum of 12 neighbouring samples, so it is
at most ``GAIN`` (the largest sum of absolute tap weights, 1.76) times their largest magnitude.
Blocks are interpolated in decreasing order of that bound, and the rest is skipped once the
bound falls to the largest value found: the result is that of interpolating every sample
(tests/test_true_peak.py checks both on random signals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runner.derive import function

OVERSAMPLING = 4
HALF_TAPS = 6  # input samples on each side of an interpolated point
KAISER_BETA = 8.0
BLOCK = 2048  # samples screened together
BATCH = 16  # blocks interpolated at once
NAN = float("nan")


def phase_taps(beta: float = KAISER_BETA) -> np.ndarray:
    """(12, 3) taps: phase p (1..3) gives the value at n + p/4 from samples n-5 .. n+6."""
    offsets = np.arange(-HALF_TAPS + 1, HALF_TAPS + 1)
    columns = []
    for phase in range(1, OVERSAMPLING):
        tau = phase / OVERSAMPLING - offsets  # distance from each sample, in samples
        window = np.i0(beta * np.sqrt(np.clip(1.0 - (tau / HALF_TAPS) ** 2, 0.0, None)))
        taps = np.sinc(tau) * window / np.i0(beta)
        columns.append(taps / taps.sum())
    return np.array(columns).T.copy()


TAPS = phase_taps()
GAIN = float(np.abs(TAPS).sum(axis=0).max())


def _block_magnitudes(x: np.ndarray, count: int) -> np.ndarray:
    """The largest magnitude of each BLOCK of ``x`` delayed by HALF_TAPS - 1 samples (zeros
    before and after it), ``count + 1`` blocks: read in place, without a padded copy."""
    delay = HALF_TAPS - 1
    padded_length = (count + 1) * BLOCK
    magnitudes = np.zeros(count + 1, dtype=np.float32)
    whole = (min(x.size + delay, padded_length) - BLOCK) // BLOCK  # blocks 1.. inside x
    if whole > 0:
        body = x[BLOCK - delay:BLOCK - delay + whole * BLOCK].reshape(whole, BLOCK)
        magnitudes[1:1 + whole] = np.maximum(body.max(axis=1), -body.min(axis=1))
    for block in {0, *range(1 + max(whole, 0), count + 1)}:  # the ends: part signal, part zeros
        part = x[max(0, block * BLOCK - delay):max(0, (block + 1) * BLOCK - delay)]
        magnitudes[block] = float(np.abs(part).max()) if part.size else 0.0
    return magnitudes


def _segments(x: np.ndarray, blocks: np.ndarray, length: int) -> np.ndarray:
    """For each block b, the ``length`` samples of ``x`` delayed by HALF_TAPS - 1 from sample
    b * BLOCK on (zeros outside ``x``), in double precision."""
    delay = HALF_TAPS - 1
    segments = np.zeros((len(blocks), length))
    for row, block in enumerate(blocks):
        first = int(block) * BLOCK - delay
        part = x[max(0, first):max(0, first + length)]
        segments[row, max(0, -first):max(0, -first) + part.size] = part
    return segments


def interpolated_peak(signal: np.ndarray) -> float:
    """The largest absolute value of every sample and every interpolated point, the first and
    last samples having silence (zeros) beyond them."""
    x = np.asarray(signal, dtype=np.float32).reshape(-1)
    if not x.size:
        return 0.0
    span = 2 * HALF_TAPS  # samples read per interpolated point
    count = -(-x.size // BLOCK)
    # Block b's points read the delayed signal's samples b*BLOCK .. (b+1)*BLOCK + span - 2:
    # blocks b and b+1.
    magnitudes = _block_magnitudes(x, count)
    bound = np.maximum(magnitudes[:-1], magnitudes[1:]) * GAIN
    peak = float(magnitudes.max())  # the samples themselves (phase 0)
    order = np.argsort(-bound, kind="stable")
    for first in range(0, count, BATCH):
        chosen = order[first:first + BATCH]
        if bound[chosen[0]] <= peak:
            break
        segments = _segments(x, chosen, BLOCK + span - 1)
        points = sliding_window_view(segments, span, axis=1) @ TAPS
        peak = max(peak, float(np.abs(points).max()))
    return peak


@function(inputs=("left", "right"), outputs=("true_peak",), types={"true_peak": "real"},
          input_types={"left": "vector_real", "right": "vector_real"})
def true_peak_db(left: Any, right: Any) -> dict[str, Any]:
    """The true peak of both channels (4x oversampled, ITU-R BS.1770-4), in dBTP (dB re full
    scale); null for digital silence."""
    peak = max(interpolated_peak(left), interpolated_peak(right))
    return {"true_peak": 20.0 * np.log10(peak) if peak > 0 else NAN}
