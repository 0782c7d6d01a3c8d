"""The model stage: after the Essentia network, run the profile's models on the decoded audio.

Built once per extractor: every model is resolved in the cache and verified (a missing or
tampered file is refused here, before any audio is read), graphs are loaded once. Per
track, the analysed signal is resampled to each model's rate; every embedding model runs
once and feeds all the heads that need it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner import registry
from runner.errors import ModelError
from runner.models import cache, lock
from runner.models.infer import (
    FRONTENDS,
    HEADS,
    PATCH_CHUNK,
    Metadata,
    Predictor,
    features,
    patches,
)
from runner.models.plan import ModelOutput, ModelsConfig


def prepare(plan: Any, warn: bool = True, load: bool = True) -> ModelStage | None:
    """The plan's model stage (None without one), resolved in the cache; and the plan's
    digest made final: the models that will run, and what is left out, decide the results
    as much as the profile does (runner.compile.result_digest). The batch parent (load=False)
    and every worker call this, so both compare and write the same hash."""
    from runner.compile import result_digest

    if plan.models is None or not plan.models.outputs:
        return None
    stage = ModelStage(plan.models, warn=warn, load=load, alone=not plan.descriptors)
    plan.digest = result_digest(plan.profile, stage.fingerprint())
    return stage


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
    meta: Metadata
    embedder: str  # the _Embedder (lock id) whose embeddings it takes
    predictor: Predictor | None
    classes: list[str]  # the class names written (class_names)


@dataclass
class ModelResults:
    descriptors: dict[str, Any]  # "<section>.<name>" -> {value, probability, all} or a vector
    embeddings: dict[str, np.ndarray]  # embedding model id -> (patches, width)
    used: dict[str, str]  # model id -> sha256 of its graph (or "converted")


def _first_present(model_id: str) -> tuple[lock.Model, cache.State] | None:
    """A verified copy of the model, or of a model that stands in for it (``provides``).

    A copy that does not match its pin stops here even when a stand-in is present: results
    never switch models silently because a file was damaged.
    """
    table = lock.models()
    candidates = [table[model_id]] if model_id in table else []
    candidates += [m for m in table.values() if model_id in m.provides]
    if not candidates:
        return None
    states = [cache.locate(model) for model in candidates]
    for state in states:
        if state.state == cache.MISMATCH:
            raise cache.mismatch_error(state)
    for model, state in zip(candidates, states, strict=True):
        if state.ok:
            return model, state
    raise cache.MissingModel(f"model '{model_id}' is not in the model cache "
                             f"({cache.user_cache()}); {lock.fetch_hint([model_id])}", model_id)


class ModelStage:
    def __init__(self, config: ModelsConfig, warn: bool = True, load: bool = True,
                 alone: bool = False) -> None:
        """Resolve and verify every model; ``load=False`` stops there (no graph is loaded:
        the batch parent only wants to know what is missing). ``alone``: the profile computes
        nothing but these models, so with every one of them missing there is nothing to
        write and ``missing: skip`` refuses too."""
        self.config = config
        self.load = load
        self.embedders: dict[str, _Embedder] = {}
        # outputs of an embedding model itself: (output, embedder id, class names written)
        self.direct: list[tuple[ModelOutput, str, list[str]]] = []
        self.heads: list[_Head] = []
        self.backends: list[tuple[ModelOutput, Any]] = []  # e.g. CLAP
        self.missing: list[str] = []  # model ids not in the cache (missing: skip)
        self.left_out: list[str] = []  # output names left out for them
        self.pins: dict[str, dict[str, str]] = {}  # model id -> file -> sha256, of those used
        first: cache.MissingModel | None = None
        for out in config.outputs:
            try:
                self._add(out)
            except cache.MissingModel as exc:  # a file that does not match its pin: raised
                if exc.model_id is None:
                    raise
                first = first or exc
                self.left_out.append(out.name)
                if exc.model_id not in self.missing:
                    self.missing.append(exc.model_id)
        if first is not None and config.missing == "error":
            if len(self.missing) == 1:
                raise first
            raise cache.MissingModel(f"{config.section}: {len(self.missing)} models are not in "
                                     f"the model cache ({cache.user_cache()}): "
                                     f"{', '.join(self.missing)}; "
                                     f"{lock.fetch_hint(self.missing)}", self.missing[0])
        if config.outputs and len(self.left_out) == len(config.outputs) and alone:
            raise cache.MissingModel(f"{config.section}: none of the models of its "
                                     f"{len(config.outputs)} outputs is in the model cache "
                                     f"({cache.user_cache()}), and the profile computes "
                                     f"nothing else; {lock.fetch_hint(self.missing)}")
        for emb in self.embedders.values() if load else ():
            if config.keep_embeddings and "embeddings" in emb.meta.outputs:
                emb.purposes.add("embeddings")
            outputs = [emb.meta.outputs[p] for p in sorted(emb.purposes)]
            emb.predictor = Predictor(emb.folder / str(emb.model.graph), emb.meta, outputs)
        if self.missing and warn:
            print(f"note: {self.note()}", file=sys.stderr)

    @property
    def reads_audio(self) -> bool:
        """Whether run() will read the signal (some model is in the cache and loaded)."""
        return bool(self.embedders or self.backends)

    def note(self) -> str:
        """One line naming what was left out and the command that can fetch it here."""
        total = len(self.config.outputs)
        if len(self.left_out) == total and total > 3:  # the names add nothing: all of them
            which = f"all {total} outputs left out"
        else:
            which = (f"{len(self.left_out)} of {total} outputs left out "
                     f"({', '.join(self.left_out)})")
        return (f"{self.config.section}: {which}, their models are not in the model cache; "
                f"{lock.fetch_hint(self.missing)}")

    def fingerprint(self) -> dict[str, Any]:
        """What decides this stage's results besides the audio: every file of every model
        that runs (sha256), and which outputs are left out. Part of each result's hash."""
        return {"section": self.config.section, "used": self.pins,
                "left_out": sorted(self.left_out)}

    # -- resolving ------------------------------------------------------------------------------
    def _embedder(self, model_id: str) -> str:
        found = _first_present(model_id)
        if found is None:
            raise ModelError(f"model '{model_id}' is not in the lock file")
        model, state = found
        if model.id not in self.embedders:
            meta = _metadata(model, state)
            if meta.algorithm not in FRONTENDS:
                raise ModelError(f"model '{model.id}': inference algorithm {meta.algorithm} is "
                                 f"not an embedding model ({', '.join(FRONTENDS)})")
            self.embedders[model.id] = _Embedder(model, state.folder or Path(), meta)
            self.pins[model.id] = state.pins()
        return model.id

    def _add(self, out: ModelOutput) -> None:
        model = lock.get(out.model)
        if model.kind != "tensorflow":
            from runner.models import clap  # torch: only for profiles that use it

            for state in clap.require_files(model):  # before torch loads anything
                self.pins[state.model.id] = state.pins()
            self.backends.append((out, clap.backend(model) if self.load else None))
            return
        if model.embedding:  # a classifier head on another model's embeddings
            state = cache.require(model)
            emb_id = self._embedder(model.embedding)
            meta = _metadata(model, state)
            if meta.algorithm not in HEADS:
                raise ModelError(f"model '{model.id}': {meta.algorithm} is not a head algorithm")
            self.embedders[emb_id].purposes.add("embeddings")
            predictor = Predictor(state.path(str(model.graph)), meta,
                                  [meta.outputs["predictions"]]) if self.load else None
            self.heads.append(_Head(out, meta, emb_id, predictor, class_names(meta, out)))
            self.pins[model.id] = state.pins()
            return
        emb_id = self._embedder(model.id)
        purpose = out.output
        if purpose not in self.embedders[emb_id].meta.outputs:
            raise ModelError(f"model '{emb_id}' has no '{purpose}' output")
        self.embedders[emb_id].purposes.add(purpose)
        meta = self.embedders[emb_id].meta
        classes = class_names(meta, out) if purpose == "predictions" else []
        self.direct.append((out, emb_id, classes))

    # -- running --------------------------------------------------------------------------------
    def run(self, signal: np.ndarray, rate: float) -> ModelResults:
        results = ModelResults({}, {}, {})
        section = self.config.section
        resampled: dict[float, np.ndarray] = {}
        bands: dict[tuple[str, int, int], np.ndarray] = {}
        computed: dict[str, dict[str, np.ndarray]] = {}
        for emb_id, emb in self.embedders.items():
            audio = _at_rate(signal, rate, emb.meta.sample_rate, resampled)
            front = FRONTENDS[emb.meta.algorithm]
            key = (front.features, front.frame_size, front.hop_size)
            if key not in bands:
                bands[key] = features(audio, front)
            hop = front.patch_hop if self.config.overlap else front.patch_size
            batch = patches(bands[key], front.patch_size, hop)
            assert emb.predictor is not None
            out = emb.predictor.run(batch, fixed=front.batch, chunk=PATCH_CHUNK)
            computed[emb_id] = {p: out[emb.meta.outputs[p]] for p in emb.purposes}
            results.used[emb_id] = _pin_of(emb.model)
            if "embeddings" in computed[emb_id]:
                results.embeddings[emb_id] = computed[emb_id]["embeddings"]
        for out, emb_id, classes in self.direct:
            values = computed[emb_id][out.output]
            meta = self.embedders[emb_id].meta
            results.descriptors[f"{section}.{out.name}"] = _summarise(values, meta, out.output,
                                                                      classes)
        for head in self.heads:
            embeddings = computed[head.embedder]["embeddings"]
            assert head.predictor is not None
            preds = head.predictor.run(embeddings)[head.meta.outputs["predictions"]]
            results.descriptors[f"{section}.{head.output.name}"] = _summarise(
                preds, head.meta, "predictions", head.classes)
            results.used[head.output.model] = _pin_of(lock.get(head.output.model))
        for out, backend in self.backends:
            audio = _at_rate(signal, rate, float(backend.sample_rate), resampled)
            vector = backend.embed_audio(audio)
            results.descriptors[f"{section}.{out.name}"] = [float(v) for v in vector]
            results.used[out.model] = _pin_of(lock.get(out.model))
        return results


