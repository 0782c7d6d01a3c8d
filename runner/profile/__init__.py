"""A profile as data: from its files to one validated mapping (step 1 of the pipeline).

Loading is a chain of plain steps, each a function of the previous step's result, as in
pre-commit's cfgv:

1. read the file, with the line of every key (reading.py; a built-in name or a path:
   references.py);
2. merge what it extends, each file checked on its own first (extends.py, merging.py), or
   apply an Essentia profile file onto a built-in one (essentia_format.py);
3. apply ``--set`` overrides (overrides.py);
4. validate the whole against the schema (validate.py; the schema states every default:
   schema.py).

Options are substituted by the compiler (options.substitute_options, runner.compile), which
never changes the Profile it is given.
"""

from __future__ import annotations

from runner.profile import essentia_format
from runner.profile.extends import read_profile
from runner.profile.model import KeyPath, Origin, Profile, did_you_mean
from runner.profile.options import substitute_options
from runner.profile.overrides import apply_overrides
from runner.profile.reading import read_yaml
from runner.profile.references import builtin_dir, builtin_names, is_builtin, resolve_reference
from runner.profile.schema import apply_defaults, load_schema
from runner.profile.validate import validate_profile

__all__ = [
    "KeyPath", "Origin", "Profile", "apply_defaults", "builtin_dir", "builtin_names",
    "did_you_mean", "is_builtin", "load_profile", "load_schema", "merged_profile", "read_yaml",
    "resolve_reference", "substitute_options",
]


def load_profile(ref: str, overrides: list[str] | None = None, essentia_base: str = "music"
                 ) -> Profile:
    """A built-in or user profile, merged with what it extends, ``overrides`` (``--set``)
    applied, validated.

    An Essentia extractor profile (flat keys such as ``lowlevel.frameSize``) is applied as
    overrides of the built-in ``essentia_base``, so existing Essentia profile files keep
    working.
    """
    merged = merged_profile(ref, essentia_base)
    return validate_profile(apply_overrides(merged, overrides or []))


def merged_profile(ref: str, essentia_base: str = "music") -> Profile:
    """Steps 1 and 2: the profile ``ref`` names, with what it extends merged in."""
    path = resolve_reference(ref)
    data, lines = read_yaml(path)
    if essentia_format.is_essentia_profile(data):
        base = read_profile(resolve_reference(essentia_base))
        return essentia_format.apply(base, data, str(path), lines)
    return read_profile(path, (data, lines))
