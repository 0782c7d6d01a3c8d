"""Statistics over frames with Essentia's PoolAggregator, then one nested result document."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner import registry
from runner.compile import Plan
from runner.run import Analysis


def aggregate(plan: Plan, analysis: Analysis) -> dict[str, Any]:
    """Descriptor name -> value: statistics for frame-wise descriptors, single values as is."""
    std = registry.quiet_essentia().standard

    exceptions = {d.name: d.stats for d in plan.descriptors if not d.single}
    present = set(analysis.frames.descriptorNames())
    flat: dict[str, Any] = {}
    if present:
        aggregated = std.PoolAggregator(
            defaultStats=[], exceptions={k: v for k, v in exceptions.items() if k in present}
        )(analysis.frames)
        for name in aggregated.descriptorNames():
            flat[name] = to_plain(aggregated[name])
    for desc in plan.descriptors:
        if not desc.single and desc.name not in present and desc.empty is not None:
            for stat in desc.stats:  # e.g. no beats found: Essentia writes zeros
                flat[f"{desc.name}.{stat}"] = to_plain(desc.empty)
    for name, value in analysis.singles.items():
        flat[name] = to_plain(value)
    return flat


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
