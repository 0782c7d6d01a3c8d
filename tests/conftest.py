"""Shared fixtures: audio made by the tests (known content), small profiles on disk."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SR = 44100


def tone(seconds: float, freq: float = 440.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def click_track(seconds: float, bpm: float = 120.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Decaying noise bursts on every beat over a quiet chord: clear tempo, clear key (A major)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    chord = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    x = chord.astype(np.float64)
    period = int(sr * 60.0 / bpm)
    burst = rng.standard_normal(2048) * np.exp(-np.arange(2048) / 300.0) * 0.6
    for start in range(0, n - 2048, period):
        x[start:start + 2048] += burst
    return (x / max(1.0, np.abs(x).max())).astype(np.float32)


def write_audio(path: Path, signal: np.ndarray, sr: int = SR, fmt: str | None = None) -> Path:
    """Write mono (1-D) or stereo (N x 2) audio with Essentia's AudioWriter."""
    import essentia
    import essentia.standard as std

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    fmt = fmt or path.suffix.lstrip(".")
    stereo = signal if signal.ndim == 2 else np.stack([signal, signal], axis=1)
    std.AudioWriter(filename=str(path), sampleRate=sr, format=fmt)(
        np.ascontiguousarray(stereo, dtype=np.float32)
    )
    return path


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="session")
def clicks_wav(audio_dir: Path) -> Path:
    return write_audio(audio_dir / "clicks.wav", click_track(12.0))


@pytest.fixture
def write_profile(tmp_path: Path):
    """Write YAML text (dedented) to a file and return its path."""

    def make(text: str, name: str = "p.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return make
