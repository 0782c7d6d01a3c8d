"""``--set KEY=VALUE``: change one key of a merged profile from the command line.

``null`` deletes (a graph node with what depends on it, as in a file); a node, parameter
holder or input holder that does not exist is not created on the way (a typo would add a node
that runs nothing): it is an error with a did-you-mean. Errors name ``--set`` as their file.
"""

from __future__ import annotations

from typing import Any

from runner.errors import ProfileError
from runner.profile.merging import NAMED, nothing_to_delete, remove_dependents
from runner.profile.model import KeyPath, Profile, did_you_mean
from runner.profile.options import MAX_SUBSTITUTED_CHARS
from runner.profile.reading import parse_yaml

SOURCE = "--set"  # what errors and origins name as the file of an override
# Mappings whose keys are dotted names themselves (descriptor names, option names, stat prefixes).
DOTTED_KEY_MAPS = {"descriptors", "options", "stats"}


def apply_overrides(profile: Profile, items: list[str]) -> Profile:
    """``profile`` with each ``key.path=value`` of ``items`` applied in order (a new Profile:
    the one given is left as it was)."""
    if not items:
        return profile
    changed = profile.copy()
    for item in items:
        apply_override(changed, item)
    return changed


def apply_override(profile: Profile, item: str) -> None:
    """Apply one ``--set key.path=value`` to ``profile`` in place (the value parsed as a YAML
    scalar or flow collection)."""
    dotted, value = _parse(item)
    path = split_path(profile.data, dotted)
    node = _holder(profile.data, path, dotted)
    leaf = path[-1]
    if value is None:
        _delete(profile, node, path)
        return
    if path[:-1] == ("graph",) and isinstance(value, dict) and leaf not in node and not (
            "algorithm" in value or "function" in value):
        raise ProfileError(f"no node '{leaf}'", source=SOURCE, path=dotted,
                           hint=did_you_mean(leaf, node))
    node[leaf] = value
    for sub in [p for p in profile.origins if p[:len(path)] == path]:
        profile.origins.pop(sub)
    profile.origins[path] = (SOURCE, 0)


def _parse(item: str) -> tuple[str, Any]:
    """``key.path=value`` -> (the dotted key, the value: YAML if it parses, else the text)."""
    if "=" not in item:
        raise ProfileError(
            f"--set expects key.path=value, got '{item}'", source=SOURCE, hint="e.g. --set "
            "options.lowlevel.frameSize=4096"
        )
    dotted, raw = item.split("=", 1)
    dotted = dotted.strip()
    if not dotted or any(not part for part in dotted.split(".")):
        raise ProfileError(f"'{dotted}' is not a key path", source=SOURCE)
    if len(raw) > MAX_SUBSTITUTED_CHARS:
        raise ProfileError(f"a value of more than {MAX_SUBSTITUTED_CHARS} characters",
                           source=SOURCE, path=dotted)
    try:
        value = parse_yaml(raw, SOURCE)[0] if raw.strip() else ""
    except ProfileError as exc:
        if not exc.message.startswith("YAML syntax error"):
            raise ProfileError(exc.message, source=SOURCE, path=dotted, hint=exc.hint) from None
        value = raw  # not YAML: the text itself
    return dotted, value


def _holder(data: dict[str, Any], path: KeyPath, dotted: str) -> dict[str, Any]:
    """The mapping that holds ``path``'s last key, made on the way except for graph nodes."""
    node: Any = data
    for depth, key in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise ProfileError(f"cannot set inside a {type(node).__name__}", source=SOURCE,
                               path=dotted)
        if key not in node:
            if path[:depth] == ("graph",):
                raise ProfileError(f"no node '{key}'", source=SOURCE, path=dotted,
                                   hint=did_you_mean(key, node))
            node[key] = {}
        node = node[key]
    if not isinstance(node, dict):
        raise ProfileError(f"cannot set inside a {type(node).__name__}", source=SOURCE,
                           path=dotted)
    return node


def _delete(profile: Profile, node: dict[str, Any], path: KeyPath) -> None:
    """``--set key=null``: delete the key (a missing name is an error, as in a file)."""
    leaf = path[-1]
    if leaf not in node:
        if path[:-1] in NAMED or (len(path) == 4 and path[0] == "graph"):
            raise nothing_to_delete(path, list(node), (SOURCE, 0))
        return
    del node[leaf]
    for sub in [p for p in profile.origins if p[:len(path)] == path]:
        profile.origins.pop(sub)
    profile.deleted[path] = (SOURCE, 0)
    if path[0] == "graph" and len(path) == 2:
        remove_dependents(profile, {leaf: (SOURCE, 0)}, SOURCE)


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
