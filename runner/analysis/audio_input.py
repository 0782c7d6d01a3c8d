"""The input side of an analysis: the checks before decoding, the header, the loader chain, and
what the decoded audio says about the file (truncated, silent).

The loader chain is Essentia's MonoLoader/EasyLoader written out as streaming algorithms
(AudioLoader -> MonoMixer -> Resample [-> Trimmer]), so the analysed length and level are
measured while the signal streams by; profiles that measure stereo (EBU R128) also get both
channels, resampled and trimmed the same way. Files with more than two channels are read
through a stereo downmix (runner.analysis.multichannel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner import registry
from runner.compile import AudioConfig
from runner.errors import AudioError, MissingMbidError
from runner.pools import pool_values
from runner.tagwhitelist import TAG_WHITELIST

# Lengths in seconds (Essentia's Duration, float32 like Essentia's own metadata), measured while
# the signal streams by: the analysed (trimmed) signal, and the whole input when trimming.
ANALYSED = "audio.analysed_seconds"
UNTRIMMED = "audio.untrimmed_seconds"
# The analysed signal's energy and mean, per block of LEVEL_BLOCK samples: its level
# without a DC offset (silence).
ENERGY = "audio.block_energy"
MEAN = "audio.block_mean"
MEASURED = (ANALYSED, UNTRIMMED, ENERGY, MEAN)  # all of them real numbers
LEVEL_BLOCK = 65536
# Below this mean power (-90 dBFS, FreesoundExtractor's silence threshold) a file is silent.
SILENT_POWER = 1e-9
# A decoded length shorter than the header's by more than this (seconds, or this fraction of
# the header's, whichever is larger) is reported: a truncated or damaged file. Headers give
# whole seconds (MetadataReader), and a VBR MP3 without a Xing header only an estimate.
SHORTFALL_SECONDS = 0.5
SHORTFALL_FRACTION = 0.05
TINY_SAMPLES = 64  # fewer decoded samples than this: "too short" when an analysis fails

# The tag MusicBrainz Picard writes the recording id to (Essentia reads it by this name).
MBID_TAG = "metadata.tags.musicbrainz_trackid"

# Essentia's loader outputs behind the built-in `audio` node.
LOADER_PORTS = {
    "sample_rate": "sampleRate",
    "channels": "numberChannels",
    "md5": "md5",
    "bit_rate": "bit_rate",
    "codec": "codec",
}


def check_audio_file(path: str) -> None:
    """Fail early, with one line, on inputs that cannot be audio."""
    if not os.path.exists(path):
        raise AudioError(path, "no such file")
    if os.path.isdir(path):
        raise AudioError(path, "is a folder (give a file)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file")


def probe(path: str, all_tags: bool = False) -> dict[str, Any]:
    """Read the header (sample rate, channels, duration, tags) without decoding.

    Tags are filtered by the music extractor's whitelist unless ``all_tags`` (FreesoundExtractor
    keeps every tag).
    """
    std = registry.quiet_essentia().standard
    try:
        result = std.MetadataReader(
            filename=path, failOnError=True, tagPoolName="metadata.tags",
            filterMetadata=not all_tags, filterMetadataTags=TAG_WHITELIST,
        )()
    except Exception as exc:
        reason = essentia_reason(exc)
        if reason != "not a supported audio file":
            reason = f"cannot read audio: {reason}"
        raise AudioError(path, reason) from None
    return {
        "duration": result[8],
        "bit_rate": result[9],
        "sample_rate": float(result[10]),
        "channels": result[11],
        "tags": pool_values(result[7]),
    }


def check_header(path: str, header: dict[str, Any], cfg: AudioConfig) -> None:
    """Refuse a file whose header already says the analysis cannot run as asked."""
    if header["sample_rate"] <= 0:
        raise AudioError(path, "unsupported or corrupt audio (no sample rate in its header)")
    if cfg.require_mbid and not header["tags"].get(MBID_TAG):
        raise MissingMbidError(path, "no MusicBrainz recording id (musicbrainz_trackid tag), "
                               "and the profile requires one (requireMbid)")


def essentia_reason(exc: BaseException) -> str:
    """Essentia's exception text, shortened to the part a person can act on."""
    text = str(exc).strip()
    if "does not seem to be of a supported filetype" in text:
        return "not a supported audio file"
    for prefix in ("Error while configuring MetadataReader:", "AudioLoader:"):
        text = text.replace(prefix, "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# -- lengths and ranges -------------------------------------------------------------------------
def trimming(cfg: AudioConfig) -> bool:
    return cfg.start_time > 0 or cfg.end_time is not None


def trim_args(cfg: AudioConfig) -> dict[str, float]:
    return {"startTime": cfg.start_time,
            "endTime": cfg.end_time if cfg.end_time is not None else 1e6}


def analysed_seconds(header: dict[str, Any], cfg: AudioConfig) -> float:
    """The analysed length the header promises (the decoder has the last word)."""
    seconds = float(header["duration"]) - cfg.start_time
    if cfg.end_time is not None:
        seconds = min(seconds, cfg.end_time - cfg.start_time)
    return max(seconds, 0.0)


def promised_seconds(path: str, header: dict[str, Any]) -> float:
    """The length the file's header promises: MetadataReader's (whole seconds), or for a
    RIFF WAV the size of its data chunk (TagLib gives 0 for a truncated WAV)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return float(header["duration"])
            byte_rate = 0
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    break
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt ":
                    fmt = handle.read(size + size % 2)
                    byte_rate = int.from_bytes(fmt[8:12], "little")
                    continue
                if chunk[:4] == b"data":
                    if byte_rate > 0 and size != 0xFFFFFFFF:  # streamed WAVs leave it unset
                        return size / byte_rate
                    break
                handle.seek(size + size % 2, os.SEEK_CUR)
    except OSError:
        pass
    return float(header["duration"])


def range_error(path: str, cfg: AudioConfig, length: float) -> AudioError:
    """Nothing in the analysed range: a startTime at or past the end of the file."""
    if not trimming(cfg):
        return AudioError(path, "no audio in the analysed range (empty signal)")
    end = f"{cfg.end_time:g} s" if cfg.end_time is not None else "the end"
    return AudioError(path, f"no audio in the analysed range: from {cfg.start_time:g} s to "
                      f"{end}, and the file is {length:.1f} s long (startTime, endTime)")


def tiny_samples(path: str, header: dict[str, Any]) -> int | None:
    """The number of samples of a file under a second long, if it has fewer than
    TINY_SAMPLES (a few samples: some Essentia algorithms refuse to run on them)."""
    if float(header["duration"]) >= 1:
        return None
    try:
        std = registry.quiet_essentia().standard
        samples = len(std.AudioLoader(filename=path)()[0])
    except Exception:  # noqa: BLE001 - only an explanation for a failure already reported
        return None
    return samples if samples < TINY_SAMPLES else None


def doubts(decoded: float, promised: float, samples: float, energy: Any, mean: Any
           ) -> list[str]:
    """Warnings about the audio itself: decoded much shorter than its header says (a
    truncated or damaged file), or silent: its power without its DC offset (per-block
    energies and means of LEVEL_BLOCK samples, the last block zero-padded) below
    SILENT_POWER."""
    found = []
    if promised - decoded > max(SHORTFALL_SECONDS, SHORTFALL_FRACTION * promised):
        found.append(f"truncated: decoded {decoded:.2f} s of audio, its header says "
                     f"{round(promised, 1):g} s (a damaged or incomplete file?)")
    if energy is None or mean is None or samples <= 0:
        return found
    power = float(np.sum(np.asarray(energy, dtype=np.float64))) / samples
    offset = float(np.sum(np.asarray(mean, dtype=np.float64))) * LEVEL_BLOCK / samples
    level = max(power - offset * offset, 0.0)
    if power == 0.0:
        found.append("silent: digital silence (every sample is 0); the descriptors describe "
                     "silence (tempo, key and the like mean nothing)")
    elif level < SILENT_POWER:
        rms = f"{10 * np.log10(level):.1f} dBFS" if level > 0 else "-inf dBFS"
        found.append(f"silent: the level is {rms} (RMS without DC offset), below -90 dBFS; "
                     "the descriptors describe near silence (tempo, key and the like mean "
                     "nothing)")
    return found


# -- the loader chain ---------------------------------------------------------------------------
@dataclass
class LoaderChain:
    """AudioLoader and what follows it, up to the analysed mono signal."""

    source: Any  # AudioLoader: the generator a network is run from
    signal: Any  # the output port of the analysed mono signal
    keep: list[Any] = field(default_factory=list)  # algorithms Python must keep alive
    resamplers: list[Any] = field(default_factory=list)  # take the input's rate per file


def loader_chain(streaming: Any, cfg: AudioConfig, path: str, header: dict[str, Any],
                 md5: bool, measure_into: Any = None, spooled: bool = False) -> LoaderChain:
    """AudioLoader -> MonoMixer -> Resample [-> Trimmer].

    With a ``measure_into`` pool, the analysed length (and the input's, when trimming) is
    measured on the way (Duration, in seconds), and the level (per-block energy and mean). A
    ``spooled`` signal (runner.analysis.spool) is resampled and trimmed already:
    AudioLoader -> MonoMixer.
    """
    try:
        loader = streaming.AudioLoader(filename=path, computeMD5=md5)
    except Exception as exc:
        raise AudioError(path, f"cannot decode: {essentia_reason(exc)}") from None
    mono = streaming.MonoMixer(type=cfg.downmix)
    loader.audio >> mono.audio
    loader.numberChannels >> mono.numberChannels
    if spooled:
        return LoaderChain(source=loader, signal=mono.audio, keep=[mono])
    resample = streaming.Resample(inputSampleRate=header["sample_rate"],
                                  outputSampleRate=cfg.sample_rate, quality=cfg.resample_quality)
    mono.audio >> resample.signal
    chain = LoaderChain(source=loader, signal=resample.signal, keep=[mono, resample],
                        resamplers=[resample])
    if trimming(cfg):
        trim = streaming.Trimmer(sampleRate=cfg.sample_rate, **trim_args(cfg))
        chain.signal >> trim.signal
        chain.keep.append(trim)
        if measure_into is not None:
            chain.keep.append(_duration(streaming, cfg, chain.signal, measure_into, UNTRIMMED))
        chain.signal = trim.signal
    if measure_into is not None:
        chain.keep.append(_duration(streaming, cfg, chain.signal, measure_into, ANALYSED))
        chain.keep += _level(streaming, chain.signal, measure_into)
    return chain


def stereo_signal(streaming: Any, cfg: AudioConfig, chain: LoaderChain,
                  header: dict[str, Any]) -> Any:
    """Both channels of the chain's loader, resampled and trimmed like the mono signal, for
    measures defined on stereo (EBU R128): the output port of the stereo signal."""
    demux, mux = streaming.StereoDemuxer(), streaming.StereoMuxer()
    chain.source.audio >> demux.audio
    for side in ("left", "right"):
        resample = streaming.Resample(inputSampleRate=header["sample_rate"],
                                      outputSampleRate=cfg.sample_rate,
                                      quality=cfg.resample_quality)
        getattr(demux, side) >> resample.signal
        resample.signal >> getattr(mux, side)
        chain.keep.append(resample)
        chain.resamplers.append(resample)
    trim = streaming.StereoTrimmer(sampleRate=cfg.sample_rate, **trim_args(cfg))
    mux.audio >> trim.signal
    chain.keep += [demux, mux, trim]
    return trim.signal


def point_at(source: Any, resamplers: list[Any], cfg: AudioConfig, path: str,
             header: dict[str, Any], **loader: Any) -> None:
    """Point a built loader chain at the next file (its name, its sample rate)."""
    try:
        source.configure(filename=path, **loader)
    except Exception as exc:
        raise AudioError(path, f"cannot decode: {essentia_reason(exc)}") from None
    for resampler in resamplers:
        resampler.configure(inputSampleRate=header["sample_rate"],
                            outputSampleRate=cfg.sample_rate, quality=cfg.resample_quality)


def _level(streaming: Any, signal: Any, pool: Any) -> list[Any]:
    """The signal's energy per block (a few values per minute), for its level."""
    cutter = streaming.FrameCutter(frameSize=LEVEL_BLOCK, hopSize=LEVEL_BLOCK,
                                   startFromZero=True, validFrameThresholdRatio=0,
                                   lastFrameToEndOfFile=False, silentFrames="keep")
    energy, mean = streaming.Energy(), streaming.Mean()
    signal >> cutter.signal
    cutter.frame >> energy.array
    cutter.frame >> mean.array
    energy.energy >> (pool, ENERGY)
    mean.mean >> (pool, MEAN)
    return [cutter, energy, mean]


def _duration(streaming: Any, cfg: AudioConfig, signal: Any, pool: Any, key: str) -> Any:
    duration = streaming.Duration(sampleRate=cfg.sample_rate)
    signal >> duration.signal
    duration.duration >> (pool, key)
    return duration
