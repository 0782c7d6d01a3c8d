"""Deterministic test signals for the timbral attributes (tests/test_timbral.py), also used by
the script that made tests/data/timbral_reference.json with the patched timbral_models 0.4."""

from __future__ import annotations

import numpy as np

SR = 44100
SECONDS = 3.0


def signals(sr: int = SR, seconds: float = SECONDS) -> dict[str, np.ndarray]:
    """Noise bursts, a tone in noise, decaying clicks, a reverberant tail and a low boomy tone."""
    rng = np.random.default_rng(23)
    t = np.arange(int(seconds * sr)) / sr
    noise = rng.standard_normal(t.size)
    clicks = sum(np.where(t >= t0, np.exp(-(t - t0) * 60), 0.0)
                 for t0 in np.arange(0.1, seconds, 0.25))
    tail = sum(np.where(t >= t0, np.exp(-(t - t0) * 6), 0.0) for t0 in (0.1, 1.1, 2.1))
    return {
        "noise_bursts": 0.3 * noise * ((t % 0.5) < 0.1),
        "tone_in_noise": 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise,
        "decaying_clicks": 0.3 * noise * clicks,
        "reverberant_tail": 0.3 * noise * tail,
        "boomy_tone": 0.5 * np.sin(2 * np.pi * 60 * t) + 0.2 * np.sin(2 * np.pi * 120 * t),
    }
