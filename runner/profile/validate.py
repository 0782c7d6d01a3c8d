"""Check a profile against schemas/profile.schema.json before anything is compiled or run.

Each file is checked on its own as it is read (runner.profile.extends), so that an error points
into it; the merged profile, with its ``--set`` overrides, is checked whole
(:func:`validate_profile`). Both are plain checks: they return or raise, and change nothing.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from runner.errors import ProfileError
from runner.profile.model import KeyPath, Profile
from runner.profile.options import check_options_used
from runner.profile.schema import PROFILE_SCHEMA, inline_refs, load_schema


@cache
def _profile_validator(fragment: bool) -> jsonschema.protocols.Validator:
    """The profile schema's validator, built once per process. Our own schema is checked
    against the metaschema by the tests, not on every start (that took 80 ms)."""
    schema = load_schema(PROFILE_SCHEMA)
    if fragment:
        # A file may rely on what it extends for 'name', and may override one parameter or
        # input of an inherited node without repeating its algorithm (merging.deep_merge checks
        # that the node exists); the merged profile is checked against the full schema.
        schema = copy.deepcopy(schema)
        schema["required"] = []
        node = schema["$defs"]["node"]
        del node["oneOf"]
        node["not"] = {"required": ["algorithm", "function"]}
        # null deletes an inherited node, parameter, input or statistics prefix
        for holder in (schema["properties"]["graph"], node["properties"]["params"],
                       node["properties"]["inputs"], schema["properties"]["stats"]):
            holder["additionalProperties"] = {
                "anyOf": [{"type": "null"}, holder["additionalProperties"]]}
    schema = inline_refs(schema)
    return jsonschema.validators.validator_for(schema)(schema)


# A profile's size in nodes and descriptors, checked before the schema walks it: the music
# profile has 150 nodes and 580 descriptors; one at these limits with its mistake at the end
# is still refused in about a second.
MAX_GRAPH_NODES = 500
MAX_DESCRIPTORS = 2_000


def _describe(error: ValidationError) -> str:
    """A short sentence for a schema error (jsonschema's own text repeats whole documents)."""
    kind = error.validator
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown key '{extra[0]}'" + (f" (allowed: {allowed})" if allowed else "")
    if kind == "required":
        return error.message.replace("is a required property", "is required")
    if kind == "enum":
        choices = ", ".join(json.dumps(c) for c in error.validator_value)
        return f"{json.dumps(error.instance)} is not one of {choices}"
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected}, got {type(error.instance).__name__} {error.instance!r}"
    if kind == "pattern":
        return f"{error.instance!r} is not a valid name here (pattern {error.validator_value})"
    if kind == "oneOf" and isinstance(error.instance, dict) and "required" in str(error.schema):
        return "a node needs exactly one of 'algorithm' or 'function'"
    if kind == "not" and isinstance(error.instance, dict) and "algorithm" in str(error.schema):
        return "a node has 'algorithm' or 'function', not both"
    if kind == "propertyNames":
        return f"{error.instance!r} is not a valid name here"
    return error.message


def validate_document(profile: Profile) -> None:
    """Validate one file's own content (before merging), so errors point into that file."""
    data = profile.data
    if not isinstance(data, dict):
        raise ProfileError("a profile must be a YAML mapping", source=profile.source, line=1)
    _check_size(profile)
    _raise_first(profile, _profile_validator(True).iter_errors(data))


def validate_profile(profile: Profile) -> Profile:
    """The merged profile (all fragments together, overrides applied), checked: every option
    it sets used, its size, the schema. Returned as it was given."""
    check_options_used(profile)
    _check_size(profile)
    _raise_first(profile, _profile_validator(False).iter_errors(profile.data))
    return profile


def _check_size(profile: Profile) -> None:
    for section, limit in (("graph", MAX_GRAPH_NODES), ("descriptors", MAX_DESCRIPTORS)):
        entries = profile.data.get(section)
        if isinstance(entries, dict) and len(entries) > limit:
            raise profile.error((section,), f"{len(entries)} entries, more than the {limit} "
                                "a profile may have")


def _raise_first(profile: Profile, errors: Any) -> None:
    error = best_match(errors)
    if error is None:
        return
    path: KeyPath = tuple(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            path = path + (extra[0],)
    raise profile.error(path, _describe(error))
