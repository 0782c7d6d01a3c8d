"""CLAP backends and `music-clap`, offline, with the real model code and small random weights.

A tiny laion-clap checkpoint (HTSAT-tiny, a one-layer roberta of roberta-base's width), a tiny
transformers ClapModel and a tiny roberta tokenizer are built here, registered through a test
lock file (``$EXTRACTOR_MODELS_LOCK``) and a models root (``$EXTRACTOR_MODELS``), so every
load goes through the same hash verification as the real checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("laion_clap") is None:  # not importorskip: its import goes online
    pytest.skip("laion-clap is not installed", allow_module_level=True)

from runner import cli  # noqa: E402
from runner.errors import ModelError  # noqa: E402
from runner.library import clap_search, clap_store  # noqa: E402
from runner.models import clap  # noqa: E402
from runner.models.supply import cache, lock  # noqa: E402
from tests.conftest import tone, write_audio  # noqa: E402

SR = 48000
# The files of laion/larger_clap_music at its pinned revision (models.lock.json)
LARGER_CLAP_FILES = ["config.json", "preprocessor_config.json", "merges.txt", "vocab.json",
                     "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "pytorch_model.bin"]
TEXT_CONFIG = {"num_hidden_layers": 1, "intermediate_size": 64, "num_attention_heads": 2}


def _bytes_to_unicode() -> list[str]:
    """GPT-2/roberta's byte alphabet: the 256 one-character tokens of a byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def make_tokenizer(folder: Path) -> int:
    """vocab.json + merges.txt of a small byte-level BPE; returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + _bytes_to_unicode())}
    merges = [("Ġ", "r"), ("o", "c"), ("Ġr", "oc"), ("Ġ", "p"), ("i", "a"), ("n", "o"),
              ("Ġp", "ia"), ("Ġpia", "no")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                       encoding="utf-8")
    return len(vocab)


def _pins(folder: Path) -> list[dict]:
    return [{"name": f.name, "url": f"file://{f}", "size": f.stat().st_size,
             "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
            for f in sorted(folder.iterdir()) if f.is_file()]


# Module scope: the fixture sets EXTRACTOR_MODELS and EXTRACTOR_MODELS_LOCK, which must not
# leak into other test modules (a writable EXTRACTOR_MODELS would receive their fetches).
@pytest.fixture(scope="module")
def clap_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root and a lock file with: tok-tiny, clap-tiny, clap-hf-tiny, clap-missing,
    clap-tampered (pinned to clap-tiny's hash, but one byte differs)."""
    root = tmp_path_factory.mktemp("models")
    vocab_size = make_tokenizer(root / "tok-tiny")

    torch.manual_seed(0)
    config = clap.roberta_config()
    for key, value in {**TEXT_CONFIG, "vocab_size": vocab_size}.items():
        setattr(config, key, value)
    net = clap.build_laion_clap("HTSAT-tiny", config)
    state = {"module." + k: v for k, v in net.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514)[None]  # as released
    (root / "clap-tiny").mkdir()
    torch.save({"epoch": 1, "state_dict": state}, root / "clap-tiny" / "tiny.pt")
    (root / "clap-tampered").mkdir()
    data = bytearray((root / "clap-tiny" / "tiny.pt").read_bytes())
    data[-100] ^= 0xFF
    (root / "clap-tampered" / "tiny.pt").write_bytes(bytes(data))

    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
        RobertaTokenizer,
    )

    audio = ClapAudioConfig(depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                            patch_embeds_hidden_size=8, hidden_size=64, enable_fusion=False)
    text = ClapTextConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=37)
    hf = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                              projection_dim=512))
    hf.save_pretrained(root / "clap-hf-tiny")
    tokenizer = RobertaTokenizer.from_pretrained(str(root / "tok-tiny"))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer
                  ).save_pretrained(root / "clap-hf-tiny")

    # The same model as the files of a repository without model.safetensors (the layout of
    # laion/larger_clap_music at its pinned revision): pytorch_model.bin and the processor's
    # and tokenizer's files as separate JSON/text files, by the names the real entry pins.
    legacy = root / "clap-hf-bin"
    legacy.mkdir()
    hf.config.save_pretrained(legacy)
    torch.save(hf.state_dict(), legacy / "pytorch_model.bin")
    ClapFeatureExtractor().save_pretrained(legacy)
    tokenizer.save_pretrained(legacy)
    for name in ("vocab.json", "merges.txt"):
        if not (legacy / name).exists():
            shutil.copy(root / "tok-tiny" / name, legacy / name)
    if not (legacy / "special_tokens_map.json").exists():
        (legacy / "special_tokens_map.json").write_text(json.dumps(tokenizer.special_tokens_map))
    for extra in set(os.listdir(legacy)) - set(LARGER_CLAP_FILES):
        os.unlink(legacy / extra)

    tiny_pin = _pins(root / "clap-tiny")
    models = {
        "tok-tiny": {"kind": "tokenizer", "files": _pins(root / "tok-tiny")},
        "clap-tiny": {"kind": "laion-clap", "groups": ["clap"], "files": tiny_pin,
                      "amodel": "HTSAT-tiny", "enable_fusion": False, "tokenizer": "tok-tiny",
                      "text_config": {**TEXT_CONFIG, "vocab_size": vocab_size}},
        "clap-tampered": {"kind": "laion-clap", "files": tiny_pin, "amodel": "HTSAT-tiny",
                          "tokenizer": "tok-tiny", "text_config": TEXT_CONFIG},
        "clap-missing": {"kind": "laion-clap", "amodel": "HTSAT-tiny", "tokenizer": "tok-tiny",
                         "files": [{**tiny_pin[0], "name": "missing.pt"}]},
        "clap-hf-tiny": {"kind": "transformers-clap", "files": _pins(root / "clap-hf-tiny")},
        "clap-hf-bin": {"kind": "transformers-clap", "files": _pins(legacy)},
    }
    lock_file = root / "test.lock.json"
    lock_file.write_text(json.dumps({"format": 1, "models": models}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTRACTOR_MODELS", str(root))
        patch.setenv("EXTRACTOR_MODELS_LOCK", str(lock_file))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("LAION_CLAP_CACHE", str(root / "embedding-cache"))
        yield root


@pytest.fixture(scope="module")
def tiny(clap_models: Path) -> clap.ClapBackend:
    return clap.backend(lock.get("clap-tiny"), threads=2)


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tracks in a tree: a short tone, a noise burst, and a 25 s track (3 windows)."""
    folder = tmp_path_factory.mktemp("library")
    (folder / "a").mkdir()
    rng = np.random.default_rng(1)
    write_audio(folder / "a" / "tone.wav", tone(3.0, 440.0, SR), SR)
    write_audio(folder / "a" / "noise.flac", (0.3 * rng.standard_normal(4 * SR)).astype(np.float32),
                SR)
    write_audio(folder / "long.wav", tone(25.0, 220.0, SR), SR)
    return folder


# -- windowing ---------------------------------------------------------------------------------
def test_windows_cover_the_whole_signal_without_padding() -> None:
    x = np.arange(25, dtype=np.float32)
    w = clap.windows(x, size=10)
    assert [row[0] for row in w] == [0, 10, 15]  # the last window ends at the last sample
    assert w[-1][-1] == 24
    assert clap.windows(np.arange(20, dtype=np.float32), size=10).shape == (2, 10)


def test_short_signal_is_repeat_padded_like_laion_clap() -> None:
    w = clap.windows(np.array([1, 2, 3], np.float32), size=10)
    assert w.tolist() == [[1, 2, 3, 1, 2, 3, 1, 2, 3, 0]]


def test_long_signal_embeds_as_the_mean_of_its_windows(tiny: clap.ClapBackend) -> None:
    rng = np.random.default_rng(2)
    signal = (0.2 * rng.standard_normal(int(22.5 * SR))).astype(np.float32)
    parts = clap.windows(signal)
    assert len(parts) == 3
    each = clap._normalise(tiny._embed_windows(parts))
    expected = clap._normalise(each.mean(axis=0))
    got = tiny.embed_audio(signal)
    assert got.shape == (512,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert abs(np.linalg.norm(got) - 1) < 1e-5


def test_same_signal_same_vector(tiny: clap.ClapBackend) -> None:
    signal = tone(11.0, 330.0, SR)
    first, second = tiny.embed_audio(signal), tiny.embed_audio(signal.copy())
    assert np.array_equal(first, second)


def test_fast_spectrogram_matches_torchlibrosa(clap_models: Path) -> None:
    config = clap.roberta_config()
    for key, value in TEXT_CONFIG.items():
        setattr(config, key, value)
    net = clap.build_laion_clap("HTSAT-tiny", config)
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 48000)).astype(np.float32))
    branch = net.audio_branch
    with torch.inference_mode():
        reference = branch.logmel_extractor(branch.spectrogram_extractor(x))
        clap.fast_spectrogram(net)
        fast = branch.logmel_extractor(branch.spectrogram_extractor(x))
    assert (reference - fast).abs().max().item() < 1e-3


def test_text_embeddings(tiny: clap.ClapBackend) -> None:
    vectors = tiny.embed_text(["rock piano", "a quiet flute", "rock piano"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])


def test_transformers_backend(clap_models: Path) -> None:
    backend = clap.backend(lock.get("clap-hf-tiny"))
    signal = tone(12.0, 440.0, SR)
    first = backend.embed_audio(signal)
    assert first.shape == (512,) and np.array_equal(first, backend.embed_audio(signal))
    texts = backend.embed_text(["rock piano", "noise"])
    assert texts.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)


def test_transformers_backend_reads_the_files_larger_clap_music_pins(clap_models: Path) -> None:
    """pytorch_model.bin (no model.safetensors) and separate tokenizer files: the same vectors
    as the same model saved by save_pretrained."""
    entry = lock.get("larger-clap-music")  # the packaged lock file's entry
    assert entry.kind == "transformers-clap" and sorted(p.name for p in entry.files) == sorted(
        LARGER_CLAP_FILES)
    assert sorted(os.listdir(clap_models / "clap-hf-bin")) == sorted(LARGER_CLAP_FILES)
    legacy, saved = clap.backend(lock.get("clap-hf-bin")), clap.backend(lock.get("clap-hf-tiny"))
    signal = tone(12.0, 440.0, SR)
    np.testing.assert_allclose(legacy.embed_audio(signal), saved.embed_audio(signal), atol=1e-6)
    np.testing.assert_allclose(legacy.embed_text(["rock piano", "noise"]),
                               saved.embed_text(["rock piano", "noise"]), atol=1e-6)


def test_transformers_backend_loads_only_a_pinned_weights_file(
        clap_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unpinned model.safetensors beside the pinned pytorch_model.bin is never read; the
    .bin is unpickled with weights_only, after its sha256 was checked."""
    folder = tmp_path / "clap-hf-bin"
    shutil.copytree(clap_models / "clap-hf-bin", folder)
    (folder / "model.safetensors").write_bytes(b"not weights")
    monkeypatch.setenv("EXTRACTOR_MODELS", str(tmp_path))
    loads: list[object] = []
    real = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        loads.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    backend = clap.backend(lock.get("clap-hf-bin"))
    assert backend.state.folder == folder and loads and all(w is True for w in loads)
    model = lock.get("clap-hf-bin")
    unpinned = dataclasses.replace(model, files=tuple(
        p for p in model.files if p.name != "pytorch_model.bin"))
    with pytest.raises(ModelError, match="pins no weights file"):
        clap.backend(unpinned)


# -- verification before loading -----------------------------------------------------------------
def test_tampered_checkpoint_is_refused_before_torch_load(clap_models: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def no_load(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("torch.load called on an unverified file")

    monkeypatch.setattr(torch, "load", no_load)
    # clap-tiny's copy is the only one under clap-tampered/: the root's copy must not be used
    with pytest.raises(ModelError) as err:
        clap.backend(lock.get("clap-tampered"))
    message = str(err.value)
    assert "tiny.pt does not match its pin (expected sha256 " in message
    assert message.startswith("model 'clap-tampered': ")
    assert message.endswith("; re-fetch with: extractor models fetch clap-tampered")
    assert "\n" not in message


def test_missing_checkpoint_is_one_line_naming_the_fetch_command(clap_models: Path) -> None:
    with pytest.raises(ModelError) as err:
        clap.backend(lock.get("clap-missing"))
    assert str(err.value) == (
        "model 'clap-missing' needs missing.pt (clap-missing) and merges.txt, vocab.json "
        f"(tok-tiny); not in the model cache ({cache.user_cache()}): clap-missing; fetch with: "
        "extractor models fetch clap-missing (from local files)")


def test_a_missing_tokenizer_is_named_with_every_file(clap_models: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint alone is not enough: the hint names the tokenizer's files too, and the
    one command fetches both."""
    shutil.copytree(clap_models / "clap-tiny", tmp_path / "clap-tiny")
    monkeypatch.setenv("EXTRACTOR_MODELS", str(tmp_path))  # the checkpoint, no tokenizer
    with pytest.raises(cache.MissingModel) as err:
        clap.backend(lock.get("clap-tiny"))
    assert str(err.value) == (
        "model 'clap-tiny' needs tiny.pt (clap-tiny) and merges.txt, vocab.json (tok-tiny); "
        f"not in the model cache ({cache.user_cache()}): tok-tiny; fetch with: extractor "
        "models fetch tok-tiny (from local files)")


def test_not_a_clap_model(clap_models: Path) -> None:
    with pytest.raises(ModelError, match="not a CLAP model"):
        clap.backend(lock.get("tok-tiny"))


# -- ranking -------------------------------------------------------------------------------------
def test_rank_orders_by_cosine() -> None:
    vectors = clap._normalise(np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1], [0.8, 0.6, 0]],
                                       np.float32))
    queries = clap._normalise(np.array([[1, 0, 0], [0, 1, 0.1]], np.float32))
    best = clap_search.rank(vectors, queries, 3)
    assert [i for i, _ in best[0]] == [0, 3, 1]
    assert [i for i, _ in best[1]] == [1, 3, 2]
    assert best[0][1][1] == pytest.approx(0.8)
    assert clap_search.rank(vectors, queries, 10)[0][-1][0] == 2  # limit > tracks: all


# -- music-clap end to end -------------------------------------------------------------------------
def _music_clap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.music_clap(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_music_clap_dump_reuse_refresh_json(clap_models: Path, library: Path, tmp_path: Path,
                                            tiny: clap.ClapBackend,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "vectors"
    args = [str(library), "--model", "clap-tiny", "--dump", str(dump), "--text", "rock piano",
            "--text", "noise", "--limit", "2", "--json", "--torch-threads", "1"]
    code, out, err = _music_clap(capsys, *args)
    assert code == 0, err
    assert "3 embedded, 0 reused, 0 failed" in err
    stored = sorted(p.relative_to(dump).as_posix() for p in dump.rglob("*.npy"))
    assert stored == ["a/noise.npy", "a/tone.npy", "long.npy"]
    doc = json.loads(out)
    assert doc["model"] == "clap-tiny" and doc["tracks"] == 3
    assert [q["text"] for q in doc["queries"]] == ["rock piano", "noise"]
    assert all(len(q["matches"]) == 2 for q in doc["queries"])

    # the scores are cosines of the stored vectors and the text vectors, best first
    texts = tiny.embed_text(["rock piano", "noise"])
    rel = {str(library / "a" / "tone.wav"): "a/tone.npy",
           str(library / "a" / "noise.flac"): "a/noise.npy", str(library / "long.wav"): "long.npy"}
    for query, text in zip(doc["queries"], texts, strict=True):
        scores = [m["similarity"] for m in query["matches"]]
        assert scores == sorted(scores, reverse=True)
        for match in query["matches"]:
            vector = np.load(dump / rel[match["path"]])
            assert match["similarity"] == pytest.approx(float(vector @ text), abs=1e-5)

    # the file's vector in the dump is what the backend gives for the decoded file
    decoded = clap_search.decode(str(library / "long.wav"))
    np.testing.assert_allclose(np.load(dump / "long.npy"), tiny.embed_audio(decoded), atol=1e-5)

    assert (dump / "index.npz").exists()  # all vectors in one file for later searches
    before = {p: p.stat().st_mtime_ns for p in dump.rglob("*.npy")}
    code, out2, err = _music_clap(capsys, *args)
    assert code == 0 and "0 embedded, 3 reused" in err
    assert json.loads(out2) == doc
    assert before == {p: p.stat().st_mtime_ns for p in dump.rglob("*.npy")}

    code, out3, err = _music_clap(capsys, *args, "--refresh")
    assert code == 0 and "3 embedded, 0 reused" in err
    assert json.loads(out3) == doc  # same files, same vectors


def test_music_clap_table_cache_and_failures(clap_models: Path, library: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not audio at all")
    code, out, err = _music_clap(capsys, str(library / "a" / "tone.wav"), str(bad),
                                 "--model", "clap-tiny", "--text", "rock piano")
    assert code == 1
    assert "1 embedded, 0 reused, 1 failed" in err
    assert "broken.wav" in err
    assert "rock piano" in out and "tone.wav" in out and "broken.wav" not in out
    cache = Path(os.environ["LAION_CLAP_CACHE"]) / "clap-tiny"
    assert len(list(cache.rglob("*.npy"))) == 1
    assert json.loads((cache / "clap.json").read_text())["model"] == "clap-tiny"


def test_music_clap_refuses_a_store_of_another_model(clap_models: Path, library: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "vectors"
    dump.mkdir()
    (dump / "clap.json").write_text(json.dumps({"model": "clap-music"}))
    code, _, err = _music_clap(capsys, str(library), "--model", "clap-tiny", "--dump", str(dump),
                               "--text", "x")
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: {dump} holds CLAP vectors of another model or windowing (clap-music); use "
        "another --dump folder, or --refresh to replace them"]


def test_music_clap_missing_model_is_one_line(clap_models: Path, library: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _music_clap(capsys, str(library / "a" / "tone.wav"), "--model", "clap-missing",
                               "--dump", str(tmp_path / "v"), "--text", "x", "--quiet")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "clap-missing" in lines[0]
    assert "extractor models fetch clap-missing" in lines[0]
    assert not (tmp_path / "v").exists()  # nothing is written before the model check


def test_music_clap_writes_nothing_before_the_tokenizer_is_found(
        clap_models: Path, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(clap_models / "clap-tiny", tmp_path / "models" / "clap-tiny")
    monkeypatch.setenv("EXTRACTOR_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("LAION_CLAP_CACHE", str(tmp_path / "vectors"))
    for dump in (["--dump", str(tmp_path / "v")], []):
        code, _, err = _music_clap(capsys, str(library), "--model", "clap-tiny", *dump,
                                   "--text", "x", "--quiet")
        assert code == 1 and err.count("\n") == 1
        assert "needs tiny.pt (clap-tiny) and merges.txt, vocab.json (tok-tiny)" in err
        assert err.endswith("fetch with: extractor models fetch tok-tiny (from local files)\n")
    assert not (tmp_path / "v").exists() and not (tmp_path / "vectors").exists()


def test_music_clap_usage_errors(clap_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _music_clap(capsys, "--text", "x")
    assert code == 2 and "give an audio folder or file" in err
    code, _, err = _music_clap(capsys, ".", "--limit", "0")
    assert code == 2 and "--limit must be at least 1 (got 0)" in err
    code, _, err = _music_clap(capsys, ".", "--model", "musicnn-msd")
    assert code == 1 and "not a CLAP model" in err


def test_embedding_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAION_CLAP_CACHE", str(tmp_path / "a"))
    assert clap_store.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LAION_CLAP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert clap_store.cache_dir() == tmp_path / "x" / "laion_clap"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert clap_store.cache_dir() == tmp_path / "h" / ".cache" / "laion_clap"


def test_runner_import_does_not_pay_for_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, runner.cli, runner.library.clap_search, runner.models.clap; "
            "print('torch' in sys.modules, 'laion_clap' in sys.modules, "
            "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_index_follows_changed_vectors(tmp_path: Path) -> None:
    from runner import batch

    rng = np.random.default_rng(4)
    vectors = clap._normalise(rng.standard_normal((3, 512)).astype(np.float32))
    jobs = []
    for i, vector in enumerate(vectors):
        out = tmp_path / f"t{i}.npy"
        clap_store.save_vector(out, vector)
        jobs.append(batch.Job(i, tmp_path / f"t{i}.wav", out))
    kept, matrix = clap_store.load_vectors(jobs, tmp_path)
    assert len(kept) == 3 and np.array_equal(matrix, vectors)
    assert (tmp_path / "index.npz").exists()
    clap_store.save_vector(jobs[1].output, -vectors[1])
    stat = jobs[1].output.stat()
    os.utime(jobs[1].output, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    jobs[2].output.unlink()
    kept, matrix = clap_store.load_vectors(jobs, tmp_path)
    assert [j.index for j in kept] == [0, 1]
    assert np.array_equal(matrix[1], -vectors[1])


def test_clap_profile_writes_the_embedding_through_the_model_stage(clap_models: Path,
                                                                   library: Path,
                                                                   tiny: clap.ClapBackend
                                                                   ) -> None:
    """`extractor run clap` (the generic model stage) gives music-clap's vector for a file."""
    from runner import registry
    from runner.extract import Extractor

    extractor = Extractor("clap", ["models.outputs.embedding=clap-tiny"])
    doc, _ = extractor.analyse(str(library / "long.wav"))
    vector = np.asarray(doc["clap"]["embedding"], dtype=np.float32)
    assert vector.shape == (512,)
    assert doc["metadata"]["models"]["used"]["clap-tiny"] == lock.get("clap-tiny").files[0].sha256
    std = registry.quiet_essentia().standard
    audio = std.MonoLoader(filename=str(library / "long.wav"), sampleRate=48000)()
    np.testing.assert_allclose(vector, tiny.embed_audio(audio), atol=1e-6)


# -- one batch epilogue for every command ------------------------------------------------------------
BEATS_SUMMARY = """\
name: beats_summary
extends: beats
summary:
  descriptors:
    bpm: rhythm.bpm
"""


def test_the_batch_commands_end_alike_on_a_clean_rerun(clap_models: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """extractor run, streaming-extractor-summary and music-clap share one epilogue: a bad
    file is listed in failures.jsonl (exit code 1); once it is gone, the rerun removes that
    list (exit code 0), but never a list the user named with --failures."""
    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "tone.wav", tone(3.0, 440.0, SR), SR)
    bad = lib / "broken.wav"
    bad.write_bytes(b"RIFF not audio at all")
    profile = tmp_path / "beats_summary.yaml"
    profile.write_text(BEATS_SUMMARY)
    commands = {
        "run": (cli.main, ["run", "beats", str(lib), "--output", str(tmp_path / "beats"),
                           "-j", "1"], tmp_path / "beats"),
        "summary": (cli.library_summary, [str(lib), str(tmp_path / "s.json"), "--profile",
                                          str(profile), "-j", "1"], tmp_path / "s_tracks"),
        "clap": (cli.music_clap, [str(lib), "--model", "clap-tiny", "--dump",
                                  str(tmp_path / "vectors"), "--torch-threads", "1"],
                 tmp_path / "vectors"),
    }
    for chosen in (False, True):
        if not bad.exists():
            bad.write_bytes(b"RIFF not audio at all")
        for name, (command, argv, folder) in commands.items():
            failures = tmp_path / f"{name}-failures.jsonl" if chosen else folder / "failures.jsonl"
            extra = ["--failures", str(failures)] if chosen else []
            assert command(argv + extra + ["--quiet"]) == 1, (name, capsys.readouterr().err)
            listed = [json.loads(line)["path"] for line in failures.read_text().splitlines()]
            assert listed == [str(bad)], name
        bad.unlink()
        for name, (command, argv, folder) in commands.items():
            failures = tmp_path / f"{name}-failures.jsonl" if chosen else folder / "failures.jsonl"
            extra = ["--failures", str(failures)] if chosen else []
            assert command(argv + extra + ["--quiet"]) == 0, (name, capsys.readouterr().err)
            assert failures.exists() == chosen, name


@pytest.fixture(scope="module")
def clap_outputs(clap_models: Path, library: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Path:
    """Outputs of the clap profile (clap-tiny) for three files, one of them recording other
    weights than the pinned ones."""
    from runner.extract import Extractor

    extractor = Extractor("clap", ["models.outputs.embedding=clap-tiny"])
    outputs = tmp_path_factory.mktemp("clap-outputs")
    for name in ("a/tone.wav", "a/noise.flac", "long.wav"):
        (outputs / name).parent.mkdir(parents=True, exist_ok=True)
        extractor.extract(str(library / name), str(outputs / f"{name}.json"))
    stale = json.loads((outputs / "long.wav.json").read_text())
    stale["metadata"]["models"]["used"]["clap-tiny"] = "0" * 64  # other weights
    (outputs / "long.wav.json").write_text(json.dumps(stale))
    return outputs


def _catalog_of(outputs: Path, url: str) -> str:
    from runner.catalog import connect
    from runner.catalog.update import update

    db = connect(url)
    try:
        update(db, outputs)
    finally:
        db.close()
    return url


def test_music_clap_searches_a_catalog_of_clap_outputs(clap_outputs: Path, library: Path,
                                                        tmp_path: Path, tiny: clap.ClapBackend,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`music-clap --db`: the catalog's clap.embedding vectors, only those of the pinned
    weights; the ranking is the cosine to the text embedded with the same model."""
    outputs = clap_outputs
    url = _catalog_of(outputs, str(tmp_path / "catalog.sqlite"))

    code, out, err = _music_clap(capsys, "--db", url, "--model", "clap-tiny", "--text",
                                 "rock piano", "--json", "--limit", "5")
    assert code == 0, err
    assert ("1 tracks with clap.embedding from other weights than clap-tiny's pinned files "
            "(left out; analyse them again with the clap profile)") in err
    matches = json.loads(out)["queries"][0]["matches"]
    text = tiny.embed_text(["rock piano"])[0]
    expected = {}
    for name in ("a/tone.wav", "a/noise.flac"):
        vector = np.asarray(json.loads((outputs / f"{name}.json").read_text())["clap"]
                            ["embedding"], np.float32)
        expected[name] = float(vector @ text / np.linalg.norm(vector))
    assert [m["path"] for m in matches] == sorted(expected, key=lambda n: -expected[n])
    for match in matches:
        assert match["similarity"] == pytest.approx(expected[match["path"]], abs=1e-5)

    monkeypatch.setenv("EXTRACTOR_CATALOG", url)  # no INPUT, no --db: the user's catalog
    code, again, err = _music_clap(capsys, "--model", "clap-tiny", "--text", "rock piano",
                                   "--json", "--limit", "5")
    assert code == 0 and again == out
    code, _, err = _music_clap(capsys, str(library), "--db", url, "--text", "x")
    assert code == 2 and err.endswith("--db searches a catalog: give no INPUT (or no --db)\n")


def test_music_clap_ranks_in_a_postgresql_server_with_pgvector(
        clap_outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same search on a PostgreSQL catalog whose server has pgvector (pgserver's bundled
    PostgreSQL 16): ranked there, equal to numpy's ranking of the SQLite catalog."""
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed")
    from tests.catalog.pg_server import new_database, pgvector_binaries, server

    if pgvector_binaries() is None:
        missing = "pgserver is not installed (its PostgreSQL 16 has pgvector)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    search = ("--model", "clap-tiny", "--text", "rock piano", "--text", "noise", "--json")
    sqlite = _catalog_of(clap_outputs, str(tmp_path / "catalog.sqlite"))
    code, client, _ = _music_clap(capsys, "--db", sqlite, *search)
    assert code == 0
    with server(pgvector_binaries()) as admin:
        url = _catalog_of(clap_outputs, new_database(admin, "clap"))
        import psycopg

        with psycopg.connect(url) as conn:  # what the client would read: blanked
            conn.execute("UPDATE vectors SET data = ''::bytea")
        code, ranked, err = _music_clap(capsys, "--db", url, *search)
    assert code == 0, err
    assert err.endswith("(left out; analyse them again with the clap profile)\n")  # no other note
    assert err.count("note:") == 1
    a, b = json.loads(client), json.loads(ranked)
    assert a["tracks"] == b["tracks"] == 2
    for mine, theirs in zip(a["queries"], b["queries"], strict=True):
        assert [m["path"] for m in mine["matches"]] == [m["path"] for m in theirs["matches"]]
        assert [m["similarity"] for m in mine["matches"]] == pytest.approx(
            [m["similarity"] for m in theirs["matches"]], abs=1e-5)


# -- a classifier trained on CLAP vectors, run as a head of the CLAP stage -------------------
CLAP_HEAD_PROFILE = """name: clap-head
audio:
  sample_rate: 48000
  resample_quality: 2
models:
  section: highlevel
  missing: error
  outputs:
    tone_or_noise: tone_or_noise
"""


def test_a_head_trained_on_music_clap_vectors_runs_in_a_profile(
        clap_models: Path, tiny: clap.ClapBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """music-clap --dump -> extractor train --embeddings -> models add -> a profile whose only
    output is the head: the stage runs CLAP once per track and the head reads that vector,
    giving what the exported ONNX gives on the vector music-clap dumped for the same file."""
    import onnxruntime

    from runner.extract import Extractor

    rng = np.random.default_rng(3)
    audio = tmp_path / "audio"
    audio.mkdir()
    labels = {}
    for index in range(3):  # tones and noise bursts, 1 s each
        write_audio(audio / f"tone{index}.wav", tone(1.0, 220.0 * (index + 1), SR), SR)
        write_audio(audio / f"noise{index}.wav",
                    (0.3 * rng.standard_normal(SR)).astype(np.float32), SR)
        labels[f"tone{index}"], labels[f"noise{index}"] = "tone", "noise"
    dump = tmp_path / "vectors"  # what music-clap --dump writes (the test above pins that)
    dump.mkdir()
    for name in labels:
        np.save(dump / f"{name}.npy", tiny.embed_audio(clap_search.decode(str(audio / f"{name}.wav"))))
    (tmp_path / "labels.csv").write_text(
        "".join(f"{dump / name}.npy,{label}\n" for name, label in sorted(labels.items())))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", f"{tmp_path / 'my.lock.json'}{os.pathsep}"
                                                f"{os.environ['EXTRACTOR_MODELS_LOCK']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    head = tmp_path / "head"
    assert cli.main(["train", str(tmp_path / "labels.csv"), "-o", str(head), "--embeddings",
                     "clap-tiny", "--folds", "2", "--test-fraction", "0", "--name",
                     "tone_or_noise", "--quiet"]) == 0
    assert cli.main(["models", "add", str(head)]) == 0
    capsys.readouterr()

    calls = []
    embed = clap.ClapBackend.embed_audio
    monkeypatch.setattr(clap.ClapBackend, "embed_audio",
                        lambda self, signal: calls.append(1) or embed(self, signal))
    profile = tmp_path / "clap-head.yaml"
    profile.write_text(CLAP_HEAD_PROFILE)
    extractor = Extractor(str(profile), warn=False)
    session = onnxruntime.InferenceSession(str(head / "tone_or_noise.onnx"),
                                           providers=["CPUExecutionProvider"])
    for name in ("tone2", "noise1"):
        doc, _ = extractor.analyse(str(audio / f"{name}.wav"))
        got = doc["highlevel"]["tone_or_noise"]
        vector = np.load(dump / f"{name}.npy").astype(np.float32)[None, :]
        outputs = dict(zip([o.name for o in session.get_outputs()],
                           session.run(None, {session.get_inputs()[0].name: vector}),
                           strict=True))
        probabilities = next(v for v in outputs.values() if v.dtype == np.float32)[0]
        classes = sorted(got["all"])
        assert sorted(got["all"]) == ["noise", "tone"]
        for index, label in enumerate(classes):
            assert got["all"][label] == pytest.approx(float(probabilities[index]), abs=1e-4)
        assert got["value"] == max(got["all"], key=got["all"].get)
        assert sorted(doc["metadata"]["models"]["used"]) == ["clap-tiny", "tone_or_noise"]
    assert len(calls) == 2  # one CLAP run per track, for the head
