"""Downbeats among given beats: which of a track's beats (Essentia's) start a bar, read from
madmom's downbeat activation (runner.tempo.neural).

madmom's own bar tracker (DBNDownBeatTrackingProcessor) decodes beats and bars together from
the activations at 100 frames/s over every tempo from 55 to 205 BPM: 4 s of CPU and a 1.4 GB
pointer table per 4-minute track, growing with the length, and its beats need not be the beats
the rest of the output holds. Here the beats are given, so only their places in the bar are
decoded: an HMM over the positions 1..N of a bar of N beats (3 or 4), one step per beat, the
downbeat position observing the downbeat activation at the beat and the others its
complement; a bar may restart at any position with a small probability (a missed or extra
beat). The bar length with the likelier path wins, 4 on a tie. Cost: milliseconds.
"""

from __future__ import annotations

import numpy as np

from runner.tempo.neural import ACTIVATION_FLOOR

FPS = 100  # madmom's activation frames per second
REACH_S = 0.05  # the activation peak read within this distance of each beat
RESTART = 0.02  # probability per beat of a bar restarting at another position
FLOOR = 1e-6  # keeps log-probabilities finite
BAR_LENGTHS = (4, 3)  # tried in this order: the first wins a tie


def beat_activations(beats: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """The largest downbeat activation within REACH_S of each beat (0 past the end)."""
    downbeat = np.asarray(activation, dtype=np.float64).reshape(-1, 2)[:, 1]
    reach = int(round(REACH_S * FPS))
    values = np.zeros(len(beats))
    for index, time in enumerate(beats):
        centre = int(round(time * FPS))
        window = downbeat[max(0, centre - reach):max(0, centre + reach + 1)]
        values[index] = window.max() if window.size else 0.0
    return values


def _viterbi(observed: np.ndarray, length: int) -> tuple[float, np.ndarray]:
    """(log-probability, position of each beat: 0 = downbeat) of the best path."""
    emit = np.log(np.clip(np.where(np.arange(length)[None, :] == 0, observed[:, None],
                                   1.0 - observed[:, None]), FLOOR, None))
    advance = np.roll(np.eye(length), 1, axis=1)  # position p -> p + 1 (mod length)
    moves = np.where(advance > 0, 1.0 - RESTART, RESTART / max(length - 1, 1))
    transition = np.log(moves) if length > 1 else np.zeros((1, 1))
    score = emit[0] - np.log(length)
    back = np.zeros((len(observed), length), dtype=int)
    for step in range(1, len(observed)):
        candidates = score[:, None] + transition
        back[step] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + emit[step]
    path = np.zeros(len(observed), dtype=int)
    path[-1] = int(score.argmax())
    for step in range(len(observed) - 1, 0, -1):
        path[step - 1] = back[step, path[step]]
    return float(score.max()), path


def downbeats_on_beats(beats: np.ndarray, activation: np.ndarray) -> tuple[np.ndarray, int]:
    """(the beats that start a bar, beats per bar) for ``beats`` (s) and madmom's (T, 2)
    beat and downbeat activation; no downbeats and 0 with fewer than two beats or without
    activation (silence: nothing reaches ACTIVATION_FLOOR, as for madmom's tracker)."""
    beats = np.asarray(beats, dtype=np.float64).reshape(-1)
    activation = np.asarray(activation, dtype=np.float64).reshape(-1, 2)
    if len(beats) < 2 or not len(activation) or \
            activation.sum(axis=1).max() < ACTIVATION_FLOOR:
        return np.zeros(0), 0
    observed = beat_activations(beats, activation)
    best = max(((*_viterbi(observed, length), length) for length in BAR_LENGTHS),
               key=lambda result: result[0])  # max keeps the first of equal scores
    _, path, length = best
    return beats[path == 0], length
