"""What a profile reference names: a built-in profile (``music``) or a file (``./mine.yaml``)."""

from __future__ import annotations

import difflib
import stat
from pathlib import Path

from runner.errors import ProfileError


def builtin_dir() -> Path:
    """Where the built-in profiles live (the repo's profiles/ or the installed copy)."""
    return Path(__file__).resolve().parent.parent / "profiles"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml") if not p.stem.startswith("_"))


def is_builtin(source: str) -> bool:
    """Whether ``source`` is one of the built-in profile files (never the user's to fix)."""
    try:
        return Path(source).resolve().parent == builtin_dir().resolve()
    except (OSError, ValueError):
        return False


def resolve_reference(ref: str, relative_to: Path | None = None) -> Path:
    """A profile reference is a built-in name or a path (relative to the referring file).

    A bare built-in name (``music``, no folder, no extension) is always the built-in: a folder
    or file of that name where the command runs (a ``music/`` folder beside the library is
    common) must not take its place. ``./music`` names such a file.
    """
    if "/" not in ref and not Path(ref).suffix and (builtin_dir() / f"{ref}.yaml").exists():
        return builtin_dir() / f"{ref}.yaml"
    candidate = Path(ref).expanduser()
    if relative_to is not None and not candidate.is_absolute():
        near = relative_to.parent / candidate
        if near.exists():
            return _regular_file(near, ref)
    if candidate.exists():
        return _regular_file(candidate, ref)
    builtin = builtin_dir() / f"{ref}.yaml"
    if "/" not in ref and builtin.exists():
        return builtin
    looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml", ".json"))
    if looks_like_path:
        raise ProfileError("no such profile file", source=ref)
    close = difflib.get_close_matches(ref, builtin_names(), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see `extractor profiles`"
    raise ProfileError(f"unknown built-in profile '{ref}'", source=ref, hint=hint)


def _regular_file(path: Path, ref: str) -> Path:
    """Only regular files are read: a folder, a FIFO or /dev/zero would block or never end."""
    if path.is_dir():
        raise ProfileError("is a folder, not a profile file", source=ref)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ProfileError(f"cannot read profile: {exc.strerror}", source=ref) from None
    if not stat.S_ISREG(mode):
        raise ProfileError("is not a regular file", source=ref)
    return path
