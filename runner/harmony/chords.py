"""madmom's chord recognition (CNNChordFeatureProcessor + CRFChordRecognitionProcessor;
Korzeniowski and Widmer 2016, "A Fully Convolutional Deep Auditory Model for Musical Chord
Recognition"): a convolutional network over a log-filtered spectrogram (frames of 8192
samples at 10 frames per second, 24 bands per octave from 60 to 2600 Hz) gives 128 features per
frame; a linear-chain conditional random field decodes them into 25 classes per frame (12 major
and 12 minor chords, and N: no chord), which are joined into segments labelled as madmom does
(``C:maj``, ``F#:min``, ``N``).

The CRF's weights are a Python pickle in the madmom package (``chords_cnncrf.pkl``). It is
read only after its bytes match their pin, and then by an unpickler that builds nothing but
numpy arrays and a plain record of the five potentials: no other class, no function.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import ModelError
from runner.harmony.network import Network
from runner.harmony.spectrogram import as_mono_44k, log_filtered, undefined

FRAME_SIZE, FPS = 8192, 10
BANDS, FMIN, FMAX = 24, 60.0, 2600.0
CONTEXT = 11  # frames of zeros madmom pads on each side before the network
ROOTS = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")
NO_CHORD = 24


class _Potentials:
    """What madmom's pickled ConditionalRandomField is rebuilt as: its attributes only."""

    pi: np.ndarray
    tau: np.ndarray
    c: np.ndarray
    A: np.ndarray
    W: np.ndarray


class _CrfUnpickler(pickle.Unpickler):
    """Builds numpy arrays and the CRF's record, refuses every other global."""

    ALLOWED: dict[tuple[str, str], Any] = {
        ("madmom.ml.crf", "ConditionalRandomField"): _Potentials,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct")):
            from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined]

            return _reconstruct
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise ModelError(f"madmom's chord CRF: the pickle asks for {module}.{name}, which is "
                         "not a numpy array or the CRF: refused")


@dataclass(frozen=True)
class Crf:
    """madmom.ml.crf.ConditionalRandomField's potentials, decoded as madmom does."""

    initial: np.ndarray  # pi (25,)
    final: np.ndarray  # tau (25,)
    bias: np.ndarray  # c (25,)
    transition: np.ndarray  # A (25, 25): from, to
    observation: np.ndarray  # W (128, 25)

    @classmethod
    def from_pickle(cls, data: bytes) -> Crf:
        """From the pickle's bytes, already checked against their pin."""
        try:
            record = _CrfUnpickler(io.BytesIO(data), encoding="latin1").load()
            arrays = [np.asarray(getattr(record, name)) for name in ("pi", "tau", "c", "A", "W")]
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any malformed pickle: one line
            raise ModelError(f"madmom's chord CRF cannot be read ({exc})") from None
        return cls(*arrays)

    def decode(self, observations: np.ndarray) -> np.ndarray:
        """The most probable class of each frame (madmom's Viterbi, its arithmetic)."""
        count, states = len(observations), len(self.initial)
        pointers = np.empty((count, states), dtype=np.uint32)
        viterbi = self.initial.copy()
        path = np.empty(count, dtype=np.uint32)
        for i in range(count):
            moves = self.transition + viterbi[:, np.newaxis]
            best = np.max(moves, axis=0)
            pointers[i] = np.argmax(moves, axis=0)
            viterbi = self.bias + np.dot(observations[i], self.observation) + best
        viterbi += self.final
        path[-1] = np.argmax(viterbi)
        for i in range(count - 2, -1, -1):
            path[i] = pointers[i + 1, path[i + 1]]
        return path


def label(index: int) -> str:
    """madmom's label of a class: 0-11 major chords from A, 12-23 minor, 24 N."""
    if index == NO_CHORD:
        return "N"
    return f"{ROOTS[index % 12]}:{'maj' if index < 12 else 'min'}"


def segments(classes: np.ndarray, fps: float = FPS) -> list[list[Any]]:
    """[start, end, label] of each run of one class (madmom's
    majmin_targets_to_chord_labels; times as ``frame / fps``)."""
    out: list[list[Any]] = []
    for frame, index in enumerate(classes.tolist()):
        name = label(int(index))
        if out and out[-1][2] == name:
            continue
        if out:
            out[-1][1] = frame / fps
        out.append([frame / fps, 0.0, name])
    if out:
        out[-1][1] = len(classes) / fps
    return out


def histogram(chords: list[list[Any]]) -> dict[str, float]:
    """Share of the track's duration under each label (percent), largest first."""
    total: dict[str, float] = {}
    for start, end, name in chords:
        total[name] = total.get(name, 0.0) + (end - start)
    length = sum(total.values())
    ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    return {name: round(100.0 * seconds / length, 4) for name, seconds in ranked}


@dataclass(frozen=True)
class ChordEstimate:
    """madmom's chords of one signal, or why there are none."""

    chords: list[list[Any]] | None  # [start s, end s, label]; None where undefined
    reason: str | None = None  # why undefined (silent, too short)

    @property
    def histogram(self) -> dict[str, float] | None:
        return None if self.chords is None else histogram(self.chords)


class ChordNetwork:
    """madmom's chord feature CNN and CRF, loaded once; call it on any number of signals."""

    def __init__(self, features: bytes, crf: bytes, threads: int = 1) -> None:
        self.network = Network(features, threads)
        self.crf = Crf.from_pickle(crf)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """CNNChordFeatureProcessor: (frames, 128) for mono 44.1 kHz ``samples``."""
        spectrogram = log_filtered(samples, FRAME_SIZE, FPS, BANDS, FMIN, FMAX)
        pad = np.zeros((CONTEXT, spectrogram.shape[1]))
        maps = self.network(np.vstack([pad, spectrogram, pad]))  # (frames + 2, 13, 128)
        # madmom's superframes (segment_axis: 3 frames, hop 1) and global average pooling
        windows = np.lib.stride_tricks.sliding_window_view(maps, 3, axis=0)
        return np.moveaxis(windows, 3, 1).mean(axis=(1, 2))  # the same strides, the same sums

    def __call__(self, signal: np.ndarray, sample_rate: float) -> ChordEstimate:
        samples = as_mono_44k(signal, sample_rate)
        reason = undefined(samples, FRAME_SIZE)
        if reason is not None:
            return ChordEstimate(None, reason)
        return ChordEstimate(segments(self.crf.decode(self.features(samples))))
