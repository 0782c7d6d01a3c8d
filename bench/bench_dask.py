"""Dask scheduling overhead per file, the client's memory with a long queue, and the cost of
asking the workers what they compute (issue 25 items 1 and 3).

A trivial per-file job (tests.work.Counted with 0 s: writes a small file, no analysis) over N
tiny files on a LocalCluster of worker processes, so the wall time per file is what the
scheduler, the client and the task round trip cost. Usage:

    python bench/bench_dask.py [--files 2000] [--workers 2] [--queued 100000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args()

    import distributed

    from runner.batch import Job
    from runner.batch.agreement import describe_profile
    from runner.batch.dask_workers import DaskWorkers
    from runner.batch.extract_job import ExtractorWork

    env = {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp, distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True,
            dashboard_address=None, env=env) as cluster:
        folder = Path(tmp)
        mini = str(ROOT / "tests" / "data" / "mini.yaml")
        describe = (describe_profile, (mini, (), "music"))
        engine = DaskWorkers((ExtractorWork, (mini, (), "music", False)),
                             cluster.scheduler_address, describe=describe)
        started = time.perf_counter()
        engine.survey()
        first = time.perf_counter() - started
        started = time.perf_counter()
        engine.survey()
        again = time.perf_counter() - started
        engine.close()
        print(f"survey (client + {args.workers} workers describe the profile): first "
              f"{first:.2f} s, again {again:.2f} s")

        jobs = [Job(i, folder / f"in{i}.wav", folder / "out" / f"{i}.json")
                for i in range(args.files)]
        (folder / "out").mkdir()
        from tests.work import Counted

        trivial = DaskWorkers((Counted, (os.devnull, 0.0)), cluster.scheduler_address)
        trivial.process(jobs[:50], lambda outcome: None)  # workers import the job once
        jobs = [Job(i, job.input, folder / "out2" / f"{i}.json") for i, job in enumerate(jobs)]
        started = time.perf_counter()
        result = trivial.process(jobs, lambda outcome: None)
        wall = time.perf_counter() - started
        assert result.done == args.files, result
        print(f"{args.files} trivial files on {args.workers} workers: {wall:.1f} s, "
              f"{1000 * wall / args.files:.2f} ms per file "
              f"({args.files / wall:.0f} files/s through one client)")

        before = rss_mib()
        queued = [Job(i, Path(f"/library/album{i // 12}/track{i % 12}.flac"),
                      Path(f"/features/album{i // 12}/track{i % 12}.json"))
                  for i in range(args.queued)]
        after = rss_mib()
        print(f"{args.queued} jobs queued in the client: +{after - before:.0f} MiB RSS "
              f"({1024 * 1024 * (after - before) / args.queued:.0f} bytes per file); "
              f"client peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
              f" MiB; futures held at once: at most the cluster's threads "
              f"({args.workers}), not {len(queued)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
