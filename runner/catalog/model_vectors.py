"""One model's vectors from a catalog, for a search that embeds its query with that model
(``music-clap --text ... --db URL``).

A vector is only comparable with a query embedded by the same weights. Every output records the
weights of the models it used by sha256 (``metadata.models.used.<model>``, a scalar in the
catalog), so a track counts only where its output was computed with exactly the weights the
lock file pins now; the others are counted, never silently mixed in. Where a PostgreSQL
server has pgvector, the search ranks there (runner/catalog/pgvector.py) and only the counts
are read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.catalog import schema
from runner.catalog.backend import Backend

USED = "metadata.models.used."


@dataclass
class ModelVectors:
    """Paths (the audio files, else the outputs) and their vectors, one row each."""

    paths: list[str]
    matrix: np.ndarray
    other_model: int = 0  # tracks whose vector came from other weights (or none recorded)


def model_vectors(db: Backend, vector: str, model_id: str, pin: str) -> ModelVectors:
    """The vectors named ``vector`` whose output records ``model_id`` as used with ``pin`` (its
    weights' sha256, runner.models.family.used_pin); rows in the catalog's track order."""
    schema.check_readable(db)
    rows = db.execute(
        "SELECT v.track_id, t.path, t.output, v.data, s.text FROM vectors v "
        "JOIN tracks t ON t.id = v.track_id "
        "LEFT JOIN scalars s ON s.track_id = v.track_id AND s.name = ? "
        "WHERE v.name = ? ORDER BY v.track_id", (f"{USED}{model_id}", vector))
    paths = [path or output for _, path, output, _, used in rows if used == pin]
    data = [bytes(blob) for _, _, _, blob, used in rows if used == pin]
    matrix = (np.frombuffer(b"".join(data), dtype=np.float32).reshape(len(data), -1).copy()
              if data else np.zeros((0, 0), np.float32))
    return ModelVectors(paths, matrix, len(rows) - len(paths))


def model_counts(db: Backend, vector: str, model_id: str, pin: str) -> tuple[int, int]:
    """How many vectors called ``vector`` have ``model_id``'s pinned weights, and how many
    others (what model_vectors would return and leave out, without reading the vectors)."""
    schema.check_readable(db)
    rows = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN s.text = ? THEN 1 ELSE 0 END), 0) FROM "
        "vectors v LEFT JOIN scalars s ON s.track_id = v.track_id AND s.name = ? "
        "WHERE v.name = ?", (pin, f"{USED}{model_id}", vector))
    total, kept = (int(n) for n in rows[0])
    return kept, total - kept
