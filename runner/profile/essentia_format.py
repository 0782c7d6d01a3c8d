"""Essentia's extractor profile files, applied as overrides of one of our built-in profiles.

``essentia_streaming_extractor_music IN OUT PROFILE`` reads a YAML file of Essentia's own
format, and the tools that call that binary (beets-xtractor, the AcousticBrainz clients)
write one. Every key of that format is understood here with Essentia's meaning, as its
sources define it (MTG/essentia: ``streaming_extractor_music.cpp``, ``extractor_utils.cpp``,
``musicextractor.cpp``, ``MusicLowlevelDescriptors.cpp`` and the documented profiles):

- settings of the analysis and the output (``startTime``, ``lowlevel.frameSize``,
  ``outputFormat``, ...) become the base profile's options, audio and output settings;
- ``lowlevel.stats`` and the other statistics lists become our ``stats`` prefixes;
- ``requireMbid`` refuses a file without a MusicBrainz recording id;
- ``mergeValues`` adds its values to every output;
- ``highlevel.svm_models`` names Gaia SVM classifiers, which run as our TensorFlow models under
  Essentia's names and labels (profiles/_essentia_svm.yaml); those with no model here are left
  out and named in each output's warnings.

Keys are written flat (``lowlevel.frameSize: 2048``) or nested (``lowlevel: {frameSize:
2048}``). A key of Essentia's format that the base profile has no use for (``tonal.frameSize``
for the rhythm profile) is accepted with a note; a key Essentia's format does not have is an
error naming its line, with the closest real key. Nothing is silently ignored.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from runner.errors import ProfileError
from runner.profile.model import KeyPath, Profile
from runner.profile.reading import read_yaml
from runner.profile.references import builtin_dir

# -- Essentia's format ----------------------------------------------------------------------------
# Every key an Essentia music or freesound extractor reads from a profile (setExtractorOptions /
# setExtractorDefaultOptions and the descriptor sets), plus mergeValues.* (any key below it).
ESSENTIA_KEYS = frozenset({
    "startTime", "endTime", "analysisSampleRate", "requireMbid",
    "outputFrames", "outputFormat", "indent",
    "lowlevel.frameSize", "lowlevel.hopSize", "lowlevel.zeroPadding", "lowlevel.windowType",
    "lowlevel.silentFrames", "lowlevel.stats", "lowlevel.mfccStats", "lowlevel.gfccStats",
    "average_loudness.frameSize", "average_loudness.hopSize",
    "average_loudness.windowType", "average_loudness.silentFrames",
    "rhythm.method", "rhythm.minTempo", "rhythm.maxTempo", "rhythm.stats",
    "tonal.frameSize", "tonal.hopSize", "tonal.zeroPadding", "tonal.windowType",
    "tonal.silentFrames", "tonal.stats",
    "highlevel.compute", "highlevel.svm_models", "highlevel.inputFormat",
    "chromaprint.compute", "chromaprint.duration",
})
MERGE = "mergeValues"
SECTIONS = frozenset(k.split(".")[0] for k in ESSENTIA_KEYS if "." in k) | {MERGE}
# Keys of our own format: a file with any of them is one of our profiles.
OUR_KEYS = frozenset({"name", "description", "extends", "graph", "descriptors", "audio",
                      "output", "stats", "options", "models", "summary"})

# Essentia key -> where it goes in our profile, when the base profile has no option of that name.
FIXED: dict[str, KeyPath] = {
    "startTime": ("audio", "start_time"),
    "endTime": ("audio", "end_time"),
    "analysisSampleRate": ("audio", "sample_rate"),
    "requireMbid": ("audio", "require_mbid"),
    "outputFormat": ("output", "format"),
    "outputFrames": ("output", "frames"),
    "indent": ("output", "indent"),
    "lowlevel.stats": ("stats", "lowlevel"),
    "lowlevel.mfccStats": ("stats", "lowlevel.mfcc"),
    "lowlevel.gfccStats": ("stats", "lowlevel.gfcc"),
    "rhythm.stats": ("stats", "rhythm"),
    "tonal.stats": ("stats", "tonal"),
}
FLAGS = frozenset({"requireMbid", "outputFrames", "highlevel.compute", "chromaprint.compute"})
# Keys Essentia documents or reads but that change nothing in its music extractor either.
NO_EFFECT = {
    "average_loudness.windowType": "Essentia's extractor does not read it either (its loudness "
                                   "frames are never windowed)",
    "average_loudness.silentFrames": "Essentia's extractor does not read it either",
    "highlevel.inputFormat": "only Essentia's streaming_extractor_music_svm reads it (the "
                             "format of the descriptor file it classifies)",
}
SVM_FRAGMENT = "_essentia_svm.yaml"


@dataclass(frozen=True)
class _Setting:
    key: str  # dotted, as Essentia names it
    value: Any
    line: int | None


def is_essentia_profile(data: Any) -> bool:
    """True for a file of Essentia's format: a mapping with none of our keys and at least one
    of Essentia's (flat or as a section), so that a misspelled key in it is reported in
    Essentia's terms."""
    if not isinstance(data, dict) or not data:
        return False
    keys = {str(k) for k in data}
    if keys & OUR_KEYS:
        return False
    return any(k in ESSENTIA_KEYS or k.split(".")[0] in SECTIONS for k in keys)


