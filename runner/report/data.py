"""The report's sections as plain data, computed from the tracks (no HTML here).

Each function returns None where its section has no data, so the page leaves the section out
instead of drawing it empty. Silent tracks (``metadata.warnings``: ``silent: ...``) count in the
library and the table but in no chart: their tempo, key and loudness describe silence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.report.tracks import Track

# Two tempo estimates of one track are octave-ambiguous when one is about twice or three
# times the other (within this relative tolerance): the classic octave errors of tempo
# estimation, where both readings are defensible.
OCTAVE_FACTORS = (2.0, 3.0)
OCTAVE_TOLERANCE = 0.05

# Essentia's key names, placed on the circle of fifths; each minor key sits with its
# relative major (A minor with C major). Enharmonic spellings fold onto Essentia's.
FIFTHS_MAJOR = ["C", "G", "D", "A", "E", "B", "F#", "C#", "Ab", "Eb", "Bb", "F"]
FIFTHS_MINOR = ["A", "E", "B", "F#", "C#", "G#", "Eb", "Bb", "F", "C", "G", "D"]
ENHARMONIC = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb", "Cb": "B",
              "B#": "C", "E#": "F", "Fb": "E"}
MINOR_SPELLING = {"Ab": "G#"}  # G# minor is how the relative minor of B major is spelled

TOP_CLASSES = 15  # classes shown per taxonomy (genre_discogs400 has 400)


def charted(tracks: list[Track]) -> list[Track]:
    """The tracks the charts use: all but silence."""
    return [t for t in tracks if not t.silent]


def _ratio_near(a: float, b: float) -> bool:
    ratio = max(a, b) / min(a, b)
    return any(abs(ratio - f) <= f * OCTAVE_TOLERANCE for f in OCTAVE_FACTORS)


def octave_ambiguity(track: Track) -> str | None:
    """Which other estimate contradicts ``rhythm.bpm`` by an octave (x2, x3), if any."""
    if track.bpm is None:
        return None
    for name, other in track.bpm_alternatives.items():
        if other > 0 and _ratio_near(track.bpm, other):
            return f"{name} {other:.0f} BPM"
    return None


def library_summary(tracks: list[Track], unreadable: int, not_results: int
                    ) -> dict[str, Any]:
    """Size, total duration, profiles, doubtful tracks and skipped files."""
    durations = [t.duration for t in tracks if t.duration is not None]
    profiles = Counter(p for t in tracks for p in dict.fromkeys(t.profiles))
    return {
        "tracks": len(tracks),
        "duration_s": float(sum(durations)),
        "without_duration": len(tracks) - len(durations),
        "profiles": dict(profiles.most_common()),
        "with_warnings": sum(1 for t in tracks if t.warnings),
        "silent": sum(1 for t in tracks if t.silent),
        "unreadable": unreadable,
        "not_results": not_results,
    }


def tempo(tracks: list[Track]) -> dict[str, Any] | None:
    """``rhythm.bpm`` of every track, with how many are octave-ambiguous."""
    rows = [(t.bpm, octave_ambiguity(t)) for t in charted(tracks) if t.bpm is not None]
    if not rows:
        return None
    return {"tracks": len(rows), "ambiguous": sum(1 for _, why in rows if why),
            "median_bpm": float(np.median([bpm for bpm, _ in rows]))}


def _spelled(key: str, scale: str) -> tuple[str, str] | None:
    key = ENHARMONIC.get(key, key)
    scale = scale.lower()
    if scale == "minor":
        key = MINOR_SPELLING.get(key, key)
        return (key, "minor") if key in FIFTHS_MINOR else None
    if scale == "major":
        return (key, "major") if key in FIFTHS_MAJOR else None
    return None


def keys(tracks: list[Track]) -> list[dict[str, Any]] | None:
    """24 rows (12 major, 12 minor) in circle-of-fifths order, each with its track count."""
    counts: Counter[tuple[str, str]] = Counter()
    for t in charted(tracks):
        if t.key and t.scale and (spelled := _spelled(t.key, t.scale)):
            counts[spelled] += 1
    if not counts:
        return None
    rows = []
    for scale, names in (("major", FIFTHS_MAJOR), ("minor", FIFTHS_MINOR)):
        for position, key in enumerate(names):
            label = key if scale == "major" else f"{key}m"
            rows.append({"key": key, "scale": scale, "label": label, "position": position,
                         "tracks": counts[(key, scale)]})
    return rows


def _commoner(tracks: list[Track], first: tuple[str, str], second: tuple[str, str]
              ) -> tuple[str, str] | None:
    """The (attribute, label) more charted tracks have; ties go to ``first``."""
    pool = charted(tracks)
    counts = [sum(1 for t in pool if getattr(t, attr) is not None) for attr, _ in (first, second)]
    if not any(counts):
        return None
    return first if counts[0] >= counts[1] else second


def loudness_axis(tracks: list[Track]) -> tuple[str, str] | None:
    """Which loudness the library has most of: integrated LUFS (EBU R128) before Essentia's
    average loudness (0-1); one measure for all points, never a mix of both."""
    return _commoner(tracks, ("loudness_lufs", "integrated loudness (LUFS)"),
                     ("average_loudness", "average loudness (0-1)"))


def danceability_axis(tracks: list[Track]) -> tuple[str, str] | None:
    """Essentia's Danceability (0-3) or the classifier's probability: the one more tracks
    have (ties go to Essentia's, which the music profile always writes)."""
    return _commoner(tracks, ("danceability", "danceability (Essentia)"),
                     ("danceable", "danceable (classifier probability)"))


def loudness_danceability(tracks: list[Track]) -> dict[str, Any] | None:
    """The axes of the loudness/danceability scatter, None without a track that has both."""
    loud, dance = loudness_axis(tracks), danceability_axis(tracks)
    if loud is None or dance is None:
        return None
    both = [t for t in charted(tracks)
            if getattr(t, loud[0]) is not None and getattr(t, dance[0]) is not None]
    if not both:
        return None
    return {"x": loud[0], "x_title": loud[1], "y": dance[0], "y_title": dance[1],
            "tracks": len(both)}


@dataclass
class TaxonomyChart:
    name: str
    tracks: int
    classes: int
    rows: list[dict[str, Any]]  # class, tracks (whose top class it is), mean probability


@dataclass
class ClassMatrix:
    columns: dict[str, None]  # every class, in the order first seen
    values: np.ndarray  # tracks x classes; 0 where a track's output lacks the class


def _class_matrix(outputs: list[dict[str, float]]) -> ClassMatrix:
    """One model writes its classes in one order: rows are copied whole where the order is
    the usual one (400 genres x 10,000 tracks), looked up class by class elsewhere."""
    columns = dict.fromkeys(outputs[0])
    for classes in outputs:
        if classes.keys() != columns.keys():
            columns.update(dict.fromkeys(classes))
    order = list(columns)
    rows = [list(classes.values()) if list(classes) == order
            else [classes.get(c, 0.0) for c in order] for classes in outputs]
    return ClassMatrix(columns, np.array(rows, dtype=np.float64))


def taxonomies(tracks: list[Track]) -> list[TaxonomyChart]:
    """Per classifier (every taxonomy section present, the user's own models too): how many
    tracks each class tops, and the class's mean probability, for the top classes."""
    names = sorted({name for t in charted(tracks) for name in t.taxonomies})
    charts = []
    for name in names:
        outputs = [t.taxonomies[name] for t in charted(tracks) if name in t.taxonomies]
        tops = Counter(o.value for o in outputs)
        matrix = _class_matrix([o.classes for o in outputs])
        classes = list(matrix.columns)
        mean = dict(zip(classes, (matrix.values.sum(axis=0) / len(outputs)).tolist(),
                        strict=True))
        ranked = sorted(mean, key=lambda c: (-tops[c], -mean[c], c))[:TOP_CLASSES]
        rows = [{"class": c, "tracks": tops[c], "mean_probability": round(mean[c], 4)}
                for c in ranked]
        charts.append(TaxonomyChart(name, len(outputs), len(mean), rows))
    return charts


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components (rows: tracks); zeros where there is no spread."""
    centred = vectors - vectors.mean(axis=0)
    if len(vectors) < 2 or not np.any(centred):
        return np.zeros((len(vectors), 2))
    # eigenvectors of the d x d scatter matrix: 10,000 x 512 in a fraction of a second
    _, eigenvectors = np.linalg.eigh(centred.T @ centred)
    axes = eigenvectors[:, ::-1][:, :2]
    components = centred @ axes
    if components.shape[1] < 2:  # one-dimensional embeddings
        components = np.hstack([components, np.zeros((len(vectors), 1))])
    return components


def umap_2d(vectors: np.ndarray) -> np.ndarray | None:
    """UMAP where umap-learn is installed and there are enough tracks; else None."""
    if len(vectors) < 16:
        return None
    umap = _import_umap()
    if umap is None:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap: "n_jobs value 1 overridden to 1 by ..."
        return umap.UMAP(n_components=2, random_state=0, n_jobs=1).fit_transform(vectors)


def _import_umap() -> Any:
    """umap-learn without its ParametricUMAP: importing umap imports TensorFlow when it is
    installed, and that process crashed (a segmentation fault) beside Essentia's own
    libtensorflow. TensorFlow is hidden while umap loads (only its plain UMAP is used)."""
    import sys
    import warnings

    hidden = "tensorflow" not in sys.modules
    if hidden:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Tensorflow not installed; ParametricUMAP ..."
            import umap  # type: ignore[import-not-found]
    except ImportError:
        return None
    finally:
        if hidden:
            del sys.modules["tensorflow"]
    return umap


def embedding_maps(tracks: list[Track], method: str = "pca") -> list[dict[str, Any]]:
    """One 2-D map per embedding present in at least two tracks (CLAP, musicnn, ...):
    ``points`` holds (track index, x, y); vectors of another length than the most common
    one (another model under the same name) are left out."""
    maps = []
    names = sorted({name for t in charted(tracks) for name in t.embeddings},
                   key=lambda n: (not n.startswith("clap."), n))
    for name in names:
        members = [(i, t.embeddings[name]) for i, t in enumerate(tracks)
                   if not t.silent and name in t.embeddings]
        size = Counter(len(v) for _, v in members).most_common(1)[0][0]
        members = [(i, v) for i, v in members if len(v) == size]
        if len(members) < 2:
            continue
        vectors = np.stack([v for _, v in members]).astype(np.float64)
        used, xy = "PCA", None
        if method == "umap":
            xy = umap_2d(vectors)
            used = "UMAP" if xy is not None else "PCA (UMAP not installed or too few tracks)"
        if xy is None:
            xy = pca_2d(vectors)
        points = [(i, float(x), float(y)) for (i, _), (x, y) in zip(members, xy, strict=True)]
        maps.append({"name": name, "method": used, "dimensions": size, "points": points})
    return maps


TABLE_TAXONOMIES = 4  # top-class columns in the table (the most widely present first)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def dataset(tracks: list[Track], links: list[str], maps: list[dict[str, Any]]
            ) -> dict[str, Any]:
    """The one per-track table the page holds, shared by the track table and every chart:
    ``fields`` and ``rows`` (lists, not objects: a third of the size for 10,000 tracks)."""
    loud = loudness_axis(tracks)
    dance = danceability_axis(tracks)
    present = Counter(name for t in tracks for name in t.taxonomies)
    shown = sorted(present, key=lambda n: (-present[n], n))[:TABLE_TAXONOMIES]
    fields = ["name", "json", "duration", "bpm", "octave", "key", "loudness", "dance",
              *[f"top{n}" for n in range(len(shown))], "warnings", "silent",
              *[f"map{m}_{axis}" for m in range(len(maps)) for axis in "xy"]]
    coordinates: list[dict[int, tuple[float, float]]] = [
        {i: (x, y) for i, x, y in m["points"]} for m in maps]
    rows = []
    for i, (track, link) in enumerate(zip(tracks, links, strict=True)):
        key = f"{track.key} {track.scale}" if track.key and track.scale else None
        row: list[Any] = [
            track.name, link, _rounded(track.duration, 1), _rounded(track.bpm, 1),
            octave_ambiguity(track) or "", key,
            _rounded(getattr(track, loud[0]), 3) if loud else None,
            _rounded(getattr(track, dance[0]), 3) if dance else None,
            *[track.taxonomies[n].value if n in track.taxonomies else None for n in shown],
            "; ".join(track.warnings), track.silent,
        ]
        for points in coordinates:
            x, y = points.get(i, (None, None))
            row += [None if x is None else _significant(x),
                    None if y is None else _significant(y)]
        rows.append(row)
    titles = {"loudness": loud[1] if loud else "loudness",
              "dance": dance[1] if dance else "danceability",
              **{f"top{n}": name for n, name in enumerate(shown)}}
    return {"fields": fields, "rows": rows, "titles": titles}
