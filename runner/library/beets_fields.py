"""Our output documents as beets fields: what the beets plugin (beetsplug/extractor.py) stores.

``bpm`` and ``initial_key`` are beets' own fields (an integer; a key written ``C``, ``Am``,
``C#m``: sharps, as beets' MusicalKey type normalises them). The rest are flexible
attributes named as beets-xtractor named them (``danceability``, ``beats_count``,
``average_loudness``, ``danceable``, ``mood_happy``, ``mood_mirex``, ...), then as beets'
acousticbrainz plugin named them where beets-xtractor had no name (``key_strength``,
``chords_key``, ``tonal``, ...), so the queries people already keep go on working. Every
other taxonomy present (``highlevel.genre_discogs400``, the user's own models) gives its top
class under its own name. Pure functions of the document: no beets import here.
"""

from __future__ import annotations

import math
from typing import Any

from runner.tree import lookup

FieldValue = int | float | str

# beets-xtractor 0.4.2's low_level_targets, then acousticbrainz's ABSCHEME names it lacked
NUMBERS: dict[str, tuple[str, type]] = {
    "danceability": ("rhythm.danceability", float),
    "beats_count": ("rhythm.beats_count", int),
    "average_loudness": ("lowlevel.average_loudness", float),
    "key_strength": ("tonal.key_strength", float),
    "chords_changes_rate": ("tonal.chords_changes_rate", float),
    "chords_number_rate": ("tonal.chords_number_rate", float),
}
TEXTS: dict[str, str] = {
    "chords_key": "tonal.chords_key",
    "chords_scale": "tonal.chords_scale",
}
# highlevel taxonomies: field -> (section entry, class whose probability it holds); a class of
# None: the entry's top class (its "value")
CLASSES: dict[str, tuple[str, str | None]] = {
    "danceable": ("danceability", "danceable"),
    "gender": ("gender", None),
    "is_male": ("gender", "male"),
    "is_female": ("gender", "female"),
    "genre_rosamerica": ("genre_rosamerica", None),
    "voice_instrumental": ("voice_instrumental", None),
    "is_voice": ("voice_instrumental", "voice"),
    "is_instrumental": ("voice_instrumental", "instrumental"),
    **{f"mood_{m}": (f"mood_{m}", m) for m in
       ("acoustic", "aggressive", "electronic", "happy", "sad", "party", "relaxed")},
    "mood_mirex": ("moods_mirex", None),
    "tonal": ("tonal_atonal", "tonal"),
    "timbre": ("timbre", None),
}
DECIMALS = 6
MIREX_CLUSTERS = 5  # mood_mirex_cluster_1 .. _5: the classes of moods_mirex, in order
# sections that hold descriptors, not taxonomies
DESCRIPTOR_SECTIONS = frozenset({"metadata", "lowlevel", "rhythm", "tonal", "sfx"})
# beets' spelling of the keys Essentia writes with flats
SHARPS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}


def _number(value: Any) -> float | None:
    """A finite float to 6 decimals (as beets shows them, and stores them unchanged), or None
    (null, NaN, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return round(float(value), DECIMALS) if math.isfinite(value) else None


def beets_bpm(value: Any) -> int | None:
    """beets stores ``bpm`` as an integer; 0 or less means no beat was found (None)."""
    bpm = _number(value)
    return round(bpm) if bpm is not None and bpm > 0 else None


def beets_key(key: Any, scale: Any) -> str | None:
    """Essentia's ``Bb`` + ``minor`` as beets writes it: ``A#m``; ``C`` + ``major``: ``C``."""
    if not isinstance(key, str) or scale not in ("major", "minor"):
        return None
    key = key.strip()
    key = SHARPS.get(key, key)
    if not key or key[0] not in "ABCDEFG" or key[1:] not in ("", "#"):
        return None
    return key + ("m" if scale == "minor" else "")


def no_tempo_or_key(doc: dict[str, Any]) -> bool:
    """Silence, and audio too short for every statistic (a truncated file), have a tempo and
    a key that mean nothing (docs/output.md): the item keeps the ones it had."""
    warnings = lookup(doc, "metadata.warnings")
    return isinstance(warnings, list) and any(
        isinstance(w, str) and w.startswith(("silent", "too short")) for w in warnings)


def _taxonomy_fields(doc: dict[str, Any], reserved: frozenset[str]) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    highlevel = doc.get("highlevel")
    highlevel = highlevel if isinstance(highlevel, dict) else {}
    named: set[str] = set()
    for field, (entry, label) in CLASSES.items():
        value = lookup(highlevel, f"{entry}.all.{label}" if label else f"{entry}.value")
        if label is None and isinstance(value, str) and value:
            fields[field] = value
        elif label is not None and _number(value) is not None:
            fields[field] = _number(value)
        named.add(entry)
    clusters = lookup(highlevel, "moods_mirex.all")
    if isinstance(clusters, dict):
        # Essentia's labels (Cluster1 ... Cluster5) by name, MTG's five in their order
        named_clusters = [f"Cluster{n}" for n in range(1, MIREX_CLUSTERS + 1)]
        if any(name in clusters for name in named_clusters):
            probabilities = [clusters.get(name) for name in named_clusters]
        else:
            probabilities = list(clusters.values()) if len(clusters) == MIREX_CLUSTERS else []
        for number, probability in enumerate(probabilities, start=1):
            if _number(probability) is not None:
                fields[f"mood_mirex_cluster_{number}"] = _number(probability)
    for section, content in doc.items():
        if section in DESCRIPTOR_SECTIONS or not isinstance(content, dict):
            continue
        for name, value in content.items():
            if section == "highlevel" and name in named:
                continue
            top = value.get("value") if isinstance(value, dict) else None
            if isinstance(top, str) and top and isinstance(value.get("all"), dict):
                field = name if section == "highlevel" else f"{section}_{name}"
                # a model named like one of beets' own fields (genre, mood, ...) never
                # replaces the user's tag: it goes under its section's name
                fields[f"{section}_{name}" if field in reserved else field] = top
    return fields


def beets_fields(doc: dict[str, Any], reserved: frozenset[str] = frozenset()
                 ) -> dict[str, FieldValue]:
    """The beets fields of one output document; values that are missing are left out (an
    item keeps what it had rather than get a wrong value). ``reserved``: beets' own field
    names (``Item._fields``), which only ``bpm`` and ``initial_key`` may set."""
    fields: dict[str, FieldValue] = {}
    if not no_tempo_or_key(doc):
        bpm = beets_bpm(lookup(doc, "rhythm.bpm"))
        if bpm is not None:
            fields["bpm"] = bpm
        key = beets_key(lookup(doc, "tonal.key_key"), lookup(doc, "tonal.key_scale"))
        if key is not None:
            fields["initial_key"] = key
    for field, (path, kind) in NUMBERS.items():
        value = _number(lookup(doc, path))
        if value is not None:
            fields[field] = round(value) if kind is int else value
    for field, path in TEXTS.items():
        text = lookup(doc, path)
        if isinstance(text, str) and text:
            fields[field] = text
    fields.update(_taxonomy_fields(doc, reserved))
    return fields


def numeric_fields() -> dict[str, type]:
    """The flexible attributes that hold numbers (beets needs their types for range queries
    such as ``danceability:0.5..``): name -> int or float."""
    types: dict[str, type] = {name: kind for name, (_, kind) in NUMBERS.items()}
    types.update({name: float for name, (_, label) in CLASSES.items() if label is not None})
    types.update({f"mood_mirex_cluster_{n}": float for n in range(1, MIREX_CLUSTERS + 1)})
    return types
