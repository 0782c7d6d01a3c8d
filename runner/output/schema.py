"""The JSON Schema of a profile's output, derived from its compiled graph, and the check of
every document against it."""

from __future__ import annotations

from typing import Any

import jsonschema

from runner.compile import AUDIO, AUDIO_OUTPUTS, Plan
from runner.errors import OutputError
from runner.models import family
from runner.models.supply import lock

MATRIX_STATS = {"cov", "icov"}

_NUMBER = {"type": ["number", "null"]}


def _json_type(essentia_type: str) -> dict[str, Any]:
    if essentia_type in ("real", "integer"):
        return _NUMBER
    if essentia_type == "string":
        return {"type": "string"}
    if essentia_type == "bool":
        return {"type": "boolean"}
    if essentia_type.startswith("vector_"):
        return {"type": "array", "items": _json_type(essentia_type[len("vector_"):])}
    if essentia_type.startswith("matrix_"):
        return {"type": "array", "items": {"type": "array", "items": _NUMBER}}
    return {}


def output_schema(plan: Plan) -> dict[str, Any]:
    """The JSON Schema every output of this plan must match, derived from the graph."""
    flat: dict[str, dict[str, Any]] = {}
    for desc in plan.descriptors:
        node = plan.nodes.get(desc.ref.node)
        if desc.ref.node == AUDIO:
            kind = AUDIO_OUTPUTS[desc.ref.output]
        else:
            kind = node.output_types[desc.ref.output] if node is not None else "any"
        if desc.single:
            flat[desc.name] = _json_type(kind) if kind != "any" else {}
            continue
        for stat in desc.stats:
            if stat in MATRIX_STATS:
                # null where it does not exist (a singular covariance: runner.aggregate)
                flat[f"{desc.name}.{stat}"] = {
                    "type": ["array", "null"], "items": {"type": "array", "items": _NUMBER}}
            elif stat in ("copy", "value"):
                flat[f"{desc.name}.{stat}" if stat == "value" else desc.name] = {}
            elif stat == "last":
                flat[desc.name] = {"type": ["number", "array", "null"]}
            elif kind in ("real", "integer"):
                flat[f"{desc.name}.{stat}"] = _NUMBER
            elif kind.startswith("vector_"):
                # statistics of vector frames are computed per column
                flat[f"{desc.name}.{stat}"] = {"type": "array", "items": _NUMBER}
            else:
                flat[f"{desc.name}.{stat}"] = {"type": ["number", "array", "null"]}
    tree = _schema_tree(flat)
    if plan.models is not None and plan.models.outputs:
        _model_schemas(tree, plan)
    meta = {
        "type": "object",
        "required": ["version", "profile", "audio_properties", "tags", "warnings"],
        "properties": {
            # why this result is doubtful (silent, truncated, downmixed, undefined
            # statistics), one line each; empty for a clean analysis
            "warnings": {"type": "array", "items": {"type": "string"}},
            "profile": {
                "type": "object",
                "required": ["name", "hash"],
                "properties": {"name": {"const": plan.name}, "hash": {"type": "string"}},
            },
            "version": {"type": "object", "required": ["essentia", "runner"]},
            "audio_properties": {
                "type": "object",
                "required": ["analysis", "sample_rate", "number_channels", "length"],
            },
            "tags": {"type": "object", "required": ["file_name"]},
        },
    }
    tree.setdefault("properties", {}).setdefault("metadata", {"type": "object"})
    _deep_schema_merge(tree["properties"]["metadata"], meta)
    tree["properties"]["metadata"].setdefault("required", [])
    for key in meta["required"]:
        if key not in tree["properties"]["metadata"]["required"]:
            tree["properties"]["metadata"]["required"].append(key)
    tree["required"] = sorted(set(tree.get("required", [])) | {"metadata"})
    tree["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    tree["title"] = f"output of the {plan.name} profile"
    return tree


_CLASSES = {
    "type": "object",
    "required": ["value", "probability", "all"],
    "properties": {
        "value": {"type": "string"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "all": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}

_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
# how class probabilities are written (an output's ``write``: runner.models.classes.written)
_WRITTEN = {"classes": _CLASSES, "probability": _PROBABILITY,
            "map": {"type": "object", "additionalProperties": _PROBABILITY}}


def _model_schemas(tree: dict[str, Any], plan: Plan) -> None:
    """Model outputs: class probabilities or a vector. Not required: with ``missing: skip``
    a model that is not in the cache is left out (and listed in metadata.models.missing)."""
    assert plan.models is not None
    for out in plan.models.outputs:
        section = tree["properties"].setdefault(
            out.section or plan.models.section, {"type": "object", "properties": {}})
        section.setdefault("properties", {})
        model = lock.get(out.model)
        own = family.output_schema(model, out)
        classes = family.writes_classes(model, out)
        section["properties"][out.name] = own or (
            _WRITTEN[out.write] if classes else {"type": "array", "items": _NUMBER})


def _schema_tree(flat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    root: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for name in sorted(flat):
        node = root
        parts = name.split(".")
        for part in parts[:-1]:
            if part not in node["required"]:
                node["required"].append(part)
            node = node["properties"].setdefault(
                part, {"type": "object", "properties": {}, "required": []}
            )
        node["properties"][parts[-1]] = flat[name]
        if parts[-1] not in node["required"]:
            node["required"].append(parts[-1])
    return root


def _deep_schema_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_schema_merge(into[key], value)
        elif key == "required" and isinstance(into.get(key), list):
            into[key] = sorted(set(into[key]) | set(value))
        else:
            into[key] = value


_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float), "integer": (int,), "string": (str,), "boolean": (bool,),
    "null": (type(None),),
}
_ITEMS = jsonschema.Draft202012Validator.VALIDATORS["items"]


def _items(validator: Any, items: Any, instance: Any, schema: dict[str, Any]) -> Any:
    """Draft 2020-12 ``items``, checking arrays whose item schema is only a ``type`` in one pass.

    jsonschema descends into every element: about 20 us per number, 80 ms per music output
    (melbands128 statistics alone are 1280 numbers). When every element's exact Python type
    is allowed, that descent cannot find an error; otherwise it runs as usual, so the
    verdict and the error messages are jsonschema's own.
    """
    if (isinstance(instance, list) and isinstance(items, dict) and items.keys() == {"type"}
            and "prefixItems" not in schema):
        names = [items["type"]] if isinstance(items["type"], str) else items["type"]
        allowed = {t for name in names for t in _EXACT_TYPES.get(name, ())}
        if allowed and all(type(item) in allowed for item in instance):
            return
    yield from _ITEMS(validator, items, instance, schema)


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"items": _items})


def validator(schema: dict[str, Any]) -> Any:
    """A validator built once per schema: built per file, jsonschema's reference resolution
    grows memory for every document checked."""
    return _Validator(schema)


def validate_output(doc: dict[str, Any], schema: Any, label: str) -> None:
    """Check ``doc`` against a schema (a dict, or a validator from :func:`validator`)."""
    checker = schema if isinstance(schema, jsonschema.protocols.Validator) else validator(schema)
    error = jsonschema.exceptions.best_match(checker.iter_errors(doc))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        raise OutputError(f"{label}: output does not match its schema at {where}: "
                          f"{error.message[:200]}")
