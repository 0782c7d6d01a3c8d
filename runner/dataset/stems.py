"""Which files are a track's stems, and whether they fit the mix.

A track ``DIR/Name.ext`` has stems ``drums``, ``bass``, ``other`` and ``vocals`` (any audio
extension), looked for in this order:

1. with ``--stems ROOT``: ``ROOT/<the track's folder, relative to its input folder>/Name/
   <stem>.*`` (the layout ``demucs -o ROOT`` writes under ``ROOT/<model>/``);
2. ``DIR/Name.<stem>.*`` beside the track;
3. ``DIR/<stem>.*``, when ``Name.ext`` is the only track in ``DIR`` (a folder per track).

A stem file is never a track itself: a batch over a folder skips files named ``<stem>.*`` or
``*.<stem>.*``. Stems must match the mix: the same sample rate, the same number of channels
(mono stems for a stereo mix are refused: the stems' loudness would not be comparable with
the mix's, and Demucs writes stereo) and the same length within ``LENGTH_TOLERANCE`` seconds
(what MP3/AAC encoder padding adds); all four or none (a partial set is refused, naming the
missing ones). Each problem is one line naming the track and the stem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.batch.inputs import is_audio
from runner.errors import AudioError

STEMS = ("drums", "bass", "other", "vocals")
LENGTH_TOLERANCE = 0.05  # seconds


def stem_of(path: Path) -> str | None:
    """The stem a file is by its name (``drums.wav``, ``Song.drums.flac``), else None."""
    last = path.stem.rsplit(".", 1)[-1].lower()
    return last if last in STEMS else None


def is_track(path: Path) -> bool:
    """An audio file that is not a stem (what a batch analyses)."""
    return is_audio(path) and stem_of(path) is None


@dataclass(frozen=True)
class Header:
    """What the checks compare: sample rate, channels, length in samples."""

    sample_rate: float
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def read_header(path: Path) -> Header:
    """The header of ``path``: libsndfile's (exact frame count), else Essentia's decoder (the
    whole file decoded, for what libsndfile cannot read)."""
    try:
        import soundfile

        info = soundfile.info(str(path))
        return Header(float(info.samplerate), int(info.channels), int(info.frames))
    except Exception:  # noqa: BLE001 - any libsndfile refusal: decode with Essentia
        pass
    from runner.registry import quiet_essentia

    try:
        audio, rate, channels, *_ = quiet_essentia().standard.AudioLoader(filename=str(path))()
    except Exception as exc:  # noqa: BLE001 - one line naming the file
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise AudioError(str(path), f"cannot read audio ({reason})") from None
    return Header(float(rate), int(channels), int(len(audio)))


def _audio_named(folder: Path, stem: str) -> list[Path]:
    """Audio files in ``folder`` whose name without extension is ``stem`` (any case)."""
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and is_audio(p) and p.stem.lower() == stem.lower())
    except OSError:
        return []


def _one(track: Path, found: list[Path], stem: str) -> Path:
    if len(found) > 1:
        raise AudioError(str(track), f"stems: {len(found)} files could be the {stem} stem "
                         f"({', '.join(p.name for p in found)}); keep one")
    return found[0]


def candidates(track: Path, folder_in_input: Path | None, stems_root: Path | None
               ) -> list[tuple[str, dict[str, list[Path]]]]:
    """(where, stem -> files found) for each place a track's stems may be, in order."""
    places: list[tuple[str, Path, str]] = []
    if stems_root is not None:
        where = stems_root / (folder_in_input or Path()) / track.stem
        places.append((f"{where}/", where, ""))
    places.append((f"{track.parent}/{track.stem}.<stem>.*", track.parent, f"{track.stem}."))
    others = [p for p in _listing(track.parent) if is_track(p) and p.name != track.name]
    if not others:
        places.append((f"{track.parent}/<stem>.*", track.parent, ""))
    return [(label, {stem: _audio_named(folder, prefix + stem) for stem in STEMS})
            for label, folder, prefix in places]


def _listing(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return []


def find_stems(track: Path, folder_in_input: Path | None = None,
               stems_root: Path | None = None, required: bool = True) -> dict[str, Path]:
    """The track's four stems ({} where it has none). With ``stems_root`` (and ``required``:
    they are not to be separated) every track must have them there or beside it; a partial
    set anywhere is refused."""
    for label, found in candidates(track, folder_in_input, stems_root):
        present = [stem for stem in STEMS if found[stem]]
        if len(present) == len(STEMS):
            return {stem: _one(track, found[stem], stem) for stem in STEMS}
        if present:
            missing = [stem for stem in STEMS if stem not in present]
            raise AudioError(str(track), f"stems incomplete in {label}: {', '.join(missing)} "
                             f"missing ({', '.join(present)} found); all four or none")
    if stems_root is not None and required:
        where = stems_root / (folder_in_input or Path()) / track.stem
        raise AudioError(str(track), f"no stems in {where}/ (--stems): expected "
                         f"{', '.join(s + '.*' for s in STEMS)}")
    return {}


def check_stems(track: Path, stems: dict[str, Path], mix: Header | None = None) -> Header:
    """Refuse stems that do not fit the mix (module docstring); the mix's header."""
    mix = mix or read_header(track)
    for stem, path in stems.items():
        own = read_header(path)
        label = f"stem {stem} ({path.name})"
        if own.sample_rate != mix.sample_rate:
            raise AudioError(str(track), f"{label} is at {own.sample_rate:g} Hz, the mix at "
                             f"{mix.sample_rate:g} Hz: stems must have the mix's sample rate")
        if own.channels != mix.channels:
            if own.channels == 1 and mix.channels == 2:
                why = "mono stems for a stereo mix are refused: give stereo stems"
            else:
                why = "stems must have the mix's channels"
            raise AudioError(str(track), f"{label} has {own.channels} channel(s), the mix "
                             f"{mix.channels}: {why}")
        if abs(own.seconds - mix.seconds) > LENGTH_TOLERANCE:
            raise AudioError(str(track), f"{label} lasts {own.seconds:.3f} s ({own.frames} "
                             f"samples), the mix {mix.seconds:.3f} s ({mix.frames}): stems "
                             f"must have the mix's length (within {LENGTH_TOLERANCE * 1000:g} "
                             "ms)")
    return mix


def stem_targets(track: Path, folder_in_input: Path | None, stems_root: Path | None
                 ) -> dict[str, Path]:
    """Where separated stems of ``track`` are written (WAV): under ``stems_root`` as
    ``find_stems`` looks for them, else ``Name.<stem>.wav`` beside the track, or
    ``<stem>.wav`` where the track is alone in its folder."""
    if stems_root is not None:
        folder = stems_root / (folder_in_input or Path()) / track.stem
        return {stem: folder / f"{stem}.wav" for stem in STEMS}
    alone = not [p for p in _listing(track.parent) if is_track(p) and p.name != track.name]
    prefix = "" if alone else f"{track.stem}."
    return {stem: track.parent / f"{prefix}{stem}.wav" for stem in STEMS}
