"""EBU R128 integrated loudness and loudness range from the K-weighted power of 100 ms blocks.

Essentia's LoudnessEBUR128 slides 400 ms and 3 s windows over the K-weighted signal at a
100 ms hop and takes the mean of each window, sample by sample: 1.1 s of CPU per 4-minute
track. Every one of those windows is a whole number of 100 ms blocks, so the profile measures
the mean power of each block once (LoudnessEBUR128Filter, FrameCutter, Mean: 0.3 s) and each
window's power is the mean of 4 or 30 consecutive blocks. Windows, gates and percentiles are
LoudnessEBUR128's (its source, src/algorithms/temporal/loudnessebur128.cpp): the results
agree with it to float rounding (tests/test_conditioning.py compares them).
"""

from __future__ import annotations

import numpy as np

MOMENTARY_BLOCKS = 4  # 400 ms gating blocks
SHORT_TERM_BLOCKS = 30  # 3 s short-term windows (the loudness range)
ABSOLUTE_GATE = 10 ** ((-70.0 + 0.691) / 10)  # -70 LUFS as a power
NAN = float("nan")


def windows(blocks: np.ndarray, width: int) -> np.ndarray:
    """The mean power of each window of ``width`` blocks, one per block hop, as
    LoudnessEBUR128's FrameCutters cut them: every window that fits, or one zero-padded
    window when none does (the last block is itself zero-padded)."""
    count = max(1, len(blocks) - width + 1)
    padded = np.concatenate([blocks, np.zeros(max(0, width - len(blocks)))])
    sums = np.concatenate([[0.0], np.cumsum(padded)])
    return (sums[width:width + count] - sums[:count]) / width


def loudness(power: float | np.ndarray) -> float | np.ndarray:
    """ITU-R BS.1770: LUFS of a K-weighted mean power."""
    return 10.0 * np.log10(power) - 0.691


def _gated(power: np.ndarray, relative: float) -> np.ndarray:
    """The powers above the absolute gate and ``relative`` times their mean."""
    above = power[power >= ABSOLUTE_GATE]
    threshold = max(above.mean() * relative, ABSOLUTE_GATE) if above.size else ABSOLUTE_GATE
    return power[power >= threshold]


def ebu_r128(blocks: np.ndarray) -> tuple[float, float]:
    """(integrated loudness in LUFS, loudness range in LU) of the blocks' K-weighted powers
    (the sum over channels); NaN for both without blocks."""
    if not len(blocks):
        return NAN, NAN
    gated = _gated(windows(blocks, MOMENTARY_BLOCKS), 0.1)  # relative gate: -10 LU
    integrated = float(loudness(gated.mean() if gated.size else ABSOLUTE_GATE))
    short = np.sort(_gated(windows(blocks, SHORT_TERM_BLOCKS), 0.01))  # -20 LU
    if not short.size:
        return integrated, 0.0  # LoudnessEBUR128: the range of silence is zero
    high = short[int(round(0.95 * (short.size - 1)))]
    low = short[int(round(0.1 * (short.size - 1)))]
    return integrated, float(loudness(high) - loudness(low))
