"""The fields of an MTG metadata JSON that inference needs, from a file or from the lock file.

MTG publishes a metadata JSON beside each TensorFlow graph (classes, input and output node
names, sample rate, the embedding model a head needs). A lock-file entry either pins that file
like any other (``"metadata": "<file name>"``) or carries its content inline (``"metadata":
{...}`` with ``"metadata_source"`` naming the public copy it was read from, or with
``"metadata_reconstructed"`` where it was assembled from public facts about MTG's file) where
no public hash of the file exists. Both are read here, the same way. Pure Python (no numpy,
no Essentia): the lock file checks inline metadata with it when it is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ModelError

SAMPLE_RATE = 16000.0


@dataclass(frozen=True)
class Metadata:
    """The fields of an MTG metadata JSON that inference needs."""

    algorithm: str
    sample_rate: float
    input: str
    outputs: dict[str, str]  # output_purpose ("predictions", "embeddings") -> node name
    classes: tuple[str, ...]
    embedding_model: str | None  # for heads: inference.embedding_model.model_name
    is_training: str  # a boolean placeholder to feed False, when the graph has one

    @classmethod
    def read(cls, path: Path) -> Metadata:
        """From a metadata JSON file (a fetched or converted model's)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: not usable model metadata ({type(exc).__name__}: "
                             f"{exc})") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, where: str) -> Metadata:
        """From the parsed content of a metadata JSON; ``where`` names it in errors."""
        try:
            inference = data["inference"]
            schema = data["schema"]
            outputs: dict[str, str] = {}
            for out in schema["outputs"]:
                outputs.setdefault(out.get("output_purpose", "predictions"), str(out["name"]))
            embedding = inference.get("embedding_model") or {}
            classes = data.get("classes") or []
            if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
                raise TypeError("classes is not a list of names")
            return cls(
                algorithm=str(inference["algorithm"]),
                sample_rate=float(inference.get("sample_rate", SAMPLE_RATE)),
                input=str(schema["inputs"][0]["name"]),
                outputs=outputs,
                classes=tuple(classes),
                embedding_model=embedding.get("model_name"),
                is_training=str(data.get("is_training_name", "")),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(f"{where}: not usable model metadata ({type(exc).__name__}: "
                             f"{exc})") from None
