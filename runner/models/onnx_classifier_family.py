"""The trained-classifier family (lock-entry kind ``onnx-classifier``): `extractor train`'s
models, an ONNX pipeline (preprocessing + classifier) run by onnxruntime.

A model reads either the track's descriptors (the names and sizes its metadata lists, in
column order, from the profile's own results) or the mean of an embedding model's patches
that another family already computed for this track (one embedding run per track, whatever
the number of heads). Its ONNX bytes are checked against their sha256 pin before
onnxruntime sees them: a tampered file is refused, never loaded, never unpickled (ONNX holds
no code). It writes ``<section>.<name>.{value, probability, all.<class>}`` as the classic
taxonomies did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelError, ModelOutputError
from runner.models.classes import class_names, summarise, written
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.supply import cache, lock
from runner.models.supply.cache import verified_bytes
from runner.models.supply.metadata import Metadata

KIND = "onnx-classifier"


class Classifier:
    """An ONNX classifier pipeline in onnxruntime: features in, class probabilities out."""

    def __init__(self, data: bytes, meta: dict[str, Any]) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ModelError("trained classifiers run with onnxruntime: pip install "
                             "'extractor-profiles[train]'") from None

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one track's vector: threads cost more than they give
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(data, options,
                                                    providers=["CPUExecutionProvider"])
        self.input = str(meta["schema"]["inputs"][0]["name"])
        self.output = str(meta["schema"]["outputs"][0]["name"])
        self.descriptors = [(str(d["name"]), int(d["size"]))
                            for d in meta["inference"].get("descriptors", [])]
        embedding = meta["inference"].get("embedding_model") or {}
        self.embedding: str | None = embedding.get("model_name")
        self.profile = str(meta["inference"].get("profile") or "music")

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """(tracks, features) -> (tracks, classes)."""
        feed = {self.input: np.ascontiguousarray(matrix, dtype=np.float32)}
        return np.asarray(self.session.run([self.output], feed)[0])

    def vector(self, track: dict[str, Any], where: str) -> list[float]:
        """The descriptor part of one track's features, from its flat results."""
        values: list[float] = []
        for name, size in self.descriptors:
            if name not in track:
                raise ModelError(f"{where} reads '{name}', which this profile does not "
                                 f"compute (it was trained on the '{self.profile}' profile's "
                                 f"results: run that profile, e.g. music-highlevel --profile "
                                 f"{self.profile})")
            value = track[name]
            items = value if isinstance(value, list) else [value]
            if len(items) != max(size, 1) or any(
                    v is None or isinstance(v, bool) or not isinstance(v, (int, float))
                    or not math.isfinite(v) for v in items):
                raise ModelError(f"{where}: '{name}' is undefined or not {max(size, 1)} finite "
                                 "values for this track")
            values += [float(v) for v in items]
        return values


@dataclass
class _Head:
    output: ModelOutput
    model: lock.Model
    state: cache.State
    meta: Metadata
    full: dict[str, Any]  # the whole metadata JSON (descriptors, embedding model)
    classes: list[str]
    classifier: Classifier | None = None


class Runner:
    """The trained classifiers of one extractor, in the profile's order."""

    writes_classes = True  # class probabilities (the output schema's classes layout)
    reads_embeddings = True  # run after the families that compute embeddings (the stage)

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.heads: list[_Head] = []

    def add(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        if output.output != "predictions":
            raise ModelOutputError(f"model '{model.id}' gives class probabilities ('predictions'), "
                                   f"not '{output.output}'")
        if not model.graph or not model.metadata:
            raise ModelError(f"model '{model.id}': its lock entry names no graph and metadata")
        state = cache.require(model)  # every file checked against its sha256 pin
        path = state.path(model.metadata)
        try:
            full = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: not usable model metadata ({exc})") from None
        meta = Metadata.parse(full, str(path))
        self.heads.append(_Head(output, model, state, meta, full, class_names(meta, output)))
        return {model.id: state.pins()}

    def load(self) -> None:
        for head in self.heads:
            graph = str(head.model.graph)
            pin = next(p.sha256 for p in head.model.files if p.name == graph)
            head.classifier = Classifier(verified_bytes(head.state.path(graph), pin), head.full)

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        for head in self.heads:
            assert head.classifier is not None
            where = f"model '{head.model.id}'"
            features = head.classifier.vector(results.track, where)
            if head.classifier.embedding:
                features += [float(v) for v in
                             _mean_embedding(results, head.classifier.embedding, where)]
            probs = head.classifier.probabilities(np.asarray([features], dtype=np.float32))
            results.descriptors[head.output.key(self.config.section)] = written(
                summarise(probs, head.meta, "predictions", head.classes), head.output)
            results.used[head.model.id] = used_pin(head.model)


def _mean_embedding(results: ModelResults, model_id: str, where: str) -> np.ndarray:
    """The track's embeddings of ``model_id`` (or of the model standing in for it), averaged
    over patches: computed once by their own family, shared by every head."""
    table = lock.models()
    for emb_id, patches in results.embeddings.items():
        if emb_id == model_id or (emb_id in table and model_id in table[emb_id].provides):
            return np.asarray(patches, dtype=np.float32).mean(axis=0)
    raise ModelError(f"{where} reads the embeddings of '{model_id}', which no output of this "
                     "profile computes (add an output of that model, or keep_embeddings)")
