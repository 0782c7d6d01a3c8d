"""OpenL3 (kind ``openl3``: Essentia's frozen graphs on our mel front end) and VGGish in
music-embeddings (docs/embeddings.md). The front end is checked against the kapre 0.1.4 steps
written out with librosa; the graph path on a tiny graph with OpenL3's node names and shapes
(tests/tiny_graphs.py), registered with `extractor models add` as a user would: shapes, the
10 Hz grid, determinism, the hash refusal, the .npy layout and resume, a profile stage. No real
weights: essentia.upf.edu is unreachable from here and no public sha256 of them was found."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from runner.cli.embeddings import NAMES, music_embeddings
from runner.errors import ModelError
from runner.models import openl3
from runner.models.framewise import LOADERS
from runner.models.supply import cache, lock
from tests.conftest import noise_clip, piano_clip, tone, write_audio

OPENL3 = "openl3-music-mel256-emb512"


def _kapre_reference(window: np.ndarray, bands: int) -> np.ndarray:
    """kapre 0.1.4's Melspectrogram(n_dft=2048, n_hop=242, padding='same', htk=True,
    power_melgram=1.0, return_decibel_melgram=True) on one 1 s window, step by step."""
    librosa = pytest.importorskip("librosa")
    padded = np.pad(window.astype(np.float64), (982, 982))  # 'same': 199 frames of 2048
    power = np.abs(librosa.stft(padded, n_fft=2048, hop_length=242, center=False,
                                window="hann")) ** 2
    assert power.shape == (1025, 199)
    filters = librosa.filters.mel(sr=48000, n_fft=2048, n_mels=bands, fmin=0.0, fmax=24000.0,
                                  htk=True, norm="slaney")
    mel = np.sqrt(filters @ power)
    decibels = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(decibels - decibels.max(), -80.0)


@pytest.mark.filterwarnings("ignore:Empty filters detected")
@pytest.mark.parametrize("bands", [256, 128])
def test_the_front_end_is_kapre_0_1_4_melspectrogram(bands):
    signal = piano_clip(1.5, sr=48000) + 0.01 * noise_clip(1.5, sr=48000)
    cut = openl3.windows(signal)
    ours = openl3.melspectrogram(cut[[0, 7, -1]], openl3.MelBands.of(
        openl3.mel_filterbank(bands)))
    assert ours.shape == (3, bands, 199) and ours.dtype == np.float32
    for row, index in zip(ours, [0, 7, len(cut) - 1], strict=True):
        np.testing.assert_allclose(row, _kapre_reference(cut[index], bands), atol=2e-3)
    assert ours.max() == 0.0 and ours.min() == -80.0


def test_windows_every_100_ms_centred_on_their_time():
    assert [openl3.window_count(n) for n in (0, 1, 24000, 24001, 48000, 96001)] == [
        1, 1, 1, 2, 6, 17]
    signal = np.arange(1, 30001, dtype=np.float32)
    cut = openl3.windows(signal)
    assert cut.shape == (3, 48000)  # 1 + ceil((30000 - 24000) / 4800)
    assert not cut[0, :24000].any() and cut[0, 24000] == 1  # t = 0 s at the centre
    assert cut[1, 19200] == 1 and cut[1, 24000] == 4801  # t = 0.1 s at the centre
    assert cut[2, 24000] == 9601 and cut[2, 14400 + 29999] == 30000  # the last sample
    assert not cut[2, 14400 + 30000:].any()  # then zeros


@pytest.fixture(scope="module")
def openl3_env(graphs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user lock file and model cache holding the tiny OpenL3 graph (added with `extractor
    models add`, as docs/embeddings.md tells users to), a tampered copy, and tiny-vggish."""
    from runner import cli

    root = tmp_path_factory.mktemp("openl3")
    for name in ("tiny-vggish.pb", "tiny-vggish.json"):
        shutil.copyfile(graphs / name, root / name)
    pins = [{"name": n, "url": (root / n).as_uri(), "sha256": cache.sha256_of(root / n)}
            for n in ("tiny-vggish.pb", "tiny-vggish.json")]
    (root / "mine.lock.json").write_text(json.dumps({"format": 1, "models": {"tiny-vggish": {
        "license": "test", "algorithm": "TensorflowPredictVGGish", "files": pins,
        "graph": "tiny-vggish.pb", "metadata": "tiny-vggish.json"}}}))
    (root / "cache" / "tiny-vggish").mkdir(parents=True)
    for name in ("tiny-vggish.pb", "tiny-vggish.json"):
        shutil.copyfile(graphs / name, root / "cache" / "tiny-vggish" / name)
    graph = root / f"{OPENL3}-3.pb"
    shutil.copyfile(graphs / "tiny-openl3.pb", graph)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTRACTOR_MODELS_LOCK", str(root / "mine.lock.json"))
        patch.setenv("EXTRACTOR_MODELS", str(root / "cache"))
        assert cli.main(["models", "add", str(graph)]) == 0
        assert openl3.add_graph(graph, "openl3-tampered", None) == 0
        copy = root / "cache" / "openl3-tampered" / graph.name
        data = bytearray(copy.read_bytes())
        data[-50] ^= 0xFF
        copy.write_bytes(bytes(data))
        yield root


