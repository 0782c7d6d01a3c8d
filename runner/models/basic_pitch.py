"""basic-pitch (Bittner et al., ICASSP 2022): polyphonic notes from audio, with Spotify's
``nmp.onnx`` (the basic-pitch 0.4.0 wheel, Apache-2.0) run by onnxruntime.

The package itself is never imported: its ``__init__`` imports TensorFlow (which must never
share a process with Essentia's libtensorflow) and its note code needs pretty_midi, mir_eval
and resampy. What it does around the network is reproduced here from its
``inference.py`` and ``note_creation.py`` (0.4.0), step for step:

- audio at 22050 Hz, 15 frames (3840 samples) of silence before it, cut into windows of
  43844 samples (2 s less one hop) every 36164 samples (30 frames of overlap);
- each window gives 172 frames (hop 256) of note, onset and contour activations; 15 frames
  are dropped at each end of every window and the rest joined, trimmed to
  ``floor(n * 86 / 22050)`` frames;
- notes: onsets are peaks in time of max(onset activation, rescaled rises of the note
  activation) at least ``onset_threshold``; a note lasts while its note activation stays at
  least ``frame_threshold`` (up to 11 frames below it are tolerated), longer than the minimum
  length (127.70 ms: 11 frames); then the "melodia trick" turns the strongest remaining
  activations into notes too; a frame index becomes a time as basic-pitch computes it (with its
  per-window correction). Velocity is round(127 x the mean note activation).

One difference: where the note activation never rises (silence), basic-pitch divides by zero
and finds no onset from NaNs; here the rises are zero and the predicted onsets still count.
Pitch bends (from the contour activation) are not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import ModelError

SAMPLE_RATE = 22050
FFT_HOP = 256
FRAME_RATE = SAMPLE_RATE / FFT_HOP  # 86.13 frames/s: frame k is at k * 256 / 22050 s
N_PITCHES = 88  # piano keys, MIDI 21 (A0) to 108 (C8)
MIDI_OFFSET = 21
WINDOW = SAMPLE_RATE * 2 - FFT_HOP  # 43844 samples
WINDOW_FRAMES = (SAMPLE_RATE // FFT_HOP) * 2  # 172: basic-pitch's ANNOT_N_FRAMES
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP  # 7680 samples
HOP = WINDOW - OVERLAP  # 36164 samples
BATCH = 8  # windows per call of the network (16 s of audio)
INPUT = "serving_default_input_2:0"
NOTE, ONSET = "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"

# basic-pitch's predict() defaults
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_MS = 127.70
ENERGY_TOLERANCE = 11  # frames below the frame threshold a note may span
# the settings of note creation (a profile's notes output params, music-embeddings' options)
NOTE_SETTINGS: dict[str, Any] = {"onset_threshold": ONSET_THRESHOLD,
                                 "frame_threshold": FRAME_THRESHOLD,
                                 "min_note_ms": MIN_NOTE_MS, "melodia_trick": True}
# what a profile's notes output writes (null where there is no note)
NOTE_STATISTICS = ("count", "per_second", "pitch_mean", "pitch_median", "pitch_min",
                   "pitch_max", "duration_mean", "velocity_mean")
INSTALL_HINT = "pip install --no-deps basic-pitch==0.4.0 onnxruntime; docs/embeddings.md"


@dataclass(frozen=True)
class Note:
    """One note event: times in seconds, MIDI pitch, amplitude in [0, 1]."""

    start: float
    end: float
    pitch: int
    amplitude: float

    @property
    def velocity(self) -> int:
        return int(np.clip(np.round(127 * self.amplitude), 1, 127))


def missing() -> str | None:
    """Why basic-pitch cannot run here (None when it can): onnxruntime runs its network."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return f"onnxruntime is not installed ({INSTALL_HINT})"
    return None


