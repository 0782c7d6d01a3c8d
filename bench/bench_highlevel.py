"""Highlevel speed: musicnn tags per CPU core, against Essentia's own wrapper.

    python bench/bench_highlevel.py [--seconds 120] [--tracks 3] [--taxonomies msd_musicnn]

Runs the built-in highlevel profile restricted to the given outputs (default: msd_musicnn and
mtt_musicnn, two embedding models) in a child process limited to one TensorFlow thread, and
reports audio seconds per CPU second ("x realtime per core"; target: at least 30). The
anchor, measured in the same run on the same audio, is one TensorflowPredictMusiCNN call
(Essentia's wrapper: one model, one output, overlapping patches); the ratio says what the
whole stage (decode, resample, models, heads) costs next to it. Needs the converted musicnn
models: the first run fetches them (`extractor models fetch default`, 29 MB from PyPI).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, {root!r})
from runner.extract import Extractor
from runner.models.supply import cache, lock
from runner import registry

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

files = {files!r}
mode = {mode!r}
if mode == "ours":
    ex = Extractor("highlevel", ["models.select=[{select}]"], warn=False)
    ex.analyse(files[0])  # warm-up: graphs loaded, sessions created
    start = cpu()
    for f in files:
        ex.analyse(f)
else:
    std = registry.quiet_essentia().standard
    folder = cache.require(lock.get("musicnn-msd")).folder
    model = std.TensorflowPredictMusiCNN(graphFilename=str(folder / "musicnn-msd.pb"),
                                         output="model/Sigmoid")
    audio = [std.MonoLoader(filename=f, sampleRate=16000, resampleQuality=4)() for f in files]
    model(audio[0])
    start = cpu()
    for a in audio:
        model(a)
print(json.dumps({{"cpu": cpu() - start}}))
"""


def measure(mode: str, files: list[str], select: str = "") -> float:
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    code = CHILD.format(root=str(Path(__file__).resolve().parent.parent), files=files, mode=mode,
                       select=select)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["cpu"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--tracks", type=int, default=3)
    parser.add_argument("--taxonomies", nargs="+", default=["msd_musicnn", "mtt_musicnn"],
                        help="highlevel outputs to run (default: both musicnn taggers)")
    args = parser.parse_args()
    from runner.models.supply import cache, lock

    if not all(cache.locate(m).ok for m in lock.select(["default"])):
        print("fetching the musicnn models (extractor models fetch default) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "runner.cli", "models", "fetch", "default"],
                       check=True)
    from tests.conftest import electronic_clip, piano_clip, write_audio

    with tempfile.TemporaryDirectory() as work:
        files = []
        for i in range(args.tracks):
            clip = (electronic_clip if i % 2 == 0 else piano_clip)(args.seconds)
            files.append(str(write_audio(Path(work) / f"t{i}.wav", clip)))
        audio = args.seconds * args.tracks
        anchor = measure("anchor", files)
        ours = measure("ours", files, ", ".join(args.taxonomies))
    print(f"audio: {args.tracks} tracks x {args.seconds:.0f} s; one TensorFlow thread")
    print(f"anchor  TensorflowPredictMusiCNN (1 model, 1 output): {anchor:6.2f} CPU s "
          f"= {audio / anchor:5.1f}x realtime per core")
    print(f"ours    highlevel {' + '.join(args.taxonomies)} (decode, resample, models): "
          f"{ours:6.2f} CPU s = {audio / ours:5.1f}x realtime per core")
    print(f"ratio ours/anchor (CPU time): {ours / anchor:.2f}  (target: >= 30x realtime per "
          f"core for ours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
