"""A profile as data: one merged mapping, and for every key the file and line that wrote it.

Every step of loading (runner.profile) takes a Profile and gives one; compiling
(runner.compile) reads one. Nothing here reads files: a Profile only knows where its keys came
from, so that an error points at the YAML a person has to fix.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.errors import ProfileError
from runner.profile.references import is_builtin

KeyPath = tuple[str, ...]
Origin = tuple[str, int]  # (file, line)


@dataclass
class Profile:
    """A merged profile, before compilation.

    ``data`` is plain JSON-like data; ``origins`` maps key paths to where they were written.
    ``deleted``: keys a file removed with null (where); ``notes``: what a person should know
    about the merge (what went with a removed node); ``option_uses``: the options each value
    was computed from (set by runner.profile.options.substitute_options), so that an error in a
    value points at the option a person set rather than at the built-in line that uses it.
    """

    name: str
    source: str
    data: dict[str, Any]
    origins: dict[KeyPath, Origin] = field(default_factory=dict)
    deleted: dict[KeyPath, Origin] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    option_uses: dict[KeyPath, list[str]] = field(default_factory=dict)
    labels: dict[KeyPath, str] = field(default_factory=dict)  # a key as its file spells it

    def copy(self, **changes: Any) -> Profile:
        """A copy the next step may change without touching this one (``changes`` replace
        fields; ``data`` is copied deeply unless given)."""
        fields = {"data": copy.deepcopy(self.data), "origins": dict(self.origins),
                  "deleted": dict(self.deleted), "notes": list(self.notes),
                  "option_uses": dict(self.option_uses), "labels": dict(self.labels)}
        return replace(self, **{**fields, **changes})

    def where(self, path: KeyPath) -> Origin:
        """The file and line of ``path``, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            origin = self.origins.get(tuple(path[:end]))
            if origin is not None:
                return origin
        return (self.source, 0)

    def error(self, path: KeyPath, message: str, hint: str | None = None,
              value: bool = False) -> ProfileError:
        """A ProfileError pointing at ``path`` in the file that set it.

        ``value``: the error is about the value at ``path`` (a range, a type, Essentia's
        configure check). When that value came from an option set in another file (a user's
        override of a built-in's ``${lowlevel.frameSize}``), the error points at the option.
        """
        source, line = self.where(path)
        if value:
            for name in self._options_under(path):
                option = ("options", name)
                osource, oline = self.origins.get(option, (source, 0))
                if osource != source and not is_builtin(osource):
                    used = ".".join(path)
                    message = f"{message} (in {used}, {Path(source).name}:{line})"
                    return ProfileError(message, source=osource, line=oline or None,
                                        path=self.label(option), hint=hint)
        return ProfileError(
            message, source=source, line=line or None, path=self.label(path) or None, hint=hint
        )

    def label(self, path: KeyPath) -> str:
        """``path`` as the file that set it spells it (an Essentia profile's own keys)."""
        for end in range(len(path), 0, -1):
            if tuple(path[:end]) in self.labels:
                return ".".join((self.labels[tuple(path[:end])],) + tuple(path[end:]))
        return ".".join(path)

    def _options_under(self, path: KeyPath) -> list[str]:
        names: list[str] = []
        for used, options in self.option_uses.items():
            if used[:len(path)] == path or path[:len(used)] == used:
                names += [n for n in options if n not in names]
        return names

    def digest(self) -> str:
        """A hash of the resolved profile: equal hashes mean identical analyses."""
        text = json.dumps(self.data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def did_you_mean(name: str, choices: Any) -> str | None:
    """The hint for a misspelt name: the closest of ``choices``, if one is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
