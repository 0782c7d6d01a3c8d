"""Grid search of the consensus's constants on the tuning seeds only (reads the estimates that
``bench/tempo_bench.py`` cached; never the evaluation seed's).

Prints the settings by Acc1 over the tuning seeds together (Acc2 as tie-break), with
Essentia's own scores, so the constants in ``runner/tempo/consensus.py`` can be checked.
The rule used to pick them: the best Acc1 whose Acc2 is not below Essentia's; among equals,
the simplest (no prior, fewest votes), in the middle of its plateau.
Usage: python bench/tempo_tune.py [--tune 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tempo_bench import acc1, acc2, estimate_set, view  # noqa: E402

from runner.tempo.consensus import Weights, consensus  # noqa: E402

GRID = {
    "essentia_vote": [0.0, 0.1, 0.2, 0.3, 0.4, 0.6],
    "beats_vote": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 1.0, 1.2],
    "prior_center": [100.0, 120.0],
    "prior_weight": [0.0, 0.1, 0.2, 0.3],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tempo_set"))
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    rows = [row for seed in args.tune
            for row in estimate_set(seed, args.count, args.workdir, fresh=False)]
    print(f"essentia: Acc1 {np.mean([acc1(r['essentia']['bpm'], r['truth']) for r in rows]):.3f}"
          f" Acc2 {np.mean([acc2(r['essentia']['bpm'], r['truth']) for r in rows]):.3f}")
    views = [view(row) for row in rows]
    results = []
    for values in itertools.product(*GRID.values()):
        weights = Weights(**dict(zip(GRID, values, strict=True)))
        got = [consensus(r["essentia"]["bpm"], v, weights) for r, v in zip(rows, views,
                                                                          strict=True)]
        a1 = np.mean([acc1(g, r["truth"]) for g, r in zip(got, rows, strict=True)])
        a2 = np.mean([acc2(g, r["truth"]) for g, r in zip(got, rows, strict=True)])
        results.append((a1, a2, weights))
    results.sort(key=lambda item: (item[0], item[1]), reverse=True)
    for a1, a2, weights in results[: args.top]:
        print(f"Acc1 {a1:.3f} Acc2 {a2:.3f}  {weights}")
    print(f"{sum(1 for r in results if r[0] == results[0][0])} settings share the best Acc1")


if __name__ == "__main__":
    main()
