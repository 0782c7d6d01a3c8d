"""One tempo from Essentia's and madmom's estimates (first version: placeholder)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MadmomView:
    tempi: np.ndarray
    beats_bpm: float
    histogram_bpm: np.ndarray
    histogram: np.ndarray


def consensus(essentia_bpm: float, madmom: MadmomView,
              essentia_peaks: Sequence[tuple[float, float]] = ()) -> float:
    return float(madmom.tempi[0, 0]) if len(madmom.tempi) else essentia_bpm
