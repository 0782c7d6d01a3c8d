"""Hugging Face audio models (kind ``transformers-audio``: HuBERT, AST, EnCodec) on tiny models
built here with transformers' config classes, saved as config.json + model.safetensors into a
temporary model cache and registered through a temporary lock file: shapes, frame rates,
windowing, determinism, the hash refusal, and music-embeddings' .npy layout
(docs/embeddings.md). No real weights: the hub is unreachable from here."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from runner.cli.embeddings import music_embeddings
from runner.errors import ModelError
from runner.models import hub_audio
from runner.models.framewise import LOADERS
from runner.models.supply import cache, lock
from tests.conftest import click_track, tone, write_audio

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _pins(folder: Path) -> list[dict]:
    return [{"name": f.name, "url": f"file://{f}", "size": f.stat().st_size,
             "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
            for f in sorted(folder.iterdir()) if f.is_file()]


def _save(net, folder: Path, *extra) -> Path:
    net.save_pretrained(folder)
    for item in extra:
        item.save_pretrained(folder)
    keep = {"config.json", "model.safetensors", "preprocessor_config.json"}
    for name in set(os.listdir(folder)) - keep:
        os.unlink(folder / name)
    return folder


# Module scope: EXTRACTOR_MODELS and EXTRACTOR_MODELS_LOCK must not leak into other modules.
@pytest.fixture(scope="module")
def hub_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root and a lock file with hubert-tiny, ast-tiny, encodec-tiny and
    hubert-tampered (hubert-tiny's pins, one byte of its weights changed)."""
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTForAudioClassification,
        EncodecConfig,
        EncodecModel,
        HubertConfig,
        HubertModel,
    )

    root = tmp_path_factory.mktemp("hub-models")
    torch.manual_seed(0)
    hubert = HubertModel(HubertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer", do_stable_layer_norm=True))
    _save(hubert, root / "hubert-tiny")
    ast = ASTForAudioClassification(ASTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        num_mel_bins=16, max_length=100, num_labels=5))
    _save(ast, root / "ast-tiny", ASTFeatureExtractor(num_mel_bins=16, max_length=100))
    encodec = EncodecModel(EncodecConfig(hidden_size=8, num_filters=4, codebook_size=16,
                                         codebook_dim=8, num_lstm_layers=1))
    _save(encodec, root / "encodec-tiny")
    # the layout of checkpoints saved before torch's parametrized weight norm (the hub's
    # EnCodec files of 2023): weight_g / weight_v, which transformers maps on loading
    from safetensors.torch import save_file

    legacy = root / "encodec-legacy"
    legacy.mkdir()
    (legacy / "config.json").write_bytes((root / "encodec-tiny" / "config.json").read_bytes())
    save_file({k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v.contiguous()
               for k, v in encodec.state_dict().items()}, legacy / "model.safetensors",
              metadata={"format": "pt"})
    tampered = root / "hubert-tampered"
    tampered.mkdir()
    (root / "encodec-inline").mkdir()
    (root / "encodec-inline" / "model.safetensors").write_bytes(
        (root / "encodec-tiny" / "model.safetensors").read_bytes())
    (tampered / "config.json").write_bytes((root / "hubert-tiny" / "config.json").read_bytes())
    data = bytearray((root / "hubert-tiny" / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (tampered / "model.safetensors").write_bytes(bytes(data))

    def entry(folder: str, architecture: str) -> dict:
        return {"kind": "transformers-audio", "architecture": architecture,
                "license": "test", "files": _pins(root / folder)}

    models = {
        "hubert-tiny": entry("hubert-tiny", "HubertModel"),
        "ast-tiny": entry("ast-tiny", "ASTForAudioClassification"),
        "encodec-tiny": entry("encodec-tiny", "EncodecModel"),
        "encodec-legacy": entry("encodec-legacy", "EncodecModel"),
        # no config.json pinned: its values inline, as encodec-24khz's entry gives them
        "encodec-inline": {
            "kind": "transformers-audio", "architecture": "EncodecModel", "license": "test",
            "files": [p for p in entry("encodec-tiny", "EncodecModel")["files"]
                      if p["name"] == "model.safetensors"],
            "config": json.loads((root / "encodec-tiny" / "config.json").read_text()),
            "config_reconstructed": {"note": "the tiny model's", "sources": ["https://x.y"]}},
        "hubert-tampered": {**entry("hubert-tiny", "HubertModel")},
    }
    lock_file = root / "test.lock.json"
    lock_file.write_text(json.dumps({"format": 1, "models": models}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTRACTOR_MODELS", str(root))
        patch.setenv("EXTRACTOR_MODELS_LOCK", str(lock_file))
        yield root


def _loaded(model_id: str):
    model = lock.get(model_id)
    return LOADERS["transformers-audio"](model, cache.resolved_files(model), {})


def test_hubert_frames_every_20_ms_across_window_seams(hub_models, monkeypatch):
    network = _loaded("hubert-tiny")
    assert (network.sample_rate, network.frame_rate) == (16000, 50.0)
    signal = tone(1.5, 220.0, sr=16000)
    frames = network.run(signal)
    assert frames.shape == ((24000 - 400) // 320 + 1, 16) and frames.dtype == np.float32
    assert np.array_equal(frames, network.run(signal))  # deterministic
    assert network.run(signal[:100]).shape == (1, 16)  # shorter than one frame: one frame
    monkeypatch.setattr(hub_audio, "HUBERT_WINDOW_S", 0.4)  # 20 frames per window
    windowed = _loaded("hubert-tiny").run(signal)
    assert windowed.shape == frames.shape
    # the convolutional features agree at the seams; only the attention's context differs
    assert not np.array_equal(windowed, frames)


def test_encodec_latent_at_75_hz_and_causal_windows(hub_models, monkeypatch):
    network = _loaded("encodec-tiny")
    assert (network.sample_rate, network.frame_rate) == (24000, 75.0)
    signal = click_track(1.01, sr=24000)
    frames = network.run(signal)
    assert frames.shape == (-(-24240 // 320), 8)  # ceil(n / 320) frames of the latent
    assert np.array_equal(frames, network.run(signal))
    monkeypatch.setattr(hub_audio, "ENCODEC_WINDOW_S", 0.4)  # 30 frames per window
    windowed = _loaded("encodec-tiny").run(signal)
    assert windowed.shape == frames.shape
    # a causal encoder: the first window's frames are the whole signal's first frames
    np.testing.assert_allclose(windowed[:30], frames[:30], atol=1e-6)


def test_older_weight_norm_layout_and_inline_config_load_alike(hub_models):
    signal = click_track(0.5, sr=24000)
    expected = _loaded("encodec-tiny").run(signal)
    assert np.array_equal(_loaded("encodec-legacy").run(signal), expected)
    assert np.array_equal(_loaded("encodec-inline").run(signal), expected)


def test_ast_one_pooled_vector_per_window(hub_models):
    network = _loaded("ast-tiny")
    assert (network.sample_rate, network.frame_rate) == (16000, 1.0)  # 100 frames of 10 ms
    frames = network.run(tone(2.5, 440.0, sr=16000))
    assert frames.shape == (3, 16)  # ceil(2.5 s / 1 s), the last window zero-padded
    assert np.array_equal(frames, network.run(tone(2.5, 440.0, sr=16000)))
    assert not np.allclose(frames[0], network.run(click_track(1.0, sr=16000))[0])


def test_a_tampered_hub_model_is_refused(hub_models):
    path = hub_models / "hubert-tampered" / "model.safetensors"
    expected = _pins(hub_models / "hubert-tiny")[1]["sha256"]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError) as err:
        _loaded("hubert-tampered")
    assert str(err.value) == (
        f"model 'hubert-tampered': {path} does not match its pin (expected sha256 {expected}, "
        f"got {actual}); re-fetch with: extractor models fetch hubert-tampered")


def test_only_safetensors_are_loaded(hub_models, tmp_path, monkeypatch):
    folder = tmp_path / "bin-only"
    folder.mkdir()
    (folder / "config.json").write_bytes((hub_models / "hubert-tiny" / "config.json").read_bytes())
    torch.save({}, folder / "pytorch_model.bin")
    model = lock.Model("bin-only", "", "", "transformers-audio", None, (), ())
    with pytest.raises(ModelError) as err:
        hub_audio.load(model, [(folder / "config.json", ""), (folder / "pytorch_model.bin", "")])
    assert str(err.value) == ("model 'bin-only': the lock file must pin config.json and "
                              "model.safetensors (weights are read from safetensors only, never "
                              "from a pickle)")


@pytest.mark.parametrize("name, message", [
    ("hubert", "--models hubert: model 'hubert-large-ll60k' is not pinned "
               "yet: add it with `extractor models add FOLDER --name hubert-large-ll60k` "
               "(FOLDER: config.json and model.safetensors of facebook/hubert-large-ll60k; "
               "docs/embeddings.md)"),
])
def test_hub_names_without_pins_say_why(name, message, tmp_path, capsys):
    args = [str(tmp_path), "--output-base", str(tmp_path / "o"), "--models", name]
    assert music_embeddings(args) == 2
    assert capsys.readouterr().err == f"error: usage: {message}\n"


def test_an_added_hub_model_in_music_embeddings(hub_models, tmp_path, monkeypatch, capsys):
    """The documented path for an unpinned model: `extractor models add FOLDER --name
    hubert-large-ll60k`, after which `--models hubert` runs it; with a packaged-style entry
    beside it, the mirrored .npy layout, the manifests and --pool mean (one batch: each
    spawns a worker)."""
    from runner import cli
    from runner.batch.embed_job import PROFILE, Request, overrides
    from runner.extract import Extractor

    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", os.pathsep.join(
        [str(tmp_path / "mine.lock.json"), os.environ["EXTRACTOR_MODELS_LOCK"]]))
    monkeypatch.setenv("EXTRACTOR_MODELS", os.pathsep.join(
        [str(tmp_path / "cache"), str(hub_models)]))
    folder = hub_models / "hubert-tiny"
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert cli.main(["models", "add", str(folder), "--name", "hubert-large-ll60k",
                     "--license", "Apache-2.0"]) == 0
    assert f"hubert-large-ll60k: HubertModel registered in {tmp_path / 'mine.lock.json'} " \
           f"(model.safetensors sha256 {sha}: compare it" in capsys.readouterr().out
    entry = lock.get("hubert-large-ll60k")
    assert (entry.kind, entry.license, entry.extra["architecture"]) == (
        "transformers-audio", "Apache-2.0", "HubertModel")
    assert (tmp_path / "cache" / "hubert-large-ll60k" / "model.safetensors").is_file()

    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    write_audio(music / "one.wav", click_track(2.0))
    write_audio(music / "album" / "two.wav", tone(1.0, 330.0))
    out = tmp_path / "emb"
    assert music_embeddings([str(music), "--output-base", str(out), "--models", "hubert",
                             "encodec-tiny", "--pool", "mean", "-j", "1", "--quiet"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.npy")) == [
        "encodec-tiny/album/two.npy", "encodec-tiny/one.npy", "hubert/album/two.npy",
        "hubert/one.npy"]
    manifest = json.loads((out / "hubert" / "model.json").read_text())
    assert (manifest["model"], manifest["pool"], manifest["license"], manifest["files"]) == (
        "hubert-large-ll60k", "mean", "Apache-2.0",
        {"config.json": entry.files[0].sha256, "model.safetensors": sha})
    # --pool mean: the mean of the frames the same decode gives (computed here in-process)
    wanted = [Request("hubert", "hubert-large-ll60k"), Request("encodec", "encodec-tiny")]
    frames = Extractor(PROFILE, overrides(wanted)).analyse(str(music / "album" / "two.wav"))[
        1].models.embeddings
    assert frames["hubert-large-ll60k"].shape == ((16000 - 400) // 320 + 1, 16)
    assert frames["encodec-tiny"].shape[1] == 8 and abs(len(frames["encodec-tiny"]) - 75) <= 1
    for name, model_id in (("hubert", "hubert-large-ll60k"), ("encodec-tiny", "encodec-tiny")):
        pooled = np.load(out / name / "album" / "two.npy")
        assert pooled.shape == frames[model_id].shape[1:]
        np.testing.assert_allclose(pooled, frames[model_id].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_a_hub_model_is_a_profile_stage(hub_models, tmp_path, write_profile):
    """In a profile's models: section, a hub model's ``embeddings`` output is the mean of its
    frames, beside the descriptors of the same decode."""
    from runner.extract import Extractor

    audio = write_audio(tmp_path / "a.wav", tone(1.0, 440.0))
    profile = write_profile("""
        name: hub
        audio: {sample_rate: 44100}
        graph:
          frames: {algorithm: FrameCutter, params: {frameSize: 2048, hopSize: 1024},
                   inputs: {signal: audio.signal}}
          rms: {algorithm: RMS, inputs: {array: frames.frame}}
        descriptors:
          lowlevel.rms: {from: rms.rms, stats: [mean]}
        models:
          section: embeddings
          outputs:
            hubert: {model: hubert-tiny, output: embeddings}
        """)
    doc, analysis = Extractor(str(profile)).analyse(str(audio))
    frames = analysis.models.embeddings["hubert-tiny"]
    assert frames.shape == (49, 16)
    np.testing.assert_allclose(doc["embeddings"]["hubert"], frames.mean(axis=0), rtol=1e-6)
    assert doc["lowlevel"]["rms"]["mean"] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert doc["metadata"]["models"]["used"]["hubert-tiny"] == _pins(
        hub_models / "hubert-tiny")[1]["sha256"]


def test_the_pinned_encodec_config_is_the_released_architecture():
    """encodec-24khz gives its config inline (no public hash of config.json): EncodecConfig's
    defaults, which transformers' conversion made facebook/encodec_24khz with."""
    from transformers import EncodecConfig

    entry = lock.models()["encodec-24khz"]
    values = {k: v for k, v in entry.extra["config"].items() if k != "architectures"}
    assert EncodecConfig(**values).to_diff_dict() == EncodecConfig().to_diff_dict()
    assert [p.name for p in entry.files] == ["model.safetensors"]
    assert set(entry.extra["config_reconstructed"]) == {"note", "sources"}
