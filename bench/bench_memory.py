"""Memory at library scale: flat across many files, and long tracks against short ones.

    python bench/bench_memory.py flat [--files 500] [--seconds 5] [--profile music]
    python bench/bench_memory.py long [--profile music] [--workdir DIR]

``flat``: one worker's Extractor (what every batch worker runs) analyses N short files; the
RSS after every 10% of them is printed, with the ratio of the last to the first reading
(target: about 1.0; memory does not creep up). ``long``: a 5-minute and a 60-minute track
(the 5-minute demo music repeated 12 times), each in a fresh process, peak RSS for ours and,
as the anchor measured in the same run, Essentia's MusicExtractor; target: the 60-minute
peak at most 2x the 5-minute one. Each measurement is a child process (ru_maxrss).
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

FLAT_CHILD = r"""
import json, os, sys
sys.path.insert(0, {root!r})
from runner.extract import Extractor

def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

files = {files!r}
extractor = Extractor({profile!r}, {overrides!r}, warn=False)
readings = []
step = max(1, len(files) // 10)
for i, path in enumerate(files, 1):
    extractor.extract(path, os.path.join({out!r}, "out.json"))
    if i % step == 0 or i == len(files):
        readings.append((i, rss()))
print(json.dumps(readings))
"""

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
    with tempfile.TemporaryDirectory() as work:
        originals = [make_audio(Path(work) / f"seed{s}.wav", args.seconds, seed=s)
                     for s in range(5)]
        files = [str(originals[i % len(originals)]) for i in range(args.files)]
        overrides = NO_MODELS if args.profile == "music" else []
        readings = child(FLAT_CHILD.format(root=str(ROOT), files=files, profile=args.profile,
                                           overrides=overrides, out=work))
    print(f"{args.profile}: {args.files} files of {args.seconds:.0f} s through one Extractor")
    for count, kib in readings:
        print(f"  after {count:5d} files: {kib / 1024:7.1f} MiB")
    first, last = readings[0][1], readings[-1][1]
    print(f"ratio last/first reading: {last / first:.3f} (target: about 1.0)")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("flat")
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--profile", default="music")
    p = sub.add_parser("long")
    p.add_argument("--profile", default="music")
    p.add_argument("--workdir", default=None, help="keep the generated audio here")
    args = parser.parse_args()
    flat(args) if args.mode == "flat" else long(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
