"""Running a profile from the command line: one file to one output, or a batch (a folder,
--list, --output DIR) through the batch engine on local workers or a Dask cluster."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runner import batch, compile
from runner import output as write
from runner import profile as load
from runner.analysis import spool
from runner.batch.agreement import describe_profile
from runner.batch.extract_job import ExtractorWork
from runner.batch.inputs import up_to_date
from runner.batch.sending import SentProfile
from runner.cli.common import catalog_feed, print_notes
from runner.compile import Plan
from runner.errors import UsageError
from runner.extract import Extractor
from runner.models.stage import prepare


def extract_one(profile: str, input_path: str, output: str, overrides: list[str],
                essentia_base: str = "music", quiet: bool = False, essentia: bool = False
                ) -> int:
    """One file to one output. The output's extension decides its format (.json, .yaml,
    .yml); another one gets the profile's format, and a note says so. An output that could
    not be written is refused before the analysis. ``essentia`` (Essentia's spelling of the
    command): the frames go to ``OUT_frames`` and an existing OUT is rewritten in place, as
    Essentia's binary does."""
    extractor = Extractor(profile, overrides, essentia_base)
    print_notes(extractor.profile.notes, quiet)
    write.check_writable(output)
    fmt = extractor.plan.output.format
    if Path(output).suffix.lower() not in write.FORMATS and not quiet and not essentia:
        print(f"note: {output}: written as {fmt.upper()} (the profile's output.format); "
              "name it .json, .yaml or .yml to choose", file=sys.stderr)
    doc = extractor.extract(input_path, output,
                            frames_output=output + "_frames" if essentia else None,
                            in_place=essentia)
    for warning in doc["metadata"]["warnings"]:
        print(f"warning: {input_path}: {warning}", file=sys.stderr)
    return 0


def profile_workers(profile: str, args: argparse.Namespace, essentia_base: str, plan: Plan
                    ) -> batch.Workers:
    """Local worker processes, or (--dask-scheduler) a Dask cluster, running the profile.
    An output is up to date when made with ``plan.digest`` as it is when the batch runs
    (announce completes it)."""
    current = (lambda job: up_to_date(job.output, plan.digest))  # noqa: E731
    if args.allow_mixed and not args.dask_scheduler:
        raise UsageError("--allow-mixed is for --dask-scheduler (local workers all compute "
                         "what this machine computes)")
    if args.write_on and not args.dask_scheduler:
        raise UsageError("--write-on is for --dask-scheduler (local workers write here)")
    if not args.dask_scheduler:
        per_worker = batch.FILES_PER_WORKER if args.files_per_worker is None else (
            args.files_per_worker)
        return batch.LocalWorkers((ExtractorWork, (profile, args.overrides, essentia_base)),
                                  current, jobs=args.jobs, force=args.force,
                                  files_per_worker=per_worker)
    if args.files_per_worker is not None:
        raise UsageError("--files-per-worker is for local workers; Dask workers are renewed "
                         "with: dask worker --lifetime ...")
    if args.jobs is not None:
        raise UsageError("--jobs is for local workers; with --dask-scheduler the cluster's "
                         "worker threads decide")
    try:
        from runner.batch.dask_workers import DaskWorkers  # optional dependency: on demand
    except ImportError as exc:
        if exc.name not in ("distributed", "dask"):
            raise
        raise UsageError("--dask-scheduler needs Dask: pip install 'extractor-profiles[dask]'"
                         ) from None
    # Workers may run in another directory: a profile given as a path travels absolute.
    path = os.path.expanduser(profile)
    sent: str | SentProfile = os.path.abspath(path) if os.path.exists(path) else profile
    if args.write_on == "client" and os.path.isfile(path):  # no shared paths: its text goes
        sent = (os.path.basename(path), Path(path).read_text(encoding="utf-8"))
    make = (ExtractorWork, (sent, tuple(args.overrides), essentia_base, False))
    describe = (describe_profile, (sent, tuple(args.overrides), essentia_base))
    return DaskWorkers(make, args.dask_scheduler, current, force=args.force,
                       describe=describe, allow_mixed=args.allow_mixed,
                       write_on=args.write_on or "workers")