def apply(base: Profile, data: dict[str, Any], source: str, lines: dict[KeyPath, int]
          ) -> Profile:
    """``base`` (a built-in profile) with an Essentia profile's settings applied: a new
    Profile whose source is the Essentia file (``base`` is left as it was).

    Errors name the line of the key in the Essentia file; a key written both flat and nested
    is an error naming both lines, never the last one silently winning.
    """
    profile = base.copy(source=source)
    settings = _flatten(data, lines, source)
    merged = {k: s for k, s in settings.items() if k.split(".")[0] == MERGE}
    for key, setting in settings.items():
        if key in merged:
            continue
        if key not in ESSENTIA_KEYS:
            raise ProfileError("unknown key of Essentia's extractor profile format",
                               source=source, line=setting.line, path=key, hint=_hint(key))
        _apply_one(profile, setting, source)
    if merged:
        _merge_values(profile, merged, source)
    return profile


def _merge_values(base: Profile, merged: dict[str, _Setting], source: str) -> None:
    """``mergeValues.*``: the values added to every output (our ``output.merge``)."""
    _set(base, ("output", "merge"), {k[len(MERGE) + 1:]: s.value for k, s in merged.items()},
         source, min(s.line or 0 for s in merged.values()), MERGE)
    for key, setting in merged.items():
        inner = key[len(MERGE) + 1:]
        base.origins[("output", "merge", inner)] = (source, setting.line or 0)
        base.labels[("output", "merge", inner)] = key
        if not isinstance(setting.value, (str, int, float, bool)):
            raise ProfileError("mergeValues takes single values (Essentia merges strings)",
                               source=source, line=setting.line, path=setting.key)


def _apply_one(base: Profile, setting: _Setting, source: str) -> None:
    key, value, line = setting.key, setting.value, setting.line
    options = base.data.get("options") or {}
    if key in FLAGS:
        value = _flag(value, key, source, line)
    if key in NO_EFFECT:
        _note(base, source, line, f"{key} has no effect: {NO_EFFECT[key]}")
    elif key == "highlevel.svm_models":
        _svm_models(base, value, source, line)
    elif key in options:  # the base profile decides what its own options mean
        _set(base, ("options", key), value, source, line, key)
    elif key in FIXED and _uses(base, FIXED[key]):
        if key == "endTime" and isinstance(value, (int, float)) and not isinstance(
                value, bool) and float(value) >= 1e6:
            value = None  # Essentia's "until the end"
        _set(base, FIXED[key], value, source, line, key)
    else:
        section = key.split(".")[0] if "." in key else key
        _note(base, source, line, f"{key} has no effect on the {base.name} profile (it "
              f"computes no {section} descriptors)")


