"""Files with more than two channels: decoded with libsndfile and downmixed to stereo first.

Essentia's AudioLoader refuses more than two channels, but 5.1 mixes and multitrack WAVs are
common in libraries. Such a file is read here a block at a time (soundfile, i.e. libsndfile:
WAV, WAVEX, RF64, W64, FLAC, AIFF, CAF, Ogg Vorbis and Opus, MP3), mixed down to stereo, and
written as a float WAV into a private temporary folder; the analysis then reads that WAV like
any stereo input (the profile's mono downmix, EBU R128 on its two channels), so everything
downstream is unchanged and no more than a block is held in memory.

The stereo downmix is ITU-R BS.775's (Table 2, 3/2 to 2/0, extended to the 7.1 and 6.1
layouts the same way): left and right as they are, the centre at -3 dB (0.7071) into both
sides, each surround (side or rear) at -3 dB into its side, a rear centre at -6 dB into both,
the LFE channel left out; no normalisation (a sum beyond full scale is clipped by the
analysis chain, as Essentia clips any decoded input). Channel positions come from the file's
channel map where it has one (WAVE_FORMAT_EXTENSIBLE, CAF); otherwise from the standard order
for the channel count: Vorbis order for Ogg files, the WAV/FLAC (SMPTE) order for the others.
More than eight channels without a map have no standard layout: every channel is mixed into
both sides with equal weight.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import AudioError

BLOCK = 65536  # frames per read
_C = 0.7071067811865476  # -3 dB

# libsndfile's SF_CHANNEL_MAP_* values (sndfile.h) -> (left gain, right gain)
_GAINS: dict[int, tuple[float, float]] = {
    1: (_C, _C),  # mono
    2: (1.0, 0.0), 3: (0.0, 1.0), 4: (_C, _C),  # left, right, centre
    5: (1.0, 0.0), 6: (0.0, 1.0), 7: (_C, _C),  # front left, right, centre
    8: (0.5, 0.5),  # rear centre
    9: (_C, 0.0), 10: (0.0, _C),  # rear left, right
    11: (0.0, 0.0),  # LFE
    12: (1.0, 0.0), 13: (0.0, 1.0),  # front left / right of centre
    14: (_C, 0.0), 15: (0.0, _C),  # side left, right
    16: (0.5, 0.5),  # top centre
    17: (_C, 0.0), 18: (0.0, _C), 19: (0.5, 0.5),  # top front left, right, centre
    20: (_C, 0.0), 21: (0.0, _C), 22: (0.5, 0.5),  # top rear left, right, centre
    23: (_C, _C), 24: (0.0, 0.0), 25: (0.0, 0.0), 26: (0.0, 0.0),  # ambisonic B: W only
}
_FL, _FR, _FC, _LFE, _BL, _BR, _BC, _SL, _SR = 5, 6, 7, 11, 9, 10, 8, 14, 15
# Default orders by channel count where the file has no channel map.
_SMPTE = {3: [_FL, _FR, _FC], 4: [_FL, _FR, _BL, _BR], 5: [_FL, _FR, _FC, _BL, _BR],
          6: [_FL, _FR, _FC, _LFE, _BL, _BR], 7: [_FL, _FR, _FC, _LFE, _BC, _SL, _SR],
          8: [_FL, _FR, _FC, _LFE, _BL, _BR, _SL, _SR]}
_VORBIS = {3: [_FL, _FC, _FR], 4: [_FL, _FR, _BL, _BR], 5: [_FL, _FC, _FR, _BL, _BR],
           6: [_FL, _FC, _FR, _BL, _BR, _LFE], 7: [_FL, _FC, _FR, _SL, _SR, _BC, _LFE],
           8: [_FL, _FC, _FR, _SL, _SR, _BL, _BR, _LFE]}
_SFC_GET_CHANNEL_MAP_INFO = 0x1100

# libsndfile subtype -> the codec name Essentia (FFmpeg) gives such a stream
_CODECS = {"PCM_S8": "pcm_s8", "PCM_U8": "pcm_u8", "FLAC": "flac", "VORBIS": "vorbis",
           "OPUS": "opus", "MPEG_LAYER_III": "mp3", "ALAC_16": "alac", "ALAC_20": "alac",
           "ALAC_24": "alac", "ALAC_32": "alac"}
_FORMAT_CODECS = {"FLAC": "flac", "MPEG": "mp3"}  # whatever the sample format
_PCM = {"PCM_16": "s16", "PCM_24": "s24", "PCM_32": "s32", "FLOAT": "f32", "DOUBLE": "f64"}
_BIG_ENDIAN = {"AIFF", "AU", "CAF"}


@dataclass
class Downmix:
    """A multichannel input as a stereo float WAV, and what the output says about it."""

    wav: str
    folder: str
    channels: int
    codec: str
    layout: str  # how the channel positions were found, for the warning

    def warning(self) -> str:
        return (f"downmixed from {self.channels} channels to stereo ({self.layout}); "
                "EBU R128 loudness is that of the stereo downmix")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def stereo_gains(positions: list[int]) -> np.ndarray:
    """(channels, 2) float32 gains for the given SF_CHANNEL_MAP positions."""
    return np.asarray([_GAINS.get(p, (0.0, 0.0)) for p in positions], dtype=np.float32)


def _channel_map(handle: Any, channels: int) -> list[int] | None:
    """The file's own channel positions, where its header has them (libsndfile)."""
    import soundfile

    positions = soundfile._ffi.new("int[]", channels)
    found = soundfile._snd.sf_command(handle._file, _SFC_GET_CHANNEL_MAP_INFO, positions,
                                      soundfile._ffi.sizeof(positions))
    values = list(positions)
    return values if found and all(v in _GAINS for v in values) else None