def test_add_pins_the_graph_with_its_licence(openl3_env, capsys):
    entry = lock.get(OPENL3)
    assert (entry.kind, entry.license, entry.graph, entry.extra["n_mels"]) == (
        "openl3", "CC BY 4.0", f"{OPENL3}-3.pb", 256)
    assert entry.files[0].sha256 == cache.sha256_of(openl3_env / f"{OPENL3}-3.pb")
    with pytest.raises(ModelError) as refused:
        openl3.add_graph(openl3_env / "tiny-vggish.pb", None, None)
    assert str(refused.value) == (
        f"{openl3_env / 'tiny-vggish.pb'}: not one of Essentia's OpenL3 graphs (a file named "
        "openl3-<music|env>-mel<128|256>-emb<512|6144>*.pb)")


def _loaded(model_id: str):
    model = lock.get(model_id)
    return LOADERS["openl3"](model, cache.resolved_files(model), {})


def test_embeddings_at_10_hz_deterministic(openl3_env):
    network = _loaded(OPENL3)
    assert (network.sample_rate, network.frame_rate) == (48000, 10.0)
    signal = piano_clip(1.23, sr=48000)
    frames = network.run(signal)
    assert frames.shape == (1 + math.ceil((len(signal) - 24000) / 4800), 512)
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    assert np.array_equal(frames, network.run(signal))
    assert not np.allclose(frames[5], network.run(noise_clip(1.23, sr=48000))[5], atol=1e-3)
    assert network.run(signal[:100]).shape == (1, 512)
    assert network.run(np.zeros(0, np.float32)).shape == (1, 512)
    coarse = LOADERS["openl3"](lock.get(OPENL3), cache.resolved_files(lock.get(OPENL3)),
                               {"hop_s": 0.5})  # a row per 0.5 s: a fifth of the cost
    assert coarse.frame_rate == 2.0
    rows = coarse.run(signal)
    assert rows.shape == (openl3.window_count(len(signal), 24000), 512) == (3, 512)
    np.testing.assert_allclose(rows[:2], frames[::5], rtol=1e-5, atol=1e-6)  # same windows


def test_a_tampered_graph_is_refused(openl3_env):
    with pytest.raises(ModelError) as refused:
        _loaded("openl3-tampered")
    copy = openl3_env / "cache" / "openl3-tampered" / f"{OPENL3}-3.pb"
    assert str(refused.value) == (
        f"model 'openl3-tampered': {copy} does not match its pin (expected sha256 "
        f"{lock.get('openl3-tampered').files[0].sha256}, got {cache.sha256_of(copy)}); "
        "re-fetch with: extractor models fetch openl3-tampered")


