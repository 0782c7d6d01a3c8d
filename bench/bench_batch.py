"""Batch throughput: the same folder of 30 s tracks with --jobs 1 and --jobs 2, in one run.

Prints files per second for each and the speed-up of 2 workers over 1 (the anchor). The target
(issue: library-scale runs) is a speed-up of at least 1.8 on 2 cores. Usage:

    python bench/bench_batch.py [--files 12] [--seconds 30] [--profile music] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_library(folder: Path, files: int, seconds: float) -> None:
    """Synthetic 30 s tracks at different tempi (tests/data/make_demo.py's generator)."""
    code = (
        "import sys, numpy as np, essentia; essentia.log.infoActive = False\n"
        "import essentia.standard as std\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.data.make_demo import demo\n"
        "folder, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
        "for i in range(n):\n"
        "    x = demo(seconds, seed=i)\n"
        "    st = np.ascontiguousarray(np.stack([x, x], axis=1))\n"
        "    std.AudioWriter(filename=f'{folder}/track{i:03d}.wav', sampleRate=44100)(st)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", code, str(folder), str(files), str(seconds)],
                   check=True, env=env, capture_output=True)


def run_batch(command: str, library: Path, out: Path, jobs: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    subprocess.run([command, str(library), "--output", str(out), "--jobs", str(jobs),
                    "--quiet"], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--profile", default="music")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    command = str(Path(sys.executable).with_name(f"streaming-extractor-{args.profile}"))
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        library, out = Path(tmp) / "lib", Path(tmp) / "out"
        library.mkdir()
        make_library(library, args.files, args.seconds)
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.rounds):  # alternate, so load changes hit both alike
            for jobs in (1, 2):
                times[jobs].append(run_batch(command, library, out, jobs))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{args.files} files of {args.seconds:.0f} s, profile {args.profile}, "
          f"{os.cpu_count()} cores, median of {args.rounds} rounds (process start included)")
    print(f"  --jobs 1 (anchor): {one:6.1f} s  {args.files / one:5.2f} files/s")
    print(f"  --jobs 2         : {two:6.1f} s  {args.files / two:5.2f} files/s")
    print(f"  speed-up: {one / two:.2f}x (target >= 1.8)")


if __name__ == "__main__":
    main()
