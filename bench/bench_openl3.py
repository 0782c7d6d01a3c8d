"""OpenL3's speed per core (music, mel256, 512-d): our mel front end and the network.

Essentia's graph (openl3-music-mel256-emb512-3.pb) cannot be fetched here, so the network is
built with random weights in the released shape (marl/openl3's mel256 audio network without its
kapre layer: batch norm, four blocks of two 3x3 convolutions (64, 128, 256, 512 filters) with
batch norm and ReLU, 2x2 max pooling after the first three, and the (32, 24) max pooling to 512;
speed does not depend on the values), frozen with OpenL3's node names in a TensorFlow process of
its own, registered with ``extractor models add`` as a user would, and run by
``runner.models.openl3`` on a ``--seconds`` signal, pinned to one core. Reported: seconds for
the front end and for the whole run, wall and CPU (median of ``--rounds``), and x realtime,
at ``--hop`` seconds between windows (openl3's default 0.1: 10 rows/s). Usage:

    python bench/bench_openl3.py [--seconds 30] [--rounds 3] [--hop 0.1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
NAME = "openl3-music-mel256-emb512-3.pb"


def build(out: Path) -> None:
    """The random-weight network as a frozen graph (run in a process without essentia)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf1 = tf.compat.v1
    rng = np.random.default_rng(0)

    def norm(x):  # batch norm at inference: a per-channel affine map
        width = int(x.shape[-1])
        scale = tf.constant(rng.uniform(0.5, 1.5, width).astype(np.float32))
        return x * scale + tf.constant(rng.normal(0, 0.1, width).astype(np.float32))

    def conv(x, filters):
        fan_in = 9 * int(x.shape[-1])
        kernel = rng.normal(0, np.sqrt(2 / fan_in), (3, 3, int(x.shape[-1]), filters))
        return tf.nn.conv2d(x, tf.constant(kernel.astype(np.float32)), 1, "SAME")

    graph = tf.Graph()
    with graph.as_default():
        y = norm(tf1.placeholder(tf.float32, [None, 256, 199, 1], name="melspectrogram"))
        for index, filters in enumerate((64, 128, 256, 512)):
            y = tf.nn.relu(norm(conv(y, filters)))
            y = conv(y, filters)
            if index < 3:
                y = tf.nn.max_pool2d(tf.nn.relu(norm(y)), 2, 2, "VALID")
        y = tf.nn.max_pool2d(y, (32, 24), (32, 24), "SAME")
        tf.identity(tf.reshape(y, [-1, 512]), name="embeddings")
    out.write_bytes(graph.as_graph_def().SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hop", type=float, default=0.1)
    parser.add_argument("--chunk", type=int, default=None, help="windows per session run")
    parser.add_argument("--build", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        return build(Path(args.build))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, __file__, "--build", str(root / NAME)], check=True)
        os.environ["EXTRACTOR_MODELS_LOCK"] = str(root / "bench.lock.json")
        os.environ["EXTRACTOR_MODELS"] = str(root / "cache")
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
        from runner.models import openl3
        from runner.models.framewise import LOADERS
        from runner.models.supply import cache, lock

        openl3.CHUNK = args.chunk or openl3.CHUNK
        openl3.add_graph(root / NAME, None, None)
        model = lock.get(openl3.DEFAULT_ID)
        started = time.perf_counter()
        network = LOADERS["openl3"](model, cache.resolved_files(model), {"hop_s": args.hop})
        load = time.perf_counter() - started
        rng = np.random.default_rng(1)
        signal = (0.1 * rng.standard_normal(int(args.seconds * 48000))).astype(np.float32)
        bands = openl3.MelBands.of(openl3.mel_filterbank(256))
        fronts, totals, cpus = [], [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            cut = openl3.windows(signal, int(args.hop * openl3.SAMPLE_RATE))
            for first in range(0, len(cut), openl3.CHUNK):
                openl3.melspectrogram(cut[first:first + openl3.CHUNK], bands)
            fronts.append(time.perf_counter() - started)
            started, cpu = time.perf_counter(), time.process_time()
            frames = network.run(signal)
            totals.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        front, total, cpu = (statistics.median(v) for v in (fronts, totals, cpus))
        print(f"openl3 mel256-emb512, {args.seconds:g} s on one core, {openl3.CHUNK} windows "
              f"per run: load {load:.2f} s, "
              f"front end {front:.2f} s, whole run {total:.2f} s wall, {cpu:.2f} s CPU "
              f"({args.seconds / cpu:.2f}x realtime per core), frames {frames.shape} at "
              f"{network.frame_rate:g} Hz; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
