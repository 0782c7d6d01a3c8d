"""MERT (lock-entry kind ``mert``, runner/models/mert.py) on tiny models built here in MERT's
own format: config.json with MERTConfig's fields, preprocessor_config.json, and the weights as
``pytorch_model.bin`` under MERTModel's key names (the positional convolution's
``weight_g``/``weight_v``, as the hub's MERT-v1 files store them). Our forward pass is checked
against a plain re-computation of MERTModel's (post-LN HuBERT, written out with torch's
functional ops from the checkpoint's tensors), plus shapes, the 75 Hz grid, determinism, the
hash refusal, a refused unsafe pickle and unsupported configs, `extractor models add`, and
music-embeddings. No real weights: the hub is unreachable from here."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from runner import cli
from runner.cli.embeddings import music_embeddings
from runner.errors import ModelError
from runner.models import hub_audio, mert
from runner.models.framewise import LOADERS
from runner.models.supply import cache, lock
from tests.conftest import click_track, tone, write_audio

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

CONFIG = {  # MERT-v1's config.json fields, at a tiny size (the 24 kHz, 320-sample grid kept)
    "architectures": ["MERTModel"], "model_type": "mert_model",
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig",
                 "AutoModel": "modeling_MERT.MERTModel"},
    "sample_rate": 24000, "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336,
    "deepnorm": False, "attention_relax": -1.0, "hidden_size": 16, "num_hidden_layers": 2,
    "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
    "conv_dim": [8] * 7, "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_bias": False, "feat_extract_norm": "group",
    "feat_extract_activation": "gelu", "feat_proj_layer_norm": True,
    "do_stable_layer_norm": False, "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2, "layer_norm_eps": 1e-5, "mask_time_prob": 0.05,
    "transformers_version": "4.25.1",
}
PREPROCESSOR = {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
                "feature_size": 1, "padding_side": "right", "padding_value": 0,
                "return_attention_mask": True, "sampling_rate": 24000}


def _hub_layout(state: dict) -> dict:
    """HubertModel's tensors under the names MERT's hub checkpoints use (weight_g/weight_v)."""
    return {k.replace("parametrizations.weight.original0", "weight_g")
            .replace("parametrizations.weight.original1", "weight_v"): v.clone()
            for k, v in state.items()}


def _folder(root: Path, name: str, tensors: dict, config: dict = CONFIG,
            safetensors: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    if safetensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    else:
        torch.save(tensors, folder / "pytorch_model.bin")
    return folder


def _entry(folder: Path) -> dict:
    return {"kind": "mert", "architecture": "MERTModel", "license": "CC BY-NC 4.0",
            "files": [{"name": f.name, "url": f"file://{f}", "size": f.stat().st_size,
                       "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
                      for f in sorted(folder.iterdir())]}


class _Touch:
    """A pickle that would create a file if unpickled without ``weights_only``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# Module scope: EXTRACTOR_MODELS and EXTRACTOR_MODELS_LOCK must not leak into other modules.
