"""Essentia's own extractor profile files, applied as overrides of a built-in profile.

Essentia profiles are YAML with flat or nested keys (``lowlevel.frameSize: 2048`` or
``lowlevel: {frameSize: 2048}``). Keys that name audio/output settings or statistics map to
those sections; every other key must be an option the base profile declares. Unknown keys
are errors, never silently ignored.
"""

from __future__ import annotations

import difflib
from typing import Any

from runner.errors import ProfileError
from runner.load import KeyPath, Profile
from runner.tree import flatten

# Essentia key -> our profile path (statistics lists, audio input, output settings).
FIXED: dict[str, KeyPath] = {
    "startTime": ("audio", "start_time"),
    "endTime": ("audio", "end_time"),
    "analysisSampleRate": ("audio", "sample_rate"),
    "outputFormat": ("output", "format"),
    "outputFrames": ("output", "frames"),
    "indent": ("output", "indent"),
    "lowlevel.stats": ("stats", "lowlevel"),
    "lowlevel.mfccStats": ("stats", "lowlevel.mfcc"),
    "lowlevel.gfccStats": ("stats", "lowlevel.gfcc"),
    "rhythm.stats": ("stats", "rhythm"),
    "tonal.stats": ("stats", "tonal"),
}
NAMESPACES = {"lowlevel", "rhythm", "tonal", "highlevel", "chromaprint", "metadata", "sfx"}
OUR_KEYS = {"name", "graph", "descriptors", "extends", "audio", "output", "stats", "options"}


def is_essentia_profile(data: Any) -> bool:
    """True for Essentia's extractor profile files (no ``name``/``graph``, Essentia keys)."""
    if not isinstance(data, dict) or not data:
        return False
    if OUR_KEYS & set(data):
        return False
    return all(str(k).split(".")[0] in NAMESPACES or k in FIXED for k in data)


def apply(base: Profile, data: dict[str, Any], source: str, lines: dict[KeyPath, int]) -> None:
    """Apply an Essentia profile's settings onto ``base`` in place."""
    options = base.data.setdefault("options", {})
    known = sorted(set(FIXED) | set(options))
    for key, value in flatten(data).items():
        line = lines.get(tuple(key.split("."))) or lines.get((key,))
        if key in options:  # options first: the base profile decides what its keys mean
            path = ("options", key)
            if isinstance(options[key], bool) and isinstance(value, int):
                value = bool(value)
        elif key in FIXED:
            path = FIXED[key]
            if key == "outputFrames":
                value = bool(value)
            if key == "endTime" and value is not None and float(value) >= 1e6:
                value = None  # Essentia's "until the end"
        else:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `extractor schema --options`"
            raise ProfileError(f"unknown Essentia profile key for the {base.name} profile",
                               source=source, line=line, path=key, hint=hint)
        node = base.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        base.origins[path] = (source, line or 0)
