"""PANNs CNN14 (kind ``panns``) and the AudioSet tags of PANNs and AST, on tiny models built
here: a narrow CNN14 saved as the authors' checkpoints are (a pickle with the network's state,
torchlibrosa's front end and a training sampler's numpy arrays) and a tiny
ASTForAudioClassification, registered through a temporary lock file. The front end against
torchlibrosa, the pieces of a long track against the whole, determinism, hash and pickle
refusals, the tags output in a profile, and music-embeddings' .npy layout and resume
(docs/embeddings.md). No real weights: zenodo and the hub are unreachable from here."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from runner.cli.embeddings import music_embeddings
from runner.errors import ModelError, ProfileError
from runner.models import hub_audio, panns
from runner.models.framewise import LOADERS
from runner.models.supply import cache, lock
from tests.conftest import click_track, tone, write_audio

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

WIDTHS = (2, 4, 4, 8, 8, 16)  # the released model's are 64 ... 2048
AST_LABELS = ("Speech", "Music", "Bee, wasp, etc.")


def torchlibrosa_state(window: np.ndarray, mel: np.ndarray) -> dict[str, object]:
    """The front end's entries of a PANNs checkpoint, as torchlibrosa's STFT stores them:
    conv_real/conv_imag[k, 0, n] = the window times the DFT's cos / -sin, and the mel matrix."""
    n = len(window)
    k = np.arange(n // 2 + 1)[:, None] * np.arange(n)[None, :] * 2 * np.pi / n
    return {panns.CONV_REAL: torch.from_numpy((np.cos(k) * window)[:, None, :].astype(np.float32)),
            panns.CONV_IMAG: torch.from_numpy((-np.sin(k) * window)[:, None, :].astype(np.float32)),
            panns.MEL: torch.from_numpy(mel)}


def tiny_checkpoint(seed: int = 0, zipped: bool = False) -> bytes:
    """A narrow CNN14 with random weights (batch-norm statistics too), saved as
    ``Cnn14_mAP=0.431.pth`` is laid out."""
    torch.manual_seed(seed)
    net = panns.build(WIDTHS)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    state = {k: v for k, v in net.state_dict().items() if k not in ("window", "mel")}
    mel = (np.arange(513)[:, None] // 8 == np.arange(64)[None, :]).astype(np.float32)
    state.update(torchlibrosa_state(panns.hann_window(), mel))  # bands of 8 bins will do
    sampler = {"indexes_per_class": [np.arange(4, dtype=np.int64)], "queue": [3, 1],
               "pointers_of_classes": [np.int64(0)]}
    buffer = io.BytesIO()
    torch.save({"iteration": 600000, "model": state, "sampler": {"sampler1": sampler}}, buffer,
               _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


class Trap:
    """Code in a pickle: unpickling it would create the file it names."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _pins(folder: Path) -> list[dict]:
    return [{"name": f.name, "url": f"file://{f}", "size": f.stat().st_size,
             "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
            for f in sorted(folder.iterdir()) if f.is_file()]


@pytest.fixture(scope="module")
def tagger_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root and a lock file: panns-tiny, panns-tampered (its pins, one byte changed),
    panns-trap (a checkpoint with code in it, pinned), ast-tiny (three labels) and
    hubert-named (a lock entry of a class without a head)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    root = tmp_path_factory.mktemp("tagger-models")
    name = "Cnn14_mAP=0.431.pth"
    for folder, data in (("panns-tiny", tiny_checkpoint()), ("panns-tampered", None)):
        (root / folder).mkdir()
        if data is None:
            data = bytearray((root / "panns-tiny" / name).read_bytes())
            data[-100] ^= 0xFF
        (root / folder / name).write_bytes(bytes(data))
    (root / "panns-trap").mkdir()
    torch.save({"model": {"x": Trap(str(root / "trapped"))}}, root / "panns-trap" / name)
    torch.manual_seed(0)
    ast = ASTForAudioClassification(ASTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_mel_bins=16, max_length=100, num_labels=3,
        id2label=dict(enumerate(AST_LABELS)), label2id={n: i for i, n in enumerate(AST_LABELS)}))
    ast.save_pretrained(root / "ast-tiny")
    ASTFeatureExtractor(num_mel_bins=16, max_length=100).save_pretrained(root / "ast-tiny")
    for extra in set(os.listdir(root / "ast-tiny")) - {"config.json", "model.safetensors",
                                                       "preprocessor_config.json"}:
        os.unlink(root / "ast-tiny" / extra)
    models = {
        "panns-tiny": {"kind": "panns", "license": "test", "files": _pins(root / "panns-tiny")},
        "panns-tampered": {"kind": "panns", "license": "test",
                           "files": _pins(root / "panns-tiny")},
        "panns-trap": {"kind": "panns", "license": "test", "files": _pins(root / "panns-trap")},
        "ast-tiny": {"kind": "transformers-audio", "architecture": "ASTForAudioClassification",
                     "license": "test", "files": _pins(root / "ast-tiny")},
        "hubert-named": {"kind": "transformers-audio", "architecture": "HubertModel",
                         "license": "test", "files": _pins(root / "ast-tiny")},
    }
    lock_file = root / "test.lock.json"
    lock_file.write_text(json.dumps({"format": 1, "models": models}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTRACTOR_MODELS", str(root))
        patch.setenv("EXTRACTOR_MODELS_LOCK", str(lock_file))
        yield root


def _loaded(model_id: str):
    model = lock.get(model_id)
    return LOADERS[model.kind](model, cache.resolved_files(model), {})


def test_front_end_matches_torchlibrosa():
    """Our torch.stft log-mel is PANNs' torchlibrosa Spectrogram + LogmelFilterBank (the
    authors' settings), and their stored window and mel matrix are the ones we compute."""
    stft = pytest.importorskip("torchlibrosa.stft")
    spectrogram = stft.Spectrogram(n_fft=1024, hop_length=320, win_length=1024, window="hann",
                                   center=True, pad_mode="reflect", freeze_parameters=True)
    logmel = stft.LogmelFilterBank(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000,
                                   ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
    np.testing.assert_allclose(spectrogram.stft.conv_real.weight[0, 0].numpy(),
                               panns.hann_window(), atol=1e-7)
    np.testing.assert_allclose(logmel.melW.numpy(), panns.mel_matrix(), atol=1e-7)
    signal = tone(1.0, 440.0, sr=32000) + 0.05 * np.random.default_rng(1).standard_normal(
        32000).astype(np.float32)
    net = panns.build(WIDTHS)
    net.mel.copy_(torch.from_numpy(panns.mel_matrix()))  # a checkpoint's melW, as load() sets
    with torch.inference_mode():
        reference = logmel(spectrogram(torch.from_numpy(signal)[None]))[0, 0]
        ours = net.logmel(torch.from_numpy(np.pad(signal, 512, mode="reflect")))
    assert ours.shape == (1, 1, 1 + 32000 // 320, 64)
    assert (ours[0, 0] - reference).abs().max().item() < 1e-3  # dB; levels reach about -60


def test_a_clip_embedding_and_527_tags_per_track(tagger_models):
    network = _loaded("panns-tiny")
    assert (network.sample_rate, network.frame_rate) == (32000, 0.0)
    assert len(network.labels) == 527
    assert (network.labels[0], network.labels[137], network.labels[-1]) == (
        "Speech", "Music", "Field recording")
    signal = click_track(2.0, sr=32000)
    rows = network.run(signal)
    assert rows.shape == (1, 16) and rows.dtype == np.float32
    assert np.array_equal(rows, _loaded("panns-tiny").run(signal))  # deterministic
    tags = network.head(rows)
    assert tags.shape == (1, 527) and tags.min() >= 0 and tags.max() <= 1
    assert not np.allclose(rows, network.run(tone(2.0, 220.0, sr=32000)))
    # shorter than 0.31 s (one step of the time map): zero-padded to 9920 samples
    short = tone(0.1, 440.0, sr=32000)
    np.testing.assert_array_equal(network.run(short), network.run(
        np.pad(short, (0, panns.MIN_SAMPLES - len(short)))))
    assert network.run(np.zeros(0, np.float32)).shape == (1, 16)


def test_the_zip_format_loads_alike(tagger_models):
    signal = tone(1.0, 330.0, sr=32000)
    legacy = panns.Panns(panns.load(tiny_checkpoint(seed=3)))
    zipped = panns.Panns(panns.load(tiny_checkpoint(seed=3, zipped=True)))
    assert np.array_equal(legacy.run(signal), zipped.run(signal))


def test_a_long_track_in_pieces_is_the_whole_track(monkeypatch):
    net = panns.Panns(panns.load(tiny_checkpoint()))
    signal = click_track(3.0, sr=32000)  # 301 frames: 9 steps of the time map
    whole = net.time_map(signal)
    assert whole.shape == (16, (1 + len(signal) // 320) // 32)
    monkeypatch.setattr(panns, "CHUNK_FRAMES", 64)  # five pieces, 256 frames each side
    pieces = net.time_map(signal)
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(panns, "CONTEXT_FRAMES", 32)  # less than the stack sees: seams show
    assert not torch.allclose(net.time_map(signal), whole, atol=1e-3)


def test_a_tampered_checkpoint_is_refused(tagger_models):
    path = tagger_models / "panns-tampered" / "Cnn14_mAP=0.431.pth"
    expected = _pins(tagger_models / "panns-tiny")[0]["sha256"]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError) as err:
        _loaded("panns-tampered")
    assert str(err.value) == (
        f"model 'panns-tampered': {path} does not match its pin (expected sha256 {expected}, "
        f"got {actual}); re-fetch with: extractor models fetch panns-tampered")


def test_code_in_a_checkpoint_is_never_run(tagger_models):
    with pytest.raises(ModelError) as err:
        _loaded("panns-trap")
    assert str(err.value).startswith("panns: cannot read the checkpoint (Weights only load "
                                     "failed")
    assert not (tagger_models / "trapped").exists()


def test_only_the_32_khz_front_end_is_taken():
    state = dict(torchlibrosa_state(np.hanning(512).astype(np.float32),
                                    np.zeros((257, 64), np.float32)))
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    with pytest.raises(ModelError) as err:
        panns.load(buffer.getvalue())
    assert str(err.value) == ("panns: not the 32 kHz CNN14 (window of 512 samples, mel matrix "
                              "(257, 64); expected 1024 and (513, 64))")


def test_ast_tags_are_its_own_head_on_the_pooled_rows(tagger_models):
    """The probabilities are what ASTForAudioClassification's forward gives (sigmoid of its
    logits), from the rows the embeddings already hold."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    network = _loaded("ast-tiny")
    assert network.labels == AST_LABELS
    signal = tone(2.5, 440.0, sr=16000)
    rows = network.run(signal)
    tags = network.head(rows)
    assert rows.shape == (3, 16) and tags.shape == (3, 3)
    folder = str(tagger_models / "ast-tiny")
    model = ASTForAudioClassification.from_pretrained(folder).eval()
    features = ASTFeatureExtractor.from_pretrained(folder)(signal[:16000], sampling_rate=16000,
                                                           return_tensors="pt")
    with torch.inference_mode():
        expected = torch.sigmoid(model(**features).logits).numpy()
    np.testing.assert_allclose(tags[:1], expected, atol=1e-6)
    # a last window shorter than one 25 ms fbank frame (it failed in the feature extractor)
    assert network.run(signal[:16001]).shape == (2, 16)


def test_tags_in_a_profile_stage(tagger_models, tmp_path, write_profile, monkeypatch):
    """``tags`` outputs: class name -> probability (PANNs: the track's; AST: the mean over its
    windows), beside the embeddings of the same run of each network."""
    from runner.extract import Extractor

    runs = []
    real = hub_audio.windowed
    monkeypatch.setattr(hub_audio, "windowed", lambda *a: runs.append(1) or real(*a))
    audio = write_audio(tmp_path / "a.wav", click_track(2.0))
    profile = write_profile("""
        name: tags
        audio: {sample_rate: 44100}
        models:
          section: tags
          outputs:
            panns: {model: panns-tiny, output: tags}
            ast: {model: ast-tiny, output: tags}
            ast_embedding: {model: ast-tiny, output: embeddings}
        """)
    doc, analysis = Extractor(str(profile)).analyse(str(audio))
    frames = analysis.models.embeddings
    assert runs == [1]  # AST ran once for its embeddings and its tags
    assert list(doc["tags"]["ast"]) == list(AST_LABELS)
    np.testing.assert_allclose(list(doc["tags"]["ast"].values()),
                               frames["ast-tiny.tags"].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(doc["tags"]["ast_embedding"], frames["ast-tiny"].mean(axis=0),
                               rtol=1e-6)
    assert len(doc["tags"]["panns"]) == 527
    assert doc["tags"]["panns"]["Bee, wasp, etc."] == pytest.approx(
        float(frames["panns-tiny.tags"][0, 131]))


def test_a_head_is_asked_of_a_model_without_one(tagger_models, write_profile):
    from runner.extract import Extractor

    profile = write_profile("""
        name: tags
        audio: {sample_rate: 44100}
        models:
          outputs:
            tags: {model: hubert-named, output: tags}
        """)
    with pytest.raises(ProfileError) as err:  # a profile problem, at the output's line
        Extractor(str(profile))
    assert str(err.value) == (f"{profile}:5: models.outputs.tags: model 'hubert-named' "
                              "(HubertModel) has no tag head: tags come from "
                              "ASTForAudioClassification or a PANNs model (output 'tags')")


def test_music_embeddings_layout_manifests_and_resume(tagger_models, tmp_path):
    """--models panns panns-tags ast-tags (named here by their test ids): one folder each, the
    tags folders' manifests naming their columns; a rerun redoes only the missing file."""
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    write_audio(music / "one.wav", click_track(2.0))
    write_audio(music / "album" / "two.wav", tone(1.0, 330.0))
    out = tmp_path / "emb"
    names = {"panns": "panns-tiny", "panns-tags": "panns-tiny", "ast-tags": "ast-tiny"}
    args = [str(music), "--output-base", str(out), "--models", "panns", "panns-tags",
            "ast-tags", "-j", "1", "--quiet"]
    with pytest.MonkeyPatch.context() as patch:
        from runner.cli import embeddings

        patch.setitem(embeddings.NAMES, "panns", names["panns"])
        patch.setitem(embeddings.TAGS, "panns-tags", names["panns-tags"])
        patch.setitem(embeddings.TAGS, "ast-tags", names["ast-tags"])
        assert music_embeddings(args) == 0
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*.npy"))
        assert files == sorted(f"{name}/{track}" for name in ("ast-tags", "panns", "panns-tags")
                               for track in ("album/two.npy", "one.npy"))
        shapes = {f: np.load(out / f).shape for f in files}
        assert shapes["panns/one.npy"] == (1, 16) and shapes["panns-tags/one.npy"] == (1, 527)
        # 2 s at 44.1 kHz is 32001 samples at 16 kHz: three windows of 1 s, the last of one
        assert shapes["ast-tags/one.npy"] == (3, 3) and shapes["ast-tags/album/two.npy"] == (2, 3)
        manifest = json.loads((out / "panns-tags" / "model.json").read_text())
        assert (manifest["model"], manifest["output"], len(manifest["labels"])) == (
            "panns-tiny", "tags", 527)
        assert json.loads((out / "ast-tags" / "model.json").read_text())["labels"] == list(
            AST_LABELS)
        assert "output" not in json.loads((out / "panns" / "model.json").read_text())
        kept = {f: (out / f).stat().st_mtime_ns for f in files}
        assert music_embeddings(args) == 0  # every file there: nothing is computed again
        assert {f: (out / f).stat().st_mtime_ns for f in files} == kept
    # a track is done when the files of all its folders are there: a missing tags file alone
    # has it done again (docs/embeddings.md; the rerun itself: tests/test_embeddings.py)
    from runner.batch.embed_job import Request, paths
    from runner.batch.inputs import Job

    wanted = [Request(n, m, output="tags" if n.endswith("tags") else "embeddings")
              for n, m in names.items()]
    job = Job(0, music / "one.wav", (out / "panns" / "one.npy").resolve())
    assert [p.relative_to(out.resolve()) for p in paths(job, out, wanted)] == [
        Path("panns/one.npy"), Path("panns-tags/one.npy"), Path("ast-tags/one.npy")]
