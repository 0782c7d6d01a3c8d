"""madmom's CNN key recognition (CNNKeyRecognitionProcessor; Korzeniowski and Widmer 2018,
"Genre-Agnostic Key Classification with Convolutional Neural Networks"): a convolutional
network over a log-filtered spectrogram of the whole track (frames of 8192 samples at 5 frames
per second, 24 bands per octave from 65 to 2100 Hz) gives 24 logits, softmaxed into key
probabilities.

The key is written in Essentia's spelling (``A Bb B C C# D Eb E F F# G Ab``, as
``tonal.key_key``), so the two estimators compare directly: madmom's own labels say
``Db major``, ``D# minor`` and ``G# minor`` where Essentia says C#, Eb and Ab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.harmony.network import Network
from runner.harmony.spectrogram import as_mono_44k, log_filtered, undefined

FRAME_SIZE, FPS = 8192, 5
BANDS, FMIN, FMAX = 24, 65.0, 2100.0
# madmom.features.key.KEY_LABELS: 12 major keys from A, then 12 minor keys from A
MADMOM_KEYS = ("A", "Bb", "B", "C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab",
               "A", "Bb", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")
ESSENTIA_SPELLING = {"Db": "C#", "D#": "Eb", "G#": "Ab"}  # Essentia's Key algorithm's names


@dataclass(frozen=True)
class KeyEstimate:
    """madmom's key of one signal, or why there is none."""

    key: str | None  # tonic in Essentia's spelling; None where undefined
    scale: str | None  # "major" or "minor"
    strength: float | None  # the key's probability (softmax of the 24 classes)
    probabilities: np.ndarray  # (24,) in madmom's class order; empty where undefined
    reason: str | None = None  # why undefined (silent, too short); None otherwise

    @property
    def madmom_label(self) -> str | None:
        """The key as madmom writes it (``Db major``)."""
        if not len(self.probabilities):
            return None
        index = int(np.argmax(self.probabilities))
        return f"{MADMOM_KEYS[index]} {'major' if index < 12 else 'minor'}"

    def value(self) -> dict[str, object] | None:
        """What ``tonal.key_madmom`` holds: key, scale, strength (None where undefined)."""
        if self.key is None:
            return None
        return {"key": self.key, "scale": self.scale, "strength": self.strength}


def softmax(logits: np.ndarray) -> np.ndarray:
    """madmom.ml.nn.activations.softmax on one row (its arithmetic, float32 in and out)."""
    row = np.asarray(logits, dtype=np.float32)[np.newaxis]
    out = np.exp(row - np.amax(row, axis=1, keepdims=True))
    out /= np.sum(out, axis=1, keepdims=True)
    return out[0]


def from_probabilities(probabilities: np.ndarray) -> KeyEstimate:
    """The key with the highest probability (madmom's key_prediction_to_label)."""
    index = int(np.argmax(probabilities))
    tonic = MADMOM_KEYS[index]
    return KeyEstimate(key=ESSENTIA_SPELLING.get(tonic, tonic),
                       scale="major" if index < 12 else "minor",
                       strength=float(probabilities[index]), probabilities=probabilities)


class KeyNetwork:
    """madmom's key CNN, loaded once from its ONNX bytes; call it on any number of signals."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        self.network = Network(model, threads)

    def spectrogram(self, samples: np.ndarray) -> np.ndarray:
        """The network's input for mono 44.1 kHz ``samples``: (frames, 105)."""
        return log_filtered(samples, FRAME_SIZE, FPS, BANDS, FMIN, FMAX)

    def __call__(self, signal: np.ndarray, sample_rate: float) -> KeyEstimate:
        samples = as_mono_44k(signal, sample_rate)
        reason = undefined(samples, FRAME_SIZE)
        if reason is not None:
            return KeyEstimate(None, None, None, np.zeros(0, np.float32), reason)
        return from_probabilities(softmax(self.network(self.spectrogram(samples))))
