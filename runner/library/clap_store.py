"""Where music-clap keeps its per-track CLAP vectors, and reading them back fast.

* ``--dump DIR``: ``DIR/<path relative to the input folder>.npy``, mirroring the audio tree.
* otherwise the embedding cache: ``$LAION_CLAP_CACHE``, else ``$XDG_CACHE_HOME/laion_clap``,
  else ``~/.cache/laion_clap``; ``<cache>/<model id>/<xx>/<sha1 of the file's absolute
  path>.npy``. This holds only our per-track vectors: model checkpoints always come from the
  model cache (runner.models.supply.cache, pinned by the lock file), never from here.

Each store has a ``clap.json`` naming the model (and its files' sha256) and the windowing;
vectors of another model are never mixed in. A stored vector is reused while it is newer than
its audio file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from runner import batch
from runner.errors import ModelError
from runner.models.clap import DIM, WINDOWING
from runner.models.supply import lock
from runner.output import write_atomic

MANIFEST = "clap.json"
INDEX = "index.npz"  # all vectors of a store in one file (see load_vectors)
SUFFIX = ".npy"


def cache_dir() -> Path:
    """``$LAION_CLAP_CACHE``, then ``$XDG_CACHE_HOME/laion_clap``, then ``~/.cache/laion_clap``."""
    if os.environ.get("LAION_CLAP_CACHE"):
        return Path(os.environ["LAION_CLAP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "laion_clap"


def manifest(model: lock.Model) -> dict[str, Any]:
    """What a store's vectors were made with: reused only when this matches exactly."""
    return {"model": model.id, "files": {p.name: p.sha256 for p in model.files},
            "windowing": WINDOWING, "dim": DIM}


def check_store(root: Path, model: lock.Model, refresh: bool) -> None:
    """Refuse to mix vectors of two models (or windowings) in one store; then claim it."""
    wanted = manifest(model)
    path = root / MANIFEST
    if path.exists() and not refresh:
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
        if found != wanted:
            other = found.get("model") if isinstance(found, dict) else "unreadable"
            raise ModelError(f"{root} holds CLAP vectors of another model or windowing "
                             f"({other}); use another --dump folder, or --refresh to replace "
                             "them")
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def cache_jobs(pairs: list[tuple[Path, Path]], root: Path) -> list[batch.Job]:
    """Jobs whose outputs are keyed by the audio file's absolute path (no tree to mirror)."""
    jobs: list[batch.Job] = []
    seen: set[str] = set()
    for path, _ in pairs:
        key = str(path.resolve())
        if key in seen:
            continue
        seen.add(key)
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        jobs.append(batch.Job(len(jobs), path, root / digest[:2] / (digest + SUFFIX)))
    return jobs


def is_current(job: batch.Job) -> bool:
    """A stored vector newer than its audio file (an edited file is embedded again)."""
    try:
        return job.output.stat().st_mtime >= job.input.stat().st_mtime
    except OSError:
        return False


def save_vector(path: Path, vector: np.ndarray) -> None:
    """Atomically (a kill leaves a stale ``.*.tmp``, which the batch engine removes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, np.asarray(vector, dtype=np.float32))
    os.replace(temporary, path)


def load_vectors(jobs: list[batch.Job], root: Path | None = None
                 ) -> tuple[list[batch.Job], np.ndarray]:
    """The jobs whose vector exists and is well formed, and those vectors as (n, 512).

    Reading 10,000 small ``.npy`` files takes over a second; so the store keeps them all in
    one ``index.npz`` too (vectors, plus each file's name, mtime and size). A vector whose
    file still has the recorded mtime and size comes from the index; others are read from
    their file, and the index is rewritten. The ``.npy`` files stay the truth.
    """
    known: dict[str, tuple[tuple[int, int], int]] = {}
    table = np.zeros((0, DIM), np.float32)
    index = root / INDEX if root else None
    if index and index.exists():
        try:
            with np.load(index, allow_pickle=False) as data:
                table = data["vectors"]
                known = {str(k): ((int(m), int(z)), i) for i, (k, m, z) in
                         enumerate(zip(data["keys"], data["mtimes"], data["sizes"], strict=True))}
        except (OSError, ValueError, KeyError):
            known = {}
    kept: list[batch.Job] = []
    rows: list[np.ndarray] = []
    stamps: list[tuple[str, int, int]] = []
    changed = False
    for job in jobs:
        try:
            stat = job.output.stat()
        except OSError:
            continue
        key = str(job.output.relative_to(root)) if root else str(job.output)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if key in known and known[key][0] == stamp:
            vector = table[known[key][1]]
        else:
            changed = True
            try:
                vector = np.load(job.output, allow_pickle=False)
            except (OSError, ValueError):
                continue
            if vector.shape != (DIM,) or not np.all(np.isfinite(vector)):
                continue
        kept.append(job)
        rows.append(vector)
        stamps.append((key, *stamp))
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, DIM), np.float32)
    if index and (changed or len(stamps) != len(known)):
        _write_index(index, matrix, stamps)
    return kept, matrix


def _write_index(path: Path, matrix: np.ndarray, stamps: list[tuple[str, int, int]]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, vectors=matrix, keys=np.array([k for k, _, _ in stamps], dtype=str),
                     mtimes=np.array([m for _, m, _ in stamps], dtype=np.int64),
                     sizes=np.array([z for _, _, z in stamps], dtype=np.int64))
        os.replace(temporary, path)
    except OSError:  # a read-only store still answers, only slower
        temporary.unlink(missing_ok=True)
