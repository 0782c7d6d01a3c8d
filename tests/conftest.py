"""Shared fixtures: audio made by the tests (known content), small profiles on disk."""

from __future__ import annotations

import os
import tempfile
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


@pytest.fixture(scope="session", autouse=True)
def session_tmpdir(tmp_path_factory: pytest.TempPathFactory):
    """The tests' own TMPDIR (this process's and every subprocess's): nothing they do lands
    in the real one, and at the end nothing of ours may be left in it.

    A test that kills a run (kill -9, a worker dying in native code) leaves what a killed run
    leaves, and the run after it must remove that (runner.analysis.spool.remove_stale): a spool folder
    left here at the end is a failure, whichever test left it.
    """
    folder = tmp_path_factory.mktemp("tmpdir")
    saved_env, saved_module = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    yield folder
    if saved_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved_env
    tempfile.tempdir = saved_module
    from runner.analysis import spool

    left = sorted(p.name for p in folder.iterdir() if p.name.startswith(spool.PREFIX))
    assert not left, f"spool folders left in the tests' TMPDIR: {left}"


@pytest.fixture(scope="session", autouse=True)
def _isolated_model_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never see (or fill) the user's model cache: results must not depend on it."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "EXTRACTOR_MODELS",
                                             "EXTRACTOR_MODELS_LOCK")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("EXTRACTOR_MODELS", None)
    os.environ.pop("EXTRACTOR_MODELS_LOCK", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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


def electronic_clip(seconds: float, sr: int = SR, bpm: float = 128.0) -> np.ndarray:
    """Four-on-the-floor kick, off-beat noise hats and a sawtooth bass: percussive electronic."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = np.zeros(n)
    beat = int(sr * 60 / bpm)
    kick_t = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 12)
    hat = np.random.default_rng(1).standard_normal(int(0.04 * sr)) * np.exp(
        -np.arange(int(0.04 * sr)) / (0.008 * sr)) * 0.3
    for start in range(0, n - len(kick), beat):
        x[start:start + len(kick)] += kick
        off = start + beat // 2
        if off + len(hat) < n:
            x[off:off + len(hat)] += hat
    bass_f = 55.0 * np.where((t * bpm / 60 // 4) % 2 == 0, 1.0, 1.5)
    x += 0.25 * (2 * ((t * bass_f) % 1.0) - 1)
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def piano_clip(seconds: float, sr: int = SR) -> np.ndarray:
    """Sustained, decaying harmonic notes (a C major arpeggio), one every half second."""
    n = int(seconds * sr)
    x = np.zeros(n)
    notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63]
    length = int(2.0 * sr)
    tn = np.arange(length) / sr
    for i, start in enumerate(range(0, n, sr // 2)):
        f = notes[i % len(notes)]
        note = sum((0.6 ** k) * np.sin(2 * np.pi * f * (k + 1) * tn) for k in range(6))
        note *= np.exp(-tn * 2.5)
        end = min(n, start + length)
        x[start:end] += note[:end - start]
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def noise_clip(seconds: float, sr: int = SR) -> np.ndarray:
    return (0.3 * np.random.default_rng(7).standard_normal(int(seconds * sr))).astype(np.float32)


@pytest.fixture(scope="session")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny frozen TensorFlow graphs with MTG's node names (tests/tiny_graphs.py, built in a
    TensorFlow process of its own: never beside essentia), shared by the tests of models."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("tiny-graphs")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    script = Path(__file__).with_name("tiny_graphs.py")
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that builds TensorFlow graphs (tests/test_models.py's ``graphs`` fixture, on
    which ``test_lock``, ``models_env`` and ``fetched`` depend) needs the tensorflow package:
    marked ``tensorflow``, so the Nix check, whose sandbox has no TensorFlow, leaves it out."""
    for item in items:
        if "graphs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tensorflow)
