"""The CLAP family (lock-entry kinds ``laion-clap``, ``transformers-clap``): one audio
embedding per output, the normalised mean of 10 s windows (runner.models.clap).

Its files, and its tokenizer's, are verified before torch loads anything; torch itself is
imported only by :meth:`Runner.load`, for profiles that use CLAP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.compile.models import ModelOutput, ModelsConfig
from runner.models import clap
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.supply import lock


class Runner:
    """The CLAP outputs of one extractor, in the profile's order."""

    writes_classes = False  # an embedding vector per output

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.outputs: list[tuple[ModelOutput, lock.Model]] = []
        self.backends: list[Any] = []  # clap.ClapBackend per output, once loaded

    def add(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        pins = {state.model.id: state.pins() for state in clap.require_files(model)}
        self.outputs.append((output, model))
        return pins

    def load(self) -> None:
        self.backends = [clap.backend(model) for _, model in self.outputs]

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        for (output, model), backend in zip(self.outputs, self.backends, strict=True):
            vector = backend.embed_audio(audio(float(backend.sample_rate)))
            results.descriptors[output.key(self.config.section)] = [float(v)
                                                                           for v in vector]
            # for classifiers trained on these vectors (onnx-classifier): one "patch"
            results.embeddings[model.id] = np.asarray(vector, dtype=np.float32)[None, :]
            results.used[model.id] = used_pin(model)
