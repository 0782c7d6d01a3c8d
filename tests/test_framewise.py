"""The frame-wise rewrites of Essentia's whole-signal algorithms give Essentia's numbers.

DynamicComplexity and Danceability keep the whole signal, so the built-in profiles compute
them frame-wise instead (the dyn_* nodes of profiles/lowlevel.yaml with derive
dynamic_complexity; the dance_* nodes of profiles/rhythm.yaml with derive block_stand_in).
Here those very nodes run, through the same loader chain as every profile, on audio that
breaks block arithmetic: digital silence at either end, at both, in the middle, lengths that
are not a multiple of a block, signals shorter than a block. Each result must equal
essentia.standard.DynamicComplexity / Danceability on the same loader signal (EasyLoader
with the same replay gain, as MusicExtractor analyses it) within 1e-4 relative (1e-6
absolute near zero for danceability, 1e-5 dB for dynamic complexity: see DB). Before the fix leading and trailing silent blocks were counted and
dynamic complexity came out 1.7 to 3.1 times Essentia's on these signals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from runner import derive, registry
from runner.extract import Extractor
from tests.conftest import (
    SR,
    click_track,
    electronic_clip,
    noise_clip,
    piano_clip,
    tone,
    write_audio,
)

PROFILES = Path(__file__).parent.parent / "profiles"
BLOCK = int(0.2 * SR)  # DynamicComplexity's 200 ms block
# Dynamic complexity is in dB: two float32 computations of its formula agree to about 1e-6 dB
# (on a steady tone, whose complexity is 0.002 dB, Essentia's own value is 3.9e-4 relative
# from a float64 computation of the same formula), so 1e-5 dB absolute always passes.
DB = 1e-5


def _zeros(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), np.float32)


def _cases() -> dict[str, np.ndarray]:
    music = click_track(8.0, bpm=128)
    click_only = _zeros(4.0)
    click_only[SR:SR + 2048] = click_track(1.0)[:2048]
    return {
        "music": music,
        "leading_zeros": np.concatenate([_zeros(0.5), music]),
        "trailing_zeros": np.concatenate([music, _zeros(2.0)]),
        "trailing_zeros_quarter_second": np.concatenate([piano_clip(6.0), _zeros(0.25)]),
        "both_ends_odd_length": np.concatenate([_zeros(0.3), music[:5 * SR + 12345], _zeros(0.37)]),
        "silence_in_the_middle": np.concatenate([music[:4 * SR], _zeros(3.0), music[4 * SR:]]),
        "electronic_padded": np.concatenate([_zeros(0.25), electronic_clip(6.0), _zeros(0.75)]),
        "noise_padded": np.concatenate([_zeros(1.1), noise_clip(3.0), _zeros(0.6)]),
        "one_block_plus_one": np.concatenate([_zeros(0.05), music[:BLOCK + 1 - int(0.05 * SR)]]),
        "exactly_three_blocks": np.concatenate([music[:2 * BLOCK], _zeros(0.2)]),
        "shorter_than_a_block": music[:BLOCK - 1],
        "steady_tone_padded": np.concatenate([_zeros(0.4), tone(3.0, 330.0), _zeros(0.45)]),
        "silent_but_a_click": click_only,
    }


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> Extractor:
    """The built-in profiles' own dyn_* and dance_* nodes (read from their YAML, so the test
    follows any change to them) on the shared input fragment."""
    lowlevel = yaml.safe_load((PROFILES / "lowlevel.yaml").read_text())["graph"]
    rhythm = yaml.safe_load((PROFILES / "rhythm.yaml").read_text())["graph"]
    graph = {k: v for k, v in lowlevel.items() if k.startswith("dyn") or k == "dynamic_complexity"}
    graph |= {k: v for k, v in rhythm.items() if k.startswith("dance")}
    assert {"dyn_block_ends", "dynamic_complexity", "dance_stand_in", "danceability"} <= set(graph)
    profile = {
        "name": "framewise", "description": "the frame-wise rewrites only", "extends": "_input",
        "graph": graph,
        "descriptors": {
            "lowlevel.dynamic_complexity": {"from": "dynamic_complexity.dynamicComplexity",
                                            "single": True},
            "rhythm.danceability": {"from": "danceability.danceability", "single": True},
        },
    }
    path = tmp_path_factory.mktemp("framewise") / "framewise.yaml"
    path.write_text(yaml.safe_dump(profile))
    return Extractor(str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("framewise-audio")
    return {name: write_audio(folder / f"{name}.wav", signal) for name, signal in _cases().items()}


def _essentia_values(path: Path, replay_gain: float) -> tuple[float, float]:
    std = registry.quiet_essentia().standard
    signal = std.EasyLoader(filename=str(path), sampleRate=SR, replayGain=replay_gain)()
    return (float(std.DynamicComplexity(sampleRate=SR)(signal)[0]),
            float(std.Danceability()(signal)[0]))


@pytest.mark.parametrize("case", list(_cases()))
def test_frame_wise_values_equal_essentias_whole_signal_algorithms(extractor, files, case):
    doc, _ = extractor.analyse(str(files[case]))
    complexity, danceability = _essentia_values(
        files[case], doc["metadata"]["audio_properties"]["replay_gain"])
    assert doc["lowlevel"]["dynamic_complexity"] == pytest.approx(complexity, rel=1e-4, abs=DB)
    assert doc["rhythm"]["danceability"] == pytest.approx(danceability, rel=1e-4, abs=1e-6)


def test_dynamic_complexity_of_silent_blocks_only():
    """Every block silent (or none): Essentia's 0 complexity and -100 dB loudness."""
    for blocks in (0, 1, 5):
        frames = np.zeros((blocks + 1, 65), np.float32)
        out = derive.dynamic_complexity(frames)
        assert out == {"dynamicComplexity": 0.0, "loudness": -100.0}
