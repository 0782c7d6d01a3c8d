"""Memory at library scale: flat across many files, and long tracks against short ones.

    python bench/bench_memory.py flat [--files 500] [--seconds 5] [--files-per-worker 0 200]
    python bench/bench_memory.py long [--profile music] [--workdir DIR]
    python bench/bench_memory.py mixed [--profile music] [--workdir DIR]

``flat``: the batch engine with one worker analyses N short files; the worker's RSS after
every 10% of them is printed, with the ratio of the last (and the peak) to the first reading
(target: about 1.0; memory does not creep up), once with the worker never renewed and once
renewed every 200 files (the default, --files-per-worker).

``long``: a 5-minute and a 60-minute track (the 5-minute demo music repeated 12 times), each
in a fresh process (ru_maxrss), for ours and, as the anchor measured in the same run,
Essentia's MusicExtractor; target: the 60-minute peak at most 2x the 5-minute one.

``mixed``: the same tracks in one batch with one worker (5, 60, 5 minutes): the peak of its
workers, with long tracks given a fresh worker of their own (the default, see batch.LocalWorkers)
and without (one worker for all three).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LONG_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
side, path, profile, overrides = {side!r}, {path!r}, {profile!r}, {overrides!r}
started = time.perf_counter()
if side == "ours":
    from runner.extract import Extractor
    Extractor(profile, overrides, warn=False).extract(path, {out!r})
else:
    import essentia
    essentia.log.infoActive = essentia.log.warningActive = False
    import essentia.standard as std
    std.MusicExtractor()(path)
print(json.dumps({{"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "seconds": time.perf_counter() - started}}))
"""

MIXED_CHILD = r"""
import json, resource, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from runner import batch
from runner.batch.extract_job import ExtractorWork
profile, overrides, paths, out = {profile!r}, {overrides!r}, {paths!r}, {out!r}
jobs = [batch.Job(i, Path(p), Path(out) / f"{{i}}.json") for i, p in enumerate(paths)]
make = (ExtractorWork, (profile, overrides, "music", {alone!r}))
summary = batch.LocalWorkers(make, jobs=1, force=True).process(jobs, lambda outcome: None)
print(json.dumps({{"peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "seconds": summary.seconds, "done": summary.done}}))
"""

# The model stage is measured by bench_highlevel.py; here the music graph alone.
NO_MODELS = ["options.highlevel.compute=false"]


def child(code: str) -> object:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_audio(path: Path, seconds: float, repeat: int = 1, seed: int = 7) -> Path:
    """Synthetic music (tests/data/make_demo.py), in a child so this process stays small."""
    if path.exists():
        return path
    code = (f"import sys, numpy as np; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.data.make_demo import demo\nfrom tests.conftest import write_audio\n"
            "from pathlib import Path\n"
            f"x = np.tile(demo({seconds}, seed={seed}), {repeat})\n"
            f"write_audio(Path({str(path)!r}), x)\nprint('[]')")
    child(code)
    return path


def flat(args: argparse.Namespace) -> None:
    """The batch engine on N files with one worker: its memory after each file."""
    from runner import batch, compile
    from runner import profile as load
    from runner.batch.extract_job import ExtractorWork
    from runner.batch.inputs import made_by

    overrides = NO_MODELS if args.profile == "music" else []
    plan = compile.compile_profile(load.load_profile(args.profile, overrides))
    with tempfile.TemporaryDirectory() as work:
        originals = [make_audio(Path(work) / f"seed{s}.wav", args.seconds, seed=s)
                     for s in range(5)]
        jobs = [batch.Job(i, originals[i % len(originals)], Path(work) / "out" / f"{i}.json")
                for i in range(args.files)]
        for per_worker in args.files_per_worker:
            seen: list[batch.Outcome] = []
            engine = batch.LocalWorkers((ExtractorWork, (args.profile, overrides, "music")),
                                        made_by(plan.digest), jobs=1, force=True,
                                        files_per_worker=per_worker)
            summary = engine.process(jobs, seen.append)
            rss = [o.rss_kib / 1024 for o in sorted(seen, key=lambda o: o.job.index)]
            step = max(1, len(rss) // 10)
            label = "never renewed" if per_worker == 0 else f"renewed every {per_worker} files"
            print(f"{args.profile}: {args.files} files of {args.seconds:.0f} s, one worker, "
                  f"{label} ({summary.done} done, {summary.failed} failed)")
            for i in range(step - 1, len(rss), step):
                print(f"  after {i + 1:5d} files: {rss[i]:7.1f} MiB")
            print(f"  peak {max(rss):.1f} MiB; last / first reading: {rss[-1] / rss[step - 1]:.3f}"
                  f"; peak / first: {max(rss) / rss[step - 1]:.3f} (target: about 1.0)")


def long(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    short = make_audio(workdir / "music-5min.wav", 300.0)
    longer = make_audio(workdir / "music-60min.wav", 300.0, repeat=12)
    overrides = NO_MODELS if args.profile == "music" else []
    rows = {}
    for side in ("ours", "MusicExtractor"):
        for path in (short, longer):
            code = LONG_CHILD.format(root=str(ROOT), side=side, path=str(path),
                                     profile=args.profile, overrides=overrides,
                                     out=str(workdir / "out.json"))
            rows[(side, path.name)] = child(code)
    print(f"{'':16s} {'5 min':>12s} {'60 min':>12s} {'60/5':>6s}")
    for side in ("ours", "MusicExtractor"):
        a, b = rows[(side, short.name)], rows[(side, longer.name)]
        print(f"{side:16s} {a['peak_kib'] / 1024:8.0f} MiB {b['peak_kib'] / 1024:8.0f} MiB "
              f"{b['peak_kib'] / a['peak_kib']:6.2f}   ({a['seconds']:.0f} s, "
              f"{b['seconds']:.0f} s)")
    ours = rows[("ours", longer.name)]["peak_kib"] / rows[("MusicExtractor", longer.name)][
        "peak_kib"]
    print(f"ours / MusicExtractor on 60 min: {ours:.2f}; target: 60/5 <= 2.0")


def mixed(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    short = make_audio(workdir / "music-5min.wav", 300.0)
    longer = make_audio(workdir / "music-60min.wav", 300.0, repeat=12)
    overrides = NO_MODELS if args.profile == "music" else []
    paths = [str(short), str(longer), str(short)]
    print("one batch, one worker: 5, 60, 5 minutes; peak RSS of its workers")
    for alone in (True, False):
        code = MIXED_CHILD.format(root=str(ROOT), profile=args.profile, overrides=overrides,
                                  paths=paths, out=str(workdir / "mixed"), alone=alone)
        row = child(code)
        label = "long tracks alone (default)" if alone else "one worker for all"
        print(f"  {label:28s} {row['peak_kib'] / 1024:6.0f} MiB   ({row['done']} done, "
              f"{row['seconds']:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("flat")
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--profile", default="music")
    p.add_argument("--files-per-worker", type=int, nargs="+", default=[0, 200],
                   help="runs to compare (0: the worker is never renewed)")
    p = sub.add_parser("long")
    p.add_argument("--profile", default="music")
    p.add_argument("--workdir", default=None, help="keep the generated audio here")
    p = sub.add_parser("mixed")
    p.add_argument("--profile", default="music")
    p.add_argument("--workdir", default=None, help="keep the generated audio here")
    args = parser.parse_args()
    {"flat": flat, "long": long, "mixed": mixed}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
