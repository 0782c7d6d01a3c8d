"""The Essentia TensorFlow family (lock-entry kind ``tensorflow``): MTG's graphs and ours.

Embedding models (MusiCNN, EffnetDiscogs, VGGish graphs) run once per track each and feed
every output that needs them: their own class probabilities or embeddings, and classifier
heads (TensorflowPredict2D graphs on another model's embeddings). How a graph is run comes
from its metadata (runner.models.infer); a model missing from the cache may be served by a
model that ``provides`` it (runner.models.supply.cache.first_present).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelError
from runner.models.classes import class_names, summarise, written
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.infer import FRONTENDS, HEADS, PATCH_CHUNK, Predictor, features, patches
from runner.models.supply import cache, lock
from runner.models.supply.metadata import Metadata


@dataclass
class _Embedder:
    """An embedding model (MusiCNN, EffnetDiscogs, VGGish graph) and what is asked of it."""

    model: lock.Model
    folder: Path
    meta: Metadata
    purposes: set[str] = field(default_factory=set)  # "predictions", "embeddings"
    predictor: Predictor | None = None


@dataclass
class _Head:
    output: ModelOutput
    model: lock.Model
    state: cache.State
    meta: Metadata
    embedder: str  # the _Embedder (lock id) whose embeddings it takes
    classes: list[str]  # the class names written (class_names)
    predictor: Predictor | None = None


class Runner:
    """The TensorFlow outputs of one extractor: embedding models, then heads on them."""

    writes_classes = True  # predictions are class probabilities; embeddings stay vectors

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.embedders: dict[str, _Embedder] = {}
        # outputs of an embedding model itself: (output, embedder id, class names written)
        self.direct: list[tuple[ModelOutput, str, list[str]]] = []
        self.heads: list[_Head] = []

    # -- taking outputs on ------------------------------------------------------------------
    def add(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        if model.embedding:  # a classifier head on another model's embeddings
            return self._add_head(output, model)
        pins: dict[str, dict[str, str]] = {}
        emb_id = self._embedder(model.id, pins)
        purpose = output.output
        embedder = self.embedders[emb_id]
        if purpose not in embedder.meta.outputs:
            raise ModelError(f"model '{emb_id}' has no '{purpose}' output")
        embedder.purposes.add(purpose)
        classes = class_names(embedder.meta, output) if purpose == "predictions" else []
        self.direct.append((output, emb_id, classes))
        return pins

    def _add_head(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        assert model.embedding is not None
        state = cache.require(model)
        pins: dict[str, dict[str, str]] = {}
        emb_id = self._embedder(model.embedding, pins)
        meta = _metadata(model, state)
        if meta.algorithm not in HEADS:
            raise ModelError(f"model '{model.id}': {meta.algorithm} is not a head algorithm")
        self.embedders[emb_id].purposes.add("embeddings")
        self.heads.append(_Head(output, model, state, meta, emb_id, class_names(meta, output)))
        pins[model.id] = state.pins()
        return pins

    def _embedder(self, model_id: str, pins: dict[str, dict[str, str]]) -> str:
        """The embedding model that serves ``model_id`` (itself or a stand-in), verified."""
        found = cache.first_present(model_id)
        if found is None:
            raise ModelError(f"model '{model_id}' is not in the lock file")
        model, state = found
        if model.id not in self.embedders:
            meta = _metadata(model, state)
            if meta.algorithm not in FRONTENDS:
                raise ModelError(f"model '{model.id}': inference algorithm {meta.algorithm} is "
                                 f"not an embedding model ({', '.join(FRONTENDS)})")
            self.embedders[model.id] = _Embedder(model, state.folder or Path(), meta)
            pins[model.id] = state.pins()
        return model.id

    def load(self) -> None:
        for head in self.heads:
            head.predictor = Predictor(head.state.path(str(head.model.graph)), head.meta,
                                       [head.meta.outputs["predictions"]])
        for emb in self.embedders.values():
            if self.config.keep_embeddings and "embeddings" in emb.meta.outputs:
                emb.purposes.add("embeddings")
            outputs = [emb.meta.outputs[p] for p in sorted(emb.purposes)]
            emb.predictor = Predictor(emb.folder / str(emb.model.graph), emb.meta, outputs)

    # -- running ----------------------------------------------------------------------------
    def run(self, audio: AudioAt, results: ModelResults) -> None:
        section = self.config.section
        bands: dict[tuple[str, int, int], np.ndarray] = {}
        computed: dict[str, dict[str, np.ndarray]] = {}
        for emb_id, emb in self.embedders.items():
            front = FRONTENDS[emb.meta.algorithm]
            key = (front.features, front.frame_size, front.hop_size)
            if key not in bands:
                bands[key] = features(audio(emb.meta.sample_rate), front)
            hop = front.patch_hop if self.config.overlap else front.patch_size
            batch = patches(bands[key], front.patch_size, hop)
            assert emb.predictor is not None
            out = emb.predictor.run(batch, fixed=front.batch, chunk=PATCH_CHUNK)
            computed[emb_id] = {p: out[emb.meta.outputs[p]] for p in emb.purposes}
            results.used[emb_id] = used_pin(emb.model)
            if "embeddings" in computed[emb_id]:
                results.embeddings[emb_id] = computed[emb_id]["embeddings"]
        for output, emb_id, classes in self.direct:
            values = computed[emb_id][output.output]
            meta = self.embedders[emb_id].meta
            results.descriptors[output.key(section)] = written(
                summarise(values, meta, output.output, classes), output)
        for head in self.heads:
            embeddings = computed[head.embedder]["embeddings"]
            assert head.predictor is not None
            preds = head.predictor.run(embeddings)[head.meta.outputs["predictions"]]
            results.descriptors[head.output.key(section)] = written(
                summarise(preds, head.meta, "predictions", head.classes), head.output)
            results.used[head.output.model] = used_pin(lock.get(head.output.model))


def _metadata(model: lock.Model, state: cache.State) -> Metadata:
    """The model's MTG metadata: inline in the lock file, or its (verified) metadata file."""
    if model.inline_metadata is not None:
        origin = (f"from {model.metadata_source}" if model.metadata_source
                  else "reconstructed in the lock file")
        return Metadata.parse(model.inline_metadata, f"model '{model.id}': metadata {origin}")
    if not model.metadata:
        raise ModelError(f"model '{model.id}': the lock file names no metadata for it")
    return Metadata.read(state.path(model.metadata))