def _metadata(model: lock.Model, state: cache.State) -> Metadata:
    """The model's MTG metadata: inline in the lock file, or its (verified) metadata file."""
    if model.inline_metadata is not None:
        origin = (f"from {model.metadata_source}" if model.metadata_source
                  else "reconstructed in the lock file")
        return Metadata.parse(model.inline_metadata, f"model '{model.id}': metadata {origin}")
    if not model.metadata:
        raise ModelError(f"model '{model.id}': the lock file names no metadata for it")
    return Metadata.read(state.path(model.metadata))


def _pin_of(model: lock.Model) -> str:
    if model.source:
        return f"converted from {model.source.name} ({model.source.sha256})"
    graph = next((p for p in model.files if p.name == model.graph), None)
    return graph.sha256 if graph else (model.files[0].sha256 if model.files else "")


def _at_rate(signal: np.ndarray, rate: float, target: float,
             done: dict[float, np.ndarray]) -> np.ndarray:
    """The analysed signal at a model's rate (Essentia's Resample, MonoLoader's fastest
    quality, as MTG's examples load audio for these models)."""
    if target not in done:
        if abs(rate - target) < 1e-6:
            done[target] = np.asarray(signal, dtype=np.float32)
        else:
            std = registry.quiet_essentia().standard
            resample = std.Resample(inputSampleRate=rate, outputSampleRate=target, quality=4)
            done[target] = resample(np.ascontiguousarray(signal, dtype=np.float32))
    return done[target]


