"""Writing outputs: formats by extension, checks before any analysis, and atomic writes
(a temporary file beside the target, then a rename), so no output is ever half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from runner import procs
from runner.errors import OutputError

FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def output_format(path: str | Path, default: str) -> str:
    """The format an output is written in: its extension's (.json, .yaml, .yml), else the
    profile's (``output.format``, Essentia's ``outputFormat``). A file named ``.yaml`` never
    holds JSON."""
    return FORMATS.get(Path(path).suffix.lower(), default)


def names_folder(path: str) -> bool:
    """Whether an OUTPUT argument means a folder: it ends in a path separator or is one."""
    return path.endswith(("/", os.sep)) or Path(path).is_dir()


def check_writable(path: str | Path) -> None:
    """Refuse, before any analysis, an output that could not be written: its folder cannot
    be made, or nothing can be created there (read-only, /proc, permissions). Makes nothing."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{path}: cannot write output: it is a folder")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{path}: cannot write output: {ancestor} is not a folder")
    _probe(path, ancestor)


def prepare_folder(folder: str | Path) -> None:
    """Make an output folder (and its parents) and check that files can be created in it."""
    where = Path(folder)
    if where.exists() and not where.is_dir():
        raise OutputError(f"{folder}: cannot write output: it is a file, not a folder")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write output: cannot make the folder "
                          f"({_reason(exc)})") from None
    _probe(folder, where)


def _probe(label: str | Path, folder: Path) -> None:
    try:
        handle, probe = tempfile.mkstemp(prefix=".extractor-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"{label}: cannot write output: cannot create a file in {folder} "
                          f"({_reason(exc)})") from None
    os.close(handle)
    os.unlink(probe)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def render(doc: dict[str, Any], fmt: str, indent: int) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=True, default_flow_style=None, width=100)
    return json.dumps(doc, indent=indent or None, sort_keys=True, ensure_ascii=False) + "\n"


def write_npy_atomic(path: str | Path, array: Any) -> None:
    """A NumPy array as .npy, written like every output: temporary file, then rename."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    _write_bytes_atomic(Path(path), buffer.getvalue())


def write_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename: never a half-written output.

    The temporary file is named ``.<name>.<pid>@<host>.<random>.tmp``: a later run removes it
    once that process is gone (batch.remove_stale_temporaries), never while it writes.
    Whatever the system refuses becomes one line: ``OUT: cannot write output: <reason>``.
    """
    _write_bytes_atomic(Path(path), text.encode("utf-8"))


def write_in_place(path: str | Path, text: str) -> None:
    """Rewrite an existing output in its own file (same inode), the finished document at once.

    Essentia's binary writes into OUT itself, and some callers read the result through a
    handle they hold open on OUT (abzer passes a NamedTemporaryFile): a rename would give the
    path a new file that such a reader never sees. The document is complete before the file
    is touched, so only a kill during this one write (milliseconds) could leave it partial;
    the commands of our own spelling always write a new file and rename it instead.
    """
    target = Path(path)
    data = text.encode("utf-8")
    try:
        with open(target, "r+b") as out:
            out.write(data)
            out.truncate()
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output: {_reason(exc)}") from None


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Bytes, written like every output (see write_atomic)."""
    _write_bytes_atomic(Path(path), data)


def temporary_prefix(target: Path) -> str:
    return f".{target.name}.{procs.tag()}."


def _write_bytes_atomic(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, FileExistsError) else _reason(exc)
        raise OutputError(f"{target}: cannot write output: cannot make the folder "
                          f"{target.parent} ({why})") from None
    try:
        handle, tmp = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp",
                                       dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output: cannot create a file in "
                          f"{target.parent} ({_reason(exc)})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, IsADirectoryError):
            raise OutputError(f"{target}: cannot write output: it is a folder") from None
        if isinstance(exc, OSError):
            raise OutputError(f"{target}: cannot write output: {_reason(exc)}") from None
        raise
