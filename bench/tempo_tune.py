"""Grid search of the consensus's constants on the tuning seed only (reads the estimates that
``bench/tempo_bench.py`` cached; never the evaluation seed's).

Prints the best settings by Acc1 on the tuning seed (Acc2 as tie-break), so the constants in
``runner/tempo/consensus.py`` can be checked: python bench/tempo_tune.py [--tune 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tempo_bench import acc1, acc2, view  # noqa: E402

from runner.tempo.consensus import Weights, consensus  # noqa: E402

GRID = {
    "essentia_vote": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
    "beats_vote": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
    "prior_center": [90.0, 100.0, 110.0, 120.0],
    "prior_weight": [0.0, 0.1, 0.2, 0.3, 0.5],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", type=int, default=2)
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tempo_set"))
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    rows = json.loads((args.workdir / f"estimates-{args.tune}-{args.count}.json").read_text())
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
