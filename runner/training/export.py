"""A fitted pipeline as files a run can trust: ONNX (skl2onnx) and an MTG-style metadata JSON.

Nothing is pickled, ever: the ONNX graph holds the preprocessing and the classifier, and
onnxruntime runs it without executing code from the file. The metadata JSON follows the
fields of MTG's model metadata (name, type, classes, dataset with size and metrics, schema of
inputs and outputs, inference) and adds what a trained model needs: which descriptors (in
column order) or which embedding model feed it, the class counts, and the sha256 of the ONNX
file, checked before the file is ever handed to onnxruntime.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import ModelError, TrainingError
from runner.models.supply.cache import verified_bytes
from runner.training.features import Features

INPUT = "features"
OUTPUT = "probabilities"
KIND = "onnx-classifier"
ALGORITHM = "onnxruntime"
OPSET = 17


def to_onnx(model: Any, width: int) -> bytes:
    """The fitted pipeline as ONNX bytes: input ``features`` (n, width) float32, outputs
    ``label`` and ``probabilities`` (n, classes) in the order of ``model.classes_``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from runner.training.gaussianise import register

    register()
    classifier = model.steps[-1][1]
    try:
        onx = convert_sklearn(model, initial_types=[(INPUT, FloatTensorType([None, width]))],
                              options={id(classifier): {"zipmap": False}},
                              target_opset=OPSET)
    except (RuntimeError, NotImplementedError) as exc:
        raise TrainingError(f"cannot export the model as ONNX ({exc})") from None
    return onx.SerializeToString()


def metadata(name: str, classes: list[str], features: Features, onnx_bytes: bytes,
             report: dict[str, Any], profile: str, source: str) -> dict[str, Any]:
    """The metadata JSON (MTG's field names, plus inputs, class counts and the sha256)."""
    counts = {c: int(n) for c, n in zip(*np.unique(features.labels, return_counts=True),
                                        strict=True)}
    embedding = ({"model_name": features.embedding, "size": features.embedding_size}
                 if features.embedding else None)
    return {
        "name": name,
        "type": "multi-class classifier",
        "version": "1",
        "description": f"{name}: {len(classes)} classes, trained with `extractor train` on "
                       f"{len(features.ids)} tracks",
        "release_date": datetime.date.today().isoformat(),
        "framework": "onnx",
        "framework_version": f"opset {OPSET}",
        "classes": classes,
        "model_types": ["onnx"],
        "dataset": {"name": source, "size": len(features.ids), "class_counts": counts,
                    "metrics": report["metrics"]},
        "schema": {
            "inputs": [{"name": INPUT, "type": "float", "shape": [-1, features.matrix.shape[1]]}],
            "outputs": [{"name": OUTPUT, "type": "float", "shape": [-1, len(classes)],
                         "output_purpose": "predictions"}],
        },
        "inference": {
            "algorithm": ALGORITHM,
            "profile": profile,
            "descriptors": [{"name": c.name, "size": c.size} for c in features.columns],
            "embedding_model": embedding,
        },
        "training": report["training"],
        "model": {"file": f"{name}.onnx", "sha256": hashlib.sha256(onnx_bytes).hexdigest()},
    }


def write(folder: Path, name: str, onnx_bytes: bytes, meta: dict[str, Any],
          report: dict[str, Any]) -> list[Path]:
    """``<name>.onnx``, ``<name>.json`` and ``report.json`` in ``folder``, each atomically."""
    from runner.output import write_atomic, write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.onnx", folder / f"{name}.json", folder / "report.json"]
    write_bytes_atomic(paths[0], onnx_bytes)
    write_atomic(paths[1], json.dumps(meta, indent=2) + "\n")
    write_atomic(paths[2], json.dumps(report, indent=2) + "\n")
    return paths


def read_model_dir(folder: Path) -> tuple[dict[str, Any], Path]:
    """(metadata, ONNX path) of a trained model's folder, the ONNX file checked against the
    sha256 its metadata records."""
    metas = [p for p in sorted(folder.glob("*.json")) if p.name != "report.json"]
    if not folder.is_dir() or len(metas) != 1:
        raise ModelError(f"{folder}: not a trained model folder (one <name>.json and "
                         "<name>.onnx, as `extractor train -o` writes)")
    try:
        meta = json.loads(metas[0].read_text(encoding="utf-8"))
        onnx_name, sha = meta["model"]["file"], meta["model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{metas[0]}: not a trained model's metadata ({exc})") from None
    onnx_path = folder / onnx_name
    verified_bytes(onnx_path, sha)
    return meta, onnx_path
