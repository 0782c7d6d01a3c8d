"""Follow ``extends``: read a profile file and every file it extends, and merge them in order.

Each file is read once however often it is extended (a diamond of fragments), and checked
against the schema on its own (built-in files too) before it is merged, so that an error points
into that file; the chain is bounded (MAX_FILES, MAX_EXTENDS_DEPTH) and may not form a cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import ProfileError
from runner.profile.merging import deep_merge, remove_dependents
from runner.profile.model import KeyPath, Origin, Profile
from runner.profile.reading import read_yaml
from runner.profile.references import resolve_reference
from runner.profile.validate import validate_document

MAX_FILES = 64  # files read for one profile through `extends`, each once (a built-in reads <= 9)
MAX_EXTENDS_DEPTH = 16


def read_profile(path: Path, document: tuple[Any, dict[KeyPath, int]] | None = None
                 ) -> Profile:
    """The profile in ``path`` with everything it extends merged in (``document``: the file's
    data and lines, when the caller has read it already)."""
    reader = Reader()
    if document is not None:
        reader.files[path.resolve()] = document
    return reader.load(path, stack=())


class Reader:
    """Reads the files of one profile, each once however often it is extended."""

    def __init__(self) -> None:
        self.files: dict[Path, tuple[Any, dict[KeyPath, int]]] = {}
        self.loads = 0  # profiles merged through `extends` (a file may be merged more than once)

    def read(self, path: Path) -> tuple[Any, dict[KeyPath, int]]:
        key = path.resolve()
        if key not in self.files:
            if len(self.files) >= MAX_FILES:
                raise ProfileError(f"extends more than {MAX_FILES} files", source=str(path))
            self.files[key] = read_yaml(path)
        return self.files[key]

    def load(self, path: Path, stack: tuple[Path, ...]) -> Profile:
        """``path`` merged over what it extends (``stack``: the files extending it)."""
        data, lines = self.read(path)
        source = str(path)
        origins = {key: (source, line) for key, line in lines.items()}
        own = Profile(name=path.stem, source=source, data=data, origins=origins)
        # Built-in files too: it costs about 25 ms of CPU for the music profile's 9 files
        # (1 % of `extractor validate music`), and a changed installation is caught here.
        validate_document(own)
        merged = Profile(name=path.stem, source=source, data={}, origins={})
        for parent_path in self._parents(path, data, lines, stack):
            parent = self.load(parent_path, stack + (path.resolve(),))
            deep_merge(merged.data, parent.data, merged.origins, parent.origins)
            merged.notes += [n for n in parent.notes if n not in merged.notes]
            merged.deleted.update(parent.deleted)
        body = {k: v for k, v in data.items() if k != "extends"}
        deleted: dict[KeyPath, Origin] = {}
        deep_merge(merged.data, body, merged.origins, origins, deleted=deleted)
        merged.deleted.update(deleted)
        removed = {p[1]: o for p, o in deleted.items() if len(p) == 2 and p[0] == "graph"}
        if removed:
            remove_dependents(merged, removed, source)
        merged.name = str(data.get("name", path.stem))
        merged.data["name"] = merged.name
        return merged

    def _parents(self, path: Path, data: dict[str, Any], lines: dict[KeyPath, int],
                 stack: tuple[Path, ...]) -> Iterator[Path]:
        """The files ``path`` extends, in order, each checked just before it is read: no
        cycle, none twice, the chain neither too long nor too deep."""
        source, resolved = str(path), path.resolve()
        parents = data.get("extends") or []
        if isinstance(parents, str):
            parents = [parents]
        seen: dict[Path, int] = {}
        for index, parent_ref in enumerate(parents):
            line = lines.get(("extends", str(index))) or lines.get(("extends",))
            where = {"source": source, "line": line, "path": f"extends.{index}"}
            try:
                parent_path = resolve_reference(parent_ref, relative_to=path)
            except ProfileError as exc:
                raise ProfileError(exc.message, hint=exc.hint, **where) from None
            target = parent_path.resolve()
            if target in stack + (resolved,):
                chain = " -> ".join(p.name for p in stack + (resolved, target))
                raise ProfileError(f"'extends' forms a cycle: {chain}", **where)
            if target in seen:
                raise ProfileError(f"'{parent_ref}' is extended twice (also at "
                                   f"extends.{seen[target]})", **where)
            seen[target] = index
            self.loads += 1
            if self.loads > 4 * MAX_FILES:  # a diamond of diamonds: 2**depth paths
                raise ProfileError(f"'extends' reads more than {4 * MAX_FILES} profiles",
                                   **where)
            if len(stack) + 1 >= MAX_EXTENDS_DEPTH:
                raise ProfileError(f"'extends' is nested more than {MAX_EXTENDS_DEPTH} deep",
                                   **where)
            yield parent_path
