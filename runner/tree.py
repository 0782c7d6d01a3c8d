"""Dotted descriptor names <-> nested sections (``lowlevel.mfcc.mean`` <-> JSON objects)."""

from __future__ import annotations

from typing import Any


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the inverse of :func:`nest`)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": 1}`` -> ``{"a": {"b": {"c": 1}}}`` (the layout jq users know)."""
    tree: dict[str, Any] = {}
    for name in sorted(flat):
        node = tree
        parts = name.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"descriptor '{name}' clashes with a value at '{part}'")
            node = child
        node[parts[-1]] = flat[name]
    return tree


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    """The value at ``a.b.c`` in nested sections, or None where a part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
