"""Small derive functions: values Essentia's extractors compute in C++ outside any algorithm.

Each is a plain function on recorded values (numpy arrays, lists, numbers), declared with
its inputs, parameters and outputs so the compiler can check wires like algorithm ports.
Anything an Essentia algorithm can do belongs in the graph as that algorithm instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Function:
    name: str
    inputs: tuple[str, ...]
    params: dict[str, Any]
    outputs: tuple[str, ...]
    run: Callable[..., dict[str, Any]]
    doc: str


FUNCTIONS: dict[str, Function] = {}


def function(inputs: tuple[str, ...], outputs: tuple[str, ...], **params: Any) -> Callable:
    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        FUNCTIONS[fn.__name__] = Function(
            fn.__name__, inputs, params, outputs, fn, (fn.__doc__ or "").strip()
        )
        return fn

    return register


@function(inputs=("values",), outputs=("count",))
def count(values: Any) -> dict[str, Any]:
    """Number of items (e.g. rhythm.beats_count from the beat positions)."""
    return {"count": float(len(np.atleast_1d(values)) if np.size(values) else 0)}


@function(inputs=("samples",), outputs=("seconds",), sample_rate=44100.0)
def duration(samples: Any, sample_rate: float) -> dict[str, Any]:
    """Length in seconds of a signal."""
    return {"seconds": float(np.size(samples)) / float(sample_rate)}


@function(inputs=("events", "signal"), outputs=("rate",), sample_rate=44100.0)
def rate_per_second(events: Any, signal: Any, sample_rate: float) -> dict[str, Any]:
    """len(events) / duration of signal (e.g. rhythm.onset_rate from onset times)."""
    seconds = float(np.size(signal)) / float(sample_rate)
    return {"rate": float(len(np.atleast_1d(events))) / seconds if seconds > 0 else 0.0}



@function(inputs=("hpcp",), outputs=("thpcp",))
def transpose_to_peak(hpcp: Any) -> dict[str, Any]:
    """Rotate a pitch-class profile so its largest bin comes first (Essentia's tonal.thpcp)."""
    vector = np.asarray(hpcp, dtype=np.float32)
    if vector.ndim > 1:
        vector = vector.mean(axis=0)
    shift = int(np.argmax(vector)) if vector.size else 0
    return {"thpcp": np.roll(vector, -shift)}
