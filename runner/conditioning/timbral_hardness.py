"""Hardness of the timbral models (timbral_models 0.4, Timbral_Hardness.py): per onset, the
attack time of the sample-and-hold envelope, the largest spectral bandwidth early in the attack,
the attack's onset strength and spectral centroid; with the percussive share of the signal
(harmonic/percussive separation) and its mid-band loudness, through the package's regression.

The per-onset values of several parts of a long signal (excerpts) are pooled before the means,
as if the parts were one signal with those onsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runner.conditioning.timbral_attack import attack_centroid, attack_time, bandwidth_array
from runner.conditioning.timbral_onsets import (
    HOP,
    calculate_onsets,
    hold_envelope,
    onset_strength,
)

PAD = 4096  # the package's nperseg: zeros before the signal, and the onsets' start limit
BANDWIDTH_STEP = 128
MAX_ATTACK = 0.1  # s
COEFFICIENTS = np.array([12.079781720638145, 18.52100377170042, 14.139883645260355,
                         5.567690321917516, 3.9346817690405635, -4.326890461087848,
                         -85.60352209068202])


@dataclass
class HardnessOnsets:
    """Per-onset values of timbral_hardness, pooled over parts."""

    attack_times: list[float] = field(default_factory=list)  # log10 s
    strengths: list[float] = field(default_factory=list)  # largest onset strength of the segment
    bandwidths: list[float] = field(default_factory=list)  # Hz, onsets whose bandwidth rises
    bandwidth_strengths: list[float] = field(default_factory=list)  # their weights
    centroids: list[float] = field(default_factory=list)  # Hz, of the attacks' first 125 ms


def _bandwidth_peak(segment: np.ndarray, fs: float) -> float | None:
    """The largest bandwidth in the first 0.1 s of the segment's attack (the package's window
    test included), None when the bandwidth never rises."""
    if not len(segment) or not segment.max() > 0:
        return None
    found = attack_time(segment, fs / float(BANDWIDTH_STEP), fixed_threshold=True,
                        max_attack_time=MAX_ATTACK)
    if found is None:
        return None
    start, limit = found[1], int(MAX_ATTACK * (fs / float(BANDWIDTH_STEP)))
    if len(segment[start:]) > start + limit:
        return float(segment[start:start + limit].max())
    return float(segment[start:].max())


def hardness_onsets(audio: np.ndarray, fs: float, pooled: HardnessOnsets,
                    envelope: np.ndarray | None = None) -> bool:
    """Add the onsets of one signal (or part) to ``pooled``; False when one has no attack to
    measure (its envelope peaks at its first sample: the package fails there). ``envelope`` is
    the signal's sample-and-hold envelope (decay 0.1 s) when already computed."""
    padded = np.pad(np.asarray(audio, dtype=np.float64), (PAD + 1, 0))
    if envelope is None:
        envelope = hold_envelope(audio, fs, decay_time=0.1)
    envelope = np.pad(envelope, (PAD + 1, 0))  # the zeros' envelope is zero
    strength = onset_strength(padded, fs)
    onsets = calculate_onsets(padded, envelope, fs, nperseg=PAD, strength=strength)
    if len(onsets) == 1:
        onsets = [0]
    bandwidth = bandwidth_array(padded, fs, PAD, BANDWIDTH_STEP)
    starts = [int(max(0, x - PAD) / float(BANDWIDTH_STEP)) for x in onsets]
    for i, onset in enumerate(onsets):
        last = i == len(onsets) - 1
        stop = None if last else onsets[i + 1]
        step_stop = None if starts[i] == starts[-1] else starts[i + 1]
        widest = _bandwidth_peak(np.asarray(bandwidth[starts[i]:step_stop], dtype=float), fs)
        attack = attack_time(envelope[onset:stop], fs, max_attack_time=MAX_ATTACK)
        if attack is None:
            return False
        strengths = strength[int(onset / HOP):None if last else int(stop / HOP)]
        strongest = float(strengths.max()) if strengths.size else 0.0
        pooled.attack_times.append(attack[0])
        pooled.strengths.append(strongest)
        if widest is not None:
            pooled.bandwidths.append(widest)
            pooled.bandwidth_strengths.append(strongest)
        segment = padded[onset:stop][attack[1]:attack[1] + int(0.125 * fs)]
        centroid = attack_centroid(segment, fs) if len(segment) > 512 else None
        if centroid is not None:
            pooled.centroids.append(centroid)
    return True


def hardness(pooled: HardnessOnsets, midband: float, percussive: float, fs: float) -> float:
    """The package's regression on the pooled onsets, the RMS-weighted mid-band loudness
    (0.1-Bark bands 70-140) and the percussive energy ratio."""
    widest = fs / 512.0
    if pooled.bandwidths and sum(pooled.bandwidth_strengths) > 0:
        widest = float(np.average(pooled.bandwidths, weights=pooled.bandwidth_strengths))
        widest = fs / 512.0 if widest <= 512.0 else widest
    centroid = float(np.mean(pooled.centroids)) if pooled.centroids else 200.0
    with np.errstate(divide="ignore", invalid="ignore"):
        metrics = np.array([np.log10(widest), np.log10(max(centroid, 200.0)), np.log10(midband),
                            np.log10(percussive), np.log10(np.mean(pooled.strengths)),
                            np.mean(pooled.attack_times), 1.0])
    value = float(np.sum(metrics * COEFFICIENTS))
    return value if np.isfinite(value) else float("nan")
