"""Rhythm features of the conditioning profile, from the beats and onsets Essentia found.

Every feature that a track does not define (no beats, too few beats or onsets, no audio) is
NaN, which the output writes as null: a number is never made up for silence or a 0.1 s file.
Definitions, units and ranges: docs/conditioning.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.derive import function

NAN = float("nan")
# Fewer beats or onsets than this and the tempo is not defined (bpm_is_defined false, bpm
# null): RhythmExtractor2013 finds a regular "beat" at 738 BPM in digital silence.
MIN_BEATS = 4
# Sixteenth-note position of an onset within its beat -> syncopation weight: on the beat 0,
# on the eighth off-beat ("and") 0.5, on either sixteenth off-beat ("e", "a") 1.
SIXTEENTH_WEIGHTS = np.array([0.0, 1.0, 0.5, 1.0])
# Inter-onset intervals are counted in sixteenths, 1 to 16 (a bar of 4/4): 16 classes.
MAX_SIXTEENTHS = 16


def _times(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


@function(inputs=("beats", "onsets", "bpm", "blocks"),
          outputs=("bpm", "bpm_is_defined", "beat_count", "beat_regularity", "onset_count",
                   "onset_density", "syncopation_index", "rhythmic_complexity", "duration"),
          types={"bpm": "real", "bpm_is_defined": "bool", "beat_count": "real",
                 "beat_regularity": "real", "onset_count": "real", "onset_density": "real",
                 "syncopation_index": "real", "rhythmic_complexity": "real",
                 "duration": "real"},
          input_types={"beats": "vector_real", "onsets": "vector_real", "bpm": "real",
                       "blocks": "integer"},
          ranges={"blockSeconds": "(0,inf)"}, blockSeconds=0.01, minTempo=40.0, maxTempo=208.0)
def rhythm_features(beats: Any, onsets: Any, bpm: Any, blocks: Any, blockSeconds: float,
                    minTempo: float, maxTempo: float) -> dict[str, Any]:
    """The conditioning section's rhythm features from beat times, onset times (s), Essentia's
    tempo and the number of whole ``blockSeconds`` blocks of audio (the track's duration).
    The tempo is defined with MIN_BEATS beats and onsets and a bpm within the tracker's range."""
    beats, onsets = _times(beats), _times(onsets)
    duration = float(np.asarray(blocks).reshape(-1)[-1]) * blockSeconds if np.size(blocks) else 0.0
    defined = (beats.size >= MIN_BEATS and onsets.size >= MIN_BEATS
               and minTempo <= float(bpm) <= maxTempo)
    intervals = np.diff(beats)
    return {
        "bpm": float(bpm) if defined else NAN,
        "bpm_is_defined": bool(defined),
        # no onset, no beat: the tracker's "beats" in silence are none
        "beat_count": float(beats.size) if onsets.size else 0.0,
        "beat_regularity": float(np.std(intervals)) if defined else NAN,
        "onset_count": float(onsets.size),
        "onset_density": onsets.size / duration if duration > 0 else NAN,
        "syncopation_index": syncopation(beats, onsets) if defined else NAN,
        "rhythmic_complexity": complexity(beats, onsets) if defined else NAN,
        "duration": duration,
    }


def _beat_positions(beats: np.ndarray, onsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each onset between the first and the last beat: the index of the beat before it and
    its phase within that beat interval (0 on the beat, 0.5 half-way to the next)."""
    inside = onsets[(onsets >= beats[0]) & (onsets < beats[-1])]
    index = np.searchsorted(beats, inside, side="right") - 1
    phase = (inside - beats[index]) / (beats[index + 1] - beats[index])
    return index, phase


def syncopation(beats: np.ndarray, onsets: np.ndarray) -> float:
    """Mean weight of the onsets' sixteenth-note positions within their beats (0-1):
    0 when every onset is on a beat, 0.5 when all are on eighth off-beats, 1 when all are on
    sixteenth off-beats. NaN when no onset falls between the first and the last beat."""
    index, phase = _beat_positions(beats, onsets)
    if index.size == 0:
        return NAN
    sixteenth = np.rint(phase * 4).astype(int) % 4
    return float(np.mean(SIXTEENTH_WEIGHTS[sixteenth]))


def complexity(beats: np.ndarray, onsets: np.ndarray) -> float:
    """Normalised entropy (0-1) of the inter-onset intervals counted in sixteenth notes
    (1 to 16): 0 when every interval is the same, 1 when all 16 are equally frequent.
    NaN with fewer than two onsets between the first and the last beat."""
    index, phase = _beat_positions(beats, onsets)
    if index.size < 2:
        return NAN
    position = (index + phase) * 4  # in sixteenths from the first beat
    steps = np.clip(np.rint(np.diff(position)), 1, MAX_SIXTEENTHS).astype(int)
    counts = np.bincount(steps, minlength=MAX_SIXTEENTHS + 1)[1:]
    p = counts[counts > 0] / steps.size
    return float(-(p * np.log2(p)).sum() / np.log2(MAX_SIXTEENTHS))
