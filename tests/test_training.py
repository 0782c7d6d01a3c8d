"""`extractor train` end to end (issue 20): labelled synthetic audio -> the music profile
through the batch engine -> the scikit-learn search -> ONNX -> `extractor models add` ->
`music-highlevel --taxonomies` on new files writes ``highlevel.<name>`` with the right
classes; Gaia's groundtruth and filelist files; tampered models; every bad input's one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.cli import main, music_highlevel
from runner.errors import TrainingError
from runner.training import features, groundtruth, search
from tests.conftest import SR, write_audio

DATA = Path(__file__).parent / "data" / "training"
CLASSES = ("clicks", "noise", "tones")


def _clip(label: str, rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """Three kinds of sound a classifier separates on descriptors alone."""
    t = np.arange(int(seconds * SR)) / SR
    if label == "tones":
        freq = rng.uniform(200, 900)
        return (0.4 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(4 * np.pi * freq * t)
                ).astype(np.float32)
    if label == "noise":  # noise bursts
        gate = np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0
        return (rng.standard_normal(len(t)) * 0.3 * gate).astype(np.float32)
    x = np.zeros(len(t))  # clicks at a tempo of their own
    period = int(SR * 60 / rng.uniform(80, 180))
    for start in range(0, len(t) - 200, period):
        x[start:start + 200] += np.exp(-np.arange(200) / 20.0) * 0.8
    return x.astype(np.float32)


def _make_set(folder: Path, per_class: int, seed: int) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(seed)
    made = []
    for label in CLASSES:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            path = write_audio(folder / label / f"{label}_{seed}_{index}.wav",
                               _clip(label, rng))
            made.append((path, label))
    return made


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """A lock file and a model cache of this module's own."""
    root = tmp_path_factory.mktemp("training-env")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXTRACTOR_MODELS_LOCK", str(root / "my.lock.json"))
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        yield root


@pytest.fixture(scope="module")
def trained(env: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """7 files per class, analysed by the music profile and trained from a CSV."""
    root = tmp_path_factory.mktemp("training")
    tracks = _make_set(root / "audio", 7, seed=1)
    csv = root / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p.relative_to(root)},{label}\n"
                                            for p, label in tracks))
    model = root / "model"
    code = main(["train", str(csv), "-o", str(model), "--name", "my_genre", "--folds", "3",
                 "--test-fraction", "0.25", "--quiet"])
    assert code == 0
    return {"root": root, "csv": csv, "model": model, "analysis": model / "analysis"}


def test_train_writes_onnx_metadata_and_report(trained: dict[str, Path]) -> None:
    model = trained["model"]
    assert sorted(p.name for p in model.iterdir() if p.is_file()) == [
        "my_genre.json", "my_genre.onnx", "report.json"]
    meta = json.loads((model / "my_genre.json").read_text())
    assert meta["classes"] == list(CLASSES)
    assert meta["dataset"]["size"] == 21
    assert meta["dataset"]["class_counts"] == {c: 7 for c in CLASSES}
    assert meta["inference"]["algorithm"] == "onnxruntime"
    assert meta["inference"]["profile"] == "music"
    names = [d["name"] for d in meta["inference"]["descriptors"]]
    assert "lowlevel.mfcc.mean" in names and not any(n.startswith("metadata.") for n in names)
    assert not any(n.endswith((".dmean", ".min", ".max", ".cov")) for n in names)
    import hashlib

    assert meta["model"]["sha256"] == hashlib.sha256(
        (model / "my_genre.onnx").read_bytes()).hexdigest()
    report = json.loads((model / "report.json").read_text())
    assert report["metrics"]["cross_validation_balanced_accuracy"] >= 0.9
    assert report["held_out"]["tracks"] == 6
    assert report["metrics"]["held_out_balanced_accuracy"] >= 0.8
    assert not list(model.glob("*.pkl")) and b"pickle" not in (model / "my_genre.onnx").read_bytes()


def test_registered_model_runs_in_music_highlevel_on_new_files(
        trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "add", str(trained["model"])]) == 0
    assert "my_genre: registered in" in capsys.readouterr().out
    new = _make_set(tmp_path / "new", 2, seed=99)
    out = tmp_path / "out"
    code = music_highlevel([str(tmp_path / "new"), "--output", str(out), "--taxonomies",
                            "my_genre", "--profile", "music", "--quiet"])
    assert code == 0
    for path, label in new:
        doc = json.loads((out / path.parent.name / f"{path.stem}.json").read_text())
        result = doc["highlevel"]["my_genre"]
        assert sorted(result["all"]) == list(CLASSES)
        assert result["value"] == label, (path.name, result)
        assert result["probability"] == max(result["all"].values())
        assert list(doc["highlevel"]) == ["my_genre"]  # --taxonomies: only it
        assert doc["metadata"]["models"]["used"]["my_genre"] == json.loads(
            (trained["model"] / "my_genre.json").read_text())["model"]["sha256"]


