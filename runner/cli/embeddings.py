"""`music-embeddings IN --output-base DIR --models crepe madmom ...`: frame-wise embeddings and
activations, one .npy per model and track (docs/embeddings.md), on the batch engine."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner import batch, compile
from runner import output as write
from runner import profile as load
from runner.batch.embed_job import (
    MIDI,
    MIDI_MODEL,
    POOLS,
    PROFILE,
    EmbeddingsWork,
    Request,
    check_manifests,
    manifest,
    overrides,
    paths,
)
from runner.cli.common import guard, print_notes
from runner.errors import ModelError, UsageError
from runner.models import basic_pitch, hub_audio, openl3
from runner.models.crepe import STEP_MS
from runner.models.framewise import tag_labels
from runner.models.stage import prepare
from runner.models.supply import lock

# --models names -> lock-file models (a lock-file id is taken as is, named by itself)
NAMES = {
    "crepe": None,  # crepe-tiny or crepe-full: --crepe-model
    "madmom": "madmom-beats",
    "clap": "clap-630k-audioset",
    "mert": "mert-v1-95m",
    "mert-330m": "mert-v1-330m",
    "hubert": "hubert-large-ll60k",
    "ast": "ast-audioset",
    "encodec": "encodec-24khz",
    "openl3": "openl3-music-mel256-emb512",  # added with `extractor models add` (not pinned)
    "vggish": "audioset-vggish-3",
    "panns": "panns-cnn14",
}
# --models names of a tagger's class probabilities (its head on the same rows) -> lock id
TAGS = {
    "panns-tags": "panns-cnn14",
    "ast-tags": "ast-audioset",
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="music-embeddings",
        description="Compute neural models' frame-wise embeddings and activations for an "
        "audio file, a folder (recursively) or a list of files: DIR/<model>/<mirrored "
        "path>.npy. Shapes and frame rates: docs/embeddings.md. madmom's models are "
        "CC BY-NC-SA 4.0, MERT's and EnCodec's CC BY-NC 4.0 (non-commercial).")
    parser.add_argument("input", nargs="?", help="audio file or folder")
    parser.add_argument("--list", dest="list_file", metavar="FILE",
                        help="analyse the files listed in FILE (one path per line)")
    parser.add_argument("--output-base", required=True, metavar="DIR",
                        help="write DIR/<model>/<path mirrored from the input>.npy")
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME",
                        help="crepe, madmom, basic-pitch, clap, ast, encodec, mert "
                        "(MERT-v1-95M), vggish, panns, or a model id of the lock file; "
                        "panns-tags and ast-tags: AudioSet's 527 class probabilities; hubert, "
                        "mert-330m and openl3 once added with `extractor models add` (not "
                        "pinned yet; docs/embeddings.md)")
    parser.add_argument("--pool", choices=POOLS, default="none",
                        help="none: every frame (default); mean: one vector per track")
    parser.add_argument("--crepe-model", choices=("tiny", "full"), default="tiny",
                        help="CREPE's capacity (tiny, the default: about 40x faster; full: "
                        "the original model)")
    parser.add_argument("--crepe-step", type=float, default=STEP_MS, metavar="MS",
                        help=f"CREPE's hop in milliseconds (default {STEP_MS:g}: 100 frames/s)")
    parser.add_argument("--openl3-hop", type=float, default=0.1, metavar="S",
                        help="seconds between OpenL3's 1 s windows (default 0.1: 10 rows/s; "
                        "each row costs one run of the network)")
    parser.add_argument("--midi", action="store_true",
                        help="also write basic-pitch's notes as DIR/midi/<mirrored path>.mid "
                        "(adds basic-pitch to --models)")
    parser.add_argument("--onset-threshold", type=float, default=None, metavar="X",
                        help="--midi: onset activation a note starts from (default "
                        f"{basic_pitch.ONSET_THRESHOLD:g})")
    parser.add_argument("--frame-threshold", type=float, default=None, metavar="X",
                        help="--midi: note activation a note lasts while (default "
                        f"{basic_pitch.FRAME_THRESHOLD:g})")
    parser.add_argument("--min-note-ms", type=float, default=None, metavar="MS",
                        help=f"--midi: shortest note (default {basic_pitch.MIN_NOTE_MS:g} ms)")
    parser.add_argument("--no-melodia-trick", action="store_true",
                        help="--midi: notes from onsets only (no notes grown from the strongest "
                        "activation left)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip tracks whose files exist (the default; kept for scripts)")
    parser.add_argument("--force", action="store_true", help="recompute every file")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="worker processes (default: the number of cores)")
    parser.add_argument("--files-per-worker", type=int, default=None, metavar="N",
                        help="replace each worker after N files (default: 200; 0: never)")
    parser.add_argument("--failures", metavar="FILE", default=None,
                        help="failed files as JSON lines (default: DIR/failures.jsonl)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def requests(args: argparse.Namespace) -> list[Request]:
    """One request per --models name, in order (a name given twice counts once)."""
    if args.crepe_step <= 0:
        raise UsageError(f"--crepe-step: {args.crepe_step:g} ms is not a positive step")
    if args.openl3_hop * 48000 < 1:
        raise UsageError(f"--openl3-hop: {args.openl3_hop:g} s is not a positive hop")
    chosen: list[Request] = []
    for item in args.models:
        for name in item.replace(",", " ").split():
            if any(r.name == name for r in chosen):
                continue
            if name == "crepe":
                chosen.append(Request(name, f"crepe-{args.crepe_model}",
                                      {"step_ms": args.crepe_step}))
                continue
            model = NAMES.get(name) or TAGS.get(name) or lock.get(name).id  # unknown: one line
            why = hub_audio.why_not(model) or openl3.why_not(model)
            if why:
                raise UsageError(f"--models {name}: {why}")
            entry = lock.models().get(model)
            hop = {"hop_s": args.openl3_hop} if entry and entry.kind == "openl3" else {}
            chosen.append(Request(name, model, hop,
                                  output="tags" if name in TAGS else "embeddings"))
    return chosen


def note_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """basic-pitch's note settings for --midi (None without it)."""
    options = (("--onset-threshold", "onset_threshold", args.onset_threshold),
               ("--frame-threshold", "frame_threshold", args.frame_threshold),
               ("--min-note-ms", "min_note_ms", args.min_note_ms),
               ("--no-melodia-trick", "melodia_trick", False if args.no_melodia_trick else None))
    given = {name: value for _, name, value in options if value is not None}
    if not args.midi:
        if given:
            option = next(option for option, name, _ in options if name in given)
            raise UsageError(f"{option} sets how --midi makes notes: add --midi")
        return None
    try:
        return basic_pitch.note_settings(given, "--midi", {name: option for option, name, _
                                                           in options})
    except ModelError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if not args.input and not args.list_file:
        raise UsageError("give a file, a folder or --list FILE")
    midi = note_settings(args)
    wanted = requests(args)
    if midi is not None and not any(r.model == MIDI_MODEL for r in wanted):
        wanted.append(Request(MIDI_MODEL, MIDI_MODEL))
    plan = compile.compile_profile(load.load_profile(PROFILE, overrides(wanted)))
    stage = prepare(plan, warn=False, load=False)  # missing or damaged models stop here
    pairs = batch.collect([args.input] if args.input else [], args.list_file)
    if not pairs:
        raise UsageError("no audio files found")
    base = Path(args.output_base)
    write.prepare_folder(str(base))
    pins = stage.pins if stage else {}
    served = {r.name: r.model if r.output != "embeddings" else r.served_by(pins) for r in wanted}
    manifests = {r.name: manifest(r, pins.get(served[r.name], {}), args.pool, plan.digest,
                                  lock.get(served[r.name]).license,
                                  tag_labels(lock.get(r.model)) if r.output == "tags" else ())
                 for r in wanted}
    if midi is not None:
        manifests[MIDI] = manifest(Request(MIDI, MIDI_MODEL, midi),
                                   stage.pins.get(MIDI_MODEL, {}) if stage else {}, "none",
                                   plan.digest, lock.get(MIDI_MODEL).license)
    check_manifests(base, manifests, args.force)
    jobs, notes = batch.plan_outputs(pairs, base / wanted[0].name, ".npy")
    print_notes(plan.profile.notes + notes, args.quiet)
    cores = os.cpu_count() or 1
    workers_count = args.jobs or cores
    per_worker = (batch.FILES_PER_WORKER if args.files_per_worker is None
                  else args.files_per_worker)
    workers = batch.LocalWorkers(
        (EmbeddingsWork, (wanted, str(base.resolve()), args.pool,
                          max(1, cores // workers_count), midi)),
        lambda job: all(p.is_file() for p in paths(job, base, wanted, midi is not None)),
        jobs=args.jobs, force=args.force, files_per_worker=per_worker)
    failures = Path(args.failures) if args.failures else base / "failures.jsonl"
    result = batch.process_batch(workers, jobs, base, failures,
                                 failures_chosen=bool(args.failures), quiet=args.quiet)
    return batch.finish(result, f"{batch.tally(result)} in {result.seconds:.1f} s",
                        args.quiet, workers.claims)


def music_embeddings(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return guard(lambda: run(args), args.debug)
