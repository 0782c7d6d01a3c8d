"""music-embeddings' per-file job: the embeddings profile (runner/profiles/embeddings.yaml)
with one model output per requested model, its frames written as ``BASE/<model>/<mirrored
path>.npy``; and the manifest (``BASE/<model>/model.json``) that says what made them. With
``--midi``, basic-pitch's notes also go to ``BASE/midi/<mirrored path>.mid``.

Each worker builds one Extractor, so every model loads once per worker (never per file) and
the track is decoded once for all of them. A job's output path is the first model's file;
the others are the same relative path under their own folders. Every .npy is written
atomically, so an interrupted batch leaves only complete files and a rerun does the rest.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.batch.inputs import Job
from runner.batch.work import share_torch_threads
from runner.errors import UsageError

PROFILE = "embeddings"
MANIFEST = "model.json"
POOLS = ("none", "mean")
MIDI = "midi"  # the folder of --midi's files
MIDI_MODEL = "basic-pitch"  # the lock-file model whose frames make them


@dataclass(frozen=True)
class Request:
    """One model of a music-embeddings run: the folder name given on the command line, the
    lock-file model it runs, that model's settings, and what is written: its rows
    (``embeddings``) or its head's class probabilities (``tags``)."""

    name: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    output: str = "embeddings"

    def override(self) -> str:
        """The output entry of the embeddings profile (YAML flow)."""
        params = json.dumps(self.params) if self.params else "{}"
        return f"{{model: {self.model}, output: {self.output}, params: {params}}}"

    @property
    def key(self) -> str:
        """Its array in the model stage's ``embeddings``."""
        from runner.models.framewise import tags_key

        return self.model if self.output == "embeddings" else tags_key(self.model)

    def served_by(self, present: Iterable[str]) -> str:
        """The model whose frames and files answer this request among ``present`` (arrays or
        pins of a run): its own, or those of the model standing in for it (a lock entry that
        ``provides`` it, as the musicnn converted from PyPI does MTG's msd-musicnn-1)."""
        present = list(present)
        if self.key in present or self.output != "embeddings":
            return self.key
        from runner.models.supply import lock

        table = lock.models()
        return next((other for other in present
                     if other in table and self.model in table[other].provides), self.key)


def overrides(requests: list[Request]) -> list[str]:
    """``--set`` overrides giving the embeddings profile one output per request (a name that
    is no output name, e.g. the lock-file id ``crepe-full``, is named by its position)."""
    body = ", ".join(f"{r.name if re.fullmatch(r'[A-Za-z0-9_]+', r.name) else f'model{i}'}: "
                     f"{r.override()}" for i, r in enumerate(requests))
    return [f"models.outputs={{{body}}}"]


def pooled(frames: np.ndarray, pool: str) -> np.ndarray:
    """The array written: every frame (``none``) or their mean (``mean``: (D,), or (1,) for a
    model with one number per frame)."""
    frames = np.asarray(frames, dtype=np.float32)
    if pool == "none":
        return frames
    return np.atleast_1d(frames.mean(axis=0) if len(frames) else
                         np.zeros(frames.shape[1:], dtype=np.float32))


class EmbeddingsWork:
    """The embeddings profile compiled once per worker, its models loaded once; per file, one
    .npy per model."""

    def __init__(self, requests: list[Request], base: str, pool: str, threads: int,
                 midi: dict[str, Any] | None = None) -> None:
        """``midi``: basic-pitch's note settings, to write each track's notes as MIDI."""
        from runner.extract import Extractor

        self.requests = list(requests)
        self.base = Path(base)
        self.pool = pool
        self.midi = midi
        self.extractor = Extractor(PROFILE, overrides(self.requests), warn=False)
        share_torch_threads(threads)

    def __call__(self, src: str, dst: str) -> list[str]:
        from runner.output import write_npy_atomic

        doc, analysis = self.extractor.analyse(src)
        relative = Path(dst).relative_to(self.base / self.requests[0].name)
        for request in self.requests:
            frames = analysis.models.embeddings[request.served_by(analysis.models.embeddings)]
            write_npy_atomic(self.base / request.name / relative, pooled(frames, self.pool))
        if self.midi is not None:
            from runner.models.basic_pitch import notes
            from runner.output.midi import write_midi_atomic

            write_midi_atomic(self.base / MIDI / relative.with_suffix(".mid"),
                              notes(analysis.models.embeddings[MIDI_MODEL], **self.midi))
        return list(doc["metadata"]["warnings"])


def paths(job: Job, base: Path, requests: list[Request], midi: bool = False) -> list[Path]:
    """Every file a job writes: its .npy files (the first is ``job.output``), and its .mid."""
    relative = job.output.relative_to(base.resolve() / requests[0].name)
    return [base.resolve() / r.name / relative for r in requests] + (
        [base.resolve() / MIDI / relative.with_suffix(".mid")] if midi else [])


def manifest(request: Request, pins: dict[str, str], pool: str, digest: str,
             license_: str, labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """What made the files of one model folder: compared before a batch reuses them; a tags
    folder also names its columns (``labels``)."""
    made = {"model": request.model, "params": request.params, "pool": pool,
            "files": pins, "license": license_, "profile_hash": digest}
    if request.output != "embeddings":
        made.update(output=request.output, labels=list(labels))
    return made


def check_manifests(base: Path, wanted: dict[str, dict[str, Any]], force: bool) -> None:
    """Refuse to mix files made otherwise (another model, settings, weights or pool) into a
    model folder, unless ``force`` (then every file is recomputed); write the manifests."""
    for name, data in wanted.items():
        path = base / name / MANIFEST
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = None
        if existing is not None and existing != data and not force:
            changed = sorted(k for k in data if existing.get(k) != data[k])
            raise UsageError(f"{base / name}: made with another {', '.join(changed)} "
                             f"({path}); --force recomputes every file, or choose another "
                             "--output-base")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.part")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
