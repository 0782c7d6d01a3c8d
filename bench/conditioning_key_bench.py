"""The conditioning key with and without HPCP's band preset, on progressions with and without a
bass line and drums (the evidence for ``bandPreset: true`` in profiles/conditioning.yaml).

Each of bench/harmony_bench.py's 72 progressions (three per mode, 24 keys, 1.5 s per chord) is
written twice: as rendered ("clean"), and mixed with a bass line on each chord's root (octave
2, five harmonics) and a kick/snare/hi-hat loop ("band"). The conditioning profile (no model
stage) is run on each with the key HPCP's bandPreset false, then true; the score is the share
of pieces whose key and mode are the notated ones. Measured 2026-12-07: bandPreset false: clean
72/72, band 52/72; true: clean 72/72, band 72/72.

Usage: python bench/conditioning_key_bench.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from harmony_bench import NAMES, PROGRESSIONS, SR, render  # noqa: E402

from runner.extract import Extractor  # noqa: E402
from tests.conftest import write_audio  # noqa: E402


def drums(n: int, bpm: float, rng: np.random.Generator) -> np.ndarray:
    """Kick on odd beats, snare on even ones, hi-hats on every beat (tests/data/make_demo.py's)."""
    out = np.zeros(n)
    beat = 60 / bpm
    tk = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-tk / 0.03)) * tk) * np.exp(-tk / 0.12)
    snare = rng.standard_normal(int(0.2 * SR)) * np.exp(-np.arange(int(0.2 * SR)) / (0.05 * SR))
    hat = np.diff(rng.standard_normal(int(0.05 * SR))
                  * np.exp(-np.arange(int(0.05 * SR)) / (0.01 * SR)), prepend=0)
    for i in range(int(n / SR / beat)):
        s = int(i * beat * SR)
        for seg in ((kick if i % 2 == 0 else 0.35 * snare), 0.15 * hat):
            out[s:s + len(seg)] += seg[:max(0, min(len(seg), n - s))]
    return out


def bass_line(chords: list[tuple[int, int]]) -> np.ndarray:
    """Each chord's root in octave 2 (E2..D#3), five harmonics, decaying."""
    t = np.arange(int(SR * 1.5)) / SR
    parts = []
    for root, _ in chords:
        f0 = 440 * 2 ** ((24 + root + (12 if root < 4 else 0) - 69 + 12) / 12) / 2
        parts.append(sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * np.exp(-2 * t))
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as temp:
        work = args.workdir or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        pieces = []
        for tonic in range(12):
            for mode in ("major", "minor"):
                for k, prog in enumerate(PROGRESSIONS[mode]):
                    chords = [((tonic + d) % 12, m) for d, m in prog]
                    x = render(chords, 1.5, rng).astype(np.float64)
                    bass = bass_line(chords)
                    band = (x / np.abs(x).max() + 0.6 * bass / np.abs(bass).max()
                            + 0.8 * drums(len(x), 100 + 10 * k, rng))
                    name = f"{NAMES[tonic]}_{mode}_{k}"
                    for kind, signal in (("clean", x), ("band", band)):
                        write_audio(work / f"{name}_{kind}.wav",
                                    (0.3 * signal / np.abs(signal).max()).astype(np.float32))
                    pieces.append((name, NAMES[tonic], mode))
        for preset in ("false", "true"):
            extractor = Extractor("conditioning", [
                "options.conditioning.classifiers=false",
                f"graph.key_hpcp.params.bandPreset={preset}"], warn=False)
            for kind in ("clean", "band"):
                right = 0
                for name, key, mode in pieces:
                    cond = extractor.analyse(str(work / f"{name}_{kind}.wav"))[0]["conditioning"]
                    right += (cond.get("key"), cond.get("scale")) == (key, mode)
                print(f"bandPreset={preset} {kind}: {right}/{len(pieces)} keys right", flush=True)


if __name__ == "__main__":
    main()