def test_music_embeddings_openl3_and_vggish_layout_and_resume(openl3_env, tmp_path, capsys):
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    write_audio(music / "one.wav", piano_clip(2.0))
    write_audio(music / "album" / "two.wav", tone(1.0, 330.0))
    out = tmp_path / "emb"
    args = [str(music), "--output-base", str(out), "--models", "openl3", "tiny-vggish",
            "-j", "1", "--quiet"]
    assert music_embeddings(args) == 0
    # Essentia's Resample gives one sample more: 2 s at 44.1 kHz -> 96001 samples at 48 kHz
    assert np.load(out / "openl3" / "one.npy").shape == (openl3.window_count(96001), 512)
    assert np.load(out / "openl3" / "album" / "two.npy").shape == (
        openl3.window_count(48001), 512)
    # VGGish: 0.96 s patches of 96 frames of 10 ms (16 kHz), not overlapping
    assert np.load(out / "tiny-vggish" / "one.npy").shape == (2, 7)
    assert np.load(out / "tiny-vggish" / "album" / "two.npy").shape == (1, 7)
    manifest = json.loads((out / "openl3" / "model.json").read_text())
    assert (manifest["model"], manifest["params"], manifest["license"], manifest["files"]) == (
        OPENL3, {"hop_s": 0.1}, "CC BY 4.0", {f"{OPENL3}-3.pb": lock.get(OPENL3).files[0].sha256})
    before = (out / "openl3" / "one.npy").stat().st_mtime_ns
    capsys.readouterr()
    assert music_embeddings(args[:-1] + ["--skip-existing"]) == 0
    assert "0 done, 2 skipped (up to date)" in capsys.readouterr().err
    assert (out / "openl3" / "one.npy").stat().st_mtime_ns == before
    assert music_embeddings(args[:-1] + ["--force"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().err


def test_openl3_is_a_profile_stage(openl3_env, tmp_path, write_profile):
    from runner.extract import Extractor

    audio = write_audio(tmp_path / "a.wav", piano_clip(1.5))
    profile = write_profile(f"""
        name: openl3_stage
        audio: {{sample_rate: 44100}}
        graph:
          frames: {{algorithm: FrameCutter, params: {{frameSize: 2048, hopSize: 1024}},
                   inputs: {{signal: audio.signal}}}}
          rms: {{algorithm: RMS, inputs: {{array: frames.frame}}}}
        descriptors:
          lowlevel.rms: {{from: rms.rms, stats: [mean]}}
        models:
          section: embeddings
          outputs:
            openl3: {{model: {OPENL3}, output: embeddings}}
        """)
    doc, analysis = Extractor(str(profile)).analyse(str(audio))
    frames = analysis.models.embeddings[OPENL3]
    assert frames.shape == (openl3.window_count(72001), 512)
    np.testing.assert_allclose(doc["embeddings"]["openl3"], frames.mean(axis=0), rtol=1e-6)
    assert doc["metadata"]["models"]["used"][OPENL3] == lock.get(OPENL3).files[0].sha256


def test_unpinned_openl3_and_uncached_vggish_say_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(tmp_path / "none.lock.json"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EXTRACTOR_MODELS", raising=False)
    args = [str(tmp_path), "--output-base", str(tmp_path / "o"), "--models"]
    assert music_embeddings(args + ["openl3"]) == 2
    assert capsys.readouterr().err == (
        f"error: usage: --models openl3: model '{OPENL3}' is not pinned yet (no public sha256 "
        f"of Essentia's {OPENL3}-3.pb was found): download it from "
        "https://essentia.upf.edu/models/feature-extractors/openl3/ and add it with "
        f"`extractor models add {OPENL3}-3.pb` (docs/embeddings.md)\n")
    assert music_embeddings(args + ["openl3", "--openl3-hop", "0"]) == 2
    assert capsys.readouterr().err == "error: usage: --openl3-hop: 0 s is not a positive hop\n"
    # vggish: MTG's pinned audioset-vggish-3, (T, 128) per 0.96 s, fetched from essentia.upf.edu
    vggish = lock.get(NAMES["vggish"])
    assert (vggish.id, vggish.algorithm, vggish.license) == (
        "audioset-vggish-3", "TensorflowPredictVGGish", "CC BY-NC-SA 4.0")
    assert vggish.inline_metadata is not None
    assert vggish.inline_metadata["schema"]["outputs"][0]["shape"] == [1, 128]
    assert vggish.inline_metadata["inference"]["algorithm"] == "TensorflowPredictVGGish"
    assert music_embeddings(args + ["vggish"]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: model 'audioset-vggish-3' is not in the model cache ({tmp_path / 'cache'}")


def test_a_model_served_by_its_stand_in_is_written_under_the_name_asked(openl3_env, tmp_path,
                                                                       monkeypatch):
    """A lock entry that `provides` another model serves it when the other is not in the cache
    (as the musicnn converted from PyPI serves MTG's msd-musicnn-1): music-embeddings writes
    the stand-in's frames under the name asked for, and the manifest names the files and licence
    that made them (each file failed with a KeyError before)."""
    table = json.loads((openl3_env / "mine.lock.json").read_text())
    wanted = dict(table["models"]["tiny-vggish"], license="MTG's",
                  files=[{"name": f"mtg.{ext}", "url": f"https://example.invalid/mtg.{ext}",
                          "sha256": "0" * 64} for ext in ("pb", "json")],
                  graph="mtg.pb", metadata="mtg.json")
    table["models"]["tiny-vggish"]["provides"] = ["mtg-vggish"]
    table["models"]["mtg-vggish"] = wanted
    (tmp_path / "standin.lock.json").write_text(json.dumps(table))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(tmp_path / "standin.lock.json"))
    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "one.wav", piano_clip(2.0))
    for name in ("mtg-vggish", "tiny-vggish"):
        assert music_embeddings([str(music), "--output-base", str(tmp_path / name), "--models",
                                 name, "-j", "1", "--quiet"]) == 0
    served = np.load(tmp_path / "mtg-vggish" / "mtg-vggish" / "one.npy")
    np.testing.assert_array_equal(served, np.load(tmp_path / "tiny-vggish" / "tiny-vggish" /
                                                  "one.npy"))
    manifest = json.loads((tmp_path / "mtg-vggish" / "mtg-vggish" / "model.json").read_text())
    assert (manifest["model"], manifest["license"], sorted(manifest["files"])) == (
        "mtg-vggish", "test", ["tiny-vggish.json", "tiny-vggish.pb"])
