"""Statistics over frames with Essentia's PoolAggregator, then one nested result document."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from runner import registry
from runner.compile import Plan
from runner.run import Analysis, pool_values


def aggregate(plan: Plan, analysis: Analysis) -> dict[str, Any]:
    """Descriptor name -> value: statistics for frame-wise descriptors, single values as is."""
    exceptions = {d.name: d.stats for d in plan.descriptors if not d.single}
    present = set(analysis.frames.descriptorNames())
    flat: dict[str, Any] = {}
    if present:
        wanted = tuple(sorted((k, tuple(v)) for k, v in exceptions.items() if k in present))
        aggregated = _aggregator(wanted)(analysis.frames)
        for name, value in pool_values(aggregated).items():
            flat[name] = to_plain(value)
    for desc in plan.descriptors:
        if not desc.single and desc.name not in present and desc.empty is not None:
            for stat in desc.stats:  # e.g. no beats found: Essentia writes zeros
                flat[f"{desc.name}.{stat}"] = to_plain(desc.empty)
    for name, value in analysis.singles.items():
        flat[name] = to_plain(value)
    return flat


@lru_cache(maxsize=16)
def _aggregator(exceptions: tuple[tuple[str, tuple[str, ...]], ...]) -> Any:
    """One PoolAggregator per set of statistics, reused for every file: creating one with a
    large ``exceptions`` map leaks about 30 KB in Essentia's parameter conversion, which a
    library run would pay per file."""
    std = registry.quiet_essentia().standard
    return std.PoolAggregator(defaultStats=[], exceptions={k: list(v) for k, v in exceptions})


def to_plain(value: Any) -> Any:
    """numpy and Essentia values as JSON-ready Python values."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return [to_plain(v) for v in value] if value.ndim > 1 else [
                float(v) for v in value
            ]
        return value.tolist()
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
