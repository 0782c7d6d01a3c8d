"""The model lock file (models.lock.json): the single list of models, their files and pins.

The runner, `extractor models` and flake.nix all read this one file. A model is either a set
of files downloaded as they are (``files``: URL, sha256, size), or built here from a pinned
``source`` by a ``convert`` tool (the musicnn checkpoints in a PyPI wheel).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from runner.errors import ModelError

LOCK_FILE = Path(__file__).resolve().parent.parent / "models.lock.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    """One downloadable file, pinned by content."""

    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Model:
    id: str
    description: str
    license: str
    kind: str  # "tensorflow" (Essentia TensorFlow graph), or a backend such as "laion-clap"
    algorithm: str | None  # the Essentia algorithm that runs a tensorflow model
    groups: tuple[str, ...]
    files: tuple[Pin, ...]  # downloaded as they are
    source: Pin | None = None  # converted from this (then ``files`` is empty)
    convert: dict[str, Any] = field(default_factory=dict)
    graph: str | None = None  # the .pb among the model's files
    metadata: str | None = None  # the MTG-style metadata JSON among them
    provides: tuple[str, ...] = ()  # other model ids this one can stand in for
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific fields

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the files the model consists of once present."""
        names = [pin.name for pin in self.files]
        for name in (self.graph, self.metadata):
            if name and name not in names:
                names.append(name)
        return tuple(names)


_KNOWN = {"description", "license", "kind", "algorithm", "groups", "files", "source", "convert",
          "graph", "metadata", "provides"}


def _pin(model_id: str, data: Any) -> Pin:
    try:
        pin = Pin(str(data["name"]), str(data["url"]), str(data["sha256"]), int(data["size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{LOCK_FILE}: model '{model_id}': bad file entry ({exc})") from None
    if not _SHA256.match(pin.sha256):
        raise ModelError(f"{LOCK_FILE}: model '{model_id}': {pin.name}: sha256 is not "
                         "64 lowercase hex digits")
    if "/" in pin.name or pin.name.startswith("."):
        raise ModelError(f"{LOCK_FILE}: model '{model_id}': bad file name {pin.name!r}")
    return pin


def parse(data: dict[str, Any], where: Path = LOCK_FILE) -> dict[str, Model]:
    """Models by id, checked: every pin well formed, every named graph/metadata a file."""
    if data.get("format") != 1:
        raise ModelError(f"{where}: unknown lock file format {data.get('format')!r}")
    models: dict[str, Model] = {}
    for model_id, entry in data.get("models", {}).items():
        files = tuple(_pin(model_id, f) for f in entry.get("files", []))
        source = _pin(model_id, entry["source"]) if "source" in entry else None
        if bool(source) != bool(entry.get("convert")):
            raise ModelError(f"{where}: model '{model_id}': 'source' and 'convert' go together")
        model = Model(
            id=model_id,
            description=entry.get("description", ""),
            license=entry.get("license", ""),
            kind=entry.get("kind", "tensorflow"),
            algorithm=entry.get("algorithm"),
            groups=tuple(entry.get("groups", [])),
            files=files,
            source=source,
            convert=dict(entry.get("convert", {})),
            graph=entry.get("graph"),
            metadata=entry.get("metadata"),
            provides=tuple(entry.get("provides", [])),
            extra={k: v for k, v in entry.items() if k not in _KNOWN},
        )
        if not source:
            names = {pin.name for pin in files}
            for name in (model.graph, model.metadata):
                if name and name not in names:
                    raise ModelError(f"{where}: model '{model_id}': {name} is not among its files")
        models[model_id] = model
    return models


@lru_cache(maxsize=1)
def models() -> dict[str, Model]:
    """The packaged lock file's models, then those of ``$EXTRACTOR_MODELS_LOCK``.

    ``$EXTRACTOR_MODELS_LOCK`` (``os.pathsep``-separated lock files, same format) adds
    models the package does not ship: private ones, or the tiny ones the tests build. It is
    an environment variable so that worker processes see the same models as their parent.
    """
    with open(LOCK_FILE, encoding="utf-8") as handle:
        table = parse(json.load(handle))
    for extra in filter(None, os.environ.get("EXTRACTOR_MODELS_LOCK", "").split(os.pathsep)):
        try:
            with open(extra, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{extra}: cannot read lock file ($EXTRACTOR_MODELS_LOCK): "
                             f"{exc}") from None
        table.update(parse(data, Path(extra)))
    return table


def get(model_id: str) -> Model:
    table = models()
    if model_id not in table:
        from difflib import get_close_matches

        close = get_close_matches(model_id, table, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else " (see: extractor models list)"
        raise ModelError(f"unknown model '{model_id}'{hint}")
    return table[model_id]


def select(names: list[str]) -> list[Model]:
    """Models named by id or by group (e.g. ``highlevel``), in lock-file order."""
    table = models()
    chosen: list[str] = []
    for name in names:
        group = [m.id for m in table.values() if name in m.groups]
        ids = group or [get(name).id]
        chosen += [i for i in ids if i not in chosen]
    return [table[i] for i in chosen]
