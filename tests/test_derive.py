"""Derive functions that stand in for a step inside an Essentia algorithm must give exactly
its numbers: here the streaming Key's treatment of the averaged PCP (runner.derive.key_pcp)."""

from __future__ import annotations

import numpy as np
import pytest

from runner import derive, registry


def _streaming_key(frames: np.ndarray, **params: object) -> tuple[str, str, float]:
    essentia = registry.quiet_essentia()
    source = essentia.streaming.VectorInput(frames)
    key = essentia.streaming.Key(**params)
    pool = essentia.Pool()
    source.data >> key.pcp
    key.key >> (pool, "key")
    key.scale >> (pool, "scale")
    key.strength >> (pool, "strength")
    essentia.run(source)
    return pool["key"], pool["scale"], float(pool["strength"])


@pytest.mark.parametrize("profile", ["temperley", "krumhansl", "edma"])
@pytest.mark.parametrize("seed", range(6))
def test_standard_key_on_key_pcp_of_the_mean_equals_the_streaming_key(profile, seed):
    rng = np.random.default_rng(seed)
    frames = rng.random((300, 36), dtype=np.float32) ** 3  # peaky, like HPCPs
    frames[:, (seed * 5) % 36] += 0.8  # a dominant bin, off the semitone centre for some seeds
    frames[rng.random(300) < 0.1] = 0.0  # silent frames
    params = {"numHarmonics": 4, "pcpSize": 36, "profileType": profile, "slope": 0.6,
              "usePolyphony": True, "useThreeChords": True}
    expected = _streaming_key(frames, **params)
    pcp = derive.key_pcp(frames.mean(axis=0), pcpThreshold=0.2, averageDetuningCorrection=True)
    got = registry.quiet_essentia().standard.Key(**params)(pcp["pcp"])
    assert (got[0], got[1], float(got[2])) == expected


def test_key_pcp_leaves_a_silent_profile_alone():
    out = derive.key_pcp(np.zeros(36, np.float32), pcpThreshold=0.2,
                         averageDetuningCorrection=True)["pcp"]
    assert out.dtype == np.float32 and not out.any()
