"""Searching stored CLAP vectors: 10,000 tracks already embedded (issue #6: well under 1 s).

A library's vectors are stored one ``.npy`` per track (music-clap --dump). A search then
(1) loads the stored vectors (from the store's index.npz, each file's mtime and size checked),
(2) scores every prompt against every track and keeps the best.
The text embedding itself (one model forward pass, about 0.1 s per prompt) and the model load
are not part of this: they do not grow with the library. Both steps below are timed as
``music-clap`` runs them (runner.library.clap_store.load_vectors and clap_search.rank). Usage:

    python bench/bench_clap_search.py [--tracks 10000] [--prompts 3] [--limit 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner import batch  # noqa: E402
from runner.library import clap_search, clap_store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10000)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vectors = rng.standard_normal((args.tracks, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        jobs = []
        for i, vector in enumerate(vectors):
            out = folder / f"artist{i % 100:02d}" / f"track{i:05d}.npy"
            clap_store.save_vector(out, vector)
            jobs.append(batch.Job(i, out.with_suffix(".wav"), out))
        queries = rng.standard_normal((args.prompts, 512)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        started = time.perf_counter()
        clap_store.load_vectors(jobs, folder)  # the run that embeds also writes index.npz
        first_s = time.perf_counter() - started
        load_s, rank_s = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            kept, matrix = clap_store.load_vectors(jobs, folder)
            loaded = time.perf_counter()
            best = clap_search.rank(matrix, queries, args.limit)
            ranked = time.perf_counter()
            load_s.append(loaded - started)
            rank_s.append(ranked - loaded)
        assert len(kept) == args.tracks and len(best[0]) == args.limit
        expected = np.argsort(-(vectors @ queries[0]))[: args.limit]
        assert [i for i, _ in best[0]] == expected.tolist()
    result = {"tracks": args.tracks, "prompts": args.prompts, "limit": args.limit,
              "first_load_ms (reads every .npy, writes index.npz)": round(first_s * 1000, 1),
              "load_ms_median": round(statistics.median(load_s) * 1000, 1),
              "rank_ms_median": round(statistics.median(rank_s) * 1000, 2),
              "total_ms_median": round(statistics.median(
                  [a + b for a, b in zip(load_s, rank_s, strict=True)]) * 1000, 1)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