@pytest.fixture(scope="module")
def mert_models(tmp_path_factory: pytest.TempPathFactory):
    """(models root, the tiny model's tensors in hub layout): mert-tiny (pytorch_model.bin),
    mert-tiny-st (the same tensors as safetensors), mert-tampered, mert-pickle (a .bin that
    is not tensors, pinned by its own hash)."""
    from transformers import HubertModel

    root = tmp_path_factory.mktemp("mert-models")
    torch.manual_seed(0)
    network = HubertModel(mert.hubert_config(CONFIG))
    with torch.no_grad():  # every tensor away from its initial value: a swap would show
        for parameter in network.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    tensors = _hub_layout(network.state_dict())
    assert "encoder.pos_conv_embed.conv.weight_g" in tensors
    folders = {"mert-tiny": _folder(root, "mert-tiny", tensors),
               "mert-tiny-st": _folder(root, "mert-tiny-st", tensors, safetensors=True)}
    tampered = _folder(root, "mert-tampered", tensors)
    models = {name: _entry(folder) for name, folder in folders.items()}
    models["mert-tampered"] = _entry(tampered)
    data = bytearray((tampered / "pytorch_model.bin").read_bytes())
    data[-200] ^= 0xFF
    (tampered / "pytorch_model.bin").write_bytes(bytes(data))
    unsafe = _folder(root, "mert-pickle", {})
    torch.save({"x": _Touch(root / "touched")}, unsafe / "pytorch_model.bin")
    models["mert-pickle"] = _entry(unsafe)
    lock_file = root / "test.lock.json"
    lock_file.write_text(json.dumps({"format": 1, "models": models}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTRACTOR_MODELS", str(root))
        patch.setenv("EXTRACTOR_MODELS_LOCK", str(lock_file))
        yield root, tensors


def _loaded(model_id: str):
    model = lock.get(model_id)
    return LOADERS[model.kind](model, cache.resolved_files(model), {})


def reference(t: dict, config: dict, signal: np.ndarray) -> np.ndarray:
    """MERTModel's forward pass for a v1 config (no CQT, no deepnorm, post-LN encoder), written
    out from the checkpoint's own tensors: conv stack (group norm after the first), layer norm
    and projection, weight-normed positional convolution, post-LN transformer layers."""
    F = torch.nn.functional
    x = torch.from_numpy(signal)
    x = ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7))[None, None]
    for i, stride in enumerate(config["conv_stride"]):
        x = F.conv1d(x, t[f"feature_extractor.conv_layers.{i}.conv.weight"], stride=stride)
        if i == 0:
            x = F.group_norm(x, x.shape[1], t["feature_extractor.conv_layers.0.layer_norm.weight"],
                             t["feature_extractor.conv_layers.0.layer_norm.bias"], 1e-5)
        x = F.gelu(x)
    h = x.transpose(1, 2)

    def norm(h, name):
        return F.layer_norm(h, h.shape[-1:], t[f"{name}.weight"], t[f"{name}.bias"], 1e-5)

    h = F.linear(norm(h, "feature_projection.layer_norm"),
                 t["feature_projection.projection.weight"], t["feature_projection.projection.bias"])
    g, v = t["encoder.pos_conv_embed.conv.weight_g"], t["encoder.pos_conv_embed.conv.weight_v"]
    size = config["num_conv_pos_embeddings"]
    pos = F.conv1d(h.transpose(1, 2), g * v / v.norm(dim=(0, 1), keepdim=True),
                   t["encoder.pos_conv_embed.conv.bias"], padding=size // 2,
                   groups=config["num_conv_pos_embedding_groups"])
    pos = pos[:, :, :-1] if size % 2 == 0 else pos
    h = norm(h + F.gelu(pos).transpose(1, 2), "encoder.layer_norm")
    heads = config["num_attention_heads"]
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layers.{layer}."

        def proj(x, name, p=p):
            return F.linear(x, t[f"{p}{name}.weight"], t[f"{p}{name}.bias"])

        q, k, w = (proj(h, f"attention.{n}_proj").view(1, -1, heads, h.shape[-1] // heads)
                   .transpose(1, 2) for n in "qkv")
        scores = torch.softmax(q @ k.transpose(2, 3) / q.shape[-1] ** 0.5, dim=-1)
        attended = (scores @ w).transpose(1, 2).reshape(h.shape)
        h = norm(h + proj(attended, "attention.out_proj"), p + "layer_norm")
        inner = F.gelu(proj(h, "feed_forward.intermediate_dense"))
        h = norm(h + proj(inner, "feed_forward.output_dense"), p + "final_layer_norm")
    return h[0].detach().numpy()


def test_mert_frames_at_75_hz_match_a_plain_computation(mert_models):
    _, tensors = mert_models
    network = _loaded("mert-tiny")
    assert (network.sample_rate, network.frame_rate) == (24000, 75.0)
    signal = click_track(1.0, sr=24000)
    frames = network.run(signal)
    assert frames.shape == ((24000 - 400) // 320 + 1, 16) and frames.dtype == np.float32
    np.testing.assert_allclose(frames, reference(tensors, CONFIG, signal), atol=2e-5)
    assert np.array_equal(frames, network.run(signal))  # deterministic
    assert np.array_equal(frames, _loaded("mert-tiny-st").run(signal))  # safetensors alike
    assert network.run(signal[:100]).shape == (1, 16)  # shorter than one frame: one frame


def test_a_tampered_mert_checkpoint_is_refused(mert_models):
    root, _ = mert_models
    path = root / "mert-tampered" / "pytorch_model.bin"
    expected = lock.get("mert-tampered").files[-1].sha256
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError) as err:
        _loaded("mert-tampered")
    assert str(err.value) == (
        f"model 'mert-tampered': {path} does not match its pin (expected sha256 {expected}, "
        f"got {actual}); re-fetch with: extractor models fetch mert-tampered")


def test_a_pickle_that_is_not_tensors_is_never_run(mert_models):
    """Even a file matching its pin is unpickled with weights_only: no code runs."""
    root, _ = mert_models
    with pytest.raises(ModelError) as err:
        _loaded("mert-pickle")
    assert str(err.value).startswith(
        f"model 'mert-pickle': {root / 'mert-pickle' / 'pytorch_model.bin'}: not a weights "
        "file (")
    assert not (root / "touched").exists()


@pytest.mark.parametrize("change, what", [
    ({"feature_extractor_cqt": True}, "a CQT branch (feature_extractor_cqt: true, MERT's "
     "nnAudio CQT concatenated to the convolutional features)"),
    ({"deepnorm": True}, "DeepNorm residual scaling (deepnorm: true)"),
])
def test_configs_with_what_we_do_not_implement_are_refused(change, what, mert_models,
                                                           tmp_path, monkeypatch, capsys):
    folder = _folder(tmp_path, "mert-cqt", mert_models[1], {**CONFIG, **change})
    lock_file = tmp_path / "mine.lock.json"
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", os.pathsep.join(
        [str(lock_file), os.environ["EXTRACTOR_MODELS_LOCK"]]))
    assert cli.main(["models", "add", str(folder), "--name", "mert-x"]) == 1
    assert capsys.readouterr().err == (
        f"error: {folder / 'config.json'}: {what} is not implemented here (MERT runs here "
        "without a CQT branch or DeepNorm; MERT-v1-95M's config has neither)\n")
    assert not lock_file.exists()


