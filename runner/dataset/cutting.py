"""`extractor crops`' per-track job: cut a track into crops of exact length (runner.dataset
.placement), write each as FLAC with an INFO of the features recomputed on the crop by the
conditioning profile, and last a ``crops.json`` manifest that marks the track done.

Output layout: ``OUT/Track/Track_N.flac`` and ``OUT/Track/Track_N.INFO`` (N from 1), and
``OUT/Track/crops.json`` (the settings and every crop's place). A rerun skips tracks whose
manifest has the same settings, keeps crops already written by an interrupted run, and refuses
(one line) to mix crops of other settings into a folder unless ``--force``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.dataset import placement
from runner.dataset.files import (
    grid_path,
    read_audio,
    read_grid,
    read_json,
    render_json,
    write_flac,
)
from runner.dataset.info import info_path
from runner.errors import AudioError, ExtractorError, OutputError
from runner.output import write_atomic

MANIFEST = "crops.json"


@dataclass(frozen=True)
class CropSettings:
    length: int  # samples, at the track's own sample rate
    mode: str = "beats"  # placement.MODES
    div4: bool = False


def manifest_path(mirrored: Path) -> Path:
    """``OUT/a/Track.json`` (the batch's mirrored output) -> ``OUT/a/Track/crops.json``."""
    return mirrored.with_suffix("") / MANIFEST


def made_with(manifest: Path, settings: CropSettings) -> bool:
    """Whether ``manifest`` exists and was written with ``settings`` (the track is done)."""
    try:
        return read_json(manifest).get("settings") == asdict(settings)
    except OutputError:
        return False


@dataclass
class Beats:
    samples: np.ndarray  # beat positions, samples
    starts: np.ndarray  # the candidate crop starts, samples
    source: str  # where the beats came from
    anchor: str  # what a crop starts on: beat | downbeat of bar 4k
    warnings: list[str]


class CropWork:
    """Built once per worker: the conditioning Extractor (loaded on first use) and the
    settings; called per track as ``(audio, OUT/Track/crops.json)``."""

    def __init__(self, settings: CropSettings, profile: str, overrides: list[str],
                 force: bool) -> None:
        self.settings = settings
        self.profile = profile
        self.overrides = list(overrides)
        self.force = force
        self._extractor: Any = None
        self._notes: dict[str, list[int]] = {}

    @property
    def extractor(self) -> Any:
        if self._extractor is None:
            from runner.extract import Extractor

            self._extractor = Extractor(self.profile, self.overrides, warn=False)
        return self._extractor

    def __call__(self, src: str, dst: str) -> list[str]:
        source, manifest = Path(src), Path(dst)
        self._check_earlier(source, manifest)
        audio, rate, subtype = read_audio(source)
        length, total = self.settings.length, len(audio)
        if length > total:
            raise AudioError(src, f"crop length {length} samples ({length / rate:.2f} s) is "
                             f"longer than the track ({total} samples, {total / rate:.2f} s); "
                             "track skipped")
        beats, crops = self._place(source, audio, rate)
        folder = manifest.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._notes = {}  # a crop analysis's warning -> the crops it was given for
        entries = [self._crop(source, folder, index, crop, audio, rate, subtype, beats)
                   for index, crop in enumerate(crops, 1)]
        write_atomic(manifest, render_json({
            "settings": asdict(self.settings), "track": str(source), "sample_rate": rate,
            "track_samples": total, "beats": None if beats is None else beats.source,
            "crops": entries}))
        return ([] if beats is None else beats.warnings) + [
            f"crop{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}: {text}"
            for text, numbers in self._notes.items()]

    def _check_earlier(self, source: Path, manifest: Path) -> None:
        """Crops of other settings in this folder: refused; with --force an earlier cut's
        files are removed (whatever its settings: a changed beat grid may cut fewer)."""
        if not manifest.is_file():
            return
        try:
            earlier = read_json(manifest)
        except OutputError:
            return  # damaged: the crops are checked one by one
        same = earlier.get("settings") == asdict(self.settings)
        if same and not self.force:
            return
        if not self.force:
            raise AudioError(str(source), f"{manifest.parent} holds crops made with other "
                             f"settings ({_describe(earlier.get('settings'))}); --force "
                             "recuts them")
        for entry in earlier.get("crops", []):
            for name in (entry.get("file"), entry.get("info")):
                if isinstance(name, str) and "/" not in name:
                    (manifest.parent / name).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)

    def _place(self, source: Path, audio: np.ndarray, rate: float
               ) -> tuple[Beats | None, list[placement.Crop]]:
        length = self.settings.length
        if self.settings.mode == "sequential":
            return None, placement.sequential(len(audio), length)
        beats = self._beats(source, rate)
        reach = int(round(placement.ZERO_CROSSING_MS / 1000.0 * rate))
        mono = audio.mean(axis=1)
        crops = placement.snapped(beats.starts, mono, length, reach,
                                  overlap=self.settings.mode == "overlap")
        if not crops:
            first = beats.starts[0] / rate if len(beats.starts) else 0.0
            raise AudioError(str(source), f"no crop of {length} samples fits after the first "
                             f"{beats.anchor} ({first:.2f} s)")
        return beats, crops

    def _beats(self, source: Path, rate: float) -> Beats:
        """The track's beats: its BEATS_GRID when there is one, else computed."""
        grid = grid_path(source)
        warnings: list[str] = []
        if grid.is_file():
            beat_times, downbeat_times = read_grid(grid)
            origin = grid.name
        else:
            doc, _ = self.extractor.analyse(str(source))
            rhythm = doc.get("rhythm", {})
            beat_times = np.asarray(rhythm.get("beats_position") or [], dtype=float)
            downbeats = rhythm.get("downbeats")
            downbeat_times = None if downbeats is None else np.asarray(downbeats, dtype=float)
            origin = f"computed by the {self.profile} profile"
            warnings.append(f"beats computed: no {grid.name} beside the track")
        if len(beat_times) == 0:
            raise AudioError(str(source), "no beats found (--sequential crops without beats)")
        anchor, starts = "beat", beat_times
        if self.settings.div4:
            anchor = "downbeat of a bar divisible by 4"
            if downbeat_times is None or len(downbeat_times) == 0:
                downbeat_times = placement.bars_from_beats(beat_times)
                warnings.append("no downbeats: bars counted as 4 beats from the first beat")
            starts = placement.every_fourth_bar(downbeat_times)
        return Beats(placement.to_samples(beat_times, rate), placement.to_samples(starts, rate),
                     origin, anchor, warnings)

    def _crop(self, source: Path, folder: Path, index: int, crop: placement.Crop,
              audio: np.ndarray, rate: float, subtype: str, beats: Beats | None
              ) -> dict[str, Any]:
        """Write crop ``index`` (FLAC, then its INFO) unless an interrupted run already did."""
        stem = folder.name
        flac = folder / f"{stem}_{index}.flac"
        info = info_path(flac)
        total = len(audio)
        place = {
            "index": index, "track": str(source),
            "start": round(crop.start / total, 6), "end": round(crop.end / total, 6),
            "start_sample": crop.start, "length": crop.length, "sample_rate": rate,
            "seconds_start": crop.start / rate, "track_seconds": total / rate,
            "snapped_to": None if beats is None else beats.anchor,
            "zero_crossing_shift": crop.shift,
            "end_to_beat": None if beats is None else placement.end_offset(crop, beats.samples),
            "beats": None if beats is None else beats.source,
        }
        entry = {"file": flac.name, "info": info.name, "start_sample": crop.start,
                 "start": place["start"], "end": place["end"]}
        if not self.force and flac.is_file() and _same_crop(info, crop):
            return entry
        write_flac(flac, placement.fade(audio[crop.start:crop.end], rate), rate, subtype)
        features = self._features(flac, index)
        write_atomic(info, render_json({**features, "crop": place}))
        return entry

    def _features(self, flac: Path, index: int) -> dict[str, Any]:
        """The conditioning features of the crop itself (not the track's); the analysis's
        warnings are gathered for the track's outcome (one line per distinct text)."""
        doc, _ = self.extractor.analyse(str(flac))
        for text in doc.get("metadata", {}).get("warnings", []):
            self._notes.setdefault(str(text), []).append(index)
        features = doc.get("conditioning")
        if not isinstance(features, dict):
            raise ExtractorError(f"profile {self.profile}: its output has no 'conditioning' "
                                 "section to write into the crops' INFO")
        return dict(features)


def _describe(settings: Any) -> str:
    """``length 44100 samples, beats, div4`` (a damaged record: as found)."""
    if not isinstance(settings, dict):
        return str(settings)
    words = [f"length {settings.get('length')} samples", str(settings.get("mode"))]
    return ", ".join(words + (["div4"] if settings.get("div4") else []))


def _same_crop(info: Path, crop: placement.Crop) -> bool:
    try:
        place = read_json(info).get("crop", {})
    except OutputError:
        return False
    return place.get("start_sample") == crop.start and place.get("length") == crop.length
