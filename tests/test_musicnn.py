"""The offline default for real: the musicnn wheel from PyPI, pinned by hash, converted into
frozen graphs (TensorFlow in its own process), checked against a direct TensorFlow evaluation
of the checkpoint, and its tags on contrasting clips made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import electronic_clip, noise_clip, piano_clip, write_audio
from tests.test_cli import run

# The musicnn wheel comes from PyPI and converts with TensorFlow: not in the Nix sandbox.
pytestmark = [pytest.mark.network, pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def musicnn_cache(tmp_path_factory) -> Path:
    """musicnn-msd and musicnn-mtt fetched (29 MB from PyPI) and converted, once."""
    cache = tmp_path_factory.mktemp("musicnn-cache")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        result = run("extractor", "models", "fetch", "default", "--quiet")
        assert result.returncode == 0, result.stderr
        listing = run("extractor", "models", "list", "default")
        assert listing.stdout.count("present") == 2, listing.stdout
        yield cache / "extractor-profiles" / "models"
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="module")
def tags(musicnn_cache, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("contrast")
    write_audio(folder / "electronic.wav", electronic_clip(10.0))
    write_audio(folder / "piano.wav", piano_clip(10.0))
    write_audio(folder / "noise.wav", noise_clip(10.0))
    out = tmp_path_factory.mktemp("contrast-out")
    result = run("music-highlevel", str(folder), "--output", str(out), "--taxonomies",
                 "msd_musicnn", "mtt_musicnn", "-j", "1")
    assert result.returncode == 0, result.stderr
    return {name: json.loads((out / f"{name}.json").read_text())["highlevel"]
            for name in ("electronic", "piano", "noise")}


def _top(result: dict, n: int) -> list[str]:
    probs = result["all"]
    return sorted(probs, key=probs.get, reverse=True)[:n]


def test_conversion_is_recorded_and_stands_in_for_mtg_msd_musicnn(tags, musicnn_cache):
    manifest = json.loads((musicnn_cache / "musicnn-msd" / "manifest.json").read_text())
    assert manifest["source"] == "musicnn-0.1.0-py3-none-any.whl"
    assert set(manifest["files"]) == {"musicnn-msd.pb", "musicnn-msd.json"}
    for model in ("musicnn-msd", "musicnn-mtt"):  # the faster front end was really built:
        meta = json.loads((musicnn_cache / model / f"{model}.json").read_text())
        # musicnn's 5 front-end blocks (2 timbral, 3 temporal filter shapes), each max-pooled
        # over the mel bands, are rewritten (runner.models.convert.musicnn_graph.pool_first_conv_blocks)
        assert meta["converted_from"]["rewritten_blocks"] == 5, meta["converted_from"]
    # msd_musicnn names MTG's msd-musicnn-1, which is not in the cache: the conversion serves it
    assert len(tags["piano"]["msd_musicnn"]["all"]) == 50
    assert len(tags["piano"]["mtt_musicnn"]["all"]) == 50


def test_tags_make_sense_on_contrasting_clips(tags):
    assert _top(tags["piano"]["mtt_musicnn"], 1) == ["piano"]
    assert {"techno", "electronic"} & set(_top(tags["electronic"]["mtt_musicnn"], 2))
    assert _top(tags["electronic"]["msd_musicnn"], 1) == ["electronic"]
    assert "loud" in _top(tags["noise"]["mtt_musicnn"], 3)
    piano = {k: v["mtt_musicnn"]["all"]["piano"] for k, v in tags.items()}
    assert piano["piano"] > 3 * max(piano["electronic"], piano["noise"])
    techno = {k: v["mtt_musicnn"]["all"]["techno"] for k, v in tags.items()}
    assert techno["electronic"] > 3 * techno["piano"]


@pytest.mark.parametrize("model_id, checkpoint", [("musicnn-msd", "MSD_musicnn"),
                                                   ("musicnn-mtt", "MTT_musicnn")])
def test_frozen_graph_matches_the_checkpoint_evaluated_in_tensorflow(musicnn_cache, tmp_path,
                                                                     model_id, checkpoint):
    """Tags and embeddings of the converted graph (is-training branches removed, front-end
    blocks rewritten for speed) equal the checkpoint's own graph up to float rounding."""
    from runner.models.infer import FRONTENDS, Metadata, Predictor, features, patches

    folder = musicnn_cache / model_id
    meta = Metadata.read(folder / f"{model_id}.json")
    front = FRONTENDS[meta.algorithm]
    batch = np.ascontiguousarray(np.concatenate(
        [patches(features(audio, front), 187, 93)
         for audio in (piano_clip(8.0, sr=16000), electronic_clip(8.0, sr=16000))]))
    outputs = [meta.outputs["predictions"], meta.outputs["embeddings"]]
    ours = Predictor(folder / f"{model_id}.pb", meta, outputs).run(batch)
    np.save(tmp_path / "patches.npy", batch[:, 0])
    wheel = musicnn_cache / "_sources" / "musicnn-0.1.0-py3-none-any.whl"
    script = Path(__file__).with_name("musicnn_checkpoint_eval.py")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(script), str(wheel), checkpoint,
                           str(tmp_path / "patches.npy"), str(tmp_path / "ref.npy"),
                           str(tmp_path / "emb.npy")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = np.load(tmp_path / "ref.npy")
    assert reference.shape == ours[outputs[0]].shape == (len(batch), 50)
    np.testing.assert_allclose(ours[outputs[0]], reference, atol=1e-5)
    embeddings = np.load(tmp_path / "emb.npy")
    assert embeddings.shape == ours[outputs[1]].shape == (len(batch), 200)
    np.testing.assert_allclose(ours[outputs[1]], embeddings, atol=1e-4)  # values up to ~13


def test_music_highlevel_works_after_fetch_default_and_names_the_rest(musicnn_cache, tmp_path):
    """`extractor models fetch default` is enough for `music-highlevel IN OUT`: the two musicnn
    taxonomies run; one note names the 15 outputs left out and says their models come only
    from essentia.upf.edu. `--missing error` still stops, naming every missing model."""
    clip = write_audio(tmp_path / "piano.wav", piano_clip(6.0))
    out = tmp_path / "piano.json"
    result = run("music-highlevel", str(clip), str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        "note: highlevel: 15 of 17 outputs left out (danceability, voice_instrumental, ")
    assert result.stderr.endswith(
        "mtg_jamendo_genre), their models are not in the model cache; fetch with: extractor "
        "models fetch highlevel (from essentia.upf.edu only, MTG's server: needs internet access "
        "to that host)\n")
    doc = json.loads(out.read_text())
    assert sorted(doc["highlevel"]) == ["msd_musicnn", "mtt_musicnn"]
    assert sorted(doc["metadata"]["models"]["used"]) == ["musicnn-msd", "musicnn-mtt"]
    assert len(doc["metadata"]["models"]["left_out"]) == 15
    strict = run("music-highlevel", str(clip), str(tmp_path / "strict.json"), "--missing", "error")
    assert strict.returncode == 1 and not (tmp_path / "strict.json").exists()
    assert strict.stderr.startswith("error: highlevel: 15 models are not in the model cache (")
    assert strict.stderr.count("\n") == 1
