"""Hardness, depth and warmth: the timbral attributes built on onsets (docs/conditioning.md,
Timbre), on the whole signal up to ``WHOLE_SECONDS``, beyond that on a bounded set of evenly
spaced excerpts whose onsets, frames and spectra are pooled (each attribute is a mean over
onsets or frames): the cost stops growing with the track's length.

They run in double precision on the loudness-normalised signal, as the package does: its
high-frequency fits (warmth) see single precision's rounding floor on synthetic audio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

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
UNMEASURED = ("nothing to measure for the timbral {0} (an onset whose envelope peaks at once, "
              "a spectrum without a peak, or silence: where timbral_models fails); null")


def onset_excerpts(audio: np.ndarray, fs: float) -> list[np.ndarray]:
    """The whole signal, or ``EXCERPTS`` evenly spaced excerpts of ``EXCERPT_SECONDS``."""
    if len(audio) <= WHOLE_SECONDS * fs:
        return [audio]
    length = int(EXCERPT_SECONDS * fs)
    starts = np.linspace(0, len(audio) - length, EXCERPTS + 2).astype(int)[1:-1]
    return [audio[s:s + length] for s in starts]


def _pool(parts: list, kind: type):
    """One ``kind`` holding the per-onset lists of all ``parts``."""
    pooled = kind()
    for part in parts:
        for item in fields(kind):
            getattr(pooled, item.name).extend(getattr(part, item.name))
    return pooled


def _percussive(parts: list[np.ndarray], fs: float) -> float:
    """The percussive energy ratio of the whole signal, or the mean over the excerpts' first
    ``PERCUSSIVE_SECONDS`` that are not silent (the whole excerpts when all are)."""
    shortened = [part[:int(PERCUSSIVE_SECONDS * fs)] for part in parts] if len(parts) > 1 else []
    ratios = [percussive_ratio(part) for part in shortened if np.any(part)]
    ratios = ratios or [percussive_ratio(part) for part in parts]
    return float(np.nanmean(ratios)) if not np.all(np.isnan(ratios)) else float("nan")


def onset_attributes(signal: np.ndarray, gain: float, fs: float,
                     bark_level: Callable[[int, int, bool], float]) -> dict[str, Any]:
    """Hardness, depth and warmth of the signal times the -24 LUFS ``gain`` (in double
    precision); ``bark_level(low, high, weighted)`` reads the shared specific loudness windows.
    A part whose onsets cannot be measured (where the package itself fails) is left out; with
    none left, the attribute is NaN, with a warning."""
    parts = [np.asarray(part, dtype=np.float64) * gain
             for part in onset_excerpts(np.asarray(signal).reshape(-1), fs)
             if np.any(part)]  # a silent excerpt of a long track has no onsets to add
    hard_parts: list[HardnessOnsets] = []
    warm_parts: list[WarmthOnsets] = []
    deep = DepthParts()
    for part in parts:
        envelope = hold_envelope(part, fs, decay_time=0.1)
        hard, warm = HardnessOnsets(), WarmthOnsets()
        if hardness_onsets(part, fs, hard, envelope):
            hard_parts.append(hard)
        if warmth_onsets(part, envelope, fs, warm):
            warm_parts.append(warm)
        depth_part(part, fs, deep)
    values = dict.fromkeys(NAMES, float("nan"))
    if hard_parts:
        percussive = _percussive(parts, fs)
        values["hardness"] = hardness(_pool(hard_parts, HardnessOnsets),
                                      bark_level(70, 140, True), percussive, fs)
    if warm_parts:
        values["warmth"] = warmth(_pool(warm_parts, WarmthOnsets), bark_level(10, 40, False),
                                  bark_level(80, 240, True))
    if parts:
        values["depth"] = depth(deep, fs)
    missing = [name for name in NAMES if np.isnan(values[name])]
    if missing:
        values["warning"] = UNMEASURED.format(", ".join(missing))
    return values
