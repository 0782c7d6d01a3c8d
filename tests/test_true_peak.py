"""The conditioning profile's true peak (runner/conditioning/true_peak.py): the screened
interpolation equals interpolating every sample, and it finds peaks between samples."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runner.conditioning.true_peak import HALF_TAPS, TAPS, interpolated_peak, true_peak_db


def every_point(x: np.ndarray) -> float:
    """The peak of all samples and all three in-between phases, without screening."""
    padded = np.pad(x.astype(np.float64), (HALF_TAPS - 1, HALF_TAPS))
    points = sliding_window_view(padded, 2 * HALF_TAPS) @ TAPS
    return float(max(np.abs(x).max(), np.abs(points).max()))


def test_screening_changes_nothing():
    rng = np.random.default_rng(7)
    for _ in range(150):
        n = int(rng.integers(1, 9000))
        x = (rng.standard_normal(n) * rng.uniform(0.01, 1.0)).astype(np.float32)
        if rng.uniform() < 0.5:  # one loud sample somewhere, or an alternating burst
            at = int(rng.integers(0, n))
            x[at:at + 6] = 0.9 * np.array([1, -1, 1, -1, 1, -1])[:len(x[at:at + 6])]
        assert np.isclose(interpolated_peak(x), every_point(x), rtol=1e-6)


def test_peak_between_samples():
    """A sine at a quarter of the sample rate, sampled 45 degrees off its crests: every sample
    is at 0.707 of the amplitude (-3.01 dB), the true peak is the amplitude."""
    n = np.arange(44100)
    fade = np.minimum(1.0, np.minimum(n, n[::-1]) / 441.0)  # no click at either end
    x = (0.5 * fade * np.sin(np.pi / 2 * n + np.pi / 4)).astype(np.float32)
    assert abs(20 * np.log10(np.abs(x).max() / 0.5) - -3.01) < 0.01
    assert abs(true_peak_db(x, x)["true_peak"] - 20 * np.log10(0.5)) < 0.01


def test_samples_pass_unchanged_and_silence_is_null():
    x = np.zeros(5000, dtype=np.float32)
    x[2500] = 0.25  # one sample: its neighbours' interpolated points are smaller
    assert interpolated_peak(x) == 0.25
    assert interpolated_peak(np.zeros(0, dtype=np.float32)) == 0.0
    assert np.isnan(true_peak_db(np.zeros(10), np.zeros(10))["true_peak"])