def gains_for(handle: Any) -> tuple[np.ndarray, str]:
    """The stereo gains for an open soundfile, and how its layout was determined."""
    channels = handle.channels
    positions = _channel_map(handle, channels)
    if positions is not None:
        return stereo_gains(positions), "ITU-R BS.775, channel map from the file"
    default = _VORBIS if handle.format == "OGG" else _SMPTE
    if channels in default:
        order = "Vorbis" if handle.format == "OGG" else "WAV/FLAC"
        return stereo_gains(default[channels]), f"ITU-R BS.775, {order} channel order"
    equal = np.full((channels, 2), 1.0 / channels, dtype=np.float32)
    return equal, "no standard layout: all channels with equal weight"


def codec_name(handle: Any) -> str:
    subtype = handle.subtype
    if handle.format in _FORMAT_CODECS:
        return _FORMAT_CODECS[handle.format]
    if subtype in _PCM:
        endian = "be" if handle.format in _BIG_ENDIAN else "le"
        return f"pcm_{_PCM[subtype]}{endian}"
    return _CODECS.get(subtype, subtype.lower())


def downmix(path: str, channels: int) -> Downmix:
    """Decode ``path`` (more than two channels) and write its stereo downmix as a float WAV
    in a new temporary folder; the caller removes it (``Downmix.remove``)."""
    try:
        import soundfile
    except ImportError:  # pragma: no cover - a base dependency
        raise AudioError(path, f"{channels}-channel audio needs the soundfile package "
                         "(pip install soundfile)") from None
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "this format"
    try:
        source = soundfile.SoundFile(path)
    except (RuntimeError, soundfile.LibsndfileError, OSError):
        raise AudioError(path, f"{channels}-channel {ext} audio cannot be decoded here "
                         "(Essentia's decoder takes at most 2 channels, libsndfile does not "
                         "read this file); convert it to FLAC or WAV, e.g. "
                         "ffmpeg -i IN -c:a flac OUT.flac") from None
    folder = tempfile.mkdtemp(prefix="extractor-spool-")
    wav = os.path.join(folder, "downmix.wav")
    try:
        with source:
            if source.frames * 8 >= 2**32 - 4096:
                raise AudioError(path, f"{channels}-channel audio longer than 6.7 hours is "
                                 "not supported; split it or convert it to stereo first")
            gains, layout = gains_for(source)
            codec = codec_name(source)
            with soundfile.SoundFile(wav, "w", samplerate=source.samplerate, channels=2,
                                     subtype="FLOAT", format="WAV") as out:
                for block in source.blocks(blocksize=BLOCK, dtype="float32", always_2d=True):
                    out.write(block @ gains)
    except AudioError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise AudioError(path, f"cannot decode {channels}-channel audio: {exc}") from None
    return Downmix(wav, folder, channels, codec, layout)
