"""Small derive functions: values Essentia's extractors compute in C++ outside any algorithm.

Each is a plain function on recorded values (numpy arrays, lists, numbers), declared with
its inputs, parameters and outputs so the compiler can check wires like algorithm ports.
Anything an Essentia algorithm can do belongs in the graph as that algorithm instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Function:
    name: str
    inputs: tuple[str, ...]
    params: dict[str, Any]
    outputs: tuple[str, ...]
    run: Callable[..., dict[str, Any]]
    doc: str
    types: dict[str, str]  # Essentia type of an output where it is fixed (else "any")
    input_types: dict[str, str] = field(default_factory=dict)  # what each input must be
    ranges: dict[str, str] = field(default_factory=dict)  # Essentia-style, e.g. "[2,inf)"


FUNCTIONS: dict[str, Function] = {}


def function(inputs: tuple[str, ...], outputs: tuple[str, ...],
             types: dict[str, str] | None = None, input_types: dict[str, str] | None = None,
             ranges: dict[str, str] | None = None, **params: Any) -> Callable:
    """Register a derive function; the compiler checks wires against ``input_types`` and
    parameters against the type of their default and ``ranges``, as for algorithms."""
    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        FUNCTIONS[fn.__name__] = Function(
            fn.__name__, inputs, params, outputs, fn, (fn.__doc__ or "").strip(),
            {name: (types or {}).get(name, "any") for name in outputs},
            {name: (input_types or {}).get(name, "any") for name in inputs},
            dict(ranges or {}),
        )
        return fn

    return register


@function(inputs=("values",), outputs=("count",), types={"count": "real"})
def count(values: Any) -> dict[str, Any]:
    """Number of items (e.g. rhythm.beats_count from the beat positions)."""
    return {"count": float(len(np.atleast_1d(values)) if np.size(values) else 0)}


@function(inputs=("hpcp",), outputs=("thpcp",), types={"thpcp": "vector_real"},
          input_types={"hpcp": "vector_real"})
def transpose_to_peak(hpcp: Any) -> dict[str, Any]:
    """Max-normalise a pitch-class profile and rotate it so its largest bin comes first
    (Essentia's tonal.thpcp, from the mean HPCP)."""
    vector = normalize_max(hpcp)["vector"]
    shift = int(np.argmax(vector)) if vector.size else 0
    return {"thpcp": np.roll(vector, -shift)}


@function(inputs=("db",), outputs=("factor",), types={"factor": "real"},
          input_types={"db": "real"}, offset=0.0)
def db_to_amplitude(db: Any, offset: float) -> dict[str, Any]:
    """10^((db + offset) / 20): Essentia's EasyLoader gain, ``replayGain + 6`` dB.

    Computed in float32 like Essentia's db2amp on Real: in double precision the factor
    differs in its last bit, and so does every sample it scales.
    """
    f32 = np.float32
    return {"factor": float(f32(10.0) ** ((f32(db) + f32(offset)) / f32(20.0)))}


@function(inputs=("loudness",), outputs=("average_loudness",), types={"average_loudness": "real"},
          input_types={"loudness": "vector_real"})
def average_loudness(loudness: Any) -> dict[str, Any]:
    """Essentia's lowlevel.average_loudness: mean of max-normalised frame loudness, in dB,
    squashed by tanh into [0, 1] (MusicLowlevelDescriptors::computeAverageLoudness)."""
    levels = np.asarray(loudness, dtype=np.float32).reshape(-1)
    if levels.size == 0:
        return {"average_loudness": 0.0}
    peak = max(float(levels.max()), 1e-4)
    levels = np.maximum(levels / np.float32(peak), np.float32(1e-4))
    mean = float(np.mean(levels, dtype=np.float32))
    level_db = -100.0 if mean < 1e-10 else 10.0 * np.log10(mean)
    x1, x2 = -5.0, -2.0
    squashed = 0.5 + 0.5 * np.tanh(-1.0 + 2.0 * (level_db - x1) / (x2 - x1))
    return {"average_loudness": float(squashed)}


@function(inputs=("vector",), outputs=("vector",), types={"vector": "vector_real"},
          input_types={"vector": "vector_real"})
def normalize_max(vector: Any) -> dict[str, Any]:
    """Divide by the maximum (left unchanged when the maximum is 0), as Essentia's normalize()."""
    v = np.asarray(vector, dtype=np.float32)
    peak = v.max() if v.size else 0.0
    return {"vector": v / peak if peak != 0 else v}


@function(inputs=("pcp",), outputs=("pcp",), types={"pcp": "vector_real"},
          input_types={"pcp": "vector_real"}, ranges={"pcpThreshold": "[0,1]"},
          pcpThreshold=0.2, averageDetuningCorrection=True)
def key_pcp(pcp: Any, pcpThreshold: float, averageDetuningCorrection: bool) -> dict[str, Any]:
    """What Essentia's streaming Key does to the mean of its PCP frames before the standard
    Key (key.cpp): max-normalise and zero the bins below ``pcpThreshold``, then max-normalise
    and rotate by the peak's offset within its semitone (averageDetuningCorrection). With it
    the keys run in standard mode on the one recorded mean HPCP, with identical results,
    instead of three streaming Keys that each store every HPCP frame (43 MB per hour)."""
    v = np.asarray(pcp, dtype=np.float32).reshape(-1)
    threshold = np.float32(pcpThreshold)
    if threshold > 0:
        v = normalize_max(v)["vector"]
        v = np.where(v < threshold, np.float32(0.0), v).astype(np.float32)
    if averageDetuningCorrection and v.size >= 12:
        v = normalize_max(v)["vector"]
        resolution = v.size // 12
        offset = int(np.argmax(v)) % resolution
        start = v.size + offset - resolution if offset > resolution // 2 else offset
        v = np.roll(v, -start)
    return {"pcp": v}


@function(inputs=("values",), outputs=("value",))
def last(values: Any) -> dict[str, Any]:
    """The last value of a series (e.g. the final running estimate of TuningFrequency)."""
    seq = np.asarray(values)
    return {"value": seq.reshape(-1)[-1].item() if seq.size else 0.0}


@function(inputs=("values",), outputs=("values",), types={"values": "vector_real"},
          input_types={"values": "vector_real"}, default=0.0)
def or_default(values: Any, default: float) -> dict[str, Any]:
    """The values, or ``[default]`` when there are none: FreesoundExtractor gives BeatsLoudness
    a single beat at 0 s when no beat was found (FreesoundRhythmDescriptors.cpp)."""
    seq = np.asarray(values, dtype=np.float32).reshape(-1)
    return {"values": seq if seq.size else np.asarray([default], dtype=np.float32)}


@function(inputs=("energy",), outputs=("dynamicComplexity", "loudness"),
          types={"dynamicComplexity": "real", "loudness": "real"},
          input_types={"energy": "vector_vector_real"})
def dynamic_complexity(energy: Any) -> dict[str, Any]:
    """Essentia's DynamicComplexity from its block energies, so the signal is never held.

    ``energy``: frames whose centre sample is the smoothed energy at the last sample of every
    whole block of 200 ms (Essentia's ``Vms``; a partial last block is ignored, as Essentia
    does), after a first frame whose centre is before the first sample (see the lowlevel
    profile). The steps below are DynamicComplexity::compute's after its energy loop, in its
    float32/double mix: levels in dB (Essentia's pow2db: DB_SILENCE_CUTOFF, -100 dB, below
    1e-10), blocks at exactly -100 dB dropped at both ends (leading and trailing digital
    silence; silence in the middle counts), loudness = mean level weighted by 0.9^-level,
    complexity = mean absolute deviation from it; an all-silent signal gives 0 and -100 dB.
    """
    f32 = np.float32
    frames = np.asarray(energy, dtype=f32)
    frames = frames.reshape(len(frames), -1) if frames.size else frames.reshape(0, 1)
    vms = frames[:, frames.shape[1] // 2][1:]
    with np.errstate(divide="ignore"):
        level = np.where(vms.astype(np.float64) < 1e-10, f32(-100.0),
                         f32(10.0) * np.log10(vms)).astype(f32)
    sounding = np.flatnonzero(level != f32(-100.0))
    if sounding.size == 0:
        return {"dynamicComplexity": 0.0, "loudness": -100.0}
    level = level[sounding[0]:sounding[-1] + 1]
    weight = np.power(f32(0.9), -level).astype(f32)
    weight = (weight / f32(np.sum(weight, dtype=np.float64))).astype(f32)
    loudness = f32(np.sum((weight * level).astype(f32), dtype=np.float64))
    # a running float32 sum (cumsum adds in order), as Essentia's
    complexity = np.cumsum(np.abs(level - loudness), dtype=f32)[-1]
    return {"dynamicComplexity": float(complexity / f32(level.size)), "loudness": float(loudness)}


@function(inputs=("variance",), outputs=("signal",), types={"signal": "vector_real"},
          input_types={"variance": "vector_real"}, ranges={"blockSize": "[2,inf)"},
          blockSize=441)
def block_stand_in(variance: Any, blockSize: int) -> dict[str, Any]:
    """A short signal with the same per-block standard deviations as the analysed one.

    Essentia's Danceability reads its signal only through the sample standard deviation of
    each block of ``blockSize`` samples (10 ms at its default 44100 Hz). Given each block's
    variance (Essentia's Variance, which divides by the block size), this returns two samples
    per block, ``0, sqrt(2) * stdev``, whose sample standard deviation is that block's: run
    Danceability on it with sampleRate 200 (2-sample blocks) and it computes the same
    detrended fluctuation analysis without the whole signal in memory.
    """
    var = np.asarray(variance, dtype=np.float64).reshape(-1)
    stdev = np.sqrt(var * blockSize / (blockSize - 1.0)).astype(np.float32)
    signal = np.zeros(2 * stdev.size, dtype=np.float32)
    signal[1::2] = (stdev.astype(np.float64) * np.sqrt(2.0)).astype(np.float32)
    return {"signal": signal}


@function(inputs=("pitch",), outputs=("pitch", "voiced_fraction", "mean_pitch_hz", "median_midi"),
          types={"pitch": "real", "voiced_fraction": "real", "mean_pitch_hz": "real",
                 "median_midi": "real"},
          input_types={"pitch": "vector_real"})
def melody_contour(pitch: Any) -> dict[str, Any]:
    """PredominantPitchMelodia's contour and what summarises it (the melody profile).

    Melodia gives the whole contour once, at the end of the stream (Hz per frame, 0 where
    no melody sounds); ``pitch`` gives its values back one per frame, so a descriptor
    computes statistics over the frames. ``voiced_fraction``: the share of frames with a
    melody (0 without frames); ``mean_pitch_hz`` and ``median_midi`` (a MIDI note number,
    69 = A4 = 440 Hz) over those frames, null when there is none.
    """
    contour = np.asarray(pitch, dtype=np.float64).reshape(-1)
    voiced = contour[contour > 0]
    values: dict[str, Any] = {
        "pitch": contour.astype(np.float32),
        "voiced_fraction": float(voiced.size / contour.size) if contour.size else 0.0,
        "mean_pitch_hz": float(voiced.mean()) if voiced.size else float("nan"),
        "median_midi": float(69 + 12 * np.log2(np.median(voiced) / 440.0))
        if voiced.size else float("nan"),
    }
    if not voiced.size:
        values["warning"] = "melody: no frame with a melody: its mean and median pitch are null"
    return values
