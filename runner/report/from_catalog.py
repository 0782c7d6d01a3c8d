"""The report's tracks read from a catalog (``extractor report --db URL``) instead of a folder.

The catalog (runner/catalog/) keeps what the report shows: scalars by dotted name, class
probabilities in ``tags``, embeddings in ``vectors``. This module builds the same
:class:`Track` per output that tracks.py builds from the JSON, then merges the outputs of the
same audio the same way, so every section of the page is the same whichever the source.
Only the scalars the report uses are read, never the hundreds of lowlevel statistics.

``metadata.warnings`` is one text in the catalog, the warnings joined by newlines. The links go
to ``output_root/output`` where ``output_root`` is the folder the last ``catalog update`` read
(recorded since this version), else the SQLite file's folder (the default place of a catalog),
else the folder the report is written to.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from runner.catalog.backend import Backend, connect
from runner.catalog.loading import LIST_SEPARATOR
from runner.catalog.schema import check_readable, meta
from runner.report.loading import Library
from runner.report.tracks import (
    DESCRIPTOR_SECTIONS,
    MIN_EMBEDDING_SIZE,
    Taxonomy,
    Track,
    merge,
    number,
)

NAMES = ["metadata.tags.artist", "metadata.tags.title", "metadata.tags.file_name",
         "metadata.audio_properties.md5_encoded", "metadata.warnings",
         "rhythm.bpm", "rhythm.bpm_histogram_first_peak_bpm",
         "rhythm.bpm_histogram_second_peak_bpm", "rhythm.bpm_histogram_first_peak_weight",
         "rhythm.bpm_histogram_second_peak_weight", "rhythm.bpm_loop", "rhythm.danceability",
         "tonal.key_key", "tonal.key_scale", "tonal.key.key", "tonal.key.scale",
         "lowlevel.loudness_ebu128.integrated", "lowlevel.average_loudness"]
DESCRIBING = sorted(DESCRIPTOR_SECTIONS - {"metadata"})
FLOAT_MAX = sys.float_info.max  # NaN and the infinities are outside


def _model_name(name: str) -> bool:
    """``section.name`` of a model section: what tracks.py reads as a taxonomy or embedding."""
    parts = name.split(".")
    return len(parts) == 2 and parts[0] not in DESCRIPTOR_SECTIONS


def _scalars(db: Backend) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """track id -> {name: value} for the names the report reads; and the taxonomies."""
    taxonomies = [row[0] for row in db.execute("SELECT DISTINCT taxonomy FROM tags")
                  if _model_name(row[0])]
    names = NAMES + [f"{t}.{part}" for t in taxonomies for part in ("value", "probability")]
    bools = {row[0] for row in db.execute(
        "SELECT name FROM descriptor_names WHERE kind = 'bool'")}
    values: dict[int, dict[str, Any]] = {}
    for start in range(0, len(names), 500):  # SQLite's limit on parameters
        chunk = names[start:start + 500]
        rows = db.execute("SELECT track_id, name, num, text FROM scalars WHERE name IN ("
                          + ", ".join("?" * len(chunk)) + ")", chunk)
        for track_id, name, num, text in rows:
            # a boolean is stored as 0/1, and tracks.py never reads one as a number
            values.setdefault(track_id, {})[name] = (
                text if text is not None else None if name in bools else num)
    return values, taxonomies


def _tags(db: Backend, taxonomies: list[str]) -> dict[int, dict[str, dict[str, float]]]:
    """track id -> taxonomy -> class -> probability: finite probabilities only (a 400-genre
    taxonomy is most of a catalog's rows, so the loop does as little as it can)."""
    wanted = {t: sys.intern(t) for t in taxonomies}
    found: dict[int, dict[str, dict[str, float]]] = {}
    last: tuple[int, str] | None = None
    classes: dict[str, float] = {}
    rows = db.execute("SELECT track_id, taxonomy, tag, probability FROM tags "
                      "WHERE probability BETWEEN ? AND ?", (-FLOAT_MAX, FLOAT_MAX))
    for track_id, taxonomy, tag, probability in rows:
        if (track_id, taxonomy) != last:
            last = (track_id, taxonomy)
            if taxonomy not in wanted:
                classes = {}  # filled, never stored
                continue
            classes = found.setdefault(track_id, {}).setdefault(wanted[taxonomy], {})
        classes[sys.intern(tag)] = probability
    return found


def _vectors(db: Backend) -> dict[int, dict[str, np.ndarray]]:
    found: dict[int, dict[str, np.ndarray]] = {}
    for track_id, name, dim, data in db.execute(
            "SELECT track_id, name, dim, data FROM vectors WHERE dim >= ?",
            (MIN_EMBEDDING_SIZE,)):
        if not _model_name(name):
            continue
        vector = np.frombuffer(bytes(data), dtype="<f4").astype(np.float32)
        if len(vector) == dim and np.isfinite(vector).all():
            found.setdefault(track_id, {})[name] = vector
    return found


def _describing(db: Backend) -> set[int]:
    """Tracks with a scalar of a descriptor section (lowlevel, rhythm, tonal, sfx)."""
    likes = " OR ".join("s.name LIKE ?" for _ in DESCRIBING)
    return {row[0] for row in db.execute(
        f"SELECT t.id FROM tracks t WHERE EXISTS (SELECT 1 FROM scalars s WHERE "
        f"s.track_id = t.id AND ({likes}))", [f"{s}.%" for s in DESCRIBING])}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _track(path: Path, profile: str, duration: Any, scalars: dict[str, Any],
           classes: dict[str, dict[str, float]], vectors: dict[str, np.ndarray],
           describes: bool) -> Track:
    """The Track that tracks.track_from_doc makes of the same output."""
    artist = _text(scalars.get("metadata.tags.artist"))
    title = _text(scalars.get("metadata.tags.title"))
    name = (f"{artist} - {title}" if artist and title else
            title or _text(scalars.get("metadata.tags.file_name")) or path.stem)
    md5 = scalars.get("metadata.audio_properties.md5_encoded")
    track = Track(name=name, path=path, paths=[path], profiles=[profile],
                  audio_id=md5 if isinstance(md5, str) and md5 else None, describes=describes)
    length = number(duration)
    track.duration = length if length is not None and length >= 0 else None
    bpm = number(scalars.get("rhythm.bpm"))
    track.bpm = bpm if bpm is not None and bpm > 0 else None
    first = number(scalars.get("rhythm.bpm_histogram_first_peak_bpm"))
    if first:
        track.bpm_alternatives["histogram first peak"] = first
    second = number(scalars.get("rhythm.bpm_histogram_second_peak_bpm"))
    first_weight = number(scalars.get("rhythm.bpm_histogram_first_peak_weight")) or 0.0
    second_weight = number(scalars.get("rhythm.bpm_histogram_second_peak_weight")) or 0.0
    if second and second_weight > 0 and second_weight >= 0.5 * first_weight:
        track.bpm_alternatives["histogram second peak"] = second
    loop = number(scalars.get("rhythm.bpm_loop"))
    if loop:
        track.bpm_alternatives["loop tempo"] = loop
    track.danceability = number(scalars.get("rhythm.danceability"))
    key = scalars.get("tonal.key_key") or scalars.get("tonal.key.key")
    scale = scalars.get("tonal.key_scale") or scalars.get("tonal.key.scale")
    if isinstance(key, str) and isinstance(scale, str) and key and scale:
        track.key, track.scale = key, scale
    track.loudness_lufs = number(scalars.get("lowlevel.loudness_ebu128.integrated"))
    track.average_loudness = number(scalars.get("lowlevel.average_loudness"))
    for taxonomy, probabilities in classes.items():
        top = scalars.get(f"{taxonomy}.value")
        if probabilities and isinstance(top, str):
            track.taxonomies[taxonomy] = Taxonomy(
                sys.intern(top), number(scalars.get(f"{taxonomy}.probability")), probabilities)
    track.embeddings = dict(vectors)
    if "highlevel.danceability" in track.taxonomies:
        track.danceable = track.taxonomies["highlevel.danceability"].classes.get("danceable")
    warning = scalars.get("metadata.warnings")
    track.warnings = warning.split(LIST_SEPARATOR) if isinstance(warning, str) else []
    return track


def output_root(db: Backend, report_dir: Path) -> Path:
    """The folder the catalog's ``output`` paths are relative to (see the module's note)."""
    recorded = meta(db, "output_root")
    if recorded:
        return Path(recorded)
    path = getattr(db, "path", None)
    return path.resolve().parent if isinstance(path, Path) else report_dir.resolve()


def load_catalog(url: str, report_dir: Path) -> tuple[Library, str]:
    """Every output in the catalog at ``url`` as the report's tracks, merged by audio as a
    folder's are; and the catalog's location for the page's title."""
    db = connect(url, read_only=True)
    try:
        check_readable(db)
        root = output_root(db, report_dir)
        scalars, taxonomies = _scalars(db)
        tags, vectors = _tags(db, taxonomies), _vectors(db)
        describing = _describing(db)
        rows = db.execute("SELECT id, output, profile, duration FROM tracks")
        location = db.location
    finally:
        db.close()
    # the order a folder is read in: sorted paths
    rows.sort(key=lambda row: PurePosixPath(row[1]).parts)
    library = Library(folder=root)
    parts: dict[Any, list[Track]] = {}
    for track_id, output, profile, duration in rows:
        track = _track(root / output, profile, duration, scalars.get(track_id, {}),
                       tags.get(track_id, {}), vectors.get(track_id, {}),
                       track_id in describing)
        parts.setdefault(track.audio_id if track.audio_id is not None else (track_id,),
                         []).append(track)
    library.tracks = [group[0] if len(group) == 1 else merge(group)
                      for group in parts.values()]
    return library, location
