"""Hardness, depth and warmth: the timbral attributes built on onsets (docs/conditioning.md,
Timbre), on the whole signal up to ``WHOLE_SECONDS``, beyond that on a bounded set of evenly
spaced excerpts whose onsets, frames and spectra are pooled (each attribute is a mean over
onsets or frames): the cost stops growing with the track's length.

They run in double precision on the loudness-normalised signal, as the package does: its
high-frequency fits (warmth) see single precision's rounding floor on synthetic audio.
"""

from __future__ import annotations

import numpy as np

from runner.conditioning.timbral_attack import percussive_ratio
from runner.conditioning.timbral_depth import DepthParts, depth, depth_part
from runner.conditioning.timbral_hardness import HardnessOnsets, hardness, hardness_onsets
from runner.conditioning.timbral_onsets import hold_envelope
from runner.conditioning.timbral_warmth import WarmthOnsets, warmth, warmth_onsets

WHOLE_SECONDS = 6.0
EXCERPTS = 4  # excerpts of EXCERPT_SECONDS each beyond WHOLE_SECONDS
EXCERPT_SECONDS = 1.5
PERCUSSIVE_SECONDS = 0.5  # of each excerpt: the harmonic/percussive medians are the dearest

NAMES = ("hardness", "depth", "warmth")


def onset_excerpts(audio: np.ndarray, fs: float) -> list[np.ndarray]:
    """The whole signal, or ``EXCERPTS`` evenly spaced excerpts of ``EXCERPT_SECONDS``."""
    if len(audio) <= WHOLE_SECONDS * fs:
        return [audio]
    length = int(EXCERPT_SECONDS * fs)
    starts = np.linspace(0, len(audio) - length, EXCERPTS + 2).astype(int)[1:-1]
    return [audio[s:s + length] for s in starts]


def onset_attributes(audio: np.ndarray, fs: float, bark_level) -> dict[str, float]:
    """Hardness, depth and warmth of the loudness-normalised signal (double precision);
    ``bark_level(low, high, weighted)`` reads the shared specific loudness windows. NaN for an
    attribute whose onsets cannot be measured (where the package itself fails)."""
    parts = onset_excerpts(np.asarray(audio, dtype=np.float64), fs)
    hard, deep, warm = HardnessOnsets(), DepthParts(), WarmthOnsets()
    hard_ok = warm_ok = True
    for part in parts:
        envelope = hold_envelope(part, fs, decay_time=0.1)
        hard_ok = hardness_onsets(part, fs, hard, envelope) and hard_ok
        warm_ok = warmth_onsets(part, envelope, fs, warm) and warm_ok
        depth_part(part, fs, deep)
    shortened = [part if len(parts) == 1 else part[:int(PERCUSSIVE_SECONDS * fs)]
                 for part in parts]
    percussive = float(np.mean([percussive_ratio(part) for part in shortened]))
    return {
        "hardness": hardness(hard, bark_level(70, 140, True), percussive, fs) if hard_ok
        else float("nan"),
        "depth": depth(deep, fs),
        "warmth": warmth(warm, bark_level(10, 40, False), bark_level(80, 240, True)) if warm_ok
        else float("nan"),
    }
