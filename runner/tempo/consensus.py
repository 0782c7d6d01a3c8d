"""One tempo from Essentia's and madmom's estimates, with fewer octave and 2/3 errors.

The estimators mostly fail the same way: they pick a relative of the true tempo (half,
double, 2/3, 3/2), each its own. Essentia's RhythmExtractor2013 keeps to about 75-160 BPM (it
doubles slow pieces and halves fast ones); madmom's comb-filter histogram leans slow (it
halves pieces at 110-200 BPM, at times quarters them); madmom's bar tracker leans fast. The
consensus lets each candidate tempo collect evidence and keeps the best:

    score(T) = log(madmom histogram at T, relative to its highest peak)
             + ESSENTIA_VOTE  if T is within 4 % of Essentia's tempo
             + BEATS_VOTE     if T is within 4 % of the tempo of madmom's tracked beats
             - PRIOR_WEIGHT * log2(T / PRIOR_CENTER) ** 2   (a log-normal tempo prior)

The candidates are Essentia's tempo, madmom's histogram peaks and its beats' tempo. Where the
winner agrees with Essentia (4 %) Essentia's value is returned: its resolution is finer than
the histogram's (whole 10 ms frames per beat). The constants were chosen with
``bench/tempo_tune.py`` on the tuning seeds (1, 2) of ``bench/tempo_bench.py``, before the
held-out seed 3 was scored; see docs/tempo.md. With them the Essentia vote and the prior are
off: on that set the bar tracker's vote carried Essentia's information, and more.

Pure: numbers in, one number out; nothing here imports madmom or Essentia.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

TOLERANCE = 0.04          # "the same tempo", as Acc1 counts it
ESSENTIA_VOTE = 0.0
BEATS_VOTE = 0.65
PRIOR_CENTER = 100.0      # BPM; unused while PRIOR_WEIGHT is 0 (kept for other material)
PRIOR_WEIGHT = 0.0
MIN_BPM, MAX_BPM = 40.0, 250.0
FLOOR = 0.01              # histogram support given to a tempo madmom's histogram does not cover
PEAKS = 6                 # madmom's strongest histogram peaks taken as candidates


class MadmomEvidence(Protocol):
    """What the consensus reads of madmom's output (``runner.tempo.TempoEstimate`` has it)."""

    tempi: np.ndarray          # (K, 2): peak tempi [BPM] and strengths, strongest first
    histogram_bpm: np.ndarray  # (N,) tempo axis of the histogram [BPM]
    histogram: np.ndarray      # (N,) strengths

    @property
    def beats_bpm(self) -> float: ...


@dataclass(frozen=True)
class MadmomView:
    """madmom's evidence as plain arrays (e.g. read back from a cache or a JSON file)."""

    tempi: np.ndarray
    beats_bpm: float
    histogram_bpm: np.ndarray
    histogram: np.ndarray


@dataclass(frozen=True)
class Weights:
    essentia_vote: float = ESSENTIA_VOTE
    beats_vote: float = BEATS_VOTE
    prior_center: float = PRIOR_CENTER
    prior_weight: float = PRIOR_WEIGHT


def same_tempo(a: float, b: float) -> bool:
    """Within 4 % of each other (relative to ``b``)."""
    return b > 0 and abs(a - b) <= TOLERANCE * b


def histogram_support(bpm: float, histogram_bpm: np.ndarray, histogram: np.ndarray) -> float:
    """madmom's histogram at ``bpm`` relative to its maximum (linear in log tempo; FLOOR
    outside it or where it is empty)."""
    top = float(np.max(histogram)) if len(histogram) else 0.0
    if top <= 0 or not float(np.min(histogram_bpm)) <= bpm <= float(np.max(histogram_bpm)):
        return FLOOR
    order = np.argsort(histogram_bpm)
    value = np.interp(math.log(bpm), np.log(histogram_bpm[order]), histogram[order])
    return max(FLOOR, float(value) / top)


def candidates(essentia_bpm: float, madmom: MadmomEvidence) -> list[float]:
    """Essentia's tempo, madmom's strongest peaks and its beats' tempo, within range."""
    found = [essentia_bpm, float(madmom.beats_bpm)]
    found += [float(t) for t, strength in np.atleast_2d(madmom.tempi)[:PEAKS] if strength > 0]
    return [t for t in found if MIN_BPM <= t <= MAX_BPM]


def score(bpm: float, essentia_bpm: float, madmom: MadmomEvidence,
          weights: Weights = Weights()) -> float:
    """The evidence for ``bpm`` (higher is better): see the module's docstring."""
    value = math.log(histogram_support(bpm, madmom.histogram_bpm, madmom.histogram))
    if same_tempo(bpm, essentia_bpm):
        value += weights.essentia_vote
    if same_tempo(bpm, float(madmom.beats_bpm)):
        value += weights.beats_vote
    return value - weights.prior_weight * math.log2(bpm / weights.prior_center) ** 2


def consensus(essentia_bpm: float, madmom: MadmomEvidence,
              weights: Weights = Weights()) -> float:
    """The consensus tempo [BPM] of Essentia's ``rhythm.bpm`` and madmom's estimate.

    Essentia's value comes back unchanged when madmom's evidence agrees with it; 0 (no
    tempo) only when neither estimator found one in 40-250 BPM.
    """
    found = candidates(essentia_bpm, madmom)
    if not found:
        return 0.0
    best = max(found, key=lambda t: score(t, essentia_bpm, madmom, weights))
    return float(essentia_bpm) if same_tempo(best, essentia_bpm) else float(best)