def announce(plan: Plan, notes: list[str], quiet: bool, workers: batch.Workers | None = None
             ) -> None:
    """Before a batch: the output-planning notes, and which models are not in the cache
    (checked once here; the workers stay quiet). ``missing: error``, or a model file that
    does not match its pin, stops here. Completes ``plan.digest`` as the workers will
    (the models that run are part of it), so up-to-date outputs are recognised.

    On a Dask cluster the workers are asked what they would compute (DaskWorkers.survey:
    a cluster that would compute another analysis than this client is refused), and the
    notes on what is left out are theirs."""
    survey = getattr(workers, "survey", None)
    if survey is not None:
        prepare(plan, warn=False, load=False)  # plan.digest as this client computes it
        print_notes(plan.profile.notes + plan.warnings + notes + survey(), quiet)
        return
    if plan.models is not None and plan.models.outputs:
        stage = prepare(plan, warn=False, load=False)
        if stage is not None and stage.missing:
            notes.append(stage.note())
    print_notes(plan.profile.notes + plan.warnings + notes, quiet)


def failures_file(args: argparse.Namespace, folder: Path) -> tuple[Path, bool]:
    """Where failed files are listed (--failures, else FOLDER/failures.jsonl), and whether
    the user chose it (then it is never removed)."""
    return (Path(args.failures), True) if args.failures else (folder / "failures.jsonl", False)


def is_batch(args: argparse.Namespace) -> bool:
    """A folder, --list, --output DIR, or an OUTPUT that is a folder or ends in '/'."""
    into_folder = bool(args.output) and write.names_folder(args.output)
    return bool(args.list_file or args.output_dir or into_folder
                or (args.input and Path(args.input).is_dir()))


def extract_command(profile: str, args: argparse.Namespace, essentia_base: str = "music"
                    ) -> int:
    """One file to one output, or a batch: local workers or Dask."""
    spool.remove_stale()  # what killed runs left in TMPDIR
    if args.output and args.output_dir and Path(args.output) != Path(args.output_dir):
        raise UsageError(f"two outputs: {args.output} and --output {args.output_dir} "
                         "(give one)")
    if not is_batch(args):
        if not args.input or not args.output:
            raise UsageError("give INPUT and OUTPUT, or a folder / --list with --output DIR")
        if args.catalog or args.catalog_db:
            raise UsageError("--catalog is for batches (a folder or --list with --output DIR); "
                             "for one file: extractor catalog update DIR")
        return extract_one(profile, args.input, args.output, args.overrides, essentia_base,
                           args.quiet, essentia=getattr(args, "essentia", False))
    out_dir = args.output_dir or args.output
    if not out_dir:
        raise UsageError("a folder or --list needs an output folder: --output DIR")
    if not args.input and not args.list_file:
        raise UsageError("give a file, a folder or --list FILE")
    plan = compile.compile_profile(load.load_profile(profile, args.overrides, essentia_base))
    pairs = batch.collect([args.input] if args.input else [], args.list_file)
    if not pairs:
        raise UsageError("no audio files found")
    write.prepare_folder(out_dir)
    jobs, notes = batch.plan_outputs(pairs, Path(out_dir), "." + plan.output.format)
    workers = profile_workers(profile, args, essentia_base, plan)
    announce(plan, notes, args.quiet, workers)
    failures, chosen = failures_file(args, Path(out_dir))
    result = batch.process_batch(workers, jobs, Path(out_dir), failures,
                                 failures_chosen=chosen, quiet=args.quiet,
                                 wrap_progress=catalog_feed(args, out_dir))
    return batch.finish(result, f"{batch.tally(result)} in {result.seconds:.1f} s",
                        args.quiet, workers.claims)
