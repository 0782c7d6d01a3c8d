"""Tempo accuracy of Essentia, madmom and the consensus on the synthetic set, in one run.

For each seed (``--tune``, default 1 and 2, and ``--eval``, default 3: the consensus's
constants were chosen by looking at the tuning seeds only, bench/tempo_tune.py),
``bench/tempo_set.py`` writes its pieces into ``--workdir``, then each piece is analysed once
by:

- **essentia**: ``rhythm.bpm`` exactly as the music profile computes it (the built-in
  ``rhythm`` profile, whose graph the music profile includes: RhythmExtractor2013, method
  ``degara`` like Essentia's music extractor, on the replay-gain-normalised signal), with its
  BPM histogram peaks;
- **essentia-mf**: the same profile with ``rhythm.method=multifeature`` (the method Freesound's
  extractor uses; it also gives a confidence);
- **madmom**: ``runner.tempo.MadmomTempo`` (the strongest comb-filter peak of madmom's
  downbeat network's beat activation; ``madmom-beats`` is the tempo of its bar tracker's
  beats);
- **consensus**: ``runner.tempo.consensus`` of essentia (degara) and madmom; ``consensus-mf``
  the same with essentia-mf as the Essentia input.

Scores: Acc1 (within 4 % of the truth) and Acc2 (within 4 % of the truth times 1, 2, 1/2, 3
or 1/3). The estimates are cached in ``--workdir`` (``estimates-<seed>.json``), so a second run
only re-scores; ``--fresh`` recomputes them. The first run on a set takes about 5 s per
piece on this machine (Essentia twice, madmom once). ``--by-style`` adds Acc1 per style.

Usage: python bench/tempo_bench.py [--tune 1 2] [--eval 3] [--count 48] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tempo_set  # noqa: E402

from runner.tempo.consensus import MadmomView, consensus  # noqa: E402

TOLERANCE = 0.04
OCTAVES = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
ESSENTIA_KEYS = ("bpm", "bpm_histogram_first_peak_bpm", "bpm_histogram_first_peak_weight",
                 "bpm_histogram_second_peak_bpm", "bpm_histogram_second_peak_weight",
                 "bpm_confidence")
CONFIDENCE = "descriptors.rhythm.bpm_confidence={from: rhythm_extractor.confidence, single: true}"


def acc1(estimate: float, truth: float) -> bool:
    return abs(estimate - truth) <= TOLERANCE * truth


def acc2(estimate: float, truth: float) -> bool:
    return any(acc1(estimate, truth * factor) for factor in OCTAVES)


# ----------------------------------------------------------------------------- estimates


def _essentia(extractor: Any, path: Path) -> dict[str, float]:
    doc, _ = extractor.analyse(str(path))
    return {key: float(doc["rhythm"][key]) for key in ESSENTIA_KEYS if key in doc["rhythm"]}


def _cached(path: Path, fresh: bool, compute: Any) -> list[dict[str, Any]]:
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    rows = compute()
    path.write_text(json.dumps(rows))
    return rows


def _essentia_rows(pieces: list[tuple[Path, Any]]) -> list[dict[str, Any]]:
    import soundfile

    from runner.extract import Extractor

    degara = Extractor("rhythm", warn=False)
    multifeature = Extractor("rhythm", ["options.rhythm.method=multifeature", CONFIDENCE],
                             warn=False)
    rows = []
    for path, piece in pieces:
        rows.append({"file": path.name, "style": piece.style, "truth": piece.bpm,
                     "seconds": soundfile.info(str(path)).duration,
                     "essentia": _essentia(degara, path),
                     "essentia_mf": _essentia(multifeature, path)})
        print(f"  essentia {path.name}", file=sys.stderr)
    return rows


def _madmom_rows(pieces: list[tuple[Path, Any]]) -> list[dict[str, Any]]:
    import soundfile

    from runner.tempo.neural import MadmomTempo

    madmom = MadmomTempo()
    rows = []
    for path, _ in pieces:
        audio, sr = soundfile.read(path, dtype="float32")
        started = time.perf_counter()
        mm = madmom(audio, sr)
        rows.append({"bpm": mm.bpm, "tempi": mm.tempi.tolist(), "beats_bpm": mm.beats_bpm,
                     "histogram_bpm": mm.histogram_bpm.tolist(),
                     "histogram": mm.histogram.tolist(), "beats_per_bar": mm.beats_per_bar,
                     "madmom_seconds": time.perf_counter() - started})
        print(f"  madmom {path.name}", file=sys.stderr)
    return rows


def estimate_set(seed: int, count: int, workdir: Path, fresh: bool) -> list[dict[str, Any]]:
    """Every estimator's output for every piece of one seed (cached as JSON in workdir, one
    file per estimator: changing madmom's side does not recompute Essentia's)."""
    pieces = tempo_set.write(seed, workdir / f"seed{seed}", count)
    essentia = _cached(workdir / f"essentia-{seed}-{count}.json", fresh,
                       lambda: _essentia_rows(pieces))
    madmom = _cached(workdir / f"madmom-{seed}-{count}.json", fresh,
                     lambda: _madmom_rows(pieces))
    return [{**row, "madmom": mm, "madmom_seconds": mm["madmom_seconds"]}
            for row, mm in zip(essentia, madmom, strict=True)]


def view(row: dict[str, Any]) -> MadmomView:
    mm = row["madmom"]
    return MadmomView(tempi=np.asarray(mm["tempi"]), beats_bpm=mm["beats_bpm"],
                      histogram_bpm=np.asarray(mm["histogram_bpm"]),
                      histogram=np.asarray(mm["histogram"]))


def answers(row: dict[str, Any]) -> dict[str, float]:
    """Each method's tempo for one piece."""
    madmom = view(row)
    return {
        "essentia": row["essentia"]["bpm"],
        "essentia-mf": row["essentia_mf"]["bpm"],
        "madmom": row["madmom"]["bpm"],
        "madmom-beats": row["madmom"]["beats_bpm"],
        "consensus": consensus(row["essentia"]["bpm"], madmom),
        "consensus-mf": consensus(row["essentia_mf"]["bpm"], madmom),
    }


