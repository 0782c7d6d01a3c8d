"""Merge profiles: what one file writes over what it extends, and what null takes away.

Mappings merge key by key; anything else replaces. ``null`` deletes an inherited key, and a
graph node deleted takes with it what depended on it (named in a note), so a profile can drop
what it extends without leaving wires to nothing. A name deleted or overridden that is not
there is an error with a did-you-mean, never a silent no-op.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from runner.errors import ProfileError
from runner.profile.model import KeyPath, Origin, Profile, did_you_mean

# Mappings whose keys are names a profile may delete with null (and a typo must not vanish).
NAMED = {("graph",), ("descriptors",), ("stats",), ("options",), ("models", "outputs")}
_NODE_PARTS = {"params", "inputs"}


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
    named = path in NAMED or (len(path) == 3 and path[0] == "graph" and path[2] in _NODE_PARTS)
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
                raise nothing_to_delete(here, list(base), origin)
            continue
        if path == ("graph",) and isinstance(value, dict):
            if "algorithm" in value or "function" in value:
                if key in base:  # a node of its own: nothing of the inherited one is kept
                    base[key] = {}  # (in its place: the graph's order decides merged names)
                    for sub in base_below.pop(key, ()):
                        base_origins.pop(sub, None)
            elif key not in base:
                hint = did_you_mean(key, list(base)) or "a node needs 'algorithm' or 'function'"
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


def nothing_to_delete(path: KeyPath, present: list[str], origin: Origin) -> ProfileError:
    what = {"graph": "node", "descriptors": "descriptor", "stats": "statistics prefix",
            "options": "option"}.get(path[0], "key")
    if len(path) == 4:
        what = "parameter" if path[2] == "params" else "input"
    hint = did_you_mean(path[-1], present) or "null deletes an inherited key"
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


def remove_dependents(profile: Profile, removed: dict[str, Origin], layer: str) -> None:
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

