"""The result document: metadata, output schema (generated from the plan), atomic writing."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from runner import __version__, procs, registry
from runner.aggregate import to_plain
from runner.compile import AUDIO, AUDIO_OUTPUTS, Plan, Ref
from runner.errors import OutputError
from runner.run import Analysis, pool_values
from runner.tree import nest

LOSSLESS_CODECS = {"flac", "alac", "wavpack", "ape", "tta", "shorten", "mlp", "truehd"}
MATRIX_STATS = {"cov", "icov"}


def metadata(plan: Plan, analysis: Analysis, input_path: str) -> dict[str, Any]:
    """What was analysed and how: profile, versions, the input's audio properties."""
    essentia = registry.quiet_essentia()
    audio = analysis.audio
    cfg = plan.audio
    codec = str(audio.get("codec", ""))
    analysis_length = audio.get("analysis_length")
    untrimmed = cfg.start_time == 0 and cfg.end_time is None
    props: dict[str, Any] = {
        "analysis": {
            "sample_rate": cfg.sample_rate,
            "downmix": cfg.downmix,
            "start_time": cfg.start_time,
            "end_time": cfg.end_time,
            "equal_loudness": equal_loudness(plan),
        },
        "sample_rate": _int(audio.get("sample_rate")),
        "number_channels": _int(audio.get("channels")),
        "bit_rate": _int(audio.get("bit_rate")),
        "codec": codec or None,
        "lossless": codec.startswith("pcm_") or codec in LOSSLESS_CODECS,
        "length": analysis_length if untrimmed else float(audio.get("duration", 0)),
    }
    if analysis_length is not None:
        props["analysis"]["length"] = analysis_length
    if "md5" in audio:
        props["md5_encoded"] = audio["md5"]
    tags = {"file_name": os.path.basename(input_path)}
    for name, value in (audio.get("tags") or {}).items():
        tags[name.split(".")[-1]] = to_plain(value)
    return {
        "version": {
            "essentia": essentia.__version__,
            "essentia_git_sha": getattr(essentia, "__version_git_sha__", "unknown"),
            "extractor": f"extractor-profiles {__version__}",
            "runner": __version__,
        },
        "profile": {"name": plan.name, "hash": plan.digest},
        "audio_properties": props,
        "tags": tags,
        "warnings": list(plan.warnings) + list(analysis.warnings),
    }


def equal_loudness(plan: Plan) -> bool:
    """Whether the whole analysis ran on an equal-loudness-filtered signal: every descriptor
    computed from the audio reads it through an EqualLoudness node.

    Essentia's extractors write this flag (``metadata.audio_properties.analysis``): its older
    ones analysed everything twice and wrote true in their filtered output; MusicExtractor and
    FreesoundExtractor write false although a few of MusicExtractor's descriptors (the
    spectral moments) read an equal-loudness spectrum. Derived from the graph with that
    meaning, the music and freesound profiles write false as those extractors do, and a
    profile that filters its signal before everything writes true. Model outputs read the
    unfiltered signal.
    """
    memo: dict[str, bool | None] = {}

    def filtered(ref: Ref) -> bool | None:  # None: no audio signal upstream
        if ref.node == AUDIO:  # the file's properties (md5, codec, ...) are not the signal
            return False if ref.output in ("signal", "stereo") else None
        if ref.node not in memo:
            memo[ref.node] = None  # the graph is acyclic; this only guards the recursion
            node = plan.nodes.get(ref.node)
            if node is not None and node.algorithm == "EqualLoudness":
                memo[ref.node] = True
            elif node is not None:
                found = [f for f in map(filtered, node.inputs.values()) if f is not None]
                memo[ref.node] = all(found) if found else None
        return memo[ref.node]

    found = [f for f in (filtered(d.ref) for d in plan.descriptors) if f is not None]
    if plan.models is not None and plan.models.outputs:
        found.append(False)
    return bool(found) and all(found)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def document(plan: Plan, analysis: Analysis, flat: dict[str, Any], input_path: str
             ) -> dict[str, Any]:
    doc = nest(flat)
    _merge(doc.setdefault("metadata", {}), metadata(plan, analysis, input_path))
    for dotted, value in plan.output.merge.items():  # Essentia's mergeValues (checked at compile)
        *parents, leaf = dotted.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return _finite(doc)


def frames_document(plan: Plan, analysis: Analysis) -> dict[str, Any]:
    """The frame-level pool, as Essentia's ``outputFrames`` writes it."""
    flat = {n: to_plain(v) for n, v in pool_values(analysis.frames).items()}
    flat.update({n: to_plain(v) for n, v in analysis.singles.items()})
    return _finite(nest(flat))


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into.setdefault(key, value)


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- output schema -------------------------------------------------------------------------------
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