def _uses(base: Profile, path: KeyPath) -> bool:
    """Whether a fixed setting means something for the base profile: a statistics prefix only
    where some descriptor falls under it."""
    if path[0] != "stats":
        return True
    prefix = path[1]
    names = base.data.get("descriptors") or {}
    return any(name == prefix or str(name).startswith(prefix + ".") for name in names)


def _set(base: Profile, path: KeyPath, value: Any, source: str, line: int | None,
         label: str) -> None:
    node = base.data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    for sub in [p for p in base.origins if p[:len(path)] == path]:
        del base.origins[sub]  # what the base profile had there is gone
    base.origins[path] = (source, line or 0)
    base.labels[path] = label  # errors name the key as this file writes it


def _note(base: Profile, source: str, line: int | None, text: str) -> None:
    where = f"{source}:{line}" if line else source
    base.notes.append(f"{where}: {text}")


def _svm_models(base: Profile, value: Any, source: str, line: int | None) -> None:
    """``highlevel.svm_models``: the listed classifiers, by their files' base names, as the
    models of profiles/_essentia_svm.yaml; the others are named as unavailable."""
    if "models" not in base.data:
        _note(base, source, line, f"highlevel.svm_models has no effect on the {base.name} "
              "profile (it computes no highlevel descriptors)")
        return
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError("expected a list of model files (.history)", source=source,
                           line=line, path="highlevel.svm_models")
    table = svm_table()
    names = [PurePath(v.replace("\\", "/")).name.removesuffix(".history") for v in value]
    chosen = {name: table[name] for name in names if name in table}
    unavailable = [name for name in dict.fromkeys(names) if name not in table]
    models = base.data["models"]
    _set(base, ("models", "outputs"), chosen, source, line, "highlevel.svm_models")
    models.pop("select", None)
    if unavailable:
        models["unavailable"] = unavailable
    if not chosen:  # nothing to compute: Essentia writes no highlevel section either
        _set(base, ("models", "compute"), False, source, line, "highlevel.svm_models")


def svm_table() -> dict[str, Any]:
    """Essentia's SVM classifier name -> our model output (profiles/_essentia_svm.yaml)."""
    data, _ = read_yaml(builtin_dir() / SVM_FRAGMENT)
    return dict(data["models"]["outputs"])


def _flatten(data: dict[str, Any], lines: dict[KeyPath, int], source: str
             ) -> dict[str, _Setting]:
    """Dotted key -> setting, from flat and nested keys alike (mergeValues' values included)."""
    flat: dict[str, _Setting] = {}

    def walk(tree: dict[str, Any], path: KeyPath) -> None:
        for key, value in tree.items():
            here = path + (str(key),)
            if isinstance(value, dict) and value:
                walk(value, here)
                continue
            if not path and str(key) in SECTIONS and value in (None, {}):
                continue  # an empty section (`highlevel:` with nothing under it) sets nothing
            name = ".".join(here)
            line = lines.get(here)
            if name in flat:
                raise ProfileError(
                    f"'{name}' is set twice (lines {flat[name].line} and {line}); the second "
                    "would silently replace the first", source=source, line=line, path=name)
            flat[name] = _Setting(name, value, line)

    walk(data, ())
    return flat


def _flag(value: Any, key: str, source: str, line: int | None) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ProfileError(f"expected 0 or 1, got {value!r}", source=source, line=line, path=key)


def _hint(key: str) -> str:
    """The closest key of Essentia's format in the same section, else that section's keys."""
    section, _, leaf = key.rpartition(".")
    same = sorted(k for k in ESSENTIA_KEYS if k.rpartition(".")[0] == section)
    close = difflib.get_close_matches(leaf, [k.rpartition(".")[2] for k in same], n=1)
    if close:
        return f"did you mean '{section + '.' if section else ''}{close[0]}'?"
    if same:
        return f"Essentia's {section or 'top-level'} keys: {', '.join(same)}"
    whole = difflib.get_close_matches(key, sorted(ESSENTIA_KEYS), n=1)
    if whole:
        return f"did you mean '{whole[0]}'?"
    return f"Essentia's sections: {', '.join(sorted(SECTIONS))}"
