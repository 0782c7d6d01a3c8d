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
    """Apply an Essentia profile's settings onto ``base`` in place.

    Every error names the line of the key in the Essentia file; a key written both flat and
    nested (``lowlevel.frameSize`` and ``lowlevel: {frameSize: ...}``) is an error naming
    both lines, never the last one silently winning.
    """
    options = base.data.setdefault("options", {})
    known = sorted(set(FIXED) | set(options))
    for key, (value, line) in _flatten(data, lines, source).items():
        if key in options:  # options first: the base profile decides what its keys mean
            path = ("options", key)
            if isinstance(options[key], bool) and isinstance(value, int) and value in (0, 1):
                value = bool(value)
        elif key in FIXED:
            path = FIXED[key]
            if key == "outputFrames":
                value = _flag(value, key, source, line)
            if key == "endTime" and isinstance(value, (int, float)) and not isinstance(
                    value, bool) and float(value) >= 1e6:
                value = None  # Essentia's "until the end"
        else:
            raise ProfileError(f"unknown Essentia profile key for the {base.name} profile",
                               source=source, line=line, path=key,
                               hint=_hint(key, known, base.name))
        node = base.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        for sub in [p for p in base.origins if p[:len(path)] == path]:
            del base.origins[sub]  # what the base profile had there is gone
        base.origins[path] = (source, line or 0)
        base.labels[path] = key  # errors name the key as this file writes it


def _flatten(data: dict[str, Any], lines: dict[KeyPath, int], source: str
             ) -> dict[str, tuple[Any, int | None]]:
    """Dotted key -> (value, line), from flat and nested keys alike."""
    flat: dict[str, tuple[Any, int | None]] = {}

    def walk(tree: dict[str, Any], path: KeyPath) -> None:
        for key, value in tree.items():
            here = path + (str(key),)
            if isinstance(value, dict):
                walk(value, here)
                continue
            name = ".".join(here)
            line = lines.get(here)
            if name in flat:
                raise ProfileError(
                    f"'{name}' is set twice (lines {flat[name][1]} and {line}); the second "
                    "would silently replace the first", source=source, line=line, path=name)
            flat[name] = (value, line)

    walk(data, ())
    return flat


def _flag(value: Any, key: str, source: str, line: int | None) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ProfileError(f"expected 0 or 1, got {value!r}", source=source, line=line, path=key)


def _hint(key: str, known: list[str], profile: str) -> str:
    """The closest key of the same section, else the keys of that section this profile knows."""
    section, _, _ = key.rpartition(".")
    same = [k for k in known if k.rpartition(".")[0] == section]
    close = difflib.get_close_matches(key.rpartition(".")[2],
                                      [k.rpartition(".")[2] for k in same], n=1)
    if close:
        return f"did you mean '{section + '.' if section else ''}{close[0]}'?"
    if same:
        return f"the {profile} profile knows: {', '.join(same)}"
    sections = sorted({k.split('.')[0] for k in known if '.' in k})
    return f"the {profile} profile knows keys under: {', '.join(sections)}"
