"""One track's values for the report, read from an output document whatever the profile.

The music profile, the freesound profiles, ``music-highlevel`` and the clap profile write
different names for the same ideas (``tonal.key_key`` vs ``tonal.key.key``); this module is the
one place that knows them. A value that is missing, null, non-finite or of the wrong type is
``None``: the report leaves it out instead of drawing a wrong point.

A Track is made from one document (in a worker process, so the document's 100 KB of lowlevel
statistics never reach the main process); outputs of several profiles for the same audio are
then merged into one Track (``merge``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.tree import lookup

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
    path: Path  # the output document the report links to: the descriptors' where merged
    paths: list[Path]
    profiles: list[str]
    audio_id: str | None = None  # metadata.audio_properties.md5_encoded
    describes: bool = False  # has descriptor sections (lowlevel, rhythm, tonal, sfx)
    duration: float | None = None
    bpm: float | None = None
    # other tempo estimates of the same output: histogram peaks, freesound's loop tempo
    bpm_alternatives: dict[str, float] = field(default_factory=dict)
    key: str | None = None
    scale: str | None = None
    loudness_lufs: float | None = None
    average_loudness: float | None = None
    danceability: float | None = None  # Essentia's Danceability (rhythm.danceability)
    danceable: float | None = None  # the danceability classifier's probability
    taxonomies: dict[str, Taxonomy] = field(default_factory=dict)
    # float32 vectors (10,000 x 512 of them stay small); not compared by ==
    embeddings: dict[str, np.ndarray] = field(default_factory=dict, compare=False)
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


def _text(value: Any) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    return value.strip() or None if isinstance(value, str) else None


def track_name(doc: dict[str, Any], path: Path) -> str:
    """'Artist - Title' from the tags where both are there, else the audio's file name."""
    artist = _text(lookup(doc, "metadata.tags.artist"))
    title = _text(lookup(doc, "metadata.tags.title"))
    if artist and title:
        return f"{artist} - {title}"
    return title or _text(lookup(doc, "metadata.tags.file_name")) or path.stem


def _tempo(track: Track, doc: dict[str, Any]) -> None:
    rhythm = doc.get("rhythm")
    if not isinstance(rhythm, dict):
        return
    bpm = number(rhythm.get("bpm"))
    track.bpm = bpm if bpm is not None and bpm > 0 else None  # 0: no beat found
    first = number(rhythm.get("bpm_histogram_first_peak_bpm"))
    if first:
        track.bpm_alternatives["histogram first peak"] = first
    second = number(rhythm.get("bpm_histogram_second_peak_bpm"))
    first_weight = number(rhythm.get("bpm_histogram_first_peak_weight")) or 0.0
    second_weight = number(rhythm.get("bpm_histogram_second_peak_weight")) or 0.0
    # a second peak counts as a rival estimate only when it is at least half as strong
    if second and second_weight > 0 and second_weight >= 0.5 * first_weight:
        track.bpm_alternatives["histogram second peak"] = second
    loop = number(rhythm.get("bpm_loop"))
    if loop:
        track.bpm_alternatives["loop tempo"] = loop
    track.danceability = number(rhythm.get("danceability"))


def _key(track: Track, doc: dict[str, Any]) -> None:
    key = lookup(doc, "tonal.key_key") or lookup(doc, "tonal.key.key")
    scale = lookup(doc, "tonal.key_scale") or lookup(doc, "tonal.key.scale")
    if isinstance(key, str) and isinstance(scale, str) and key and scale:
        track.key, track.scale = key, scale


def _classes(probabilities: dict[Any, Any]) -> dict[str, float]:
    """Finite numbers only; class names interned: 400 genres are stored once, not per
    track (and pickled once per worker batch)."""
    values = list(probabilities.values())
    try:
        usual = math.isfinite(math.fsum(values))  # numbers, all finite
    except TypeError:  # null or text among them
        usual = False
    if usual and bool not in set(map(type, values)):
        return dict(zip(map(sys.intern, map(str, probabilities)), values, strict=True))
    return {sys.intern(str(c)): float(p) for c, p in probabilities.items()
            if type(p) in (float, int) and -math.inf < p < math.inf}


def _vector(value: list[Any]) -> np.ndarray | None:
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # null or text inside
        return None
    if vector.ndim != 1 or not np.isfinite(vector).all():
        return None
    return vector.astype(np.float32)


def _models(track: Track, doc: dict[str, Any]) -> None:
    """Taxonomies (``{value, probability, all}``) and embedding vectors of every model
    section: highlevel.*, clap.*, and the sections of the user's own profiles."""
    for section, content in doc.items():
        if section in DESCRIPTOR_SECTIONS or not isinstance(content, dict):
            continue
        for name, value in content.items():
            label = f"{section}.{name}"
            if isinstance(value, dict) and isinstance(value.get("all"), dict):
                classes = _classes(value["all"])
                top = value.get("value")
                if classes and isinstance(top, str):
                    track.taxonomies[label] = Taxonomy(
                        sys.intern(top), number(value.get("probability")), classes)
            elif isinstance(value, list) and len(value) >= MIN_EMBEDDING_SIZE:
                vector = _vector(value)
                if vector is not None:
                    track.embeddings[label] = vector


def track_from_doc(doc: dict[str, Any], path: Path) -> Track:
    """The report's values of one output document."""
    profile = lookup(doc, "metadata.profile.name")
    md5 = lookup(doc, "metadata.audio_properties.md5_encoded")
    track = Track(name=track_name(doc, path), path=path, paths=[path],
                  profiles=[profile] if isinstance(profile, str) else [],
                  audio_id=md5 if isinstance(md5, str) and md5 else None,
                  describes=any(s in doc for s in DESCRIPTOR_SECTIONS - {"metadata"}))
    length = number(lookup(doc, "metadata.audio_properties.length"))
    track.duration = length if length is not None and length >= 0 else None
    _tempo(track, doc)
    _key(track, doc)
    track.loudness_lufs = number(lookup(doc, "lowlevel.loudness_ebu128.integrated"))
    track.average_loudness = number(lookup(doc, "lowlevel.average_loudness"))
    _models(track, doc)
    dance_model = track.taxonomies.get("highlevel.danceability")
    if dance_model is not None:
        track.danceable = dance_model.classes.get("danceable")
    warnings = lookup(doc, "metadata.warnings")
    if isinstance(warnings, list):
        track.warnings = [w for w in warnings if isinstance(w, str)]
    return track


def merge(parts: list[Track]) -> Track:
    """One Track of the outputs of several profiles for the same audio: the descriptor
    output first (its values win, its JSON is the one linked), then the model outputs
    (clap, music-highlevel) fill in what it lacks."""
    parts = sorted(parts, key=lambda t: not t.describes)  # stable: folder order otherwise
    merged = dataclasses.replace(parts[0], paths=[], profiles=[], bpm_alternatives={},
                                 taxonomies={}, embeddings={}, warnings=[])
    for part in parts:
        merged.paths += part.paths
        merged.profiles += part.profiles
        merged.warnings += [w for w in part.warnings if w not in merged.warnings]
        for name in ("duration", "bpm", "key", "scale", "loudness_lufs", "average_loudness",
                     "danceability", "danceable"):
            if getattr(merged, name) is None:
                setattr(merged, name, getattr(part, name))
        for mapping in ("bpm_alternatives", "taxonomies", "embeddings"):
            for key, value in getattr(part, mapping).items():
                getattr(merged, mapping).setdefault(key, value)
    merged.describes = any(t.describes for t in parts)
    return merged
