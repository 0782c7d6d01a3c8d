"""Model families: how a kind of model is run, behind one small protocol, in one table.

A lock-file entry's ``kind`` names its family (``"tensorflow"``: Essentia TensorFlow graphs
driven by MTG's metadata; ``"laion-clap"`` and ``"transformers-clap"``: CLAP;
``"onnx-classifier"``: classifiers trained with `extractor train`; ``"madmom"``: madmom's
downbeat network and the tempo consensus; ``"crepe"``, ``"madmom-beats"``,
``"transformers-audio"``, ``"mert"``, ``"basic-pitch"``, ``"openl3"``, ``"panns"``: frame-wise
models and embeddings, runner.models.framewise; ``"madmom-key"``, ``"madmom-chords"``: madmom's
key and chords, runner.models.madmom_harmony_family). The model stage (runner.models.stage)
knows nothing of any family: for each output of a profile's ``models:`` section it asks the
family of the output's model to take it on (:meth:`ModelRunner.add`), has every family load
what it took (:meth:`ModelRunner.load`), and per track lets each family write its descriptors
(:meth:`ModelRunner.run`). A new family of models is one module with a runner class, and one
line in :data:`FAMILIES` (or :func:`register`) naming the lock-entry kind it runs; the
stage's control flow does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelError
from runner.models.supply.lock import Model

# The audio a runner reads: the analysed signal at the sample rate it asks for (resampled once
# per track and rate, shared by every runner).
AudioAt = Callable[[float], np.ndarray]


@dataclass
class ModelResults:
    descriptors: dict[str, Any]  # "<section>.<name>" -> {value, probability, all} or a vector
    embeddings: dict[str, np.ndarray]  # embedding model id -> (patches, width)
    used: dict[str, str]  # model id -> sha256 of its graph (or "converted")
    # the track's own descriptors (flat, aggregated): what a classifier of descriptors reads
    track: dict[str, Any] = field(default_factory=dict)
    # lines for metadata.warnings, e.g. why an output is null for this track
    warnings: list[str] = field(default_factory=list)


class ModelRunner(Protocol):
    """The models of one family in one extractor: outputs taken on when the extractor starts,
    loaded once, run on every track.

    Two optional class attributes: ``writes_classes`` (its ``predictions`` outputs are class
    probabilities, ``value``/``probability``/``all``, in the output schema; default: a
    vector) and ``reads_embeddings`` (it reads ``results.embeddings`` that other families
    computed for the track, so it runs after them). And ``schema(output)``, a static method
    giving the output document's schema of an output that is neither (madmom's tempo: a
    number)."""

    def add(self, output: ModelOutput, model: Model) -> dict[str, dict[str, str]]:
        """Take on ``output`` (of lock-file model ``model``): find and verify its files
        (cache.MissingModel where they are not in the cache: the stage may leave the output
        out), check it can be run. Returns model id -> file -> sha256 of every file it will
        read (part of each result's hash). Loads nothing yet."""

    def load(self) -> None:
        """Load what the outputs taken on need (graphs, weights); not called where nothing
        will run (the batch parent only checks what is missing)."""

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        """One track: add each output's descriptor to ``results.descriptors``
        (``<section>.<name>``), the pin of each model used to ``results.used``."""


# The runner class of a family: built once per extractor with the compiled models section.
RunnerFactory = Callable[[ModelsConfig], ModelRunner]

# Lock-entry kind -> the family that runs it: a module with a ``Runner`` class (imported only
# when a profile uses that kind: CLAP's costs torch), or a factory registered in code. A kind
# that several entries name shares one runner (and their outputs keep their order).
FAMILIES: dict[str, str | RunnerFactory] = {
    "tensorflow": "runner.models.tf_family",
    "laion-clap": "runner.models.clap_family",
    "transformers-clap": "runner.models.clap_family",
    "onnx-classifier": "runner.models.onnx_classifier_family",
    "madmom": "runner.models.madmom_family",
    "crepe": "runner.models.framewise",
    "madmom-beats": "runner.models.framewise",
    "transformers-audio": "runner.models.framewise",
    "mert": "runner.models.framewise",
    "basic-pitch": "runner.models.framewise",
    "openl3": "runner.models.framewise",
    "panns": "runner.models.framewise",
    "madmom-key": "runner.models.madmom_harmony_family",
    "madmom-chords": "runner.models.madmom_harmony_family",
}


def register(kind: str, factory: str | RunnerFactory) -> None:
    """Run lock entries of ``kind`` with ``factory`` (a module with a ``Runner`` class, or a
    callable taking the ModelsConfig); a family added from outside the table."""
    FAMILIES[kind] = factory


def factory_for(model: Model) -> tuple[str | RunnerFactory, RunnerFactory]:
    """The family of ``model`` (its table entry, identifying a shared runner) and the
    callable that builds its runner."""
    entry = FAMILIES.get(model.kind)
    if entry is None:
        raise ModelError(f"model '{model.id}' is a {model.kind!r} model, which no model family "
                         f"runs (kinds: {', '.join(FAMILIES)})")
    if isinstance(entry, str):
        return entry, importlib.import_module(entry).Runner
    return entry, entry


def writes_classes(model: Model, output: ModelOutput) -> bool:
    """Whether ``output`` is class probabilities (value, probability, all) rather than a
    vector: the family says so (its runner's ``writes_classes``), for its predictions."""
    if output.output != "predictions":
        return False
    _, factory = factory_for(model)
    return bool(getattr(factory, "writes_classes", False))


def output_schema(model: Model, output: ModelOutput) -> dict[str, Any] | None:
    """The output document's schema of ``output`` where its family states one (its runner's
    ``schema(output)``: e.g. a tempo, a number); None: class probabilities or a vector."""
    _, factory = factory_for(model)
    schema = getattr(factory, "schema", None)
    return schema(output) if callable(schema) else None


def order(family: str | RunnerFactory) -> int:
    """A family's place in the table: runners write their descriptors in this order."""
    for index, entry in enumerate(FAMILIES.values()):
        if entry == family:
            return index
    return len(FAMILIES)


def used_pin(model: Model) -> str:
    """What a result records of a model that ran (metadata.models.used): the sha256 of its
    graph or weights (a hub model's model.safetensors or pytorch_model.bin; else its first
    file), or the pinned source it was converted from."""
    if model.source:
        return f"converted from {model.source.name} ({model.source.sha256})"
    weights = (model.graph, "model.safetensors", "pytorch_model.bin")
    graph = next((p for p in model.files if p.name in weights), None)
    return graph.sha256 if graph else (model.files[0].sha256 if model.files else "")
