"""One track's values for the report, read from its output documents whatever the profile.

The music profile, the freesound profiles, ``music-highlevel`` and the clap profile write
different names for the same ideas (``tonal.key_key`` vs ``tonal.key.key``); this module is the
one place that knows them. A value that is missing, null, non-finite or of the wrong type is
``None``: the report leaves it out instead of drawing a wrong point.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.report.loading import Result

# the sections whose vectors are descriptors, not embeddings, and that hold no taxonomies
DESCRIPTOR_SECTIONS = {"metadata", "lowlevel", "rhythm", "tonal", "sfx"}
MIN_EMBEDDING_SIZE = 8


@dataclass
class Taxonomy:
    """A classifier's output as Essentia wrote it: the top class, its probability, all."""

    value: str
    probability: float | None
    classes: dict[str, float]


@dataclass
class Track:
    """What the report shows of one track; every value may be missing."""

    name: str
    path: Path  # the first output document of the track
    paths: list[Path]
    profiles: list[str]
    duration: float | None = None
    bpm: float | None = None
    # other tempo estimates of the same output: histogram peaks, freesound's loop tempo
    bpm_alternatives: dict[str, float] = field(default_factory=dict)
    key: str | None = None
    scale: str | None = None
    loudness_lufs: float | None = None
    average_loudness: float | None = None
    danceability: float | None = None  # Essentia's Danceability (rhythm.danceability), 0-3
    danceable: float | None = None  # the danceability classifier's probability
    taxonomies: dict[str, Taxonomy] = field(default_factory=dict)
    embeddings: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def silent(self) -> bool:
        """Silence has a tempo and a key that mean nothing (docs/output.md)."""
        return any(w.startswith("silent") for w in self.warnings)


def number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities, booleans and anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _first(docs: list[dict[str, Any]], *dotted: str) -> Any:
    """The first present value of any of the names, in any of the documents."""
    for doc in docs:
        for name in dotted:
            value = lookup(doc, name)
            if value is not None:
                return value
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    return value.strip() or None if isinstance(value, str) else None


# what the report reads of the descriptor sections; model sections are kept whole
READ = [
    "metadata.profile.name", "metadata.audio_properties.length",
    "metadata.audio_properties.md5_encoded", "metadata.tags.artist", "metadata.tags.title",
    "metadata.tags.file_name", "metadata.warnings",
    "lowlevel.average_loudness", "lowlevel.loudness_ebu128.integrated",
    "rhythm.bpm", "rhythm.danceability", "rhythm.bpm_loop",
    "rhythm.bpm_histogram_first_peak_bpm", "rhythm.bpm_histogram_first_peak_weight",
    "rhythm.bpm_histogram_second_peak_bpm", "rhythm.bpm_histogram_second_peak_weight",
    "tonal.key_key", "tonal.key_scale", "tonal.key.key", "tonal.key.scale",
]


def _interned(value: Any) -> Any:
    """Class names shared by every track (400 genres) stored once, not once per track."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _interned(v)
                for k, v in value.items()}
    return value


def slim(doc: dict[str, Any]) -> dict[str, Any]:
    """The part of an output the report reads: a music output's 100 KB of lowlevel
    statistics are dropped as soon as the file is parsed (10,000 of them would not fit)."""
    kept: dict[str, Any] = {}
    for dotted in READ:
        value = lookup(doc, dotted)
        if value is None:
            continue
        *parents, last = dotted.split(".")
        node = kept
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    for section, content in doc.items():
        if section not in DESCRIPTOR_SECTIONS:
            kept[section] = _interned(content)
    return kept


def track_name(docs: list[dict[str, Any]], path: Path) -> str:
    """'Artist - Title' from the tags where both are there, else the audio's file name."""
    artist = _text(_first(docs, "metadata.tags.artist"))
    title = _text(_first(docs, "metadata.tags.title"))
    if artist and title:
        return f"{artist} - {title}"
    return title or _text(_first(docs, "metadata.tags.file_name")) or path.stem