def note_settings(params: dict[str, Any], where: str = "basic-pitch",
                  spelling: dict[str, str] | None = None) -> dict[str, Any]:
    """The note settings, ``params`` over the defaults, each checked (ModelError naming
    ``where`` and each setting as ``spelling`` spells it: command-line options)."""
    spell = {name: name for name in NOTE_SETTINGS} | (spelling or {})
    unknown = sorted(set(params) - set(NOTE_SETTINGS))
    if unknown:
        raise ModelError(f"{where}: unknown note setting '{unknown[0]}' (settings: "
                         f"{', '.join(NOTE_SETTINGS)})")
    settings = {**NOTE_SETTINGS, **params}

    def number(name: str) -> bool:
        return not isinstance(settings[name], bool) and isinstance(settings[name], (int, float))

    for name in ("onset_threshold", "frame_threshold"):
        if not number(name) or not 0 <= settings[name] <= 1:
            raise ModelError(f"{where}: {spell[name]} must be a number from 0 to 1, not "
                             f"{settings[name]!r}")
    if not number("min_note_ms") or settings["min_note_ms"] < 0:
        raise ModelError(f"{where}: {spell['min_note_ms']} must be a number of milliseconds, "
                         f"at least 0, not {settings['min_note_ms']!r}")
    if not isinstance(settings["melodia_trick"], bool):
        raise ModelError(f"{where}: {spell['melodia_trick']} must be true or false, not "
                         f"{settings['melodia_trick']!r}")
    return settings


