"""Check the names a Plan writes: every value of the output has a name of its own.

No two descriptors (or statistics of one, or model outputs) write the same key, none is
written inside another's value, none replaces what the runner itself writes (metadata), and
``output.merge`` (Essentia's mergeValues) only adds values of a person's own. Of two clashing
entries, the error blames the one a person wrote last, never a built-in's.
"""

from __future__ import annotations

from pathlib import Path

from runner.compile.plan import Descriptor
from runner.profile import KeyPath, Profile, is_builtin

# What the runner itself writes in the metadata section (runner/output/document.py): a descriptor
# may not replace these or sit inside them (md5_encoded is the loader's md5 either way).
_RUNNER_SECTIONS = ("metadata", "metadata.version", "metadata.profile", "metadata.tags",
                    "metadata.models", "metadata.warnings", "metadata.audio_properties",
                    "metadata.audio_properties.analysis")
_RUNNER_VALUES = tuple(
    [f"metadata.version.{k}" for k in ("essentia", "essentia_git_sha", "extractor", "runner")]
    + ["metadata.profile.name", "metadata.profile.hash"]
    + [f"metadata.audio_properties.{k}" for k in ("sample_rate", "number_channels", "bit_rate",
                                                 "codec", "lossless", "length")])


def check_output_names(profile: Profile, descriptors: list[Descriptor]) -> set[str]:
    """Every value of the output has a name of its own: no descriptor (or statistic of one,
    or model output) is written where another one is a value or a section: ``rhythm.bpm``
    and ``rhythm.bpm.x`` cannot both be written (one would have to be a number and an
    object at once)."""
    writes: dict[str, tuple[KeyPath, str]] = {}  # output key -> (profile path, what)

    def claim(key: str, path: KeyPath, what: str) -> None:
        if key in writes:
            other_path, other = writes[key]
            culprit, path_other = _blame(profile, path, other_path)
            raise profile.error(culprit, f"{what if culprit == path else other} writes "
                                f"'{key}', as does {_at(profile, path_other)}",
                                "rename one of them")
        writes[key] = (path, what)

    for desc in descriptors:
        if desc.single:
            claim(desc.name, desc.path, f"descriptor '{desc.name}'")
            continue
        for stat in desc.stats:
            key = desc.name if stat in ("copy", "last") else f"{desc.name}.{stat}"
            claim(key, desc.path, f"descriptor '{desc.name}' ({stat})")
    models = profile.data.get("models")
    if isinstance(models, dict) and isinstance(models.get("outputs"), dict):
        section = str(models["section"])
        for name, entry in models["outputs"].items():
            own = entry.get("section") if isinstance(entry, dict) else None
            claim(f"{own or section}.{name}", ("models", "outputs", name),
                  f"model output '{name}'")
    sections: dict[str, str] = {}  # every dotted prefix of a written key -> that key
    for key in writes:
        parts = key.split(".")
        for end in range(1, len(parts)):
            sections.setdefault(".".join(parts[:end]), key)
    for key, (path, _what) in writes.items():
        inside = sections.get(key)
        if inside is not None:
            inner = writes[inside][0]
            culprit, other = _blame(profile, path, inner)
            message = (f"'{key}' is written as a value, but {_at(profile, other)} writes "
                       f"'{inside}' inside it" if culprit == path else
                       f"'{inside}' cannot be written inside '{key}', which "
                       f"{_at(profile, other)} writes as a value")
            raise profile.error(culprit, message,
                                "a name cannot be both a value and a section: rename one")
        reserved = key in _RUNNER_SECTIONS or key in _RUNNER_VALUES or any(
            key.startswith(prefix + ".") for prefix in _RUNNER_VALUES + (
                "metadata.version", "metadata.profile", "metadata.tags", "metadata.models",
                "metadata.warnings", "metadata.audio_properties.analysis"))
        if reserved:
            raise profile.error(path, f"'{key}' is written by the runner itself (metadata)",
                                "choose another name")
    return set(writes)


def check_merge(profile: Profile, written: set[str]) -> None:
    """``output.merge`` (Essentia's mergeValues) adds values; it never replaces a value the
    analysis computes or the runner writes about it (a submission must not claim another
    profile, version or length). New keys anywhere, and the file's tags, are the user's."""
    merge = profile.data["output"]["merge"]
    for key in merge:
        path = ("output", "merge", key)
        computed = next((w for w in written if w == key or w.startswith(key + ".")
                         or key.startswith(w + ".")), None)
        if computed is not None:
            raise profile.error(path, f"'{key}' would replace '{computed}', which the analysis "
                                "computes", "merge only values of your own")
        runner = key in _RUNNER_VALUES or key in _RUNNER_SECTIONS or any(
            key.startswith(prefix + ".") for prefix in _RUNNER_VALUES + (
                "metadata.profile", "metadata.models", "metadata.warnings",
                "metadata.audio_properties"))
        if runner:
            raise profile.error(path, f"'{key}' is written by the runner itself (metadata)",
                                "merge only values of your own")


def _at(profile: Profile, path: KeyPath) -> str:
    """``descriptors.rhythm.bpm (p.yaml:5)``: another key named in an error, with its line."""
    source, line = profile.where(path)
    where = f"{Path(source).name}:{line}" if line else Path(source).name
    return f"{'.'.join(path)} ({where})"


def _blame(profile: Profile, one: KeyPath, other: KeyPath) -> tuple[KeyPath, KeyPath]:
    """Of two clashing entries, the one a person wrote last (never a built-in's)."""
    def rank(path: KeyPath) -> tuple[bool, int]:
        source, line = profile.where(path)
        return (not is_builtin(source) and source != "--set", line)

    return (one, other) if rank(one) >= rank(other) else (other, one)


