"""Write the manifest of a model converted in a Nix build (nix/models.nix runs this).

runner/models/supply/cache.py accepts a converted model only with ``manifest.json`` beside its
files: ``{"source_sha256": <the source's pin>, "files": {name: sha256}}``. Standard library only: it
runs with the converter's Python, which has TensorFlow but not the runner's dependencies.

Usage: python write_manifest.py FOLDER SOURCE_SHA256 NAME...
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def write_manifest(folder: Path, source_sha256: str, names: list[str]) -> Path:
    files = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}
    path = folder / "manifest.json"
    manifest = {"source_sha256": source_sha256, "files": files}
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    write_manifest(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