def _tempo(track: Track, docs: list[dict[str, Any]]) -> None:
    bpm = number(_first(docs, "rhythm.bpm"))
    track.bpm = bpm if bpm is not None and bpm > 0 else None  # 0: no beat found
    first = number(_first(docs, "rhythm.bpm_histogram_first_peak_bpm"))
    if first:
        track.bpm_alternatives["histogram first peak"] = first
    second = number(_first(docs, "rhythm.bpm_histogram_second_peak_bpm"))
    first_weight = number(_first(docs, "rhythm.bpm_histogram_first_peak_weight")) or 0.0
    second_weight = number(_first(docs, "rhythm.bpm_histogram_second_peak_weight")) or 0.0
    # a second peak counts as a rival estimate only when it is at least half as strong
    if second and second_weight > 0 and second_weight >= 0.5 * first_weight:
        track.bpm_alternatives["histogram second peak"] = second
    loop = number(_first(docs, "rhythm.bpm_loop"))
    if loop:
        track.bpm_alternatives["loop tempo"] = loop


def _key(track: Track, docs: list[dict[str, Any]]) -> None:
    key = _first(docs, "tonal.key_key", "tonal.key.key")
    scale = _first(docs, "tonal.key_scale", "tonal.key.scale")
    if isinstance(key, str) and isinstance(scale, str) and key and scale:
        track.key, track.scale = key, scale


def _models(track: Track, docs: list[dict[str, Any]]) -> None:
    """Taxonomies (``{value, probability, all}``) and embedding vectors of every model
    section: highlevel.*, clap.*, and the sections of the user's own profiles."""
    for doc in docs:
        for section, content in doc.items():
            if section in DESCRIPTOR_SECTIONS or not isinstance(content, dict):
                continue
            for name, value in content.items():
                label = f"{section}.{name}"
                if isinstance(value, dict) and isinstance(value.get("all"), dict):
                    classes = {str(c): prob for c, raw in value["all"].items()
                               if (prob := number(raw)) is not None}
                    top = value.get("value")
                    if classes and isinstance(top, str):
                        track.taxonomies.setdefault(label, Taxonomy(
                            top, number(value.get("probability")), classes))
                elif isinstance(value, list) and len(value) >= MIN_EMBEDDING_SIZE:
                    vector = [number(v) for v in value]
                    if all(v is not None for v in vector):
                        track.embeddings.setdefault(label, vector)  # type: ignore[arg-type]


def track_from_result(result: Result) -> Track:
    # the descriptor output first (its values win, its JSON is the one the report links to),
    # then the model outputs merged into it (clap, music-highlevel)
    order = sorted(range(len(result.docs)), key=lambda i: not any(
        section in result.docs[i] for section in DESCRIPTOR_SECTIONS - {"metadata"}))
    docs = [result.docs[i] for i in order]
    paths = [result.paths[i] for i in order]
    names = (lookup(doc, "metadata.profile.name") for doc in docs)
    profiles = [name for name in names if isinstance(name, str)]
    track = Track(name=track_name(docs, paths[0]), path=paths[0], paths=paths,
                  profiles=profiles)
    length = number(_first(docs, "metadata.audio_properties.length"))
    track.duration = length if length is not None and length >= 0 else None
    _tempo(track, docs)
    _key(track, docs)
    track.loudness_lufs = number(_first(docs, "lowlevel.loudness_ebu128.integrated"))
    track.average_loudness = number(_first(docs, "lowlevel.average_loudness"))
    track.danceability = number(_first(docs, "rhythm.danceability"))
    _models(track, docs)
    dance_model = track.taxonomies.get("highlevel.danceability")
    if dance_model is not None:
        track.danceable = dance_model.classes.get("danceable")
    for doc in docs:
        warnings = lookup(doc, "metadata.warnings")
        if isinstance(warnings, list):
            track.warnings.extend(w for w in warnings if isinstance(w, str))
    return track