def test_music_highlevel_runs_the_profile_a_classifier_was_trained_on(
        trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's own command, without --profile: the classifier reads the music profile's
    descriptors, so music-highlevel runs that profile (and says so)."""
    assert main(["models", "add", str(trained["model"])]) == 0
    audio = write_audio(tmp_path / "a.wav", _clip("tones", np.random.default_rng(4)))
    capsys.readouterr()
    out = tmp_path / "a.json"
    assert music_highlevel([str(audio), str(out), "--taxonomies", "my_genre"]) == 0
    assert ("note: my_genre reads the 'music' profile's descriptors: running 'music'"
            in capsys.readouterr().err)
    doc = json.loads(out.read_text())
    assert doc["highlevel"]["my_genre"]["value"] == "tones"
    assert doc["metadata"]["profile"]["name"] == "music"


def test_a_profile_without_the_models_descriptors_says_which_to_run(
        trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "add", str(trained["model"])]) == 0
    audio = write_audio(tmp_path / "a.wav", _clip("tones", np.random.default_rng(4)))
    capsys.readouterr()
    assert music_highlevel([str(audio), str(tmp_path / "a.json"), "--taxonomies",
                            "my_genre", "--profile", "highlevel"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {audio}: model stage: model 'my_genre' reads 'lowlevel.")
    assert err.endswith("which this profile does not compute (it was trained on the 'music' "
                        "profile's results: run that profile, e.g. music-highlevel --profile "
                        "music)\n")


def test_evaluate_scores_the_model_on_new_labelled_results(
        trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "test.csv"
    results = sorted(trained["analysis"].rglob("*.json"))[:9]
    csv.write_text("".join(f"{p},{p.parent.name}\n" for p in results))
    assert main(["evaluate", str(trained["model"]), str(csv), "--quiet",
                 "--report", str(tmp_path / "scores.json")]) == 0
    assert "my_genre: accuracy 1.000, balanced accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "scores.json").read_text())["tracks"] == len(results)


def test_gaia_groundtruth_and_filelist_train_from_results(
        trained: dict[str, Path], tmp_path: Path) -> None:
    results = sorted(trained["analysis"].rglob("*.json"))
    truth = ["type: singleClass", "className: my_genre", "groundTruth:"]
    files = []
    for index, path in enumerate(results):
        truth.append(f"  track_{index:02d}: {path.parent.name}")
        files.append(f"track_{index:02d}: {path}")
    (tmp_path / "gt.yaml").write_text("\n".join(truth) + "\n")
    (tmp_path / "files.yaml").write_text("\n".join(files) + "\n")
    code = main(["train", str(tmp_path / "gt.yaml"), "--filelist", str(tmp_path / "files.yaml"),
                 "-o", str(tmp_path / "m"), "--folds", "3", "--test-fraction", "0",
                 "--descriptors", "lowlevel.*.mean", "rhythm.onset_rate", "--quiet"])
    assert code == 0
    meta = json.loads((tmp_path / "m" / "my_genre.json").read_text())
    assert meta["name"] == "my_genre" and "held_out" not in json.loads(
        (tmp_path / "m" / "report.json").read_text())
    names = [d["name"] for d in meta["inference"]["descriptors"]]
    assert names[-1] == "rhythm.onset_rate" and all(n.endswith(".mean") for n in names[:-1])


def test_tampered_model_is_refused_before_loading(
        trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(trained["model"], folder, ignore=shutil.ignore_patterns("analysis"))
    onnx = folder / "my_genre.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    csv = tmp_path / "t.csv"
    csv.write_text(f"{sorted(trained['analysis'].rglob('*.json'))[0]},clicks\n")
    assert main(["evaluate", str(folder), str(csv), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {onnx} does not match its pin (expected sha256 ")
    assert err.rstrip().endswith("refused, not loaded") and len(err.strip().splitlines()) == 1
    assert main(["models", "add", str(folder), "--name", "tampered"]) == 1
    assert "does not match its pin" in capsys.readouterr().err


def test_tampered_cached_model_stops_the_run(trained: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "add", str(trained["model"]), "--name", "my_genre_copy"]) == 0
    from runner.models.supply import cache

    cached = cache.user_cache() / "my_genre_copy" / "my_genre.onnx"
    cached.write_bytes(cached.read_bytes() + b"\0")
    audio = write_audio(tmp_path / "a.wav", _clip("tones", np.random.default_rng(3)))
    capsys.readouterr()
    code = music_highlevel([str(audio), str(tmp_path / "a.json"), "--taxonomies",
                            "my_genre_copy", "--profile", "music"])
    assert code != 0
    err = capsys.readouterr().err
    assert f"error: model 'my_genre_copy': {cached} does not match its pin" in err
    assert not (tmp_path / "a.json").exists()


# -- Gaia's files, as Essentia documents them -------------------------------------------------
def test_gaia_files_shaped_like_essentias_example() -> None:
    truth = groundtruth.read(DATA / "genre_groundtruth.yaml", DATA / "genre_filelist.yaml")
    assert truth.name == "genre"
    assert truth.counts == {"classical": 2, "jazz": 2, "rock": 2}
    first = truth.tracks[0]
    assert (first.id, first.label) == ("01 - Alice In Chains - Would.mp3", "rock")
    assert first.path == DATA / "descriptors" / "would.json"
    assert truth.tracks[1].path == Path("/data/descriptors/so_what.json")


def _error(tmp_path: Path, text: str, filelist: str | None = None, name: str = "gt.yaml"
           ) -> str:
    path = tmp_path / name
    path.write_text(text)
    listed = None
    if filelist is not None:
        listed = tmp_path / "fl.yaml"
        listed.write_text(filelist)
    with pytest.raises(TrainingError) as caught:
        groundtruth.check_classes(groundtruth.read(path, listed))
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(tmp_path), "DIR")


GT = "type: singleClass\nclassName: genre\ngroundTruth:\n"


def test_bad_groundtruths_one_line_each(tmp_path: Path) -> None:
    assert _error(tmp_path, GT + "  a: rock\n  b: jazz\n  a: pop\n") == (
        "DIR/gt.yaml:6: duplicate id 'a' (first at line 4)")
    assert _error(tmp_path, GT + "  a: rock\n  b: 3\n") == (
        "DIR/gt.yaml: the label of 'b' is the number 3: labels are class names (a classifier, "
        "not a regression); name the class, e.g. 'class_3'")
    assert _error(tmp_path, GT + "  a: rock\n  b: rock\n") == (
        "DIR/gt.yaml: one class only ('rock', 2 tracks): a classifier needs at least two")
    assert _error(tmp_path, GT + "  a: rock\n  b: jazz\n", "") == (
        "DIR/fl.yaml: the filelist is empty")
    assert _error(tmp_path, GT + "  a: rock\n  b: jazz\n", "a: a.json\n") == (
        "DIR/fl.yaml: 1 ids of DIR/gt.yaml are not in the filelist: b")
    assert _error(tmp_path, "type: multiClass\ngroundTruth: {a: [x]}\n") == (
        "DIR/gt.yaml: type is 'multiClass'; only Gaia's 'singleClass' groundtruth can be "
        "trained")
    assert _error(tmp_path, "className: genre\n") == (
        "DIR/gt.yaml: no 'groundTruth' mapping (Gaia's format: type, className, groundTruth: "
        "{id: label})")
    assert _error(tmp_path, "a.json,rock\nb.json,jazz\na.json,pop\n", name="l.csv") == (
        "DIR/l.csv:3: duplicate id 'a.json' (first at line 1)")
    assert _error(tmp_path, "path,label\na.json,rock\nb.json,2.5\n", name="l.csv") == (
        "DIR/l.csv:3: the label of 'b.json' is the number 2.5: labels are class names (a "
        "classifier, not a regression); name the class, e.g. 'class_2.5'")
    assert _error(tmp_path, "a.json,rock,x\n", name="l.csv") == (
        "DIR/l.csv:1: expected 'path,label', got 3 fields")


def test_class_with_fewer_tracks_than_folds() -> None:
    y = np.array(["a"] * 10 + ["b"] * 4)
    with pytest.raises(TrainingError) as caught:
        search.split(y, folds=5, test_fraction=0.0, seed=0)
    assert str(caught.value) == ("class 'b' has 4 tracks for the search, fewer than the 5 "
                                 "cross-validation folds (add tracks, or lower --folds or "
                                 "--test-fraction)")
    with pytest.raises(TrainingError) as caught:
        search.split(np.array(["a"] * 10 + ["b"] * 5), folds=5, test_fraction=0.2, seed=0)
    assert str(caught.value).startswith("class 'b' has 4 tracks for the search (5 before the "
                                        "held-out 20%), fewer than the 5")


def _result(path: Path, mfcc: list[float | None], onset: float | None = 1.0) -> Path:
    doc = {"metadata": {"version": {"essentia": "x"}}, "lowlevel": {"mfcc": {"mean": mfcc}},
           "rhythm": {"onset_rate": onset,
                      "beats_position": [0.5] * (len(mfcc) + int(onset or 0))}}
    path.write_text(json.dumps(doc))
    return path


def test_missing_and_non_finite_values_are_left_out_never_zero_filled(tmp_path: Path) -> None:
    rows = [("ok1", _result(tmp_path / "1.json", [1.0, 2.0]), "a"),
            ("ok2", _result(tmp_path / "2.json", [1.5, 2.5], 3.0), "b"),
            ("null", _result(tmp_path / "3.json", [None, 2.0]), "a"),
            ("lacking", _result(tmp_path / "4.json", [1.0, 2.0], None), "b"),
            ("gone", tmp_path / "5.json", "a")]
    (tmp_path / "4.json").write_text(json.dumps({"lowlevel": {"mfcc": {"mean": [1.0, 1.0]}}}))
    feats = features.build(rows, None, None)
    assert feats.ids == ["ok1", "ok2"]
    assert [c.name for c in feats.columns] == ["lowlevel.mfcc.mean", "rhythm.onset_rate"]
    assert feats.matrix.tolist() == [[1.0, 2.0, 1.0], [1.5, 2.5, 3.0]]
    why = dict(feats.left_out)
    assert why["null"] == "'lowlevel.mfcc.mean' is not finite (None)"
    assert why["lacking"] == "no descriptor 'rhythm.onset_rate'"
    assert why["gone"].startswith(f"{tmp_path / '5.json'}: not a readable result")
    with pytest.raises(TrainingError) as caught:
        features.build(rows[:2], ["rhythm.beats_position"], None)
    assert str(caught.value) == (
        "--descriptors 'rhythm.beats_position': 'rhythm.beats_position' is not a number or a "
        "vector of the same size in every result (strings, frame lists and matrices cannot be "
        "features)")


def test_missing_files_are_listed_and_strict_stops(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_result(tmp_path / f"{i}.json", [float(i % 2), 1.0 + i]) for i in range(8)]
    csv = tmp_path / "l.csv"
    csv.write_text("".join(f"{p.name},{'ab'[i % 2]}\n" for i, p in enumerate(rows))
                   + "missing.json,a\n")
    args = ["train", str(csv), "-o", str(tmp_path / "m"), "--folds", "2", "--test-fraction",
            "0", "--descriptors", "lowlevel.mfcc.mean", "--quiet"]
    assert main(args) == 0
    assert ("warning: 1 of 9 tracks left out, missing or failed to analyse: missing.json "
            "(--verbose lists why)") in capsys.readouterr().err
    assert main([*args, "--strict"]) == 1
    assert capsys.readouterr().err == (
        f"error: 1 of 9 tracks missing or failed to analyse: missing.json "
        f"({tmp_path / 'missing.json'}: no such file); --strict stops here\n")


# -- a model trained on embeddings: the track's embedding computed once, for every head -------
class ToyEmbedder:
    """A family of the test's own (kind ``toy-embedder``): per 0.25 s patch, log RMS, zero
    crossings and roughness; counts its runs, to show that heads share one run per track."""

    writes_classes = False
    runs = 0

    def __init__(self, config) -> None:
        self.config = config
        self.outputs: list = []

    def add(self, output, model) -> dict[str, dict[str, str]]:
        from runner.models.supply import cache

        self.outputs.append((output, model))
        return {model.id: cache.require(model).pins()}

    def load(self) -> None:
        pass

    def run(self, audio, results) -> None:
        from runner.models.family import used_pin

        type(self).runs += 1
        signal = audio(22050.0)
        patches = signal[: len(signal) // 5512 * 5512].reshape(-1, 5512).astype(np.float64)
        rms = np.sqrt((patches ** 2).mean(axis=1)) + 1e-9
        crossings = (np.diff(np.signbit(patches), axis=1)).mean(axis=1)
        rough = np.abs(np.diff(patches, axis=1)).mean(axis=1) / rms
        vectors = np.stack([np.log(rms), crossings, rough], axis=1).astype(np.float32)
        results.embeddings["toy-emb"] = vectors
        for output, model in self.outputs:
            results.descriptors[f"{self.config.section}.{output.name}"] = [
                float(v) for v in vectors.mean(axis=0)]
            results.used[model.id] = used_pin(model)


EMBEDDER_PROFILE = """
name: toy_embeddings
description: a toy embedding model and the heads trained on it
audio: {sample_rate: 44100}
models:
  section: highlevel
  keep_embeddings: true
  outputs:
    toy: {model: toy-emb, output: embeddings}
"""


def test_a_model_trained_on_embeddings_reuses_the_tracks_embedding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from runner.extract import Extractor
    from runner.models import family

    monkeypatch.setitem(family.FAMILIES, "toy-embedder", ToyEmbedder)
    weights = tmp_path / "toy.bin"
    weights.write_bytes(b"toy")
    entry = {"kind": "toy-embedder", "files": [{
        "name": "toy.bin", "url": weights.as_uri(), "size": 3,
        "sha256": hashlib.sha256(b"toy").hexdigest()}]}
    (tmp_path / "toy.lock.json").write_text(json.dumps({"format": 1,
                                                        "models": {"toy-emb": entry}}))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", f"{tmp_path / 'my.lock.json'}:"
                                                f"{tmp_path / 'toy.lock.json'}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache" / "extractor-profiles" / "models" / "toy-emb").mkdir(parents=True)
    (tmp_path / "cache" / "extractor-profiles" / "models" / "toy-emb" / "toy.bin").write_bytes(
        b"toy")
    profile = tmp_path / "toy.yaml"
    profile.write_text(EMBEDDER_PROFILE)
    extractor = Extractor(str(profile))
    rows = []
    for path, label in _make_set(tmp_path / "audio", 6, seed=5):
        out = tmp_path / "results" / f"{path.stem}.json"
        out.parent.mkdir(exist_ok=True)
        extractor.extract(str(path), str(out))
        rows.append(f"{out},{label}\n")
    assert (tmp_path / "results" / "tones_5_0.toy-emb.npy").is_file()
    (tmp_path / "labels.csv").write_text("".join(rows))
    assert main(["train", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "head"),
                 "--embeddings", "toy-emb", "--folds", "3", "--test-fraction", "0",
                 "--name", "toy_head", "--quiet"]) == 0
    meta = json.loads((tmp_path / "head" / "toy_head.json").read_text())
    assert meta["inference"]["descriptors"] == []
    assert meta["inference"]["embedding_model"] == {"model_name": "toy-emb", "size": 3}
    assert main(["models", "add", str(tmp_path / "head")]) == 0
    # the heads alone: the stage has the toy family compute the embedding they read
    heads = EMBEDDER_PROFILE.replace("    toy: {model: toy-emb, output: embeddings}\n",
                                     "    head_a: toy_head\n    head_b: toy_head\n")
    profile.write_text(heads.replace("keep_embeddings: true", "keep_embeddings: false"))
    ToyEmbedder.runs = 0
    extractor = Extractor(str(profile))
    new = _make_set(tmp_path / "new", 1, seed=77)
    for path, label in new:
        doc, _ = extractor.analyse(str(path))
        assert sorted(doc["highlevel"]) == ["head_a", "head_b"]  # the feed is not written
        assert doc["highlevel"]["head_a"] == doc["highlevel"]["head_b"]
        assert doc["highlevel"]["head_a"]["value"] == label, (path.name, doc["highlevel"])
    assert ToyEmbedder.runs == len(new)  # one embedding run per track, for both heads
    assert sorted(doc["metadata"]["models"]["used"]) == ["toy-emb", "toy_head"]


def test_vectors_dumped_by_music_clap_are_features(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``music-clap --dump`` writes one .npy vector per track; a groundtruth may name them."""
    rng = np.random.default_rng(0)
    lines = []
    for index in range(8):
        label = "ab"[index % 2]
        vector = rng.standard_normal(16).astype(np.float32) + (3.0 if label == "a" else -3.0)
        np.save(tmp_path / f"t{index}.npy", vector)
        lines.append(f"t{index}.npy,{label}\n")
    (tmp_path / "l.csv").write_text("".join(lines))
    args = ["train", str(tmp_path / "l.csv"), "-o", str(tmp_path / "m"), "--folds", "2",
            "--test-fraction", "0", "--quiet"]
    assert main(args) == 1
    assert capsys.readouterr().err.endswith(
        ".npy vectors (music-clap --dump) need --embeddings MODEL_ID, the model that computed "
        "them (e.g. the CLAP model's lock-file id)\n")
    assert main([*args, "--embeddings", "clap-music"]) == 0
    meta = json.loads((tmp_path / "m" / "l.json").read_text())
    assert meta["inference"]["embedding_model"] == {"model_name": "clap-music", "size": 16}
    assert meta["schema"]["inputs"][0]["shape"] == [-1, 16]
