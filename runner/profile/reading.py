"""Read one profile file: bounded, safe YAML, and the line of every key.

A profile is data from anyone, so reading it is bounded before anything is expanded: its size,
its nesting and its YAML nodes counted with every alias expanded (the limits below; see the
docs/profiles.md, "Limits"). Keys are names: a key that YAML reads as a number, a boolean or
null, and a key written twice in one mapping, are refused with their lines instead of being
converted or silently overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ProfileError
from runner.profile.model import KeyPath

# Limits on what a profile file may hold, checked before anything is expanded. The largest
# built-in file is 12 KB with 810 YAML nodes, nested 5 deep.
MAX_PROFILE_BYTES = 512 * 1024
MAX_YAML_NODES = 50_000  # per file, every alias expanded
MAX_ALIASES = 1_000  # alias uses per file
MAX_DEPTH = 32  # nested mappings and lists, aliases expanded
MAX_NUMBER_DIGITS = 40  # an integer literal longer than this is no parameter value

_MERGE_TAG = "tag:yaml.org,2002:merge"
_KEY_KINDS = {
    "tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:null": "null",
}
_PLAIN_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq",
                                                  "map")} | {_MERGE_TAG}


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