# ----------------------------------------------------------------------------- report


def table(sets: dict[str, list[dict[str, Any]]], by_style: bool) -> str:
    methods = list(answers(next(iter(sets.values()))[0]))
    head = f"{'method':<14}" + "".join(f"{name + ' Acc1':>16}{'Acc2':>7}" for name in sets)
    lines = [head, "-" * len(head)]
    for method in methods:
        cells = ""
        for rows in sets.values():
            got = [answers(row)[method] for row in rows]
            a1 = np.mean([acc1(g, r["truth"]) for g, r in zip(got, rows, strict=True)])
            a2 = np.mean([acc2(g, r["truth"]) for g, r in zip(got, rows, strict=True)])
            cells += f"{a1:>16.3f}{a2:>7.3f}"
        lines.append(f"{method:<14}{cells}")
    if by_style:
        for name, rows in sets.items():
            lines += ["", f"Acc1 per style, {name} ({', '.join(methods)}):"]
            for style in tempo_set.STYLES:
                picked = [r for r in rows if r["style"] == style]
                scores = [np.mean([acc1(answers(r)[m], r["truth"]) for r in picked])
                          for m in methods]
                lines.append(f"  {style:<11}" + " ".join(f"{s:5.2f}" for s in scores))
    return "\n".join(lines)


def speed(rows: list[dict[str, Any]]) -> str:
    factors = [r["madmom_seconds"] / r["seconds"] for r in rows]
    return (f"madmom tempo (downbeat network + histogram + bar tracker, 1 thread): median "
            f"{np.median(factors):.3f} x realtime, {30 * np.median(factors):.2f} s per 30 s clip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", type=int, nargs="+", default=[1, 2],
                        help="seeds the consensus was tuned on")
    parser.add_argument("--eval", type=int, nargs="+", default=[3], help="held-out seeds")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tempo_set"))
    parser.add_argument("--fresh", action="store_true", help="recompute the cached estimates")
    parser.add_argument("--by-style", action="store_true")
    args = parser.parse_args()
    sets = {f"tune s{seed}": estimate_set(seed, args.count, args.workdir, args.fresh)
            for seed in args.tune}
    sets.update({f"eval s{seed}": estimate_set(seed, args.count, args.workdir, args.fresh)
                 for seed in args.eval})
    print(table(sets, args.by_style))
    print()
    print(speed([row for rows in sets.values() for row in rows]))


if __name__ == "__main__":
    main()