def test_mert_330m_added_then_in_music_embeddings(mert_models, tmp_path, monkeypatch, capsys):
    """`--models mert-330m` says how to add it; once added (`extractor models add FOLDER
    --name mert-v1-330m`, its licence recorded) it runs: (T, hidden) per track at 75 Hz."""
    root, _ = mert_models
    args = [str(tmp_path), "--output-base", str(tmp_path / "o"), "--models", "mert-330m"]
    assert music_embeddings(args) == 2
    assert capsys.readouterr().err == (
        "error: usage: --models mert-330m: model 'mert-v1-330m' is not pinned yet: add it with "
        "`extractor models add FOLDER --name mert-v1-330m` (FOLDER: config.json, "
        "preprocessor_config.json and pytorch_model.bin of m-a-p/MERT-v1-330M; "
        "docs/embeddings.md)\n")
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", os.pathsep.join(
        [str(tmp_path / "mine.lock.json"), os.environ["EXTRACTOR_MODELS_LOCK"]]))
    monkeypatch.setenv("EXTRACTOR_MODELS", os.pathsep.join([str(tmp_path / "cache"), str(root)]))
    assert cli.main(["models", "add", str(root / "mert-tiny"), "--name", "mert-v1-330m"]) == 0
    sha = hashlib.sha256((root / "mert-tiny" / "pytorch_model.bin").read_bytes()).hexdigest()
    assert f"mert-v1-330m: MERTModel registered in {tmp_path / 'mine.lock.json'} " \
           f"(pytorch_model.bin sha256 {sha}: compare it" in capsys.readouterr().out
    entry = lock.get("mert-v1-330m")
    assert (entry.kind, entry.license, [p.name for p in entry.files]) == (
        "mert", "CC BY-NC 4.0", ["config.json", "preprocessor_config.json", "pytorch_model.bin"])

    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "one.wav", click_track(1.5))
    write_audio(music / "two.wav", tone(0.5, 330.0))
    out = tmp_path / "emb"
    assert music_embeddings([str(music), "--output-base", str(out), "--models", "mert-330m",
                             "-j", "1", "--quiet"]) == 0
    one, two = np.load(out / "mert-330m" / "one.npy"), np.load(out / "mert-330m" / "two.npy")
    assert one.shape == ((36000 - 400) // 320 + 1, 16) and two.shape == (37, 16)
    manifest = json.loads((out / "mert-330m" / "model.json").read_text())
    assert (manifest["model"], manifest["license"], manifest["files"]["pytorch_model.bin"]) == (
        "mert-v1-330m", "CC BY-NC 4.0", sha)


def test_mert_is_a_profile_stage(mert_models, tmp_path, write_profile):
    from runner.extract import Extractor

    audio = write_audio(tmp_path / "a.wav", tone(1.0, 440.0))
    profile = write_profile("""
        name: mert
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
            mert: {model: mert-tiny, output: embeddings}
        """)
    doc, analysis = Extractor(str(profile)).analyse(str(audio))
    frames = analysis.models.embeddings["mert-tiny"]
    assert frames.shape == (74, 16)
    np.testing.assert_allclose(doc["embeddings"]["mert"], frames.mean(axis=0), rtol=1e-6)
    assert doc["metadata"]["models"]["used"]["mert-tiny"] == lock.get("mert-tiny").files[-1].sha256


def test_the_packaged_mert_entry():
    """mert-v1-95m is pinned (three files at one revision, non-commercial licence) and
    music-embeddings accepts the name; mert-v1-330m is not pinned (no public hash found)."""
    entry = lock.models()["mert-v1-95m"]
    assert (entry.kind, entry.license, entry.extra["architecture"]) == (
        "mert", "CC BY-NC 4.0", "MERTModel")
    revision = entry.extra["revision"]
    assert [(p.name, p.url.split("/resolve/")[1]) for p in entry.files] == [
        (n, f"{revision}/{n}") for n in ("config.json", "preprocessor_config.json",
                                         "pytorch_model.bin")]
    assert hub_audio.why_not("mert-v1-95m") is None
    assert "mert-v1-330m" not in lock.models()


def test_mert_v1_95m_shape_holds_as_many_tensors_as_its_checkpoint():
    """HubertModel built from MERT-v1-95M's shape (MERTConfig's defaults) holds 211 tensors of
    94,371,712 values in all: what a public loader of the real pytorch_model.bin (pinned to
    the same sha256) requires of that file, whose only renamed keys are weight_g/weight_v."""
    from transformers import HubertModel

    values = {"architectures": ["MERTModel"], "feature_extractor_cqt": False,
              "deepnorm": False, "attention_relax": -1.0, "sample_rate": 24000}
    with torch.device("meta"):
        state = HubertModel(mert.hubert_config(mert.check_config(values, "x"))).state_dict()
    assert (len(state), sum(v.numel() for v in state.values())) == (211, 94_371_712)
    hub = set(_hub_layout(state))
    assert set(mert.hub_names(dict.fromkeys(hub), set(state))) == set(state)
    assert sorted(hub - set(state)) == ["encoder.pos_conv_embed.conv.weight_g",
                                        "encoder.pos_conv_embed.conv.weight_v"]
