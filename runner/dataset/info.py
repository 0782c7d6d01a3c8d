"""Merging features into a dataset's ``TRACK.INFO`` (a flat JSON object beside the audio)
without losing anyone's keys.

Other tools write into the same file (taggers, captioners, a second feature run), so:

- keys this update does not produce are kept as they are;
- a key it produces that is already there keeps its value unless ``overwrite`` (the caller
  counts the kept keys and says so once per batch);
- the update is a read-modify-write under an exclusive ``flock`` on a side file
  ``.TRACK.INFO.lock``, so two processes updating one file at once lose nothing; the new
  content is written to a temporary file and renamed over the old one, so a reader never
  sees half a file.

The lock file is removed by its holder before the lock is let go; a process that was waiting
on the removed file sees that it is no longer at the path and locks the new one (the claims
of runner.batch do the same). A killed holder's lock goes with its process.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import OutputError
from runner.output import write_atomic

INFO_SUFFIX = ".INFO"
LOCK_WAIT_SECONDS = 120.0  # another process's update takes milliseconds; a hung one is named


def info_path(audio: Path) -> Path:
    """``song.flac`` -> ``song.INFO`` (the dataset layout: features beside the audio)."""
    return audio.with_suffix(INFO_SUFFIX)


def lock_path(info: Path) -> Path:
    """The side file locked while ``info`` is updated: ``.song.INFO.lock`` beside it."""
    return info.with_name(f".{info.name}.lock")


@contextmanager
def locked(info: Path, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the exclusive lock of ``info`` (see the module docstring); one line naming the
    file when it cannot be had within ``wait`` seconds or the folder has no locks."""
    path = lock_path(info)
    deadline = time.monotonic() + wait
    try:
        info.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{info}: cannot write output: cannot make the folder "
                          f"{info.parent} ({exc.strerror})") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"{info}: cannot lock for update: {exc.strerror}") from None
        if _lock_within(fd, deadline, info):
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
        os.close(fd)  # removed by its last holder while we waited: lock the new one
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def _lock_within(fd: int, deadline: float, info: Path) -> bool:
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OutputError(f"{info}: another process has held its lock "
                                  f"({lock_path(info).name}) for over {LOCK_WAIT_SECONDS:.0f} s"
                                  ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"{info}: cannot lock for update: {exc.strerror} (the folder's "
                              "file system has no locks)") from None


@dataclass
class Merge:
    """What one update did: keys added, replaced (``overwrite``), kept (already there)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def read_info(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} where there is no file); one line when it is not one:
    a file we cannot read is never replaced (its keys would be lost)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot read the existing INFO "
                          f"({getattr(exc, 'strerror', None) or exc}); left as it is") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise OutputError(f"{path}: the existing INFO is not JSON ({exc}); left as it is: fix "
                          "or remove it") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path}: the existing INFO is not a JSON object; left as it is: fix "
                          "or remove it")
    return data


def plain(value: Any) -> Any:
    """A feature value as strict JSON: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def merge_info(path: Path, values: dict[str, Any], overwrite: bool = False) -> Merge:
    """Merge ``values`` into the INFO at ``path`` (made where absent), under its lock,
    written atomically. Keys already there keep their values unless ``overwrite``."""
    merge = Merge()
    with locked(path):
        current = read_info(path)
        for key, value in values.items():
            if key not in current:
                merge.added.append(key)
            elif current[key] == plain(value):
                continue
            elif overwrite:
                merge.replaced.append(key)
            else:
                merge.kept.append(key)
                continue
            current[key] = plain(value)
        if merge.added or merge.replaced or not path.exists():
            write_atomic(path, json.dumps(current, indent=2, sort_keys=True, ensure_ascii=False,
                                          allow_nan=False) + "\n")
    return merge
