"""CLAP audio embedding speed: x realtime per CPU core (issue #6 target: >= 40 for HTSAT-tiny).

Builds laion-clap's real HTSAT model with random weights (same shapes and operations as the
released checkpoints: speed does not depend on the weight values), with torch limited to one
thread, and times ``ClapBackend.embed_audio`` (our windowing: 10 s windows, batched) on a
``--seconds`` signal; optionally also decoding a WAV with Essentia (44.1 kHz -> 48 kHz), as
music-clap does per file. Reported: audio seconds per wall second = x realtime on one core.
Usage:

    python bench/bench_clap.py [--amodel HTSAT-tiny] [--seconds 120] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amodel", default="HTSAT-tiny", help="HTSAT-tiny or HTSAT-base")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from runner.models import clap

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    text = clap.roberta_config()
    text.num_hidden_layers = 1  # the text side is not timed; keep the build short
    net = clap.build_laion_clap(args.amodel, text)
    clap.fast_spectrogram(net)
    backend = clap.LaionClapBackend.__new__(clap.LaionClapBackend)
    backend.net = net  # the real embedding path without a checkpoint file

    rng = np.random.default_rng(0)
    signal = (0.2 * rng.standard_normal(int(args.seconds * clap.SAMPLE_RATE))).astype(np.float32)
    backend.embed_audio(signal[: clap.WINDOW])  # warm-up
    model_s = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        backend.embed_audio(signal)
        model_s.append(time.perf_counter() - started)

    from runner import registry
    from runner.library import clap_search

    registry.quiet_essentia()
    import essentia.standard as std

    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "track.wav")
        n = int(args.seconds * 44100)
        x = (0.2 * rng.standard_normal(n)).astype(np.float32)
        std.AudioWriter(filename=wav, sampleRate=44100)(np.ascontiguousarray(np.stack([x, x], 1)))
        file_s = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            backend.embed_audio(clap_search.decode(wav))
            file_s.append(time.perf_counter() - started)

    model = statistics.median(model_s)
    whole = statistics.median(file_s)
    print(json.dumps({
        "amodel": args.amodel, "torch_threads": args.threads, "audio_s": args.seconds,
        "embed_s_median": round(model, 3),
        "x_realtime_per_core (embedding)": round(args.seconds / model / args.threads, 1),
        "decode_and_embed_s_median": round(whole, 3),
        "x_realtime_per_core (decode + embedding)": round(args.seconds / whole / args.threads, 1),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
