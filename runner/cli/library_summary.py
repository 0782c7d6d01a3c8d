"""`streaming-extractor-summary`: a library profile's per-track outputs (the batch engine,
kept and reused), then one summary document across the tracks (runner.library.summary)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from runner import batch, compile
from runner import output as write
from runner import profile as load
from runner.analysis import spool
from runner.cli.common import add_batch_options, add_common_options, catalog_feed, guard
from runner.cli.extraction import announce, failures_file, profile_workers
from runner.errors import UsageError
from runner.library.summary import SUMMARY_WORDS, summarise, summary_section, write_summary

DEFAULT_PROFILE = "summary"


def summarise_library(args: argparse.Namespace) -> int:
    """Per-track outputs into SUMMARY_tracks/ (or --output DIR), then the summary file."""
    if args.list_file and args.input and not args.output:
        args.input, args.output = None, args.input  # summary --list files.txt summary.json
    if not args.output:
        raise UsageError("give the summary file: streaming-extractor-summary INPUT SUMMARY.json")
    if not args.input and not args.list_file:
        raise UsageError("give a folder, a file or --list FILE")
    profile_ref = args.profile_option or DEFAULT_PROFILE
    profile = load.load_profile(profile_ref, args.overrides)
    summary_section(profile)
    plan = compile.compile_profile(profile)
    output = Path(args.output)
    tracks = Path(args.output_dir) if args.output_dir else output.with_name(output.stem +
                                                                            "_tracks")
    pairs = batch.collect([args.input] if args.input else [], args.list_file)
    if not pairs:
        raise UsageError("no audio files found")
    spool.remove_stale()
    write.check_writable(output)
    write.prepare_folder(tracks)
    jobs, notes = batch.plan_outputs(pairs, tracks, ".json")
    workers = profile_workers(profile_ref, args, "music", plan)
    announce(plan, notes, args.quiet, workers)
    failures, chosen = failures_file(args, tracks)
    result = batch.process_batch(workers, jobs, tracks, failures, failures_chosen=chosen,
                                 quiet=args.quiet, wrap_progress=catalog_feed(args, tracks))
    doc = summarise(plan.profile, plan.digest, jobs, result)
    write_summary(doc, output)
    return batch.finish(result, f"{doc['summary']['tracks']} tracks summarised in {output} "
                        f"({batch.tally(result, SUMMARY_WORDS)}; per-track outputs in {tracks})",
                        args.quiet, workers.claims)


def library_summary(argv: Sequence[str] | None = None) -> int:
    """The console script streaming-extractor-summary (and streaming_extractor_summary)."""
    parser = argparse.ArgumentParser(
        prog="streaming-extractor-summary",
        description="Summarise a library: per-track analysis (kept and reused), then "
        "statistics, key distribution and a row per track in one JSON file.",
    )
    parser.add_argument("input", nargs="?", help="audio folder or file (or use --list)")
    parser.add_argument("output", nargs="?", help="the summary JSON file")
    parser.add_argument("--profile", dest="profile_option", default=None,
                        help="a library profile (default: the built-in 'summary')")
    add_batch_options(parser, "where per-track outputs go (default: SUMMARY_tracks/ beside it)")
    add_common_options(parser)
    args = parser.parse_args(argv)
    return guard(lambda: summarise_library(args), args.debug)


