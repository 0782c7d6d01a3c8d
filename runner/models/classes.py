"""Class probabilities as results: the class names an output writes, and the track-level
summary in Essentia's highlevel layout (``value``, ``probability``, ``all``).

Shared by every family whose models give class probabilities (Essentia TensorFlow graphs
today; trained classifiers next).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.compile.models import ModelOutput
from runner.errors import ModelError
from runner.models.supply.metadata import Metadata


def class_names(meta: Metadata, out: ModelOutput) -> list[str]:
    """The class names an output writes: the model's, renamed by the output's ``labels``.

    Checked against the model's metadata, so a label that names no class (a typo, or a model
    whose classes differ from what the profile expects) stops the run instead of writing the
    model's own names where the profile promised others.
    """
    classes = list(meta.classes)
    labels = out.labels
    if labels is None:
        return _check_class(classes, out)
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
    return _check_class(renamed, out)


def _check_class(classes: list[str], out: ModelOutput) -> list[str]:
    """``classes``, after checking that a ``write: probability`` output names one of them."""
    if out.class_name is not None and out.class_name not in classes:
        raise ModelError(f"models.outputs.{out.name}.class: '{out.class_name}' is not a class "
                         f"of '{out.model}' (its classes: {', '.join(classes)})")
    return classes


def written(summary: Any, out: ModelOutput) -> Any:
    """A summary (see summarise) as the output writes it: the classes layout, a
    ``{class: probability}`` map of the classes at or above its threshold (most probable
    first), or the probability of its one class."""
    if out.write == "classes" or not isinstance(summary, dict):
        return summary
    probabilities = summary["all"]
    if out.write == "probability":
        return probabilities[out.class_name]
    kept = sorted(((p, name) for name, p in probabilities.items() if p >= out.threshold),
                  key=lambda item: -item[0])
    return {name: p for p, name in kept}


def summarise(values: np.ndarray, meta: Metadata, purpose: str,
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
