"""Essentia Pools as Python values: reading them whole, making their values JSON-ready, and
giving the memory of emptied pools back to the system. Used by the analysis, the aggregation
and the output alike."""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import numpy as np


def pool_values(pool: Any) -> dict[str, Any]:
    """Every entry of an Essentia Pool by name.

    ``pool[name]`` lists all of the pool's names to check the key first, so reading n entries
    that way costs O(n^2): about 40 ms per file for the music profile's pools.
    """
    cpp = pool.cppPool
    return {name: cpp.__value__(name, cpp.__keyType__(name)) for name in cpp.descriptorNames()}


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


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to call
        return None


def give_back_freed_memory() -> None:
    """Return memory just freed (a pass's recorded streams, a removed descriptor) to the system.

    glibc keeps freed heap memory for reuse, but pools hold many small blocks that later,
    larger allocations do not fit, so without this the process grew by the new allocations on
    top of the freed ones (on 60 minutes: +184 MiB over the frame pool while aggregating).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
