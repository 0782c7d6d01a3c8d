"""runner/tempo/bars.py: downbeats placed among given beats by madmom's downbeat activation
(the conditioning profile's 'bars: beats')."""

from __future__ import annotations

import numpy as np
import pytest

from runner.errors import ProfileError
from runner.extract import Extractor
from runner.registry import quiet_essentia
from runner.tempo.bars import FPS, downbeats_on_beats
from tests.conftest import SR
from tests.test_tempo import accented_clicks, needs_madmom

BEATS = np.arange(0.3, 20.0, 0.5)


def activation(downbeats: np.ndarray, seconds: float = 20.5) -> np.ndarray:
    """A (T, 2) activation: 0.8 at each downbeat, 0.05 on the other beats, 0 between."""
    act = np.zeros((int(seconds * FPS), 2))
    act[np.round(BEATS * FPS).astype(int), 0] = 0.6
    act[np.round(BEATS * FPS).astype(int), 1] = 0.05
    act[np.round(np.asarray(downbeats) * FPS).astype(int), 1] = 0.8
    return act


@pytest.mark.parametrize("per_bar, first", [(4, 1), (3, 2), (4, 0)])
def test_bars_of_the_accented_beats(per_bar, first):
    downbeats, length = downbeats_on_beats(BEATS, activation(BEATS[first::per_bar]))
    assert length == per_bar
    np.testing.assert_array_equal(downbeats, BEATS[first::per_bar])


def test_a_bar_may_restart_after_an_extra_beat():
    """Bars of four from beat 0, then one bar of five beats: the bars follow the accents."""
    accents = np.concatenate([BEATS[0:17:4], BEATS[21::4]])
    downbeats, length = downbeats_on_beats(BEATS, activation(accents))
    assert length == 4
    np.testing.assert_array_equal(downbeats, accents)


def test_no_bars_without_two_beats_or_any_activation():
    assert downbeats_on_beats(BEATS, np.zeros((2000, 2)))[1] == 0
    assert len(downbeats_on_beats(BEATS[:1], activation(BEATS[:1]))[0]) == 0
    assert downbeats_on_beats(np.zeros(0), np.zeros((0, 2)))[1] == 0


@needs_madmom
@pytest.mark.parametrize("per_bar", [3, 4])
def test_accented_click_tracks_on_essentias_beats(per_bar):
    """madmom's real activation of accented clicks: the downbeats are Essentia's beats at the
    loud clicks (every per_bar-th beat of 0.5 s)."""
    from runner.tempo.neural import MadmomTempo

    audio = accented_clicks(12.0, 120.0, per_bar)
    _, beats, *_ = quiet_essentia().standard.RhythmExtractor2013(method="degara")(audio)
    downbeats, length = downbeats_on_beats(beats, MadmomTempo().activation(audio, SR))
    assert length == per_bar
    assert set(downbeats) <= set(beats) and len(downbeats) >= 12 / (0.5 * per_bar) - 2
    bars = downbeats / (0.5 * per_bar)
    assert np.abs(bars - np.round(bars)).max() * 0.5 * per_bar < 0.03  # on the loud clicks


def test_bars_is_the_one_setting(write_profile):
    path = write_profile("name: p\nextends: conditioning\nmodels:\n  outputs:\n"
                         "    downbeats: {model: madmom-downbeats, section: rhythm, "
                         "params: {bars: bar_tracker}}\n")
    with pytest.raises(ProfileError) as caught:  # a profile problem, at the output's line
        Extractor(str(path))
    assert str(caught.value) == (
        f"{path}:5: models.outputs.downbeats: "
        "model 'madmom-downbeats': downbeats: the one setting is 'bars: beats', for downbeats "
        "and beats_per_bar (bars placed on rhythm.beats_position); not {'bars': 'bar_tracker'}")
