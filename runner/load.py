"""Load a profile: safe YAML with line numbers, `extends` merging, options and `--set` overrides.

Loading, validating and compiling are separate steps (as in pre-commit's cfgv): this module
only turns files into one merged mapping and remembers, for every key, the file and line it
came from, so that later steps can point at the YAML a person has to fix.

A profile is data from anyone, so reading it is bounded before anything is expanded: its size,
its nesting, its YAML nodes counted with every alias expanded, the files it extends and the
arithmetic its options may do (the limits below; see the README's "Limits" paragraph). Keys are
names: a key that YAML reads as a number, a boolean or null, and a key written twice in one
mapping, are refused with their lines instead of being converted or silently overwritten.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
import math
import operator
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ProfileError

KeyPath = tuple[str, ...]
Origin = tuple[str, int]  # (file, line)

OPTION_REF = re.compile(r"^\$\{([A-Za-z0-9_.\-]+)\}$")
OPTION_REF_ANY = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")

# Limits on what a profile may hold, checked before anything is expanded. The largest built-in
# file is 12 KB with 810 YAML nodes, nested 5 deep; a whole built-in profile reads 9 files.
MAX_PROFILE_BYTES = 512 * 1024
MAX_YAML_NODES = 50_000  # per file, every alias expanded
MAX_ALIASES = 1_000  # alias uses per file
MAX_DEPTH = 32  # nested mappings and lists, aliases expanded
MAX_NUMBER_DIGITS = 40  # an integer literal longer than this is no parameter value
MAX_FILES = 64  # files read for one profile through `extends` (each read once)
MAX_EXTENDS_DEPTH = 16
# Option arithmetic (`${frame} / 2`): its text, the size of any value it computes, and the
# exponents it may raise to; a substituted string may not grow past MAX_SUBSTITUTED_CHARS.
MAX_EXPRESSION_CHARS = 256
MAX_ARITHMETIC_VALUE = 2.0 ** 63
MAX_EXPONENT = 64
MAX_SUBSTITUTED_CHARS = 65_536

# Mappings whose keys are names a profile may delete with null (and a typo must not vanish).
_NAMED = {("graph",), ("descriptors",), ("stats",), ("options",)}
_NODE_PARTS = {"params", "inputs"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KEY_KINDS = {
    "tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:null": "null",
}
_PLAIN_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq",
                                                  "map")} | {_MERGE_TAG}


@dataclass
class Profile:
    """A merged profile, before compilation.

    ``data`` is plain JSON-like data; ``origins`` maps key paths to where they were written.
    ``deleted``: keys a file removed with null (where); ``notes``: what a person should know
    about the merge (what went with a removed node); ``option_uses``: the options each value
    was computed from (set by substitute_options), so that an error in a value points at the
    option a person set rather than at the built-in line that uses it.
    """

    name: str
    source: str
    data: dict[str, Any]
    origins: dict[KeyPath, Origin] = field(default_factory=dict)
    deleted: dict[KeyPath, Origin] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    option_uses: dict[KeyPath, list[str]] = field(default_factory=dict)
    labels: dict[KeyPath, str] = field(default_factory=dict)  # a key as its file spells it

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


def builtin_dir() -> Path:
    """Where the built-in profiles live (the repo's profiles/ or the installed copy)."""
    return Path(__file__).resolve().parent / "profiles"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml") if not p.stem.startswith("_"))


def is_builtin(source: str) -> bool:
    """Whether ``source`` is one of the built-in profile files (never the user's to fix)."""
    try:
        return Path(source).resolve().parent == builtin_dir().resolve()
    except (OSError, ValueError):
        return False


def resolve_reference(ref: str, relative_to: Path | None = None) -> Path:
    """A profile reference is a built-in name or a path (relative to the referring file).

    A bare built-in name (``music``, no folder, no extension) is always the built-in: a folder
    or file of that name where the command runs (a ``music/`` folder beside the library is
    common) must not take its place. ``./music`` names such a file.
    """
    if "/" not in ref and not Path(ref).suffix and (builtin_dir() / f"{ref}.yaml").exists():
        return builtin_dir() / f"{ref}.yaml"
    candidate = Path(ref).expanduser()
    if relative_to is not None and not candidate.is_absolute():
        near = relative_to.parent / candidate
        if near.exists():
            return _regular_file(near, ref)
    if candidate.exists():
        return _regular_file(candidate, ref)
    builtin = builtin_dir() / f"{ref}.yaml"
    if "/" not in ref and builtin.exists():
        return builtin
    looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml", ".json"))
    if looks_like_path:
        raise ProfileError("no such profile file", source=ref)
    close = difflib.get_close_matches(ref, builtin_names(), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see `extractor profiles`"
    raise ProfileError(f"unknown built-in profile '{ref}'", source=ref, hint=hint)


def _regular_file(path: Path, ref: str) -> Path:
    """Only regular files are read: a folder, a FIFO or /dev/zero would block or never end."""
    if path.is_dir():
        raise ProfileError("is a folder, not a profile file", source=ref)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ProfileError(f"cannot read profile: {exc.strerror}", source=ref) from None
    if not stat.S_ISREG(mode):
        raise ProfileError("is not a regular file", source=ref)
    return path


# -- reading one file ----------------------------------------------------------------------------
def read_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML safely (no tags that run code) and record the line of every key.

    Bounded before anything is built: the file's size, then (from the parser's events, which
    allocate nothing per alias) its nesting and node count with aliases expanded, then its
    keys; only then are Python objects constructed.
    """
    text = _read_text(path)
    data, node = parse_yaml(text, str(path))
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Checked YAML text -> (data, its node tree); see :func:`read_yaml`."""
    loader = _SAFE_LOADER(text)  # safe: plain data only, no tags that build objects
    try:
        _check_events(loader, source, text)
    finally:
        loader.dispose()
    loader = _SAFE_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    finally:
        loader.dispose()
    return data, node


# libyaml's parser when PyYAML was built with it (its wheels are), else the pure-Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_text(path: Path) -> str:
    """The file as text: at most MAX_PROFILE_BYTES (read no further), UTF-8."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"cannot read profile: {exc.strerror or exc}", source=source) from None
    if len(raw) > MAX_PROFILE_BYTES:
        line = raw[:MAX_PROFILE_BYTES].count(b"\n") + 1
        raise ProfileError(
            f"the profile is larger than {MAX_PROFILE_BYTES // 1024} KiB (it reaches that "
            "here); that is far more than any profile needs", source=source, line=line,
            hint="a profile this large is refused before it is parsed")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ProfileError(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column}",
                           source=source, line=line, hint="save the file as UTF-8") from None


def _yaml_error(exc: yaml.YAMLError, source: str, text: str) -> ProfileError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark else None
    position = getattr(exc, "position", None)  # a ReaderError: a character YAML does not allow
    if line is None and isinstance(position, int):
        line = text.count("\n", 0, position) + 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return ProfileError(f"YAML syntax error: {problem}", source=source, line=line)


@dataclass
class _Open:
    """A mapping or list still open in _check_events, with where its children are."""

    start: int  # expanded node count when it opened
    anchor: str | None
    deepest: int  # deepest level reached inside it, aliases expanded
    mapping: bool
    key: str | None = None  # the current key (mappings) ...
    want_key: bool = True
    index: int = -1  # ... or the current item (lists)

    def child(self, event: Any) -> None:
        """Account for a child event starting here (a key, a value or an item)."""
        if not self.mapping:
            self.index += 1
        elif self.want_key:
            self.key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
            self.want_key = False
            return
        else:
            self.want_key = True

    @property
    def name(self) -> str:
        return str(self.key) if self.mapping else str(max(self.index, 0))


def _check_events(loader: Any, source: str, text: str) -> None:
    """Refuse deep nesting, too many nodes and alias bombs from the parser's event stream.

    Each anchor's size and height (with the aliases inside it expanded) are known when it
    closes, so an alias adds what it would expand to without expanding anything: nine levels
    of nine aliases are refused at the first alias past the limit, not after 14 GB.
    """
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
    stack: list[_Open] = []
    count = aliases = 0

    def refuse(message: str, event: Any) -> ProfileError:
        path = ".".join(frame.name for frame in stack if frame.key is not None or
                        not frame.mapping) or None
        return ProfileError(message, source=source, line=event.start_mark.line + 1, path=path)

    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = stack.pop()
                if done.anchor:
                    anchors[done.anchor] = (count - done.start, done.deepest - len(stack))
                if stack:
                    stack[-1].deepest = max(stack[-1].deepest, done.deepest)
                continue
            if not isinstance(event, (yaml.AliasEvent, yaml.ScalarEvent,
                                      yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                continue
            if stack:
                stack[-1].child(event)
            depth = len(stack)
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise refuse(f"more than {MAX_ALIASES} YAML aliases", event)
                if event.anchor not in anchors:
                    # undefined (the composer reports it) or still open: a recursive structure
                    if any(frame.anchor == event.anchor for frame in stack):
                        raise refuse(f"the alias *{event.anchor} is inside its own anchor "
                                     "(a recursive structure)", event)
                    continue
                size, height = anchors[event.anchor]
                count += size
                reached = depth + height
            else:
                count += 1
                reached = depth + 1
                if isinstance(event, yaml.ScalarEvent):
                    if event.anchor:
                        anchors[event.anchor] = (1, 1)
                else:
                    stack.append(_Open(count - 1, event.anchor, reached,
                                       isinstance(event, yaml.MappingStartEvent)))
            if stack:
                stack[-1].deepest = max(stack[-1].deepest, reached)
            if reached > MAX_DEPTH:
                raise refuse(f"nested more than {MAX_DEPTH} levels deep", event)
            if count > MAX_YAML_NODES:
                raise refuse(f"more than {MAX_YAML_NODES} YAML nodes (aliases expanded)", event)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Keys must be names, written once per mapping; values plain data (no dates, sets...)."""
    seen: set[int] = set()
    todo: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        line = node.start_mark.line + 1
        where = ".".join(path) or None
        if node.tag not in _PLAIN_TAGS:
            raise ProfileError(f"YAML type {node.tag.replace('tag:yaml.org,2002:', '!!')} is "
                               "not allowed in a profile", source=source, line=line, path=where,
                               hint="write plain strings, numbers, lists and mappings")
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_NUMBER_DIGITS:
                raise ProfileError(f"a number of {len(node.value)} digits", source=source,
                                   line=line, path=where)
        elif isinstance(node, yaml.SequenceNode):
            todo += [(item, path + (str(i),)) for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, tuple[int, int]] = {}  # key -> (line, column)
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if key_node.tag == _MERGE_TAG:
                    todo.append((value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ProfileError("a key must be a plain name, not a list or a mapping",
                                       source=source, line=key_line, path=where)
                if key_node.tag != "tag:yaml.org,2002:str":
                    kind = _KEY_KINDS.get(key_node.tag, "not a name")
                    raise ProfileError(
                        f"YAML reads the key {key_node.value} as {kind}, not as a name",
                        source=source, line=key_line, path=where,
                        hint=f"quote it: '{key_node.value}'")
                key = key_node.value
                if key in first:
                    at = first[key]
                    where_first = (f"lines {at[0]} and {key_line}" if at[0] != key_line else
                                   f"line {key_line}, columns {at[1]} and "
                                   f"{key_node.start_mark.column + 1}")
                    raise ProfileError(
                        f"'{key}' is written twice in this mapping ({where_first}); the second "
                        "would silently replace the first",
                        source=source, line=key_line, path=".".join(path + (key,)))
                first[key] = (key_line, key_node.start_mark.column + 1)
                todo.append((value_node, path + (key,)))


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    """The line of every key path (aliases expanded: bounded by _check_events)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines.setdefault(path + (key,), key_node.start_mark.line + 1)
            _collect_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, path + (str(index),), lines)


# -- merging --------------------------------------------------------------------------------------
def deep_merge(
    base: dict[str, Any],
    over: dict[str, Any],
    base_origins: dict[KeyPath, Origin],
    over_origins: dict[KeyPath, Origin],
    path: KeyPath = (),
    deleted: dict[KeyPath, Origin] | None = None,
) -> None:
    """Merge ``over`` into ``base`` in place: mappings merge, anything else replaces.

    A ``null`` value deletes the key, so a profile can drop what it extends; deleting a name
    that is not there (a node, descriptor, option, statistic prefix, parameter or input) is an
    error with a did-you-mean, never a silent no-op. A graph node that names its
    ``algorithm`` or ``function`` replaces the inherited node of that name; one that does not
    overrides its ``params``/``inputs`` one key at a time, and must exist. ``deleted``
    collects the paths removed (with where), for the caller.
    """
    _merge(base, over, base_origins, over_origins, path, deleted,
           [p for p in base_origins if p[:len(path)] == path],
           [p for p in over_origins if p[:len(path)] == path])


def _merge(base: dict[str, Any], over: dict[str, Any], base_origins: dict[KeyPath, Origin],
           over_origins: dict[KeyPath, Origin], path: KeyPath,
           deleted: dict[KeyPath, Origin] | None, base_sub: list[KeyPath],
           over_sub: list[KeyPath]) -> None:
    """deep_merge below ``path``; ``base_sub``/``over_sub``: the origins under ``path``, so
    each level groups only its own (linear in the profile, not in nodes times keys)."""
    over_below = _by_next_key(over_sub, path)
    base_below = _by_next_key(base_sub, path)
    named = path in _NAMED or (len(path) == 3 and path[0] == "graph" and path[2] in _NODE_PARTS)
    for key, value in over.items():
        here = path + (key,)
        origin = over_origins.get(here) or _nearest(over_origins, path)
        if value is None:
            if key in base:
                base.pop(key)
                for sub in base_below.pop(key, ()):
                    base_origins.pop(sub, None)
                if deleted is not None:
                    deleted[here] = origin
            elif named:
                raise _nothing_to_delete(here, list(base), origin)
            continue
        if path == ("graph",) and isinstance(value, dict):
            if "algorithm" in value or "function" in value:
                if key in base:  # a node of its own: nothing of the inherited one is kept
                    base[key] = {}  # (in its place: the graph's order decides merged names)
                    for sub in base_below.pop(key, ()):
                        base_origins.pop(sub, None)
            elif key not in base:
                hint = _did_you_mean(key, list(base)) or "a node needs 'algorithm' or 'function'"
                raise ProfileError(f"no node '{key}' to override", source=origin[0],
                                   line=origin[1] or None, path=".".join(here), hint=hint)
        if isinstance(value, dict) and (isinstance(base.get(key), dict) or key not in base):
            if here in over_origins:
                base_origins[here] = over_origins[here]
            _merge(base.setdefault(key, {}), value, base_origins, over_origins, here, deleted,
                   [p for p in base_below.get(key, ()) if p in base_origins],
                   over_below.get(key, []))
        else:
            base[key] = copy.deepcopy(value)
            for sub in base_below.pop(key, ()):
                base_origins.pop(sub, None)
            for sub in over_below.get(key, ()):
                base_origins[sub] = over_origins[sub]


def _nearest(origins: dict[KeyPath, Origin], path: KeyPath) -> Origin:
    for end in range(len(path), -1, -1):
        if path[:end] in origins:
            return origins[path[:end]]
    return ("<profile>", 0)


def _did_you_mean(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _nothing_to_delete(path: KeyPath, present: list[str], origin: Origin) -> ProfileError:
    what = {"graph": "node", "descriptors": "descriptor", "stats": "statistics prefix",
            "options": "option"}.get(path[0], "key")
    if len(path) == 4:
        what = "parameter" if path[2] == "params" else "input"
    hint = _did_you_mean(path[-1], present) or "null deletes an inherited key"
    return ProfileError(f"null deletes nothing: there is no {what} '{path[-1]}'",
                        source=origin[0], line=origin[1] or None, path=".".join(path),
                        hint=hint)


def _by_next_key(paths: list[KeyPath], prefix: KeyPath) -> dict[Any, list[KeyPath]]:
    """Key paths under ``prefix`` (itself included for its last key), grouped by the key that
    follows ``prefix``."""
    depth = len(prefix)
    groups: dict[Any, list[KeyPath]] = {}
    for sub in paths:
        if len(sub) > depth:
            groups.setdefault(sub[depth], []).append(sub)
    return groups


def _wire_nodes(value: Any) -> list[str]:
    """Node ids a wire or a ``{from: ...}`` reference names."""
    if isinstance(value, dict):
        value = value.get("from")
    if isinstance(value, str) and "." in value:
        return [value.split(".", 1)[0]]
    return []


def _remove_dependents(profile: Profile, removed: dict[str, Origin], layer: str) -> None:
    """After a file (``layer``) deleted graph nodes: remove what depended on them, and say so.

    What the same layer wrote and still depends on a node it deleted is a contradiction, and
    an error; what it inherited goes with the node (transitively), named in a note.
    """
    graph = profile.data.get("graph") or {}
    descriptors = profile.data.get("descriptors") or {}
    gone: dict[str, str] = {}  # node or descriptor that went -> the deleted node it needed

    def root_of(node: str) -> str | None:
        return node if node in removed else gone.get(node)

    changed = True
    while changed:
        changed = False
        for nid, spec in list(graph.items()):
            for ref_path, node in _node_refs(nid, spec):
                root = root_of(node)
                if root is not None:
                    _drop(profile, ("graph", nid), ref_path, root, removed, layer)
                    gone[nid] = root
                    del graph[nid]
                    changed = True
                    break
    gone_descriptors: dict[str, str] = {}
    for name, spec in list(descriptors.items()):
        for node in _wire_nodes(spec):
            root = root_of(node)
            if root is not None:
                _drop(profile, ("descriptors", name), ("descriptors", name), root, removed, layer)
                gone_descriptors[name] = root
                del descriptors[name]
                break
    for node, origin in removed.items():
        nodes = sorted(n for n, r in gone.items() if r == node)
        descs = sorted(n for n, r in gone_descriptors.items() if r == node)
        if not nodes and not descs:
            continue
        what = "; ".join(part for part in (
            f"{len(nodes)} node(s): {', '.join(nodes)}" if nodes else "",
            f"{len(descs)} descriptor(s): {', '.join(descs)}" if descs else "") if part)
        where = f"{origin[0]}:{origin[1]}" if origin[1] else origin[0]
        profile.notes.append(f"{where}: graph.{node}: removed with null, and with it what "
                             f"depended on it: {what}")


def _node_refs(nid: str, spec: Any) -> list[tuple[KeyPath, str]]:
    """(key path, node id) of every wire and parameter reference of a node."""
    refs = []
    if isinstance(spec, dict):
        for part in ("inputs", "params"):
            ports = spec.get(part)
            if isinstance(ports, dict):
                refs += [(("graph", nid, part, port), node) for port, wire in ports.items()
                         if part == "inputs" or isinstance(wire, dict)  # a parameter's text
                         for node in _wire_nodes(wire)]                 # is no wire
    return refs


def _drop(profile: Profile, item: KeyPath, ref_path: KeyPath, root: str,
          removed: dict[str, Origin], layer: str) -> None:
    source, line = profile.where(ref_path)
    if source == layer:
        origin = removed[root]
        raise ProfileError(
            f"depends on graph.{root}, which {Path(origin[0]).name}:{origin[1]} removes with null",
            source=source, line=line or None, path=".".join(ref_path),
            hint="remove this too, or keep the node")
    for sub in [p for p in profile.origins if p[:len(item)] == item]:
        profile.origins.pop(sub, None)


# -- a profile and what it extends --------------------------------------------------------------
def load_profile(ref: str, overrides: list[str] | None = None, legacy_base: str = "music"
                 ) -> Profile:
    """Load a built-in or user profile, merge what it extends, apply options and overrides.

    An Essentia extractor profile (flat keys such as ``lowlevel.frameSize``) is applied as
    overrides of ``legacy_base``, so existing Essentia profile files keep working.
    """
    from runner import essentia_profile, validate

    path = resolve_reference(ref)
    data, lines = read_yaml(path)
    reader = _Reader()
    if essentia_profile.is_essentia_profile(data):
        base = reader.load(resolve_reference(legacy_base), stack=())
        essentia_profile.apply(base, data, str(path), lines)
        profile = base
        profile.source = str(path)
    else:
        reader.files[path.resolve()] = (data, lines)
        profile = reader.load(path, stack=())
    for item in overrides or []:
        apply_override(profile, item)
    check_options_used(profile)
    validate.validate_profile(profile)
    return profile


class _Reader:
    """Reads the files of one profile, each once however often it is extended."""

    def __init__(self) -> None:
        self.files: dict[Path, tuple[Any, dict[KeyPath, int]]] = {}
        self.loads = 0  # profiles merged through `extends` (a file may be merged more than once)

    def read(self, path: Path) -> tuple[Any, dict[KeyPath, int]]:
        key = path.resolve()
        if key not in self.files:
            if len(self.files) >= MAX_FILES:
                raise ProfileError(f"extends more than {MAX_FILES} files", source=str(path))
            self.files[key] = read_yaml(path)
        return self.files[key]

    def load(self, path: Path, stack: tuple[Path, ...]) -> Profile:
        from runner import validate

        resolved = path.resolve()
        data, lines = self.read(path)
        source = str(path)
        origins = {key: (source, line) for key, line in lines.items()}
        own = Profile(name=path.stem, source=source, data=data, origins=origins)
        if not is_builtin(source):  # built-ins are checked by the tests
            validate.validate_document(own)
        parents = data.get("extends") or []
        if isinstance(parents, str):
            parents = [parents]
        merged = Profile(name=path.stem, source=source, data={}, origins={})
        seen: dict[Path, int] = {}
        for index, parent_ref in enumerate(parents):
            line = lines.get(("extends", str(index))) or lines.get(("extends",))
            try:
                parent_path = resolve_reference(parent_ref, relative_to=path)
            except ProfileError as exc:
                raise ProfileError(
                    exc.message, source=source, line=line, path=f"extends.{index}",
                    hint=exc.hint) from None
            target = parent_path.resolve()
            if target in stack + (resolved,):
                chain = " -> ".join(p.name for p in stack + (resolved, target))
                raise ProfileError(f"'extends' forms a cycle: {chain}", source=source,
                                   line=line, path=f"extends.{index}")
            if target in seen:
                raise ProfileError(f"'{parent_ref}' is extended twice (also at "
                                   f"extends.{seen[target]})", source=source, line=line,
                                   path=f"extends.{index}")
            seen[target] = index
            self.loads += 1
            if self.loads > 4 * MAX_FILES:  # a diamond of diamonds: 2**depth paths
                raise ProfileError(f"'extends' reads more than {4 * MAX_FILES} profiles",
                                   source=source, line=line, path=f"extends.{index}")
            if len(stack) + 1 >= MAX_EXTENDS_DEPTH:
                raise ProfileError(f"'extends' is nested more than {MAX_EXTENDS_DEPTH} deep",
                                   source=source, line=line, path=f"extends.{index}")
            parent = self.load(parent_path, stack + (resolved,))
            deep_merge(merged.data, parent.data, merged.origins, parent.origins)
            merged.notes += [n for n in parent.notes if n not in merged.notes]
            merged.deleted.update(parent.deleted)
        body = {k: v for k, v in data.items() if k != "extends"}
        deleted: dict[KeyPath, Origin] = {}
        deep_merge(merged.data, body, merged.origins, origins, deleted=deleted)
        merged.deleted.update(deleted)
        removed = {p[1]: o for p, o in deleted.items() if len(p) == 2 and p[0] == "graph"}
        if removed:
            _remove_dependents(merged, removed, source)
        merged.name = str(data.get("name", path.stem))
        merged.data["name"] = merged.name
        return merged


def check_options_used(profile: Profile) -> None:
    """An option nothing uses is a typo or a leftover: an error, never a silent no-op.

    Only options a person set are checked (a built-in may declare options for nodes a
    profile removed); the hint names the closest option that is used.
    """
    options = profile.data.get("options")
    if not isinstance(options, dict):
        return
    used = set(_references({k: v for k, v in profile.data.items() if k != "options"}))
    if used - set(options):
        return  # a reference to an unknown option is the error (substitute_options says where)
    for name in options:
        if name in used:
            continue
        source, line = profile.origins.get(("options", name), profile.where(("options",)))
        if is_builtin(source):
            continue
        hint = _did_you_mean(name, sorted(used)) or (
            "options are used as ${name} in the profile; this one is used nowhere")
        raise ProfileError(f"option '{name}' is not used by the profile", source=source,
                           line=line or None, path=f"options.{name}", hint=hint)


def _references(value: Any) -> list[str]:
    """Every ``${name}`` under ``value``."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _references(v)]
    if isinstance(value, list):
        return [n for v in value for n in _references(v)]
    if isinstance(value, str):
        return OPTION_REF_ANY.findall(value)
    return []


def split_path(data: Any, dotted: str) -> KeyPath:
    """Split ``a.b.c`` into keys, preferring existing keys that themselves contain dots."""
    parts = dotted.split(".")
    path: list[str] = []
    node = data
    i = 0
    while i < len(parts):
        chosen = None
        if isinstance(node, dict):
            for j in range(len(parts), i, -1):
                candidate = ".".join(parts[i:j])
                if candidate in node:
                    chosen = (candidate, j)
                    break
        if chosen is None:
            if isinstance(node, dict) and path and path[-1] in DOTTED_KEY_MAPS:
                chosen = (".".join(parts[i:]), len(parts))
            else:
                chosen = (parts[i], i + 1)
        key, i = chosen
        path.append(key)
        node = node.get(key) if isinstance(node, dict) else None
    return tuple(path)


# Mappings whose keys are dotted names themselves (descriptor names, option names, stat prefixes).
DOTTED_KEY_MAPS = {"descriptors", "options", "stats"}


def apply_override(profile: Profile, item: str) -> None:
    """Apply one ``--set key.path=value`` (value parsed as a YAML scalar or flow collection).

    ``null`` deletes (a graph node with what depends on it, as in a file); a node, parameter
    holder or input holder that does not exist is not created on the way (a typo would add a
    node that runs nothing): it is an error with a did-you-mean.
    """
    if "=" not in item:
        raise ProfileError(
            f"--set expects key.path=value, got '{item}'", source="--set", hint="e.g. --set "
            "options.lowlevel.frameSize=4096"
        )
    dotted, raw = item.split("=", 1)
    dotted = dotted.strip()
    if not dotted or any(not part for part in dotted.split(".")):
        raise ProfileError(f"'{dotted}' is not a key path", source="--set")
    if len(raw) > MAX_SUBSTITUTED_CHARS:
        raise ProfileError(f"a value of more than {MAX_SUBSTITUTED_CHARS} characters",
                           source="--set", path=dotted)
    try:
        value = parse_yaml(raw, "--set")[0] if raw.strip() else ""
    except ProfileError as exc:
        if not exc.message.startswith("YAML syntax error"):
            raise ProfileError(exc.message, source="--set", path=dotted, hint=exc.hint) from None
        value = raw  # not YAML: the text itself
    path = split_path(profile.data, dotted)
    node: Any = profile.data
    for depth, key in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise ProfileError(f"cannot set inside a {type(node).__name__}", source="--set",
                               path=dotted)
        if key not in node:
            if path[:depth] == ("graph",):
                raise ProfileError(f"no node '{key}'", source="--set", path=dotted,
                                   hint=_did_you_mean(key, list(node)))
            node[key] = {}
        node = node[key]
    if not isinstance(node, dict):
        raise ProfileError(f"cannot set inside a {type(node).__name__}", source="--set",
                           path=dotted)
    leaf = path[-1]
    if value is None:
        if leaf not in node:
            if path[:-1] in _NAMED or (len(path) == 4 and path[0] == "graph"):
                raise _nothing_to_delete(path, list(node), ("--set", 0))
            return
        del node[leaf]
        for sub in [p for p in profile.origins if p[:len(path)] == path]:
            profile.origins.pop(sub)
        profile.deleted[path] = ("--set", 0)
        if path[0] == "graph" and len(path) == 2:
            _remove_dependents(profile, {leaf: ("--set", 0)}, "--set")
        return
    if path[:-1] == ("graph",) and isinstance(value, dict) and leaf not in node and not (
            "algorithm" in value or "function" in value):
        raise ProfileError(f"no node '{leaf}'", source="--set", path=dotted,
                           hint=_did_you_mean(leaf, list(node)))
    node[leaf] = value
    for sub in [p for p in profile.origins if p[:len(path)] == path]:
        profile.origins.pop(sub)
    profile.origins[path] = ("--set", 0)


# -- options ---------------------------------------------------------------------------------------
def substitute_options(profile: Profile) -> None:
    """Replace ``${option}`` references by the option values (whole-string refs keep the type).

    Arithmetic over numbers (``${frame} / 2``) is evaluated, bounded: see :func:`arithmetic`.
    Each substituted value remembers its options (``profile.option_uses``) for errors.
    """
    options = profile.data.get("options") or {}

    def resolve(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, str):
            whole = OPTION_REF.match(value)
            if whole:
                profile.option_uses[path] = [whole.group(1)]
                return lookup(whole.group(1), path)
            names = OPTION_REF_ANY.findall(value)
            if not names:
                return value
            profile.option_uses[path] = names
            values = {name: lookup(name, path) for name in names}
            text = OPTION_REF_ANY.sub(lambda m: repr(values[m.group(1)]), value)
            try:
                number = arithmetic(text)
            except ArithmeticError as exc:
                raise profile.error(path, f"{value!r}: {exc}", value=True) from None
            if number is not None:
                return number
            size = len(value) + sum(len(str(values[n])) for n in names)
            if size > MAX_SUBSTITUTED_CHARS:
                raise profile.error(path, f"the substituted text would be {size} characters "
                                    f"(more than {MAX_SUBSTITUTED_CHARS})", value=True)
            return OPTION_REF_ANY.sub(lambda m: str(values[m.group(1)]), value)
        return value

    def lookup(name: str, path: KeyPath) -> Any:
        if name not in options:
            gone = profile.deleted.get(("options", name))
            if gone is not None:
                source, line = profile.where(path)
                raise ProfileError(
                    f"option '{name}' is removed here, but {'.'.join(path)} "
                    f"({Path(source).name}:{line}) uses it", source=gone[0],
                    line=gone[1] or None, path=f"options.{name}", hint="give it a value instead")
            close = difflib.get_close_matches(name, list(options), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "declare it under 'options'"
            raise profile.error(path, f"unknown option '{name}'", hint)
        return options[name]

    for key in list(profile.data):
        if key != "options":
            profile.data[key] = resolve(profile.data[key], (key,))


_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos,
    ast.Pow: operator.pow,
}


def arithmetic(text: str) -> float | None:
    """Evaluate ``44100.0 * 0.5``-style arithmetic over numbers only; None if it is not that.

    Lets a profile write ``range: ${analysisSampleRate} * 0.5`` without running any code.
    Bounded: at most MAX_EXPRESSION_CHARS of text, every intermediate value within
    +-MAX_ARITHMETIC_VALUE and finite, exponents at most MAX_EXPONENT (so ``${frame} **
    99999999`` is refused at once instead of computing a number of 300 million digits).
    Raises ArithmeticError (ZeroDivisionError, OverflowError) with a sentence for a person.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        if _looks_arithmetic(text[:MAX_EXPRESSION_CHARS]):
            raise ArithmeticError(f"an expression longer than {MAX_EXPRESSION_CHARS} "
                                  "characters")
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None

    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return bounded(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = evaluate(node.left), evaluate(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ZeroDivisionError("division by zero")
            if isinstance(node.op, ast.Pow):
                if abs(right) > MAX_EXPONENT:
                    raise OverflowError(f"an exponent over {MAX_EXPONENT}")
                if left == 0 and right < 0:
                    raise ZeroDivisionError("zero to a negative power")
                if left < 0 and not float(right).is_integer():
                    raise ArithmeticError("a fractional power of a negative number")
            return bounded(_OPERATORS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return bounded(_OPERATORS[type(node.op)](evaluate(node.operand)))
        raise ValueError("not arithmetic")

    def bounded(value: float) -> float:
        if isinstance(value, complex) or not math.isfinite(value) or \
                abs(value) > MAX_ARITHMETIC_VALUE:
            raise OverflowError(f"a value beyond +-{MAX_ARITHMETIC_VALUE:.3g}")
        return value

    try:
        return evaluate(tree)
    except ValueError:
        return None
    except OverflowError as exc:
        if str(exc).startswith(("a ", "an ")):
            raise
        raise OverflowError(f"a value beyond +-{MAX_ARITHMETIC_VALUE:.3g}") from None


def _looks_arithmetic(text: str) -> bool:
    return bool(re.fullmatch(r"[\s0-9.eE+\-*/()]*", text))