def note_statistics(found: list[Note], n_frames: int) -> dict[str, float | None]:
    """What a profile's notes output writes: how many notes, how dense, their pitches
    (MIDI numbers), mean duration (s) and mean velocity; null where there is no note."""
    seconds = n_frames / (SAMPLE_RATE // FFT_HOP)  # basic-pitch trims to 86 frames a second
    out: dict[str, float | None] = {"count": float(len(found)),
                                    "per_second": len(found) / seconds if seconds else None}
    pitch = np.array([n.pitch for n in found], dtype=np.float64)
    table = {"pitch_mean": lambda: pitch.mean(), "pitch_median": lambda: np.median(pitch),
             "pitch_min": lambda: pitch.min(), "pitch_max": lambda: pitch.max(),
             "duration_mean": lambda: np.mean([n.end - n.start for n in found]),
             "velocity_mean": lambda: np.mean([n.velocity for n in found])}
    out.update({name: float(value()) if found else None for name, value in table.items()})
    return out


class BasicPitch:
    """The network, loaded once: call it on mono float32 audio at 22050 Hz for (T, 176)
    float32 frames, the note activation of the 88 pitches then their onset activation."""

    sample_rate = SAMPLE_RATE
    frame_rate = FRAME_RATE

    def __init__(self, onnx: bytes, threads: int = 1) -> None:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(onnx, options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        signal = np.asarray(audio, dtype=np.float32).reshape(-1)
        padded = np.concatenate([np.zeros(OVERLAP // 2, dtype=np.float32), signal])
        starts = range(0, len(padded), HOP)
        notes, onsets = [], []
        for first in range(0, len(starts), BATCH):
            batch = np.zeros((len(starts[first:first + BATCH]), WINDOW, 1), dtype=np.float32)
            for row, start in enumerate(starts[first:first + BATCH]):
                window = padded[start:start + WINDOW]
                batch[row, :len(window), 0] = window
            note, onset = self.session.run([NOTE, ONSET], {INPUT: batch})
            notes.append(note)
            onsets.append(onset)
        kept = int(np.floor(len(signal) * ((SAMPLE_RATE // FFT_HOP) / SAMPLE_RATE)))
        return np.concatenate([_unwrap(notes, kept), _unwrap(onsets, kept)], axis=1)


def _unwrap(batches: list[np.ndarray], kept: int) -> np.ndarray:
    """Windows' frames joined (15 dropped at each end of each), trimmed to the signal."""
    half = OVERLAP_FRAMES // 2
    frames = np.concatenate(batches)[:, half:-half, :]
    return frames.reshape(-1, frames.shape[2])[:kept].astype(np.float32)


def frame_times(n_frames: int) -> np.ndarray:
    """Seconds of each frame, as basic-pitch's model_frames_to_time (its magic 0.0018 too)."""
    index = np.arange(n_frames)
    offset = (FFT_HOP / SAMPLE_RATE) * (WINDOW_FRAMES - WINDOW / FFT_HOP) + 0.0018
    return index * FFT_HOP / SAMPLE_RATE - offset * np.floor(index / WINDOW_FRAMES)


def notes(frames: np.ndarray, onset_threshold: float = ONSET_THRESHOLD,
          frame_threshold: float = FRAME_THRESHOLD, min_note_ms: float = MIN_NOTE_MS,
          melodia_trick: bool = True) -> list[Note]:
    """The notes in :class:`BasicPitch`'s (T, 176) frames, in basic-pitch's order (onset
    notes from the last onset back, then the melodia trick's)."""
    note = np.asarray(frames[:, :N_PITCHES], dtype=np.float32)
    onset = np.asarray(frames[:, N_PITCHES:], dtype=np.float64)
    if len(note) < 3:  # no onset peak fits, and nothing is long enough
        return []
    min_len = int(np.round(min_note_ms / 1000 * FRAME_RATE))
    events, remaining = _onset_notes(note, _inferred_onsets(onset, note), onset_threshold,
                                     frame_threshold, min_len)
    if melodia_trick:
        events += _melodia_notes(note, remaining, frame_threshold, min_len)
    times = frame_times(len(note))
    return [Note(float(times[s]), float(times[e]), p + MIDI_OFFSET, float(a))
            for s, e, p, a in events]


# (start frame, end frame, pitch index, amplitude: the mean note activation, in float32)
Event = tuple[int, int, int, float]


def _inferred_onsets(onset: np.ndarray, note: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """max(onset activation, rises of the note activation over 1 and 2 frames rescaled to
    the onsets' maximum): basic-pitch's get_infered_onsets."""
    padded = np.concatenate([np.zeros((n_diff, note.shape[1])), note.astype(np.float64)])
    rises = np.min([padded[n_diff:] - padded[n_diff - n:-n] for n in range(1, n_diff + 1)],
                   axis=0)
    rises[rises < 0] = 0
    rises[:n_diff] = 0
    if rises.max() > 0:
        rises = onset.max() * rises / rises.max()
    return np.maximum(onset, rises)


def _onset_notes(note: np.ndarray, onset: np.ndarray, onset_threshold: float,
                 frame_threshold: float, min_len: int) -> tuple[list[Event], np.ndarray]:
    """A note at every onset peak (from the last back), while its activation lasts; and the
    note activation no note took."""
    n_frames = len(note)
    peak = np.zeros_like(onset)
    inner = (onset[1:-1] > onset[:-2]) & (onset[1:-1] > onset[2:])  # scipy's argrelmax
    peak[1:-1][inner] = onset[1:-1][inner]
    found = np.where(peak >= onset_threshold)
    remaining = note.astype(np.float64)
    events: list[Event] = []
    for start, pitch in zip(found[0][::-1], found[1][::-1], strict=True):
        if start >= n_frames - 1:
            continue
        i, below = start + 1, 0
        while i < n_frames - 1 and below < ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, pitch] < frame_threshold else 0
            i += 1
        i -= below
        if i - start <= min_len:
            continue
        remaining[start:i, max(pitch - 1, 0):pitch + 2] = 0
        events.append((int(start), int(i), int(pitch), float(np.mean(note[start:i, pitch]))))
    return events, remaining


def _melodia_notes(note: np.ndarray, remaining: np.ndarray, frame_threshold: float,
                   min_len: int) -> list[Event]:
    """Notes grown forwards and backwards from the strongest activation left, until none
    is above the frame threshold: basic-pitch's melodia trick."""
    n_frames = len(note)
    events = []
    while remaining.max() > frame_threshold:
        mid, pitch = np.unravel_index(np.argmax(remaining), remaining.shape)
        remaining[mid, pitch] = 0
        near = slice(max(pitch - 1, 0), pitch + 2)
        i, below = mid + 1, 0
        while i < n_frames - 1 and below < ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, pitch] < frame_threshold else 0
            remaining[i, near] = 0
            i += 1
        end = i - 1 - below
        i, below = mid - 1, 0
        while i > 0 and below < ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, pitch] < frame_threshold else 0
            remaining[i, near] = 0
            i -= 1
        start = i + 1 + below
        if end - start <= min_len:
            continue
        events.append((int(start), int(end), int(pitch), float(np.mean(note[start:end, pitch]))))
    return events
