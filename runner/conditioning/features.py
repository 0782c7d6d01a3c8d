"""Loudness, spectral and harmony features of the conditioning profile, from values the graph
recorded (per-frame means, band energies, chroma frames).

Undefined values (the loudness or band level of digital silence, the key of a track without
pitched content) are NaN or None, written as null. Definitions: docs/conditioning.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.conditioning.loudness import ebu_r128
from runner.derive import function

NAN = float("nan")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
CHROMA_NAMES = tuple(f"chroma_{name.replace('#', 'sharp')}" for name in PITCH_CLASSES)
# LoudnessEBUR128's absolute gate: an integrated loudness at or below it measured nothing.
ABSOLUTE_GATE_LUFS = -70.0
# EBU R128's measuring windows: the integrated loudness gates 400 ms blocks, the loudness
# range 3 s short-term windows.
SHORTEST_LOUDNESS_S = 0.4
SHORTEST_RANGE_S = 3.0
# Chroma frames averaged per block of this many frames for harmonic_movement (about 2 s at
# a 2048-sample hop at 44.1 kHz).
MOVEMENT_BLOCK = 43


@function(inputs=("power", "blocks"), outputs=("lufs", "lra"),
          types={"lufs": "real", "lra": "real"},
          input_types={"power": "vector_real", "blocks": "integer"},
          ranges={"blockSeconds": "(0,inf)"}, blockSeconds=0.01)
def ebu_loudness(power: Any, blocks: Any, blockSeconds: float) -> dict[str, Any]:
    """Integrated loudness (LUFS) and loudness range (LU) from the K-weighted power of each
    100 ms block (runner.conditioning.loudness); null when nothing passed the absolute gate
    (silence) or the audio is shorter than what EBU R128 measures over (400 ms for the
    integrated loudness, which LoudnessEBUR128 would pad with silence, 3 s for the range),
    with a warning saying so. ``blocks``: whole ``blockSeconds`` blocks of audio."""
    seconds = float(blocks) * blockSeconds
    if seconds < SHORTEST_LOUDNESS_S:
        return {"lufs": NAN, "lra": NAN, "warning": f"too short for EBU R128: {seconds:.2f} s "
                f"of audio (under {SHORTEST_LOUDNESS_S} s); conditioning.lufs and lra are null"}
    lufs, lra = ebu_r128(np.asarray(power, dtype=np.float64).reshape(-1))
    if not np.isfinite(lufs) or lufs <= ABSOLUTE_GATE_LUFS:
        return {"lufs": NAN, "lra": NAN}
    if seconds < SHORTEST_RANGE_S:
        return {"lufs": lufs, "lra": NAN, "warning": f"too short for a loudness range: "
                f"{seconds:.2f} s of audio (under {SHORTEST_RANGE_S} s); conditioning.lra "
                "is null"}
    return {"lufs": lufs, "lra": lra}


@function(inputs=("values",), outputs=("mean",), types={"mean": "real"},
          input_types={"values": "vector_real"})
def mean_or_null(values: Any) -> dict[str, Any]:
    """The mean of per-frame values; null when there is no frame or a value is not finite."""
    seq = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(seq.mean()) if seq.size else NAN
    return {"mean": mean if np.isfinite(mean) else NAN}


@function(inputs=("energy",), outputs=("rms_db",), types={"rms_db": "real"},
          input_types={"energy": "vector_real"},
          ranges={"frameSize": "[2,inf)"}, frameSize=2048, windowPower=0.375)
def band_rms_db(energy: Any, frameSize: int, windowPower: float) -> dict[str, Any]:
    """The RMS level (dB re full scale: a sine of amplitude 1 is -3.01 dB) of the signal within
    a band, from EnergyBand's per-frame sum of squared magnitudes of an unnormalised window
    (Parseval: mean square = 2 * energy / (N^2 * mean(w^2)); Hann: mean(w^2) = 3/8)."""
    frames = np.asarray(energy, dtype=np.float64).reshape(-1)
    if frames.size == 0:
        return {"rms_db": NAN}
    mean_square = 2.0 * frames.mean() / (float(frameSize) ** 2 * windowPower)
    return {"rms_db": 10.0 * np.log10(mean_square) if mean_square > 1e-20 else NAN}


@function(inputs=("hpcp",), outputs=(*CHROMA_NAMES, "harmonic_movement", "harmonic_variance"),
          types={**{name: "real" for name in CHROMA_NAMES}, "harmonic_movement": "real",
                 "harmonic_variance": "real"},
          input_types={"hpcp": "vector_vector_real"})
def chroma_features(hpcp: Any) -> dict[str, Any]:
    """Twelve pitch-class weights (the mean 12-bin HPCP, A first as Essentia's HPCP gives it,
    rotated to start at C and max-normalised to 1), harmonic movement (mean cosine distance
    between consecutive ~2 s chroma blocks, 0-1) and harmonic variance (mean over the pitch
    classes of the variance of the sum-normalised frame chroma). Null without pitched frames."""
    frames = np.asarray(hpcp, dtype=np.float64)
    frames = frames.reshape(len(frames), -1) if frames.size else frames.reshape(0, 12)
    sums = frames.sum(axis=1)
    pitched = frames[sums > 0]
    if pitched.shape[0] == 0:
        return {**dict.fromkeys(CHROMA_NAMES, NAN), "harmonic_movement": NAN,
                "harmonic_variance": NAN}
    pitched = np.roll(pitched, -3, axis=1)  # HPCP bin 0 is A (440 Hz): C is three bins up
    mean = pitched.mean(axis=0)
    chroma = mean / mean.max()
    normalised = pitched / pitched.sum(axis=1, keepdims=True)
    return {**{name: float(v) for name, v in zip(CHROMA_NAMES, chroma, strict=True)},
            "harmonic_movement": _movement(pitched),
            "harmonic_variance": float(normalised.var(axis=0).mean())}


def _movement(frames: np.ndarray) -> float:
    """Mean cosine distance between consecutive blocks of MOVEMENT_BLOCK chroma frames;
    0 for a track of one block."""
    count = frames.shape[0] // MOVEMENT_BLOCK
    if count < 2:
        return 0.0
    blocks = frames[:count * MOVEMENT_BLOCK].reshape(count, MOVEMENT_BLOCK, -1).mean(axis=1)
    unit = blocks / np.maximum(np.linalg.norm(blocks, axis=1, keepdims=True), 1e-12)
    return float(np.mean(1.0 - (unit[1:] * unit[:-1]).sum(axis=1)))


@function(inputs=("key", "scale", "strength"), outputs=("key", "scale"),
          input_types={"key": "string", "scale": "string", "strength": "real"},
          ranges={"minStrength": "[0,1]"}, minStrength=0.1)
def key_or_null(key: Any, scale: Any, strength: Any, minStrength: float) -> dict[str, Any]:
    """Key and scale, or null for both when the key's strength (correlation with its profile)
    is below ``minStrength``: silence and unpitched noise have no key."""
    if not np.isfinite(float(strength)) or float(strength) < minStrength:
        return {"key": None, "scale": None}
    return {"key": str(key), "scale": str(scale)}


@function(inputs=("frames",), outputs=("vector",), types={"vector": "vector_real"},
          input_types={"frames": "vector_vector_real"}, ranges={"size": "[1,inf)"}, size=36)
def mean_frame(frames: Any, size: int) -> dict[str, Any]:
    """The mean of the frames, or ``size`` zeros when there is none (silence: the key
    estimated from it then has no strength, and key_or_null writes null)."""
    array = np.asarray(frames, dtype=np.float32)
    if array.size == 0:
        return {"vector": np.zeros(size, dtype=np.float32)}
    return {"vector": array.reshape(len(array), -1).mean(axis=0).astype(np.float32)}
