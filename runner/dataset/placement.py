"""Where training crops go in a track: pure arithmetic on sample indices (no audio I/O).

Every crop has exactly ``length`` samples. Three modes:

- ``beats`` (the default): crops that do not overlap, each starting on a candidate (a beat,
  or with ``div4`` a downbeat of a bar whose index is divisible by 4), moved to the nearest
  zero crossing within ``ZERO_CROSSING_MS``; the next crop starts on the first candidate at or
  after the previous crop's end.
- ``overlap``: as ``beats``, but the next crop starts on the first candidate at or after the
  previous start plus half a crop (about 50 % overlap, twice the crops).
- ``sequential``: back to back from sample 0, no snapping; the remainder is dropped.

Only the start is snapped: the end is the start plus ``length`` exactly, so it lies on a beat
only when ``length`` is a whole number of beats (each crop's INFO says how far its end is from
the nearest beat). A crop's edges get ``FADE_MS`` linear fades (the first and last samples
are 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("beats", "overlap", "sequential")
ZERO_CROSSING_MS = 10.0  # how far a snapped start may move to reach a zero crossing
FADE_MS = 10.0
BAR_GROUP = 4  # --div4: crops start on bars 0, 4, 8, ... of the downbeat list


@dataclass(frozen=True)
class Crop:
    """One crop: ``start`` (first sample) and ``length`` samples; ``anchor`` the beat sample
    it was snapped from (None: sequential), ``shift`` the samples moved to reach a zero
    crossing (0: none within reach, or sequential)."""

    start: int
    length: int
    anchor: int | None = None
    shift: int = 0

    @property
    def end(self) -> int:
        """One past the last sample."""
        return self.start + self.length


def every_fourth_bar(downbeats: np.ndarray) -> np.ndarray:
    """The downbeats that start bars 0, 4, 8, ... (the first downbeat is bar 0)."""
    return np.asarray(downbeats, dtype=float)[::BAR_GROUP]


def bars_from_beats(beats: np.ndarray, beats_per_bar: int = 4) -> np.ndarray:
    """Downbeats assumed when none were tracked: every ``beats_per_bar``-th beat from the
    first (4/4 starting on a downbeat; said so in a warning by the caller)."""
    return np.asarray(beats, dtype=float)[::beats_per_bar]


def nearest_zero_crossing(mono: np.ndarray, index: int, reach: int, lowest: int = 0) -> int:
    """The sample nearest ``index`` (within ``reach`` samples either side, not before
    ``lowest``) where the signal changes sign or is exactly 0; of the two samples around a
    sign change, the one closer to 0. ``index`` itself when there is none within reach."""
    lo = max(1, index - reach, lowest)
    hi = min(len(mono) - 1, index + reach)
    if hi < lo:
        return index
    window = mono[lo - 1: hi + 1]
    signs = np.sign(window)
    # crossing between window[k] and window[k+1], i.e. samples lo-1+k and lo+k
    change = np.nonzero((signs[:-1] * signs[1:] < 0) | (signs[1:] == 0))[0]
    if change.size == 0:
        return index
    after = lo + change
    before = after - 1
    pick = np.where(np.abs(mono[before]) < np.abs(mono[after]), before, after)
    pick = pick[(pick >= max(index - reach, lowest)) & (pick <= index + reach)]
    if pick.size == 0:
        return index
    return int(pick[np.argmin(np.abs(pick - index))])


def sequential(total: int, length: int) -> list[Crop]:
    """Back to back from 0; the remainder shorter than ``length`` is dropped."""
    return [Crop(start, length) for start in range(0, total - length + 1, length)]


def snapped(candidates: np.ndarray, mono: np.ndarray, length: int, reach: int,
            overlap: bool) -> list[Crop]:
    """Crops starting on ``candidates`` (sample indices, ascending) moved to zero crossings;
    see the module docstring for how the next start is chosen."""
    total = len(mono)
    crops: list[Crop] = []
    earliest = 0
    for anchor in np.unique(np.asarray(candidates, dtype=np.int64)):
        anchor = int(anchor)
        # a beat just inside the previous crop (its start moved later) may still start one
        # at a crossing after that crop's end
        if anchor < max(earliest - reach, 0):
            continue
        start = nearest_zero_crossing(mono, anchor, reach, lowest=earliest)
        if start < earliest:  # no crossing after the previous crop within reach
            continue
        if start + length > total:
            break
        crops.append(Crop(start, length, anchor, start - anchor))
        earliest = start + (length // 2 if overlap else length)
    return crops


def to_samples(times: np.ndarray, sample_rate: float) -> np.ndarray:
    """Times in seconds to the nearest sample indices."""
    return np.rint(np.asarray(times, dtype=float) * sample_rate).astype(np.int64)


def fade(audio: np.ndarray, sample_rate: float, ms: float = FADE_MS) -> np.ndarray:
    """A copy of ``audio`` (samples x channels) with linear fades in and out of ``ms``: the
    first and the last sample are 0."""
    count = min(len(audio) // 2, max(2, int(round(ms / 1000.0 * sample_rate))))
    out = np.array(audio, dtype=np.float32, copy=True)
    ramp = np.linspace(0.0, 1.0, count, dtype=np.float32)[:, None]
    out[:count] *= ramp
    out[len(out) - count:] *= ramp[::-1]
    return out


def end_offset(crop: Crop, beats: np.ndarray) -> int | None:
    """Samples from the crop's end to the nearest beat (None: no beats)."""
    if len(beats) == 0:
        return None
    return int(np.min(np.abs(np.asarray(beats, dtype=np.int64) - crop.end)))
