"""The audio and output settings of a Plan, checked after options are substituted.

The schema has seen these values before options were substituted (``${analysisSampleRate}``
was text then), so their types and ranges are checked again here, on the values that run.
Their defaults are the schema's (schemas/profile.schema.json), filled in before this step.
"""

from __future__ import annotations

import math
from typing import Any

import jsonschema

from runner.compile.plan import AudioConfig, OutputConfig
from runner.profile import KeyPath, Profile, load_schema

# Analysis rates a profile may ask for: below 1 kHz nothing musical is left, above 384 kHz
# the resampled signal (and every frame-wise pool) grows past what any audio needs.
SAMPLE_RATE_RANGE = (1000.0, 384000.0)
MAX_INDENT = 16
ESSENTIA_TO_THE_END = 1e6  # an end_time this large is Essentia's way of saying "to the end"


def audio_config(profile: Profile) -> AudioConfig:
    """``audio``: what is analysed (rate, segment, channels) and which tags are kept."""
    spec = profile.data["audio"]

    def number(key: str, kind: type = float, low: float = -math.inf,
               high: float = math.inf) -> Any:
        return _number(profile, ("audio", key), spec[key], kind, low, high)

    sample_rate = number("sample_rate", float, *SAMPLE_RATE_RANGE)
    start = number("start_time", float, 0.0)
    end = None if spec["end_time"] is None else number("end_time", float, 0.0)
    if end is not None and end >= ESSENTIA_TO_THE_END:
        end = None
    if end is not None and end <= start:
        raise profile.error(("audio", "end_time"), "end_time must be after start_time",
                            value=True)
    downmix = _choice(profile, ("audio", "downmix"), spec["downmix"], ("mix", "left", "right"))
    tags = _choice(profile, ("audio", "tags"), spec["tags"], ("whitelist", "all"))
    return AudioConfig(
        sample_rate=sample_rate, start_time=start, end_time=end, downmix=downmix,
        resample_quality=number("resample_quality", int, 0, 4), tags=tags,
        require_mbid=_flag(profile, ("audio", "require_mbid"), spec["require_mbid"]),
    )


def output_config(profile: Profile) -> OutputConfig:
    """``output``: the format of the result document and what is added to it."""
    spec = profile.data["output"]
    if spec["format"] not in ("json", "yaml"):
        raise profile.error(("output", "format"), f"{spec['format']!r} is not json or yaml",
                            value=True)
    indent = _number(profile, ("output", "indent"), spec["indent"], int, 0, MAX_INDENT)
    frames = _flag(profile, ("output", "frames"), spec["frames"])
    schema = spec.get("schema")
    if schema is not None:
        _check_output_schema(profile, str(schema))
    return OutputConfig(format=spec["format"], indent=indent, frames=frames, schema=schema,
                        merge=dict(spec["merge"]))


def _number(profile: Profile, path: KeyPath, value: Any, kind: type = float,
            low: float = -math.inf, high: float = math.inf) -> Any:
    """A number within [low, high] (options are substituted only now: the schema saw text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise profile.error(path, f"expected a number, got {value!r}", value=True)
    try:
        number = float(value)
    except ValueError:
        raise profile.error(path, f"expected a number, got {value!r}", value=True) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise profile.error(path, f"{value!r} is not within [{low:g}, {high:g}]", value=True)
    if kind is int:
        if not number.is_integer():
            raise profile.error(path, f"expected an integer, got {value!r}", value=True)
        return int(number)
    return number


def _choice(profile: Profile, path: KeyPath, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise profile.error(path, f"{value!r} is not one of {', '.join(choices)}", value=True)
    return value


def _flag(profile: Profile, path: KeyPath, value: Any) -> bool:
    """true/false (or Essentia's 1/0, and yes/no): anything else is an error, not False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if isinstance(value, str) and text in ("1", "true", "yes", "0", "false", "no"):
        return text in ("1", "true", "yes")
    raise profile.error(path, f"expected true or false, got {value!r}", value=True)


def _check_output_schema(profile: Profile, name: str) -> None:
    """``output.schema`` names a readable JSON Schema (checked now, not on the first file)."""
    path = ("output", "schema")
    try:
        schema = load_schema(name)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise profile.error(path, f"cannot read the schema {name!r}: {reason}") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise profile.error(path, f"{name!r} is not a valid JSON Schema: "
                            f"{exc.message[:200]}") from None
