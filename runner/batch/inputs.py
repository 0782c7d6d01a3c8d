"""Collecting inputs and planning outputs: which files a batch analyses and where each result
goes (a mirror of the input folders), and whether an existing result is up to date."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.errors import ExtractorError, OutputError

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .mp4 .aac .aif .aiff .aifc .wma .ape .wv "
    ".mka .webm".split()
)


@dataclass
class Job:
    index: int
    input: Path
    output: Path


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def read_list(list_file: str) -> list[Path]:
    """One path per line; blank lines and lines starting with # are ignored."""
    try:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExtractorError(f"{list_file}: cannot read list: {exc.strerror}") from None
    base = Path(list_file).parent
    paths = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() or path.exists() else base / path)
    return paths


def collect(inputs: list[str], list_file: str | None = None) -> list[tuple[Path, Path]]:
    """(file, root) pairs: each input file with the folder its output path is relative to.

    Folders are searched recursively for audio files; files given one by one (or in a list)
    are kept whatever their extension (so a bad one is reported, not silently skipped).
    """
    found: list[tuple[Path, Path]] = []
    listed = read_list(list_file) if list_file else []
    if listed:
        common = Path(os.path.commonpath([str(p.resolve().parent) for p in listed]))
        found += [(p, common) for p in listed]
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for sub in sorted(_walk(path)):
                found.append((sub, path))
        else:
            found.append((path, path.resolve().parent))
    return found


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if is_audio(path):
                yield path


def plan_outputs(pairs: list[tuple[Path, Path]], out_dir: Path, suffix: str
                 ) -> tuple[list[Job], list[str]]:
    """Mirror the input tree under ``out_dir`` (``a/b/song.flac`` -> ``a/b/song.json``).

    Two inputs that would get the same output (``song.mp3`` beside ``song.flac``) keep
    their audio extension instead (``song.mp3.json``, ``song.flac.json``); an input whose
    mirrored path would leave ``out_dir`` is placed by its file name. Returns the jobs and
    notes explaining each such decision.
    """
    out_root = out_dir.resolve()
    notes: list[str] = []
    relative: list[Path] = []
    for path, root in pairs:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            rel = Path(path.name)
        if ".." in rel.parts or rel.is_absolute():
            notes.append(f"{path}: outside its input folder; written as {rel.name}")
            rel = Path(rel.name)
        relative.append(rel)
    targets = [out_root / rel.with_suffix(suffix) for rel in relative]
    counts: dict[Path, int] = {}
    for target in targets:
        counts[target] = counts.get(target, 0) + 1
    jobs: list[Job] = []
    taken: dict[Path, Path] = {}  # output -> the input it belongs to
    for index, ((path, _), rel, target) in enumerate(zip(pairs, relative, targets, strict=True)):
        source = path.resolve()
        if counts[target] > 1:
            target = out_root / rel.parent / (rel.name + suffix)
        if taken.get(target) == source:
            notes.append(f"{path}: listed more than once; analysed once")
            continue
        number = 2
        stem = target.name[: -len(suffix)]
        while target in taken:  # same name, same folder, another file: number it
            target = target.with_name(f"{stem}~{number}{suffix}")
            number += 1
        if target.name != rel.with_suffix(suffix).name:
            notes.append(f"{path}: another input has the same name; output {target.name}")
        if out_root not in target.resolve().parents:
            raise OutputError(f"{path}: output {target} would leave {out_root}")
        taken[target] = source
        jobs.append(Job(index, path, target))
    return jobs, notes


def up_to_date(output: Path, digest: str) -> bool:
    """True when ``output`` exists and was made by a profile with this hash."""
    try:
        text = output.read_text(encoding="utf-8")
        is_yaml = output.suffix in (".yaml", ".yml")
        doc = yaml.safe_load(text) if is_yaml else json.loads(text)
        return doc["metadata"]["profile"]["hash"] == digest
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):  # damaged: recompute
        return False




def made_by(digest: str) -> Callable[[Job], bool]:
    """``current`` for a profile's outputs: reused when made by a profile with this hash."""
    return lambda job: up_to_date(job.output, digest)
