"""Key and chord accuracy of Essentia and madmom on synthesised chord progressions, in one run.

Each piece is a chord progression in one of the 24 keys (three progressions per mode, one chord
per ``--seconds``), rendered with a drawn timbre (harmonic roll-off, decay, a little detuning
and noise), written to ``--workdir`` as 16-bit WAV, and analysed once with the built-in
``harmony`` profile:

- **essentia**: ``tonal.key_key``/``key_scale`` (the temperley profile, as the music profile
  writes it) and ``tonal.key_edma``;
- **madmom**: ``tonal.key_madmom`` (madmom's CNN) and ``tonal.chords_madmom`` (CNN + CRF).

Scores: key accuracy (tonic and mode), and madmom's chord accuracy, the share of 0.1 s frames
(away from 0.15 s of each chord change) whose label is the chord played. The truth is the
notated key and chords; the set is synthetic and small: it ranks estimators on these
pieces, it is no statement about recordings.

Usage: python bench/harmony_bench.py [--seed 1] [--seconds 1.0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SR = 44100
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # Essentia's
MADMOM_ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# (degree in semitones above the tonic, major?) per chord
PROGRESSIONS = {
    "major": [[(0, 1), (5, 1), (7, 1), (0, 1)] * 2,              # I IV V I
              [(0, 1), (9, 0), (2, 0), (7, 1), (0, 1)] * 2,      # I vi ii V I
              [(0, 1), (7, 1), (9, 0), (5, 1), (0, 1)] * 2],     # I V vi IV I
    "minor": [[(0, 0), (5, 0), (7, 1), (0, 0)] * 2,              # i iv V i
              [(0, 0), (8, 1), (3, 1), (7, 1), (0, 0)] * 2,      # i VI III V i
              [(0, 0), (10, 1), (8, 1), (7, 1), (0, 0)] * 2],    # i VII VI V i
}


def render(chords: list[tuple[int, int]], seconds: float, rng: np.random.Generator
           ) -> np.ndarray:
    """One chord per ``seconds``: a bass note and the triad in two octaves, a drawn timbre."""
    t = np.arange(int(SR * seconds)) / SR
    rolloff, decay = rng.uniform(0.8, 1.6), rng.uniform(0.5, 3.0)
    envelope = np.exp(-decay * t) * np.minimum(1.0, t * rng.uniform(50, 400))
    parts = []
    for root, major in chords:
        triad = (0, 4 if major else 3, 7)
        notes = [36 + root] + [48 + root + i for i in triad] + [60 + root + i for i in triad]
        x = np.zeros_like(t)
        for note in notes:
            f0 = 440.0 * 2 ** ((note - 69 + rng.normal(0, 0.05)) / 12)
            for h in range(1, 10):
                if f0 * h < 10000:
                    x += np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h ** rolloff
        parts.append(x * envelope)
    signal = np.concatenate(parts)
    signal += rng.normal(0, 0.01 * np.abs(signal).max(), len(signal))
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def chord_accuracy(found: list[list], truth: list[str], seconds: float) -> tuple[int, int]:
    """(frames right, frames scored) at 10 frames/s, away from the chord changes."""
    right = total = 0
    for frame in range(int(len(truth) * seconds * 10)):
        time_s = (frame + 0.5) / 10
        offset = time_s % seconds
        if offset < 0.15 or seconds - offset < 0.15:
            continue
        label = next((lab for start, end, lab in found if start <= time_s < end), "N")
        total += 1
        right += label == truth[int(time_s // seconds)]
    return right, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    from runner.extract import Extractor
    from tests.conftest import write_audio

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="harmony-bench-"))
    rng = np.random.default_rng(args.seed)
    extractor = Extractor("harmony", warn=False)
    keys = {"essentia": 0, "essentia-edma": 0, "madmom": 0}
    right = total = pieces = 0
    misses: dict[str, list[str]] = {"essentia": [], "madmom": []}  # piece: what was found
    started = time.perf_counter()
    for mode, progressions in PROGRESSIONS.items():
        for tonic in range(12):
            for number, degrees in enumerate(progressions):
                chords = [((tonic + d) % 12, major) for d, major in degrees]
                path = write_audio(workdir / f"{NAMES[tonic]}-{mode}-{number}.wav",
                                   render(chords, args.seconds, rng))
                doc, _ = extractor.analyse(str(path))
                tonal, truth_key = doc["tonal"], (NAMES[tonic], mode)
                keys["essentia"] += (tonal["key_key"], tonal["key_scale"]) == truth_key
                keys["essentia-edma"] += (tonal["key_edma"]["key"],
                                          tonal["key_edma"]["scale"]) == truth_key
                madmom = tonal["key_madmom"] or {}
                keys["madmom"] += (madmom.get("key"), madmom.get("scale")) == truth_key
                for name, found in (("essentia", (tonal["key_key"], tonal["key_scale"])),
                                    ("madmom", (madmom.get("key"), madmom.get("scale")))):
                    if found != truth_key:
                        misses[name].append(f"{path.stem}: {found[0]} {found[1]}")
                labels = [f"{MADMOM_ROOTS[root]}:{'maj' if major else 'min'}"
                          for root, major in chords]
                good, scored = chord_accuracy(tonal["chords_madmom"] or [], labels,
                                              args.seconds)
                right, total, pieces = right + good, total + scored, pieces + 1
    print(f"{pieces} pieces (seed {args.seed}, {args.seconds:g} s per chord) in "
          f"{time.perf_counter() - started:.0f} s")
    print("| estimator | key accuracy |\n|---|---|")
    for name, count in keys.items():
        print(f"| {name} | {count / pieces:.3f} ({count}/{pieces}) |")
    print(f"madmom chords: {right / total:.3f} of {total} frames right")
    for name, found in misses.items():
        print(f"{name} wrong on: {'; '.join(found) or 'none'}")


if __name__ == "__main__":
    main()
