"""The JSON Schemas in schemas/, and the defaults the profile schema states.

Each default of a profile's settings (``audio.sample_rate: 44100``, ``output.indent: 2``, a
descriptor's ``single: false``, a reference's ``take: all``) is written once, as a ``default``
in schemas/profile.schema.json; the compiler reads a profile with them filled in
(:func:`apply_defaults`) and states none of its own.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

PROFILE_SCHEMA = "profile.schema.json"


def schema_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from schemas/ by file name, or from a path (shared: never change it)."""
    path = Path(name)
    if not path.exists():
        path = schema_dir() / name
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its local ``$ref``s replaced by what they name (none is recursive):
    jsonschema resolves a reference on every use, two thirds of its time on a large profile."""
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/") and len(node) == 1:
                return inline(defs[ref[len("#/$defs/"):]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


@cache
def _profile_schema() -> dict[str, Any]:
    return inline_refs(load_schema(PROFILE_SCHEMA))


def apply_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (a valid profile) with every default the schema states filled in
    where the key is absent: in the mappings present, and in those that default to ``{}``
    (``audio``, ``output``)."""
    return _fill(_profile_schema(), copy.deepcopy(data))


def defaults(definition: str) -> dict[str, Any]:
    """The defaults of one ``$defs`` entry of the profile schema (``descriptor``: what the
    short form ``name: node.output`` leaves unsaid)."""
    return _fill(_profile_schema()["$defs"][definition], {})


def _fill(schema: dict[str, Any], value: Any) -> Any:
    """Fill ``value`` (a mapping, in place) with the defaults of ``schema`` and below it."""
    if not isinstance(value, dict):
        return value
    schema = _object_form(schema)
    if schema is None:
        return value
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
    others = schema.get("additionalProperties")
    for key, item in value.items():
        sub = properties.get(key, others)
        if isinstance(sub, dict):
            _fill(sub, item)
    return value


def _object_form(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The part of ``schema`` that describes a mapping (the object branch of an anyOf or
    oneOf: ``node.output`` or ``{from: node.output, take: ...}``), if any."""
    if "properties" in schema or "additionalProperties" in schema:
        return schema
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        found = _object_form(branch)
        if found is not None:
            return found
    return None