def _model_schemas(tree: dict[str, Any], plan: Plan) -> None:
    """Model outputs: class probabilities or a vector. Not required: with ``missing: skip``
    a model that is not in the cache is left out (and listed in metadata.models.missing)."""
    from runner.models.supply import lock

    assert plan.models is not None
    section = tree["properties"].setdefault(
        plan.models.section, {"type": "object", "properties": {}})
    for out in plan.models.outputs:
        model = lock.get(out.model)
        vector = out.output == "embeddings" or model.kind != "tensorflow"
        section["properties"][out.name] = (
            {"type": "array", "items": _NUMBER} if vector else _CLASSES)


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


# -- writing ---------------------------------------------------------------------------------------
FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def output_format(path: str | Path, default: str) -> str:
    """The format an output is written in: its extension's (.json, .yaml, .yml), else the
    profile's (``output.format``, Essentia's ``outputFormat``). A file named ``.yaml`` never
    holds JSON."""
    return FORMATS.get(Path(path).suffix.lower(), default)


def names_folder(path: str) -> bool:
    """Whether an OUTPUT argument means a folder: it ends in a path separator or is one."""
    return path.endswith(("/", os.sep)) or Path(path).is_dir()


def check_writable(path: str | Path) -> None:
    """Refuse, before any analysis, an output that could not be written: its folder cannot
    be made, or nothing can be created there (read-only, /proc, permissions). Makes nothing."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{path}: cannot write output: it is a folder")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{path}: cannot write output: {ancestor} is not a folder")
    _probe(path, ancestor)


def prepare_folder(folder: str | Path) -> None:
    """Make an output folder (and its parents) and check that files can be created in it."""
    where = Path(folder)
    if where.exists() and not where.is_dir():
        raise OutputError(f"{folder}: cannot write output: it is a file, not a folder")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write output: cannot make the folder "
                          f"({_reason(exc)})") from None
    _probe(folder, where)


def _probe(label: str | Path, folder: Path) -> None:
    try:
        handle, probe = tempfile.mkstemp(prefix=".extractor-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"{label}: cannot write output: cannot create a file in {folder} "
                          f"({_reason(exc)})") from None
    os.close(handle)
    os.unlink(probe)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def render(doc: dict[str, Any], fmt: str, indent: int) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=True, default_flow_style=None, width=100)
    return json.dumps(doc, indent=indent or None, sort_keys=True, ensure_ascii=False) + "\n"


def write_npy_atomic(path: str | Path, array: Any) -> None:
    """A NumPy array as .npy, written like every output: temporary file, then rename."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    _write_bytes_atomic(Path(path), buffer.getvalue())


def write_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename: never a half-written output.

    The temporary file is named ``.<name>.<pid>@<host>.<random>.tmp``: a later run removes it
    once that process is gone (batch.remove_stale_temporaries), never while it writes.
    Whatever the system refuses becomes one line: ``OUT: cannot write output: <reason>``.
    """
    _write_bytes_atomic(Path(path), text.encode("utf-8"))


def write_in_place(path: str | Path, text: str) -> None:
    """Rewrite an existing output in its own file (same inode), the finished document at once.

    Essentia's binary writes into OUT itself, and some callers read the result through a
    handle they hold open on OUT (abzer passes a NamedTemporaryFile): a rename would give the
    path a new file that such a reader never sees. The document is complete before the file
    is touched, so only a kill during this one write (milliseconds) could leave it partial;
    the commands of our own spelling always write a new file and rename it instead.
    """
    target = Path(path)
    data = text.encode("utf-8")
    try:
        with open(target, "r+b") as out:
            out.write(data)
            out.truncate()
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output: {_reason(exc)}") from None


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Bytes, written like every output (see write_atomic)."""
    _write_bytes_atomic(Path(path), data)


def temporary_prefix(target: Path) -> str:
    return f".{target.name}.{procs.tag()}."


def _write_bytes_atomic(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, FileExistsError) else _reason(exc)
        raise OutputError(f"{target}: cannot write output: cannot make the folder "
                          f"{target.parent} ({why})") from None
    try:
        handle, tmp = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp",
                                       dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output: cannot create a file in "
                          f"{target.parent} ({_reason(exc)})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, IsADirectoryError):
            raise OutputError(f"{target}: cannot write output: it is a folder") from None
        if isinstance(exc, OSError):
            raise OutputError(f"{target}: cannot write output: {_reason(exc)}") from None
        raise
