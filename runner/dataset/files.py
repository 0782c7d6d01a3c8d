"""The files of a conditioning dataset: audio in and FLAC out, ``TRACK.INFO`` (a flat JSON
object of features beside the audio) and ``TRACK.BEATS_GRID`` (beat and downbeat times).

Every write is atomic (temporary file, then rename: runner.output); updating an INFO keeps
the keys this update does not name.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from runner.dataset.info import merge_info, plain
from runner.errors import AudioError, OutputError
from runner.output import write_bytes_atomic

GRID_SUFFIX = ".BEATS_GRID"
# the names a beat grid may use for its lists (ours first)
BEAT_KEYS = ("beats", "beats_position", "beat_times")
DOWNBEAT_KEYS = ("downbeats", "downbeat_times")


def grid_path(audio: Path) -> Path:
    return audio.with_suffix(GRID_SUFFIX)


def read_audio(path: Path) -> tuple[np.ndarray, float, str]:
    """(samples x channels float32, sample rate, libsndfile subtype or '') at the file's own
    rate; soundfile first (sample-exact), Essentia's decoder for what libsndfile lacks."""
    try:
        import soundfile

        with soundfile.SoundFile(str(path)) as handle:
            audio = handle.read(dtype="float32", always_2d=True)
            return audio, float(handle.samplerate), handle.subtype
    except Exception as first:  # noqa: BLE001 - any decoder failure: try the other decoder
        text = getattr(first, "error_string", None) or str(first).strip() or "unreadable"
        reason = text.splitlines()[-1].rstrip(".")
    try:
        import essentia.standard as es

        audio, rate, _, _, _, _ = es.AudioLoader(filename=str(path))()
    except Exception:  # noqa: BLE001 - both decoders refused it: one line
        raise AudioError(str(path), f"unreadable audio ({reason})") from None
    if len(audio) == 0:
        raise AudioError(str(path), "unreadable audio (no samples)")
    return np.asarray(audio, dtype=np.float32), float(rate), ""


def write_flac(path: Path, audio: np.ndarray, sample_rate: float, subtype: str) -> None:
    """FLAC (16-bit where the source was 16-bit, else 24-bit), written atomically."""
    import soundfile

    buffer = io.BytesIO()
    depth = "PCM_16" if subtype in ("PCM_16", "PCM_S8", "PCM_U8") else "PCM_24"
    try:
        soundfile.write(buffer, audio, int(round(sample_rate)), subtype=depth, format="FLAC")
    except (RuntimeError, ValueError, TypeError) as exc:  # libsndfile: too many channels, ...
        raise OutputError(f"{path}: cannot write FLAC: {exc}") from None
    write_bytes_atomic(path, buffer.getvalue())


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; one line naming it when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OutputError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise OutputError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: not a JSON object")
    return data


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(plain(data), indent=2, sort_keys=True, ensure_ascii=False,
                      allow_nan=False) + "\n"


def update_info(path: Path, values: dict[str, Any]) -> None:
    """Set ``values`` in the INFO at ``path`` (created where absent), keeping its other keys:
    under the INFO's lock (runner.dataset.info), as ``extractor conditioning`` writes it."""
    merge_info(path, values, overwrite=True)


def read_grid(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(beat times, downbeat times or None) in seconds from a ``.BEATS_GRID``."""
    data = read_json(path)
    beats = next((data[key] for key in BEAT_KEYS if isinstance(data.get(key), list)), None)
    if beats is None:
        raise OutputError(f"{path}: no beat list (one of: {', '.join(BEAT_KEYS)})")
    downbeats = next((data[key] for key in DOWNBEAT_KEYS if isinstance(data.get(key), list)),
                     None)
    try:
        return (np.asarray(beats, dtype=float),
                None if downbeats is None else np.asarray(downbeats, dtype=float))
    except (TypeError, ValueError):
        raise OutputError(f"{path}: beat times must be numbers (seconds)") from None
