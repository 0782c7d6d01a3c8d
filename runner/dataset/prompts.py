"""Prompts for text-to-audio training from a track's (or a crop's) ``.INFO``: a YAML template
(the default is ``prompt.yaml`` beside this module) of parts with ``{fields}``, words chosen by
thresholds on numbers, and the most probable labels of ``{label: probability}`` maps.

Deterministic: the same INFO and template always give the same text (no randomness, labels
ordered by probability then name).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ProfileError

DEFAULT_TEMPLATE = Path(__file__).with_name("prompt.yaml")


@dataclass(frozen=True)
class Template:
    parts: list[Any]  # str | list[str] | {"text": str, "if": field}
    separator: str
    words: dict[str, dict[str, Any]]
    labels: dict[str, dict[str, Any]]
    source: str


def _fail(source: str, where: str, message: str) -> ProfileError:
    """``FILE: KEY: message`` (exit code 2, as a profile mistake)."""
    return ProfileError(message, source=source, path=where)


def load_template(path: Path | None = None) -> Template:
    """Read and check a template (default: the one shipped in the package)."""
    path = path or DEFAULT_TEMPLATE
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read template: {exc.strerror}", source=source) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"not YAML ({str(exc).splitlines()[0]})", source=source) from None
    if not isinstance(data, dict) or not isinstance(data.get("parts"), list):
        raise ProfileError("a template needs 'parts', a list of texts", source=source)
    for index, part in enumerate(data["parts"]):
        texts = (part if isinstance(part, list)
                 else [part.get("text")] if isinstance(part, dict) else [part])
        if not texts or not all(isinstance(text, str) for text in texts):
            raise _fail(source, f"parts[{index}]", "a text, a list of texts, or "
                        "{text: ..., if: FIELD}")
        for text in texts:
            try:
                list(string.Formatter().parse(text))
            except ValueError as exc:
                raise _fail(source, f"parts[{index}]", f"{exc} in '{text}'") from None
    words = data.get("words") or {}
    for name, rule in words.items():
        levels = rule.get("levels") if isinstance(rule, dict) else None
        if (not isinstance(rule, dict) or not isinstance(rule.get("feature"), str)
                or not isinstance(levels, list)
                or not all(isinstance(level, list) and len(level) == 2 for level in levels)):
            raise _fail(source, f"words.{name}", "needs 'feature' and 'levels', a list of "
                        "[bound, word] pairs")
    labels = data.get("labels") or {}
    for name, rule in labels.items():
        if not isinstance(rule, dict) or not isinstance(rule.get("feature"), str):
            raise _fail(source, f"labels.{name}", "needs 'feature', the name of a "
                        "{label: probability} map")
    return Template(data["parts"], str(data.get("separator", ", ")), words, labels, source)


def label_name(label: str) -> str:
    """``Electronic---House`` -> ``house``; ``acoustic_guitar`` -> ``acoustic guitar``."""
    return label.rsplit("---", 1)[-1].replace("_", " ").strip().lower()


def top_labels(probabilities: Any, top: int, minimum: float) -> list[str]:
    """The ``top`` most probable labels at ``minimum`` or above (ties by name)."""
    if not isinstance(probabilities, dict):
        return []
    ranked = sorted(((-float(p), label_name(str(label))) for label, p in probabilities.items()
                     if isinstance(p, (int, float)) and p >= minimum))
    names: list[str] = []
    for _, name in ranked:
        if name not in names:
            names.append(name)
    return names[:top]


def word_for(value: Any, levels: list[list[Any]]) -> str | None:
    """The word of the first level whose bound ``value`` is below (None bound: any value)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return None
    for bound, word in levels:
        if bound is None or value < bound:
            return str(word)
    return None


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects by dotted name; lists of texts joined by ', '."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat[name] = value
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            flat[name] = ", ".join(value)
        else:
            flat[name] = value
    return flat


def fields(info: dict[str, Any], template: Template,
           track: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a template's {fields} may name for one INFO (and its track's, for a crop)."""
    found = flatten(info)
    if track:
        found.update(flatten(track, "track."))
    for name, rule in template.words.items():
        found[name] = word_for(found.get(rule["feature"]), rule["levels"])
    for name, rule in template.labels.items():
        chosen = top_labels(found.get(rule["feature"]), int(rule.get("top", 1)),
                            float(rule.get("min", 0.0)))
        found[name] = str(rule.get("join", ", ")).join(chosen) if chosen else None
    return found


class _Fields(string.Formatter):
    """Looks a whole field name up (dotted names included); a missing one is a KeyError."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        value = kwargs[field_name]
        if value is None or value == "" or isinstance(value, dict):
            raise KeyError(field_name)
        return value, field_name


def _render(text: str, values: dict[str, Any]) -> str | None:
    try:
        rendered = _Fields().vformat(text, (), values)
    except (KeyError, ValueError, TypeError):  # missing, or a number spec on a text
        return None
    return " ".join(rendered.split()) or None


def render(info: dict[str, Any], template: Template,
           track: dict[str, Any] | None = None) -> str:
    """The prompt of one INFO: each part that can be rendered, joined."""
    values = fields(info, template, track)
    pieces: list[str] = []
    for part in template.parts:
        if isinstance(part, dict):
            condition = part.get("if")
            if condition is not None and values.get(condition) is False:
                continue
            texts = [part["text"]]
        else:
            texts = part if isinstance(part, list) else [part]
        for text in texts:
            rendered = _render(text, values)
            if rendered:
                pieces.append(rendered)
                break
    return template.separator.join(pieces)