def class_names(meta: Metadata, out: ModelOutput) -> list[str]:
    """The class names an output writes: the model's, renamed by the output's ``labels``.

    Checked against the model's metadata, so a label that names no class (a typo, or a model
    whose classes differ from what the profile expects) stops the run instead of writing the
    model's own names where the profile promised others.
    """
    classes = list(meta.classes)
    labels = out.labels
    if labels is None:
        return classes
    where = f"models.outputs.{out.name}.labels"
    if isinstance(labels, tuple):
        if len(labels) != len(classes):
            raise ModelError(f"{where}: {len(labels)} names for the {len(classes)} classes of "
                             f"'{out.model}' ({', '.join(classes)})")
        renamed = list(labels)
    else:
        unknown = [name for name in labels if name not in classes]
        if unknown:
            raise ModelError(f"{where}: '{unknown[0]}' is not a class of '{out.model}' (its "
                             f"classes: {', '.join(classes)})")
        renamed = [labels.get(name, name) for name in classes]
    if len(set(renamed)) != len(renamed):
        raise ModelError(f"{where}: two classes of '{out.model}' would get the same name")
    return renamed


def _summarise(values: np.ndarray, meta: Metadata, purpose: str,
               classes: list[str] | None = None) -> Any:
    """Per-patch outputs -> one track-level result (the mean over patches).

    Class probabilities become Essentia's highlevel layout: ``value`` (the most probable
    class), ``probability`` and ``all.<class>``; embeddings stay a vector. ``classes``: the
    names to write (see class_names), the model's own by default.
    """
    if values.size == 0:
        raise ModelError("the audio is too short for the model (no patch)")
    mean = values.mean(axis=0)
    if purpose == "embeddings" or not meta.classes:
        return [float(v) for v in mean]
    names = list(classes if classes is not None else meta.classes)
    if len(names) != len(mean):
        raise ModelError(f"the model gives {len(mean)} values but its metadata names "
                         f"{len(names)} classes")
    best = int(np.argmax(mean))
    return {
        "value": names[best],
        "probability": float(mean[best]),
        "all": {name: float(p) for name, p in zip(names, mean, strict=True)},
    }
