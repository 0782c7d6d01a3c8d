"""Reading outputs back (the catalog, the report): JSON parsed by orjson where it is
installed (5-8 times faster than the json module on our outputs), else by the json module,
which also reads what orjson refuses (NaN and Infinity, which Python's json writes)."""

from __future__ import annotations

import json
import math
from typing import Any

try:
    import orjson
except ImportError:  # the json module reads the same, slower
    orjson = None  # type: ignore[assignment]


def _nan(name: str) -> float:
    """NaN, Infinity and -Infinity in a file all read as NaN: an undefined value."""
    return math.nan


def parse_json(data: bytes) -> Any:
    """One JSON document from its bytes; ValueError (UnicodeDecodeError included) when it is
    not JSON."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data.decode("utf-8"), parse_constant=_nan)
