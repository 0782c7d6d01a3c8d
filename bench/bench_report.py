"""Library report at scale: 10,000 synthetic outputs -> report.html, time and size.

The outputs are made here (seeded): music-profile values (tempo with some octave-ambiguous
histogram peaks, keys, EBU R128 loudness, danceability), highlevel taxonomies (two binary
moods and a 400-class genre taxonomy), a 512-d CLAP embedding drawn around 12 centres, a few
silent tracks and a few corrupt files. ``--bulk`` (default) pads each with a lowlevel section
of the music profile's size (about 85 KB of statistics, as real outputs carry), which the
report must parse but does not use; ``--lean`` leaves it out.

The anchor, measured in the same run, is reading every output with ``json.loads`` in one
process: what a plain single-process reader of these files costs. The report's first run
on a machine also bundles Vega's runtime (about 4 s, then kept in the user's cache): the
first round pays it, the median of several rounds does not. Printed: the report's time and
size, as ratios against that anchor and against the targets (30 s, 5 MB). Usage:

    python bench/bench_report.py [--tracks 10000] [--lean] [--rounds 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
STATS = ["dmean", "dmean2", "dvar", "dvar2", "max", "mean", "median", "min", "stdev", "var"]
TIME_TARGET_S, SIZE_TARGET_MB = 30.0, 5.0


def _taxonomy(probabilities: dict[str, float]) -> dict:
    top = max(probabilities, key=lambda c: probabilities[c])
    return {"value": top, "probability": probabilities[top], "all": probabilities}


def synthetic_output(i: int, rng: np.random.Generator, centres: np.ndarray, bulk: dict | None
                     ) -> dict:
    """One music + highlevel + clap output; its values follow its embedding cluster."""
    cluster = int(rng.integers(len(centres)))
    bpm = float(np.clip(rng.normal(80 + 8 * cluster, 15), 50, 200))
    first_peak = bpm / 2 if rng.random() < 0.08 else round(bpm)  # 8 %: an octave apart
    silent = rng.random() < 0.002
    genres = rng.dirichlet(np.full(400, 0.05))
    genres[cluster * 30] += 1.0
    genres /= genres.sum()
    happy, party = float(rng.beta(2, 2)), float(rng.beta(1 + cluster % 3, 2))
    doc = {
        "metadata": {
            "profile": {"name": "music", "hash": "bench"},
            "audio_properties": {"length": float(rng.uniform(120, 420)),
                                 "md5_encoded": f"{i:032x}"},
            "tags": {"file_name": f"track{i:05d}.flac", "artist": [f"Artist {i % 997}"],
                     "title": [f"Song {i}"]},
            "warnings": ["silent: every sample is 0"] if silent else [],
        },
        "lowlevel": {**(bulk or {}), "average_loudness": float(rng.uniform(0.5, 1.0)),
                     "loudness_ebu128": {"integrated": float(rng.normal(-11 - cluster, 3)),
                                         "loudness_range": float(rng.uniform(2, 12))}},
        "rhythm": {"bpm": bpm, "danceability": float(rng.uniform(0.6, 2.2) + cluster / 12),
                   "bpm_histogram_first_peak_bpm": first_peak,
                   "bpm_histogram_first_peak_weight": 0.5,
                   "bpm_histogram_second_peak_bpm": 0.0,
                   "bpm_histogram_second_peak_weight": 0.0},
        "tonal": {"key_key": KEYS[int(rng.integers(12))],
                  "key_scale": "major" if rng.random() < 0.6 else "minor",
                  "key_strength": float(rng.uniform(0.3, 0.9))},
        "highlevel": {
            "mood_happy": _taxonomy({"happy": happy, "non_happy": 1 - happy}),
            "mood_party": _taxonomy({"party": party, "non_party": 1 - party}),
            "genre_discogs400": _taxonomy({f"Genre---Style {g:03d}": float(p)
                                           for g, p in enumerate(genres)}),
        },
        "clap": {"embedding": (centres[cluster] + rng.normal(0, 0.6, 512)).tolist()},
    }
    return doc


def make_outputs(folder: Path, tracks: int, bulk: bool) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (12, 512))
    padding = None
    if bulk:  # the music profile's lowlevel statistics: about 85 KB of numbers per track
        names = ["barkbands", "erbbands", "gfcc", "melbands", "melbands128", "mfcc",
                 "spectral_contrast_coeffs", "spectral_contrast_valleys"]
        sizes = [27, 40, 13, 40, 128, 13, 6, 6]
        padding = {name: {stat: rng.random(size).tolist() for stat in STATS}
                   for name, size in zip(names, sizes, strict=True)}
    for i in range(tracks):
        sub = folder / f"album{i // 12:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"track{i:05d}.json").write_text(
            json.dumps(synthetic_output(i, rng, centres, padding)), encoding="utf-8")
    for n in range(3):  # an interrupted copy or two
        (folder / f"corrupt{n}.json").write_text('{"metadata": {"profile": ')


def anchor_seconds(folder: Path) -> float:
    start = time.perf_counter()
    for path in folder.rglob("*.json"):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            pass
    return time.perf_counter() - start


def report_seconds(folder: Path, out: Path) -> tuple[float, int, str]:
    """The whole command, as a user runs it (interpreter start and imports included)."""
    command = Path(sys.executable).with_name("extractor")
    start = time.perf_counter()
    result = subprocess.run([str(command), "report", str(folder), "-o", str(out)],
                            capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stat().st_size, result.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10000)
    parser.add_argument("--lean", action="store_true",
                        help="outputs without the lowlevel statistics the report does not use")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the outputs here (reused when already there)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_report_")
    folder = args.workdir or Path(tmp) / "outputs"
    try:
        if not folder.exists() or not any(folder.iterdir()):
            started = time.perf_counter()
            make_outputs(folder, args.tracks, bulk=not args.lean)
            print(f"made {args.tracks} outputs in {time.perf_counter() - started:.0f} s")
        on_disk = sum(p.stat().st_size for p in folder.rglob("*.json")) / 1e6
        anchors, reports = [], []
        size, line = 0, ""
        for _ in range(args.rounds):  # alternate, so load changes hit both alike
            anchors.append(anchor_seconds(folder))
            seconds, size, line = report_seconds(folder, Path(tmp) / "report.html")
            reports.append(seconds)
        anchor, report = statistics.median(anchors), statistics.median(reports)
        print(f"{args.tracks} outputs ({on_disk:.0f} MB on disk, "
              f"{'lean' if args.lean else 'with lowlevel statistics'}), {os.cpu_count()} "
              f"cores, median of {args.rounds} round(s)")
        print(f"  {line}")
        print(f"  json.loads of every output (anchor): {anchor:6.1f} s")
        print(f"  extractor report                   : {report:6.1f} s  = "
              f"{report / anchor:.2f}x the anchor, {report / TIME_TARGET_S:.2f}x the "
              f"{TIME_TARGET_S:.0f} s target")
        print(f"  report.html: {size / 1e6:.2f} MB = {size / 1e6 / SIZE_TARGET_MB:.2f}x the "
              f"{SIZE_TARGET_MB:.0f} MB target, {size / args.tracks:.0f} bytes per track")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
