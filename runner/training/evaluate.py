"""Scores of a classifier on labelled tracks: accuracy, balanced accuracy, per-class precision
and recall, the confusion matrix; and a trained model (its ONNX file, through onnxruntime as
a run uses it) scored on new labelled files (`extractor evaluate`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def metrics(truth: list[str] | np.ndarray, predicted: list[str] | np.ndarray,
            classes: list[str]) -> dict[str, Any]:
    """The scores a report shows, as plain JSON values."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    y, p = np.asarray(truth), np.asarray(predicted)
    precision, recall, _, support = precision_recall_fscore_support(
        y, p, labels=classes, zero_division=0)
    return {
        "tracks": int(len(y)),
        "accuracy": float(accuracy_score(y, p)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p)),
        "per_class": {c: {"precision": float(pr), "recall": float(rc), "tracks": int(n)}
                      for c, pr, rc, n in zip(classes, precision, recall, support, strict=True)},
        "confusion": {"classes": classes,
                      "matrix": confusion_matrix(y, p, labels=classes).tolist()},
    }


def table(title: str, scores: dict[str, Any]) -> Any:
    """A rich table of ``scores``: per class precision and recall, then the confusion rows."""
    from rich.table import Table

    classes = scores["confusion"]["classes"]
    result = Table("class", "precision", "recall", "tracks", *[f"-> {c}" for c in classes],
                   title=f"{title}: accuracy {scores['accuracy']:.3f}, balanced accuracy "
                         f"{scores['balanced_accuracy']:.3f} ({scores['tracks']} tracks)")
    for name, counts in zip(classes, scores["confusion"]["matrix"], strict=True):
        per = scores["per_class"][name]
        result.add_row(name, f"{per['precision']:.3f}", f"{per['recall']:.3f}",
                       str(per["tracks"]), *[str(n) for n in counts])
    return result
