"""The catalog's speed: nearest-neighbour queries on 100,000 x 512-d vectors, and an update of
10,000 outputs, each printed beside an anchor measured in the same run on the same machine.

Anchors (what the catalog cannot beat, so the ratio says what it adds):
* query: numpy's matrix product of one query with the whole unit-vector matrix already in
  memory, plus argpartition (the bare ranking); the catalog's query also finds the track,
  reads the cached matrix, and describes the neighbours;
* update: ``json.load`` of every output, nothing else.

Targets (issue 21, on a 2-core machine): one query on 100,000 tracks under 200 ms, on 10,000
under 30 ms; an update of 10,000 outputs under 60 s.

    python bench/catalog_bench.py                     # 100k vectors, 10k outputs
    python bench/catalog_bench.py --tracks 10000 --outputs 1000 --workdir /tmp/cb

The outputs are copies of one real music output (made at the start by the real command on
5 s of synthetic audio), each with its descriptors changed, so every file parses anew.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.catalog import connect, update  # noqa: E402
from runner.catalog import schema as catalog_schema  # noqa: E402
from runner.catalog.similar import load_sqlite_vec, similar  # noqa: E402

DIM = 512


def timed(action, repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vector_catalog(path: Path, tracks: int, seed: int = 0) -> np.ndarray:
    """An SQLite catalog of ``tracks`` tracks holding one 512-d vector each (``clap.embedding``),
    written with the catalog's own schema; returns the vectors."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((tracks, DIM)).astype(np.float32)
    db = connect(str(path))
    with db.transaction():
        catalog_schema.ensure(db)
        db.executemany("INSERT INTO tracks (id, output, path, duration, profile, profile_hash, "
                       "analysed_at, size, mtime_ns) VALUES (?, ?, ?, 30.0, 'clap', 'x', "
                       "'2026-01-01T00:00:00+00:00', 0, 0)",
                       [(i + 1, f"t{i:06d}.json", f"t{i:06d}.wav") for i in range(tracks)])
        db.executemany("INSERT INTO vectors (track_id, name, dim, data) VALUES (?, ?, ?, ?)",
                       [(i + 1, "clap.embedding", DIM, vectors[i].tobytes())
                        for i in range(tracks)])
        catalog_schema.rebuild_view(db)
        catalog_schema.set_meta(db, "generation", "1")
    db.close()
    return vectors


def bench_queries(workdir: Path, tracks: int, repeats: int, k: int = 10) -> dict[str, float]:
    path = workdir / f"vectors-{tracks}.sqlite"
    for old in workdir.glob(f"vectors-{tracks}.sqlite*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    vectors = vector_catalog(path, tracks)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = [random.Random(i).randrange(tracks) for i in range(repeats)]

    def anchor() -> None:
        i = picks[0]
        d = 1.0 - unit @ unit[i]
        np.argpartition(d, k + 1)[:k + 1]

    db = connect(str(path), read_only=True)
    why = load_sqlite_vec(db)
    start = time.perf_counter()
    similar(db, f"t{picks[0]:06d}.wav", "clap", k)  # builds the numpy cache when needed
    first = time.perf_counter() - start
    results = {"anchor_s": timed(anchor, repeats), "first_s": first,
               "query_s": timed(lambda: similar(db, f"t{picks[1 % len(picks)]:06d}.wav",
                                                "clap", k), repeats)}
    db.close()
    results["engine"] = "numpy (cached matrix)" if why else "sqlite-vec"  # type: ignore[assignment]
    return results


def make_outputs(workdir: Path, count: int) -> Path:
    """``count`` music outputs: one real one, copied with its numbers changed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import click_track, write_audio

    lib, first = workdir / "lib", workdir / "first"
    lib.mkdir(exist_ok=True)
    write_audio(lib / "t.wav", click_track(5.0, bpm=120))
    exe = Path(sys.executable).with_name("streaming-extractor-music")
    subprocess.run([str(exe), str(lib), str(first), "--quiet"], check=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    doc = json.loads((first / "t.json").read_text())
    folder = workdir / "outputs"
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        doc["rhythm"]["bpm"] = float(60 + rng.random() * 120)
        doc["lowlevel"]["average_loudness"] = float(rng.random())
        doc["metadata"]["tags"]["file_name"] = f"t{i:05d}.wav"
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"t{i:05d}.json").write_text(json.dumps(doc))
    return folder


def bench_update(workdir: Path, count: int) -> dict[str, float]:
    folder = make_outputs(workdir, count)
    files = sorted(folder.rglob("*.json"))
    start = time.perf_counter()
    for path in files:
        json.loads(path.read_text())
    anchor = time.perf_counter() - start
    db_path = workdir / "update.sqlite"
    for old in workdir.glob("update.sqlite*"):
        old.unlink()
    db = connect(str(db_path))
    start = time.perf_counter()
    report = update(db, folder)
    full = time.perf_counter() - start
    start = time.perf_counter()
    again = update(db, folder)
    rerun = time.perf_counter() - start
    db.close()
    assert report.added == count and again.unchanged == count
    return {"anchor_s": anchor, "update_s": full, "rerun_s": rerun}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, nargs="*", default=[100_000, 10_000])
    parser.add_argument("--outputs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for tracks in args.tracks:
            r = bench_queries(workdir, tracks, args.repeats)
            print(f"similar, {tracks:,} x {DIM}-d ({r['engine']}): query "
                  f"{r['query_s'] * 1e3:.1f} ms = {r['query_s'] / r['anchor_s']:.2f} x anchor "
                  f"({r['anchor_s'] * 1e3:.1f} ms, numpy in memory); first query "
                  f"{r['first_s'] * 1e3:.0f} ms (reads the vectors, writes the cache)",
                  flush=True)
        if args.outputs:
            u = bench_update(workdir, args.outputs)
            print(f"update, {args.outputs:,} music outputs: {u['update_s']:.1f} s = "
                  f"{u['update_s'] / u['anchor_s']:.2f} x anchor ({u['anchor_s']:.1f} s, "
                  f"json.loads of every file); rerun with nothing changed {u['rerun_s']:.2f} s",
                  flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
