"""Load a profile: safe YAML with line numbers, `extends` merging, options and `--set` overrides.

Loading, validating and compiling are separate steps (as in pre-commit's cfgv): this module
only turns files into one merged mapping and remembers, for every key, the file and line it
came from, so that later steps can point at the YAML a person has to fix.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ProfileError

KeyPath = tuple[str, ...]
Origin = tuple[str, int]  # (file, line)

OPTION_REF = re.compile(r"^\$\{([A-Za-z0-9_.\-]+)\}$")
OPTION_REF_ANY = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")


@dataclass
class Profile:
    """A merged profile, before compilation.

    ``data`` is plain JSON-like data; ``origins`` maps key paths to where they were written.
    """

    name: str
    source: str
    data: dict[str, Any]
    origins: dict[KeyPath, Origin] = field(default_factory=dict)

    def where(self, path: KeyPath) -> Origin:
        """The file and line of ``path``, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            origin = self.origins.get(tuple(path[:end]))
            if origin is not None:
                return origin
        return (self.source, 0)

    def error(self, path: KeyPath, message: str, hint: str | None = None) -> ProfileError:
        """A ProfileError pointing at ``path`` in the file that set it."""
        source, line = self.where(path)
        return ProfileError(
            message, source=source, line=line or None, path=".".join(path) or None, hint=hint
        )

    def digest(self) -> str:
        """A hash of the resolved profile: equal hashes mean identical analyses."""
        text = json.dumps(self.data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def builtin_dir() -> Path:
    """Where the built-in profiles live (the repo's profiles/ or the installed copy)."""
    return Path(__file__).resolve().parent / "profiles"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml") if not p.stem.startswith("_"))


def resolve_reference(ref: str, relative_to: Path | None = None) -> Path:
    """A profile reference is a built-in name or a path (relative to the referring file)."""
    candidate = Path(ref).expanduser()
    if relative_to is not None and not candidate.is_absolute():
        near = relative_to.parent / candidate
        if near.exists():
            return near
    if candidate.exists():
        if candidate.is_dir():
            raise ProfileError("is a folder, not a profile file", source=ref)
        return candidate
    builtin = builtin_dir() / f"{ref}.yaml"
    if builtin.exists():
        return builtin
    looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml", ".json"))
    if looks_like_path:
        raise ProfileError("no such profile file", source=ref)
    close = difflib.get_close_matches(ref, builtin_names(), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see `extractor profiles`"
    raise ProfileError(f"unknown built-in profile '{ref}'", source=ref, hint=hint)


def read_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML safely (no tags that run code) and record the line of every key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProfileError(f"cannot read profile: {reason}", source=str(path)) from exc
    loader = _SAFE_LOADER(text)  # safe: plain data only, no tags that build objects
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(
            f"YAML syntax error: {problem}",
            source=str(path),
            line=mark.line + 1 if mark else None,
        ) from exc
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


# libyaml's parser when PyYAML was built with it (its wheels are), else the pure-Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _collect_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, path + (str(index),), lines)


def deep_merge(
    base: dict[str, Any],
    over: dict[str, Any],
    base_origins: dict[KeyPath, Origin],
    over_origins: dict[KeyPath, Origin],
    path: KeyPath = (),
) -> None:
    """Merge ``over`` into ``base`` in place: mappings merge, anything else replaces.

    A ``null`` value deletes the key, so a profile can drop what it extends.
    """
    # origins below this level, by their next key: one pass each, not one per replaced key
    over_below = _by_next_key(over_origins, path)
    base_below = _by_next_key(base_origins, path)
    for key, value in over.items():
        here = path + (key,)
        if value is None:
            base.pop(key, None)
            for sub in base_below.get(key, ()):
                base_origins.pop(sub, None)
            continue
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if here in over_origins:
                base_origins[here] = over_origins[here]
            deep_merge(base[key], value, base_origins, over_origins, here)
        else:
            base[key] = copy.deepcopy(value)
            for sub in base_below.get(key, ()):
                base_origins.pop(sub, None)
            for sub in over_below.get(key, ()):
                base_origins[sub] = over_origins[sub]


def _by_next_key(origins: dict[KeyPath, Origin], prefix: KeyPath) -> dict[Any, list[KeyPath]]:
    """Key paths under ``prefix`` (itself included for its last key), grouped by the key that
    follows ``prefix``."""
    depth = len(prefix)
    groups: dict[Any, list[KeyPath]] = {}
    for sub in origins:
        if len(sub) > depth and sub[:depth] == prefix:
            groups.setdefault(sub[depth], []).append(sub)
    return groups


def load_profile(ref: str, overrides: list[str] | None = None, legacy_base: str = "music"
                 ) -> Profile:
    """Load a built-in or user profile, merge what it extends, apply options and overrides.

    An Essentia extractor profile (flat keys such as ``lowlevel.frameSize``) is applied as
    overrides of ``legacy_base``, so existing Essentia profile files keep working.
    """
    from runner import legacy, validate

    path = resolve_reference(ref)
    data, lines = read_yaml(path)
    if legacy.is_essentia_profile(data):
        base = _load_tree(resolve_reference(legacy_base), stack=())
        legacy.apply(base, data, str(path), lines)
        profile = base
        profile.source = str(path)
    else:
        profile = _load_tree(path, stack=())
    for item in overrides or []:
        apply_override(profile, item)
    validate.validate_profile(profile)
    return profile


def _load_tree(path: Path, stack: tuple[Path, ...]) -> Profile:
    from runner import validate

    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(p.name for p in stack + (resolved,))
        raise ProfileError(f"'extends' forms a cycle: {chain}", source=str(path), path="extends")
    data, lines = read_yaml(path)
    source = str(path)
    origins = {key: (source, line) for key, line in lines.items()}
    own = Profile(name=path.stem, source=source, data=data, origins=origins)
    if path.resolve().parent != builtin_dir().resolve():  # built-ins are checked by the tests
        validate.validate_document(own)
    parents = data.get("extends") or []
    if isinstance(parents, str):
        parents = [parents]
    merged = Profile(name=path.stem, source=source, data={}, origins={})
    for index, parent_ref in enumerate(parents):
        try:
            parent_path = resolve_reference(parent_ref, relative_to=path)
        except ProfileError as exc:
            line = lines.get(("extends", str(index))) or lines.get(("extends",))
            raise ProfileError(
                exc.message, source=source, line=line, path="extends", hint=exc.hint
            ) from None
        parent = _load_tree(parent_path, stack + (resolved,))
        deep_merge(merged.data, parent.data, merged.origins, parent.origins)
    body = {k: v for k, v in data.items() if k != "extends"}
    deep_merge(merged.data, body, merged.origins, origins)
    merged.name = str(data.get("name", path.stem))
    merged.data["name"] = merged.name
    return merged


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
    """Apply one ``--set key.path=value`` (value parsed as a YAML scalar or flow collection)."""
    if "=" not in item:
        raise ProfileError(
            f"--set expects key.path=value, got '{item}'", source="--set", hint="e.g. --set "
            "options.lowlevel.frameSize=4096"
        )
    dotted, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    path = split_path(profile.data, dotted.strip())
    node: Any = profile.data
    for key in path[:-1]:
        if not isinstance(node, dict):
            raise ProfileError(f"cannot set inside a {type(node).__name__}", source="--set",
                               path=dotted)
        node = node.setdefault(key, {})
    if not isinstance(node, dict):
        raise ProfileError(f"cannot set inside a {type(node).__name__}", source="--set",
                           path=dotted)
    node[path[-1]] = value
    profile.origins[path] = ("--set", 0)


def substitute_options(profile: Profile) -> None:
    """Replace ``${option}`` references by the option values (whole-string refs keep the type)."""
    options = profile.data.get("options") or {}

    def resolve(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, str):
            whole = OPTION_REF.match(value)
            if whole:
                return lookup(whole.group(1), path)
            if not OPTION_REF_ANY.search(value):
                return value
            text = OPTION_REF_ANY.sub(lambda m: repr(lookup(m.group(1), path)), value)
            number = _arithmetic(text)
            if number is not None:
                return number
            return OPTION_REF_ANY.sub(lambda m: str(lookup(m.group(1), path)), value)
        return value

    def lookup(name: str, path: KeyPath) -> Any:
        if name not in options:
            close = difflib.get_close_matches(name, list(options), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "declare it under 'options'"
            raise profile.error(path, f"unknown option '{name}'", hint)
        return options[name]

    for key in list(profile.data):
        if key != "options":
            profile.data[key] = resolve(profile.data[key], (key,))


_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.USub: operator.neg, ast.Pow: operator.pow,
}


def _arithmetic(text: str) -> float | None:
    """Evaluate ``44100.0 * 0.5``-style arithmetic over numbers only; None if it is not that.

    Lets a profile write ``range: ${analysisSampleRate} * 0.5`` without running any code.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.operand))
        raise ValueError("not arithmetic")

    try:
        return evaluate(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
