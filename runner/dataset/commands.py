"""`extractor crops` and `extractor prompts`: a folder of tracks to a training set for
text-to-audio models (docs/conditioning.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.errors import UsageError

CONDITIONING_PROFILE = "conditioning"


def crops(args: argparse.Namespace) -> int:
    """Cut every track under DIR into crops through the batch engine (workers, resume,
    failures.jsonl); a bad track is one line and never stops the run."""
    from runner import batch
    from runner.dataset.cutting import CropSettings, CropWork, made_with, manifest_path
    from runner.output import prepare_folder

    if args.length < 1:
        raise UsageError(f"--length must be a whole number of samples of at least 1, not "
                         f"{args.length}")
    if args.div4 and args.sequential:
        raise UsageError("--div4 starts crops on downbeats; --sequential ignores beats: "
                         "give one of the two")
    if not Path(args.folder).exists():
        raise UsageError(f"{args.folder}: no such file or folder")
    from runner import compile
    from runner import profile as load

    # a bad profile or --set (a typo) is one line before any track, not a failure per track
    compile.compile_profile(load.load_profile(args.profile, list(args.overrides)))
    mode = "sequential" if args.sequential else "overlap" if args.overlap else "beats"
    settings = CropSettings(args.length, mode, args.div4)
    out_dir = Path(args.output)
    prepare_folder(out_dir)
    out_root = out_dir.resolve()
    pairs = [(path, root) for path, root in batch.collect([args.folder])
             if out_root not in path.resolve().parents]  # never our own crops
    if not pairs:
        raise UsageError(f"{args.folder}: no audio files found")
    planned, notes = batch.plan_outputs(pairs, out_dir, ".json")
    jobs = [batch.Job(job.index, job.input, manifest_path(job.output)) for job in planned]
    if not args.quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    work = (CropWork, (settings, args.profile, list(args.overrides), args.force))
    workers = batch.LocalWorkers(work, lambda job: made_with(job.output, settings),
                                 jobs=args.jobs, force=args.force)
    failures = out_dir / "failures.jsonl"
    result = batch.process_batch(workers, jobs, out_dir, failures, quiet=args.quiet)
    words = batch.Words(done="tracks cut", skipped="skipped (already cut)")
    return batch.finish(result, f"crops: {batch.tally(result, words)} in "
                        f"{result.seconds:.1f} s -> {out_dir}", args.quiet, workers.claims)


def _info_files(folder: Path) -> list[Path]:
    """Every ``.INFO`` under ``folder`` (hidden folders and files left out), sorted."""
    from runner.dataset.info import INFO_SUFFIX

    return sorted(path for path in folder.rglob(f"*{INFO_SUFFIX}")
                  if not any(part.startswith(".") for part in path.relative_to(folder).parts))


def prompts(args: argparse.Namespace) -> int:
    """A prompt per track and per crop into its INFO (and/or a .txt), then the Stable Audio
    Tools config; a bad INFO is one line and never stops the run."""
    from runner.dataset import prompts as text
    from runner.dataset.cutting import MANIFEST
    from runner.dataset.files import read_json, update_info
    from runner.dataset.info import info_path
    from runner.dataset.sat import write_dataset
    from runner.errors import EXIT_FAILED, ExtractorError
    from runner.output import write_atomic

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{args.folder}: not a folder")
    template = text.load_template(Path(args.template) if args.template else None)
    infos = _info_files(folder)
    if not infos:
        raise UsageError(f"{args.folder}: no .INFO files (run the conditioning profile or "
                         "`extractor crops` first)")
    written = failed = 0
    for path in infos:
        try:
            info = read_json(path)
            crop = info.get("crop")
            track_file = info_path(Path(crop["track"])) if isinstance(crop, dict) and \
                isinstance(crop.get("track"), str) else None
            track = read_json(track_file) if track_file and track_file.is_file() else None
            prompt = text.render(info, template, track)
            if args.write in ("info", "both") and info.get("prompt") != prompt:
                update_info(path, {"prompt": prompt})
            if args.write in ("txt", "both"):
                write_atomic(path.with_suffix(".txt"), prompt + "\n")
            written += 1
        except ExtractorError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    crops = any(folder.rglob(MANIFEST))
    config, module = write_dataset(folder, crops)
    if not args.quiet:
        print(f"prompts: {written} written, {failed} failed; Stable Audio Tools config "
              f"{config} (metadata module {module.name})", file=sys.stderr)
    return EXIT_FAILED if failed else 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `extractor crops` and `extractor prompts`."""
    p = subparsers.add_parser(
        "crops", help="cut tracks into training crops of an exact length, on beats and zero "
        "crossings, each with its own recomputed features (.INFO)")
    p.add_argument("folder", metavar="DIR", help="a folder of tracks (read recursively)")
    p.add_argument("--length", type=int, required=True, metavar="SAMPLES",
                   help="crop length in samples at each track's own sample rate")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sequential", action="store_true",
                      help="back to back from the start, not snapped to beats")
    mode.add_argument("--overlap", action="store_true",
                      help="a crop every half crop length (snapped), instead of none overlapping")
    p.add_argument("--div4", action="store_true",
                   help="start each crop on the downbeat of a bar whose index is divisible by 4")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="where OUT/Track/Track_N.flac and .INFO go")
    p.add_argument("--profile", default=CONDITIONING_PROFILE,
                   help="the profile whose 'conditioning' section becomes each crop's INFO "
                   "(default: conditioning)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: the number of cores)")
    p.add_argument("--force", action="store_true",
                   help="recut tracks already cut (and crops of other settings)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=crops)

    p = subparsers.add_parser(
        "prompts", help="a text prompt per track and crop from its .INFO (YAML template), and "
        "a Stable Audio Tools dataset config for the folder")
    p.add_argument("folder", metavar="DIR", help="a folder of audio with .INFO files beside it")
    p.add_argument("--template", metavar="FILE", default=None,
                   help="a prompt template (YAML; default: the one shipped, "
                   "runner/dataset/prompt.yaml)")
    p.add_argument("--write", choices=("info", "txt", "both"), default="info",
                   help="where the prompt goes: 'prompt' in the .INFO (default), a .txt "
                   "beside it, or both")
    p.add_argument("--quiet", "-q", action="store_true", help="no closing line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=prompts)
