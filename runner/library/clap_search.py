"""`music-clap`: text-to-music search over a library with CLAP embeddings.

Each track is decoded at 48 kHz (Essentia) and embedded once (runner.models.clap: the mean of
10 s windows, so the same file always gives the same vector); vectors are stored as ``.npy``
and reused by later runs, so a search over a library that is already embedded costs one text
embedding and one matrix product. Tracks go through the batch engine (runner.batch): worker
processes, progress, resume after an interruption, failures listed and not fatal.

Where vectors are stored: runner/library/clap_store.py (``--dump DIR`` or the embedding
cache); ``--refresh`` recomputes all. ``--db URL`` searches a catalog's ``clap.embedding``
vectors instead (runner/catalog/model_vectors.py): no audio is read then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from runner import batch, registry
from runner.errors import AudioError, ModelError, UsageError
from runner.library.clap_store import (
    SUFFIX,
    cache_dir,
    cache_jobs,
    check_store,
    is_current,
    load_vectors,
    save_vector,
)
from runner.models import clap
from runner.models.clap import KINDS, require_files
from runner.models.family import used_pin
from runner.models.supply import lock

DEFAULT_MODEL = "clap-630k-audioset"
DEFAULT_LIMIT = 10
CATALOG_VECTOR = "clap.embedding"  # the clap profile's output, as the catalog names it
CATALOG_ENV = "EXTRACTOR_CATALOG"  # no INPUT and no --db: this catalog (runner.catalog.commands)
# how music-clap names its counts: "3 embedded, 2 reused, 0 failed"
CLAP_WORDS = batch.Words(done="embedded", skipped="reused",
                         claimed="claimed by another run (left out)")


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
    p.add_argument("--db", metavar="URL",
                   help="search the clap.embedding vectors of this catalog (extractor catalog "
                   "update) instead of embedding audio: no INPUT then (without INPUT and "
                   "--db: $EXTRACTOR_CATALOG when set)")
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


def clap_model(name: str) -> lock.Model:
    model = lock.get(name)
    if model.kind not in KINDS:
        raise ModelError(f"model '{model.id}' is a {model.kind!r} model, not a CLAP model")
    return model


def search_library(args: argparse.Namespace) -> int:
    """Embed what is missing (batch engine), then answer each prompt."""
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {args.limit})")
    if not args.inputs and not args.list_file and not args.db:
        args.db = os.environ.get(CATALOG_ENV)  # the catalog `extractor find` reads too
    if args.db:
        return search_catalog(args)
    if not args.inputs and not args.list_file:
        raise UsageError("give an audio folder or file (or --list FILE, or --db URL)")
    for name in ("torch_threads", "torch_inter_op_threads", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    model = clap_model(args.model)
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
        _print(args, model.id, [str(job.input) for job in kept], results, result.failed,
               {"model_s": loaded - started, "search_s": searched - loaded})
    return code


def search_catalog(args: argparse.Namespace) -> int:
    """Answer each prompt from a catalog's CLAP vectors: only those computed with exactly the
    weights the lock file pins for ``--model`` (the query is embedded with them). A PostgreSQL
    server with pgvector ranks them; otherwise numpy does, here."""
    from runner.catalog import connect, pgvector
    from runner.catalog.model_vectors import USED, model_counts, model_vectors

    if args.inputs or args.list_file:
        raise UsageError("--db searches a catalog: give no INPUT (or no --db)")
    if not args.text:
        raise UsageError("--db needs --text PROMPT")
    model = clap_model(args.model)
    require_files(model)  # the query is embedded with these weights: verified first
    db = connect(args.db, read_only=True)
    try:
        where, pin = db.location, used_pin(model)
        why = pgvector.why_not(db) if db.kind == "postgresql" else "SQLite"
        if why is None:
            tracks, other = model_counts(db, CATALOG_VECTOR, model.id, pin)
        else:
            found = model_vectors(db, CATALOG_VECTOR, model.id, pin)
            tracks, other = len(found.paths), found.other_model
        if other and not args.quiet:
            print(f"note: {where}: {other} tracks with {CATALOG_VECTOR} from other weights "
                  f"than {model.id}'s pinned files (left out; analyse them again with the clap "
                  "profile)", file=sys.stderr)
        if db.kind == "postgresql" and why is not None and not args.quiet:
            print(f"note: {why}", file=sys.stderr)
        if not tracks:
            raise UsageError(f"{where}: no {CATALOG_VECTOR} vectors of {model.id} (analyse the "
                             "library with the clap profile, then `extractor catalog update`)")
        started = time.perf_counter()
        backend = clap.backend(model, threads=args.torch_threads,
                               inter_op_threads=args.torch_inter_op_threads)
        queries = backend.embed_text(args.text)
        loaded = time.perf_counter()
        if why is None:
            best = pgvector.nearest_of_model(db, CATALOG_VECTOR, USED + model.id, pin,
                                             list(queries), args.limit)
            paths = sorted({path for matches in best for path, _ in matches})
            index = {path: i for i, path in enumerate(paths)}
            results = [[(index[path], score) for path, score in matches] for matches in best]
        else:
            norms = np.linalg.norm(found.matrix, axis=1, keepdims=True)
            paths = found.paths
            results = rank(found.matrix / np.where(norms == 0, 1, norms), queries, args.limit)
    finally:
        db.close()
    _print(args, model.id, paths, results, 0,
           {"model_s": loaded - started, "search_s": time.perf_counter() - loaded}, tracks)
    return 0


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


def _print(args: argparse.Namespace, model_id: str, kept: list[str],
           results: list[list[tuple[int, float]]], failed: int, timing: dict[str, float],
           tracks: int | None = None) -> None:
    """``kept``: the paths ``results`` point into; ``tracks``: how many were searched (all of
    ``kept`` unless said)."""
    tracks = len(kept) if tracks is None else tracks
    if args.json:
        doc = {
            "model": model_id,
            "tracks": tracks,
            "failed": failed,
            "queries": [
                {"text": text,
                 "matches": [{"path": kept[i], "similarity": round(score, 6)}
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
            table.add_row(str(number), f"{score:.3f}", kept[i])
        console.print(table)
    if not args.quiet:
        print(f"{tracks} tracks searched in {timing['search_s'] * 1000:.1f} ms "
              f"(model load and text embedding {timing['model_s']:.1f} s)", file=sys.stderr)
