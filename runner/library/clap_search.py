"""`music-clap`: text-to-music search over a library with CLAP embeddings.

Each track is decoded at 48 kHz (Essentia) and embedded once (runner.models.clap: the mean of
10 s windows, so the same file always gives the same vector); vectors are stored as ``.npy``
and reused by later runs, so a search over a library that is already embedded costs one text
embedding and one matrix product. Tracks go through the batch engine (runner.batch): worker
processes, progress, resume after an interruption, failures listed and not fatal.

Where vectors are stored:

* ``--dump DIR``: ``DIR/<path relative to the input folder>.npy``, mirroring the audio tree.
* otherwise the embedding cache: ``$LAION_CLAP_CACHE``, else ``$XDG_CACHE_HOME/laion_clap``,
  else ``~/.cache/laion_clap``; ``<cache>/<model id>/<xx>/<sha1 of the file's absolute
  path>.npy``. This holds only our per-track vectors: model checkpoints always come from the
  model cache (runner.models.supply.cache, pinned by the lock file), never from here.

Each store has a ``clap.json`` naming the model (and its files' sha256) and the windowing;
vectors of another model are never mixed in. A stored vector is reused while it is newer than
its audio file; ``--refresh`` recomputes all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from runner import batch, registry
from runner.errors import AudioError, ModelError, UsageError
from runner.models import clap
from runner.models.clap import DIM, KINDS, WINDOWING, require_files
from runner.models.supply import lock
from runner.output import write_atomic

DEFAULT_MODEL = "clap-630k-audioset"
DEFAULT_LIMIT = 10
MANIFEST = "clap.json"
INDEX = "index.npz"  # all vectors of a store in one file (see load_vectors)
SUFFIX = ".npy"
# how music-clap names its counts: "3 embedded, 2 reused, 0 failed"
CLAP_WORDS = batch.Words(done="embedded", skipped="reused",
                         claimed="claimed by another run (left out)")


# -- where vectors live ------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$LAION_CLAP_CACHE``, then ``$XDG_CACHE_HOME/laion_clap``, then ``~/.cache/laion_clap``."""
    if os.environ.get("LAION_CLAP_CACHE"):
        return Path(os.environ["LAION_CLAP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "laion_clap"


def manifest(model: lock.Model) -> dict[str, Any]:
    """What a store's vectors were made with: reused only when this matches exactly."""
    return {"model": model.id, "files": {p.name: p.sha256 for p in model.files},
            "windowing": WINDOWING, "dim": DIM}


def check_store(root: Path, model: lock.Model, refresh: bool) -> None:
    """Refuse to mix vectors of two models (or windowings) in one store; then claim it."""
    wanted = manifest(model)
    path = root / MANIFEST
    if path.exists() and not refresh:
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
        if found != wanted:
            other = found.get("model") if isinstance(found, dict) else "unreadable"
            raise ModelError(f"{root} holds CLAP vectors of another model or windowing "
                             f"({other}); use another --dump folder, or --refresh to replace "
                             "them")
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def cache_jobs(pairs: list[tuple[Path, Path]], root: Path) -> list[batch.Job]:
    """Jobs whose outputs are keyed by the audio file's absolute path (no tree to mirror)."""
    jobs: list[batch.Job] = []
    seen: set[str] = set()
    for path, _ in pairs:
        key = str(path.resolve())
        if key in seen:
            continue
        seen.add(key)
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        jobs.append(batch.Job(len(jobs), path, root / digest[:2] / (digest + SUFFIX)))
    return jobs


def is_current(job: batch.Job) -> bool:
    """A stored vector newer than its audio file (an edited file is embedded again)."""
    try:
        return job.output.stat().st_mtime >= job.input.stat().st_mtime
    except OSError:
        return False


def save_vector(path: Path, vector: np.ndarray) -> None:
    """Atomically (a kill leaves a stale ``.*.tmp``, which the batch engine removes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, np.asarray(vector, dtype=np.float32))
    os.replace(temporary, path)


def load_vectors(jobs: list[batch.Job], root: Path | None = None
                 ) -> tuple[list[batch.Job], np.ndarray]:
    """The jobs whose vector exists and is well formed, and those vectors as (n, 512).

    Reading 10,000 small ``.npy`` files takes over a second; so the store keeps them all in
    one ``index.npz`` too (vectors, plus each file's name, mtime and size). A vector whose
    file still has the recorded mtime and size comes from the index; others are read from
    their file, and the index is rewritten. The ``.npy`` files stay the truth.
    """
    known: dict[str, tuple[tuple[int, int], int]] = {}
    table = np.zeros((0, DIM), np.float32)
    index = root / INDEX if root else None
    if index and index.exists():
        try:
            with np.load(index, allow_pickle=False) as data:
                table = data["vectors"]
                known = {str(k): ((int(m), int(z)), i) for i, (k, m, z) in
                         enumerate(zip(data["keys"], data["mtimes"], data["sizes"], strict=True))}
        except (OSError, ValueError, KeyError):
            known = {}
    kept: list[batch.Job] = []
    rows: list[np.ndarray] = []
    stamps: list[tuple[str, int, int]] = []
    changed = False
    for job in jobs:
        try:
            stat = job.output.stat()
        except OSError:
            continue
        key = str(job.output.relative_to(root)) if root else str(job.output)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if key in known and known[key][0] == stamp:
            vector = table[known[key][1]]
        else:
            changed = True
            try:
                vector = np.load(job.output, allow_pickle=False)
            except (OSError, ValueError):
                continue
            if vector.shape != (DIM,) or not np.all(np.isfinite(vector)):
                continue
        kept.append(job)
        rows.append(vector)
        stamps.append((key, *stamp))
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, DIM), np.float32)
    if index and (changed or len(stamps) != len(known)):
        _write_index(index, matrix, stamps)
    return kept, matrix


def _write_index(path: Path, matrix: np.ndarray, stamps: list[tuple[str, int, int]]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, vectors=matrix, keys=np.array([k for k, _, _ in stamps], dtype=str),
                     mtimes=np.array([m for _, m, _ in stamps], dtype=np.int64),
                     sizes=np.array([z for _, _, z in stamps], dtype=np.int64))
        os.replace(temporary, path)
    except OSError:  # a read-only store still answers, only slower
        temporary.unlink(missing_ok=True)


# -- per-file work (in worker processes) -------------------------------------------------------
def decode(path: str, sample_rate: int = 48000) -> np.ndarray:
    """Mono float32 at ``sample_rate`` through Essentia (any format the runner reads)."""
    registry.quiet_essentia()
    import essentia.standard as std

    if not os.path.isfile(path):
        raise AudioError(path, "no such file")
    try:
        # resampleQuality 2: libsamplerate's fastest band-limited sinc. The default (1) costs
        # 2.9 s of CPU per 5 minutes at 48 kHz, a third of the whole embedding; 2 halves it.
        signal = std.MonoLoader(filename=path, sampleRate=sample_rate, resampleQuality=2)()
    except RuntimeError as exc:
        raise AudioError(path, f"cannot decode: {str(exc).strip().splitlines()[-1]}") from None
    if len(signal) == 0:
        raise AudioError(path, "no audio samples")
    return np.asarray(signal, dtype=np.float32)


def embedder(model_id: str, threads: int | None, inter_op_threads: int | None
             ) -> batch.FileWork:
    """Each worker's work: load the model once, then decode + embed + store per file."""
    backend = clap.backend(lock.get(model_id), threads=threads,
                           inter_op_threads=inter_op_threads)

    def analyse(src: str, dst: str) -> None:
        signal = decode(src, backend.sample_rate)
        try:
            vector = backend.embed_audio(signal)
        except AudioError as exc:
            raise AudioError(src, str(exc).split(": ", 1)[-1]) from None
        save_vector(Path(dst), vector)

    return analyse


# -- search ----------------------------------------------------------------------------------
def rank(vectors: np.ndarray, queries: np.ndarray, limit: int) -> list[list[tuple[int, float]]]:
    """For each query, the ``limit`` rows with the highest cosine similarity, best first.

    Rows and queries are unit vectors, so cosine is a dot product: one (n, 512) x (512, q)
    product, then a partial sort per query (10,000 tracks: about a millisecond).
    """
    if len(vectors) == 0:
        return [[] for _ in range(len(queries))]
    scores = vectors @ queries.T
    k = min(limit, len(vectors))
    best: list[list[tuple[int, float]]] = []
    for column in scores.T:
        top = np.argpartition(-column, k - 1)[:k]
        top = top[np.lexsort((top, -column[top]))]  # by score, ties by input order
        best.append([(int(i), float(column[i])) for i in top])
    return best


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="music-clap",
        description="Text-to-music search with CLAP: embed a library once (kept as .npy, "
        "reused), then rank its tracks by cosine similarity to each --text prompt.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="audio folders or files")
    p.add_argument("--list", dest="list_file", metavar="FILE",
                   help="also the files listed in FILE (one path per line)")
    p.add_argument("--text", "-t", action="append", default=[], metavar="PROMPT",
                   help="a description to search for (repeat for several)")
    p.add_argument("--limit", "-n", type=int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"matches shown per prompt (default {DEFAULT_LIMIT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--dump", metavar="DIR",
                   help="keep per-track .npy vectors here, mirroring the audio folders "
                   "(default: $LAION_CLAP_CACHE, else $XDG_CACHE_HOME/laion_clap, else "
                   "~/.cache/laion_clap)")
    p.add_argument("--refresh", action="store_true",
                   help="embed every track again instead of reusing stored vectors")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a CLAP model of the lock file (default {DEFAULT_MODEL})")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch intra-op threads per worker (default: cores / jobs)")
    p.add_argument("--torch-inter-op-threads", type=int, default=None, metavar="N",
                   help="torch inter-op threads per worker (default: torch's)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="worker processes, each with its own model (default 1)")
    p.add_argument("--failures", metavar="FILE", default=None,
                   help="write failed files as JSON lines here (default with --dump: "
                   "DIR/failures.jsonl)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def search_library(args: argparse.Namespace) -> int:
    """Embed what is missing (batch engine), then answer each prompt."""
    if not args.inputs and not args.list_file:
        raise UsageError("give an audio folder or file (or --list FILE)")
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {args.limit})")
    for name in ("torch_threads", "torch_inter_op_threads", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    model = lock.get(args.model)
    if model.kind not in KINDS:
        raise ModelError(f"model '{model.id}' is a {model.kind!r} model, not a CLAP model")
    require_files(model)  # every file the model needs, verified before anything is written
    root, jobs = plan_store(args, model)
    check_store(root, model, args.refresh)
    threads = args.torch_threads or max(1, (os.cpu_count() or 1) // args.jobs)
    workers = batch.LocalWorkers((embedder, (model.id, threads, args.torch_inter_op_threads)),
                                 is_current, jobs=args.jobs, force=args.refresh)
    failures = Path(args.failures) if args.failures else (
        root / "failures.jsonl" if args.dump else None)  # never inside the shared cache
    result = batch.process_batch(workers, jobs, root, failures,
                                 failures_chosen=bool(args.failures), quiet=args.quiet)
    code = batch.finish(result, f"{batch.tally(result, CLAP_WORDS)} in {result.seconds:.1f} s "
                        f"(vectors in {root})", args.quiet, workers.claims)
    failed = {o.job.index for o in result.failures + result.claimed}
    kept, vectors = load_vectors([j for j in jobs if j.index not in failed], root)
    if args.text:
        started = time.perf_counter()
        backend = clap.backend(model, threads=args.torch_threads,
                               inter_op_threads=args.torch_inter_op_threads)
        queries = backend.embed_text(args.text)
        loaded = time.perf_counter()
        results = rank(vectors, queries, args.limit)
        searched = time.perf_counter()
        _print(args, model.id, kept, results, result.failed,
               {"model_s": loaded - started, "search_s": searched - loaded})
    return code


def plan_store(args: argparse.Namespace, model: lock.Model) -> tuple[Path, list[batch.Job]]:
    """Where the vectors go (--dump DIR, mirroring the audio folders, or the embedding
    cache) and a job per audio file."""
    pairs = batch.collect(args.inputs, args.list_file)
    if not pairs:
        raise UsageError("no audio files found")
    if not args.dump:
        root = cache_dir() / model.id
        return root, cache_jobs(pairs, root)
    root = Path(args.dump)
    jobs, notes = batch.plan_outputs(pairs, root, SUFFIX)
    if not args.quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return root, jobs


def _print(args: argparse.Namespace, model_id: str, kept: list[batch.Job],
           results: list[list[tuple[int, float]]], failed: int, timing: dict[str, float]
           ) -> None:
    if args.json:
        doc = {
            "model": model_id,
            "tracks": len(kept),
            "failed": failed,
            "queries": [
                {"text": text,
                 "matches": [{"path": str(kept[i].input), "similarity": round(score, 6)}
                             for i, score in best]}
                for text, best in zip(args.text, results, strict=True)
            ],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for text, best in zip(args.text, results, strict=True):
        table = Table("#", "similarity", "track", title=f"“{text}”", title_justify="left")
        for number, (i, score) in enumerate(best, 1):
            table.add_row(str(number), f"{score:.3f}", str(kept[i].input))
        console.print(table)
    if not args.quiet:
        print(f"{len(kept)} tracks searched in {timing['search_s'] * 1000:.1f} ms "
              f"(model load and text embedding {timing['model_s']:.1f} s)", file=sys.stderr)
