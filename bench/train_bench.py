"""`extractor train`'s search and the trained model's inference, timed (issue 20, item 7).

- **search**: the default search (``--search quick``: standardise and gaussianise x SVM RBF,
  SVM linear, logistic regression; 5-fold stratified cross-validation on 80 %, the held-out
  20 % scored, the best refit on everything with probabilities, exported to ONNX) on
  ``--tracks`` x ``--values`` synthetic descriptors (default 1,000 x 2,000, 4 classes, a few
  informative dimensions among noise at scales from 1e-6 to 1e6, like real descriptors), with
  ``--jobs`` processes (default 2). Target: within 2 minutes on 2 cores.
- **inference**: per track, what the onnx-classifier family does in a run: the feature vector
  read from the track's flat results (200 descriptors of 10 values), onnxruntime, the
  highlevel layout. Target: under 5 ms per track.

Anchors measured in the same run, so figures compare across machines: one fit of
StandardScaler + SVC(rbf) on the whole matrix (the search's unit of work), and a fixed NumPy
workload (SVD of a 400 x 400 matrix); each figure is also given as a ratio to them.

Usage: python bench/train_bench.py [--tracks 1000] [--values 2000] [--jobs 2] [--repeat 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.models.classes import summarise  # noqa: E402
from runner.models.onnx_classifier_family import Classifier  # noqa: E402
from runner.models.supply.metadata import Metadata  # noqa: E402
from runner.training import export, search  # noqa: E402
from runner.training.features import Column, Features  # noqa: E402


def synthetic(tracks: int, values: int, classes: int, seed: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array([f"class_{i % classes}" for i in range(tracks)])
    x = rng.standard_normal((tracks, values))
    informative = rng.choice(values, size=40, replace=False)
    centres = rng.standard_normal((classes, 40)) * 0.8
    x[:, informative] += centres[[int(label.split("_")[1]) for label in labels]]
    scales = 10.0 ** rng.uniform(-6, 6, size=values)
    return (x * scales).astype(np.float32), labels


def anchors(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(one SVC fit on everything, a fixed NumPy SVD), in seconds."""
    config = search.Config("standardise", "svm-rbf", (("C", 1.0), ("gamma", 1.0 / x.shape[1])))
    search.fit(config, x[:50], y[:50])  # imports and first-call costs out of the anchor
    start = time.perf_counter()
    search.fit(config, x, y)
    fit = time.perf_counter() - start
    matrix = np.random.default_rng(0).standard_normal((400, 400))
    start = time.perf_counter()
    for _ in range(5):
        np.linalg.svd(matrix)
    return fit, (time.perf_counter() - start) / 5


def run_search(x: np.ndarray, y: np.ndarray, jobs: int) -> tuple[float, float, object, str]:
    """The default search, held-out scoring, refit and export, as `extractor train` does."""
    start = time.perf_counter()
    configs = search.candidates(full=False, embeddings=False)
    outcome = search.run(x, y, configs, folds=5, test_fraction=0.2, jobs=jobs)
    held = search.fit(outcome.best, x[outcome.train_index], y[outcome.train_index])
    from sklearn.metrics import balanced_accuracy_score

    score = balanced_accuracy_score(y[outcome.test_index], held.predict(x[outcome.test_index]))
    final = search.fit(outcome.best, x, y, probability=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        onnx_bytes = export.to_onnx(final, x.shape[1])
    seconds = time.perf_counter() - start
    print(f"search: {len(configs)} configurations x 5 folds, best {outcome.best.label()}, "
          f"cv balanced accuracy {outcome.cv_score:.3f}, held-out {score:.3f}")
    return seconds, score, (final, onnx_bytes), outcome.best.label()


def inference(model: tuple[object, bytes], x: np.ndarray, repeat: int) -> float:
    """Seconds per track: vector from flat results, onnxruntime, highlevel layout."""
    final, onnx_bytes = model
    width = x.shape[1]
    columns = [Column(f"lowlevel.d{i}.mean", 10) for i in range(width // 10)]
    classes = [str(c) for c in final.classes_]  # type: ignore[attr-defined]
    feats = Features(x, [], [], columns, None)
    meta_json = {"schema": {"inputs": [{"name": export.INPUT}],
                            "outputs": [{"name": export.OUTPUT}]},
                 "inference": {"descriptors": [{"name": c.name, "size": c.size}
                                               for c in feats.columns]}}
    classifier = Classifier(onnx_bytes, meta_json)
    meta = Metadata("onnxruntime", 44100.0, export.INPUT, {"predictions": export.OUTPUT},
                    tuple(classes), None, "")
    tracks = [{c.name: [float(v) for v in row[i * 10:(i + 1) * 10]]
               for i, c in enumerate(columns)} for row in x[:repeat]]
    start = time.perf_counter()
    for flat in tracks:
        vector = classifier.vector(flat, "bench")
        probs = classifier.probabilities(np.asarray([vector], dtype=np.float32))
        summarise(probs, meta, "predictions", classes)
    return (time.perf_counter() - start) / len(tracks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=1000)
    parser.add_argument("--values", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1000, help="tracks timed for inference")
    args = parser.parse_args()
    x, y = synthetic(args.tracks, args.values, args.classes, seed=1)
    fit, svd = anchors(x, y)
    print(f"anchors: one SVC fit {fit:.3f} s, SVD 400x400 {svd * 1e3:.1f} ms")
    seconds, _, model, _ = run_search(x, y, args.jobs)
    print(f"search: {seconds:.1f} s with {args.jobs} jobs ({seconds / fit:.0f} SVC fits; "
          f"target 120 s: {'ok' if seconds <= 120 else 'OVER'})")
    per_track = inference(model, x, min(args.repeat, len(x)))
    print(f"inference: {per_track * 1e3:.3f} ms per track ({per_track / svd:.2f} SVDs; target "
          f"5 ms: {'ok' if per_track <= 0.005 else 'OVER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
