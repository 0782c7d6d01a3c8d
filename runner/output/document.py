"""The result document of one file: its descriptors nested by name, and its metadata (what was
analysed and how), as Essentia's extractors write them."""

from __future__ import annotations

import math
import os
from typing import Any

from runner import __version__, registry
from runner.analysis import Analysis
from runner.compile import AUDIO, Plan, Ref
from runner.pools import pool_values, to_plain
from runner.tree import nest

LOSSLESS_CODECS = {"flac", "alac", "wavpack", "ape", "tta", "shorten", "mlp", "truehd"}


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
