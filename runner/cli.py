"""Command line: `extractor` and the `streaming-extractor-*` commands.

Expected failures print one line and exit non-zero (1: an input could not be analysed,
2: a profile or usage problem); anything else says to rerun with --debug for a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

# Essentia bundles libtensorflow, which prints CUDA warnings to stderr when it loads unless
# this is 3 before the first import of essentia (in this process or a worker it spawns). Its
# messages are never about the user's input, so the commands set it whatever the shell says.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

from runner import __version__  # noqa: E402
from runner.errors import (  # noqa: E402
    AudioError,
    ExtractorError,
    MissingMbidError,
    ModelError,
    OutputError,
    ProfileError,
)

EXIT_FAILED = 1
EXIT_PROFILE = 2
EXIT_NO_MBID = 2  # Essentia's binary, with requireMbid: the AcousticBrainz clients' "no MBID"


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _guard(action: Callable[[], int], debug: bool, essentia: bool = False) -> int:
    """Run ``action``; turn expected failures into one line, unexpected ones into a pointer.

    ``essentia``: the exit codes of Essentia's extractor binary, which the tools that call it
    read (see ESSENTIA_SPELLING): 1 for every failure, 2 for a file without the MusicBrainz
    recording id the profile requires.
    """
    profile_code = EXIT_FAILED if essentia else EXIT_PROFILE
    try:
        return action()
    except ProfileError as exc:
        if debug:
            raise
        return _fail(str(exc), profile_code)
    except MissingMbidError as exc:
        if debug:
            raise
        return _fail(str(exc), EXIT_NO_MBID if essentia else EXIT_FAILED)
    except (AudioError, OutputError, ModelError, ExtractorError) as exc:
        if debug:
            raise
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if debug:
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
                     "for the traceback)", EXIT_FAILED)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a profile value, e.g. options.lowlevel.frameSize=4096")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _run(profile: str, input_path: str, output: str, overrides: list[str],
         legacy_base: str = "music", quiet: bool = False, essentia: bool = False) -> int:
    """One file to one output. The output's extension decides its format (.json, .yaml,
    .yml); another one gets the profile's format, and a note says so. An output that could
    not be written is refused before the analysis. ``essentia`` (Essentia's spelling of the
    command): the frames go to ``OUT_frames`` and an existing OUT is rewritten in place, as
    Essentia's binary does."""
    from pathlib import Path

    from runner import write
    from runner.extract import Extractor

    extractor = Extractor(profile, overrides, legacy_base=legacy_base)
    _print_notes(extractor.profile.notes, quiet)
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


def _print_notes(notes: list[str], quiet: bool = False) -> None:
    """What loading the profile did that a person should know (a removed node took its
    dependents with it), once per command, never per file."""
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)


def _batch_options(parser: argparse.ArgumentParser,
                   output_help: str = "write outputs under DIR, mirroring the input folders"
                   ) -> None:
    parser.add_argument("--list", dest="list_file", metavar="FILE",
                        help="analyse the files listed in FILE (one path per line)")
    parser.add_argument("--output", "-o", dest="output_dir", metavar="DIR", help=output_help)
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="worker processes (default: the number of cores)")
    parser.add_argument("--force", action="store_true",
                        help="recompute outputs that are already up to date")
    parser.add_argument("--files-per-worker", type=int, default=None, metavar="N",
                        help="replace each worker by a fresh one after N files, which keeps "
                        "its memory flat (default: 200; 0: never)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.add_argument("--failures", metavar="FILE", default=None,
                        help="where to write failed files as JSON lines "
                        "(default: DIR/failures.jsonl)")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS", default=None,
                        help="run on a Dask cluster instead of local workers, e.g. "
                        "tcp://HOST:8786 (inputs and outputs on a filesystem the workers "
                        "share, at the same paths)")


def _batch_runner(profile: str, args: argparse.Namespace, legacy_base: str, digest: str
                  ) -> Any:
    """Local worker processes, or (--dask-scheduler) a Dask cluster: the same batch contract."""
    from runner import batch

    if not args.dask_scheduler:
        per_worker = batch.FILES_PER_WORKER if args.files_per_worker is None else (
            args.files_per_worker)
        return batch.Batch(profile, args.overrides, legacy_base, digest, args.jobs, args.force,
                           files_per_worker=per_worker)
    if args.files_per_worker is not None:
        raise UsageError("--files-per-worker is for local workers; Dask workers are renewed "
                         "with: dask worker --lifetime ...")
    if args.jobs is not None:
        raise UsageError("--jobs is for local workers; with --dask-scheduler the cluster's "
                         "worker threads decide")
    try:
        from runner.dask_backend import DaskBatch
    except ImportError as exc:
        if exc.name not in ("distributed", "dask"):
            raise
        raise UsageError("--dask-scheduler needs Dask: pip install 'extractor-profiles[dask]'"
                         ) from None
    return DaskBatch(profile, args.overrides, legacy_base, digest, args.dask_scheduler,
                     args.force)


def _announce(plan: Any, notes: list[str], quiet: bool) -> None:
    """Before a batch: the output-planning notes, and which models are not in the cache
    (checked once here; the workers stay quiet). ``missing: error``, or a model file that
    does not match its pin, stops here. Completes ``plan.digest`` as the workers will
    (the models that run are part of it), so up-to-date outputs are recognised."""
    if plan.models is not None and plan.models.outputs:
        from runner.models.stage import prepare

        stage = prepare(plan, warn=False, load=False)
        if stage is not None and stage.missing:
            notes.append(stage.note())
    _print_notes(plan.profile.notes + notes, quiet)


def _execute(profile: str, args: argparse.Namespace, legacy_base: str = "music") -> int:
    """One file to one output, or (folder, --list, --output, an OUTPUT that is a folder or
    ends in '/') a batch: local workers or Dask."""
    from pathlib import Path

    from runner import spool, write

    spool.remove_stale()  # what killed runs left in TMPDIR
    inputs = [args.input] if args.input else []
    if args.output and args.output_dir and Path(args.output) != Path(args.output_dir):
        raise UsageError(f"two outputs: {args.output} and --output {args.output_dir} "
                         "(give one)")
    into_folder = bool(args.output) and write.names_folder(args.output)
    is_batch = bool(args.list_file or args.output_dir or into_folder
                    or any(Path(i).is_dir() for i in inputs))
    if not is_batch:
        if not inputs or not args.output:
            raise UsageError("give INPUT and OUTPUT, or a folder / --list with --output DIR")
        return _run(profile, args.input, args.output, args.overrides, legacy_base,
                    args.quiet, essentia=getattr(args, "essentia", False))
    out_dir = args.output_dir or args.output
    if not out_dir:
        raise UsageError("a folder or --list needs an output folder: --output DIR")
    if not inputs and not args.list_file:
        raise UsageError("give a file, a folder or --list FILE")
    from runner import batch, compile
    from runner import profile as load

    plan = compile.compile_profile(load.load_profile(profile, args.overrides, legacy_base))
    pairs = batch.collect(inputs, args.list_file)
    if not pairs:
        raise UsageError("no audio files found")
    write.prepare_folder(out_dir)
    jobs, notes = batch.plan_outputs(pairs, Path(out_dir), "." + plan.output.format)
    _announce(plan, notes, args.quiet)
    runner = _batch_runner(profile, args, legacy_base, plan.digest)
    batch.remove_stale_temporaries(Path(out_dir))
    update, close = batch.reporter(len(jobs), args.quiet)
    try:
        summary = runner.run(jobs, update)
    finally:
        close()
    failures = Path(args.failures) if args.failures else Path(out_dir) / "failures.jsonl"
    kept = batch.failures_of_others(failures, summary)
    if summary.failures or kept:
        batch.write_failures(failures, summary.failures, kept)
    elif failures.exists() and not args.failures:
        failures.unlink()  # from an earlier run whose failures are now done
    warnings = failures.with_name("warnings.jsonl")
    listed = batch.write_warnings(warnings, summary, jobs)
    if not args.quiet:
        claimed = f"{len(summary.claimed)} claimed by another run, " if summary.claimed else ""
        warned = f" ({len(summary.warned)} with warnings)" if summary.warned else ""
        line = (f"{summary.done} done{warned}, {summary.skipped} skipped (up to date), {claimed}"
                f"{summary.failed} failed in {summary.seconds:.1f} s")
        if summary.failures:
            line += f"; failures listed in {failures}"
        if listed:
            line += f"; warnings listed in {warnings}"
        print(line, file=sys.stderr)
        _claims_note(runner)
    return EXIT_FAILED if summary.failed else 0


def _claims_note(runner: Any) -> None:
    claims = getattr(runner, "claims", None)
    if claims is not None and claims.unsupported:
        print(f"note: {claims.unsupported}: runs sharing this folder may analyse a file "
              "twice", file=sys.stderr)


def _summary(args: argparse.Namespace) -> int:
    """A library profile: per-track outputs (batch engine, reused), then one summary."""
    from pathlib import Path

    from runner import batch, compile, summary
    from runner import profile as load

    if args.list_file and args.input and not args.output:
        args.input, args.output = None, args.input  # summary --list files.txt summary.json
    if not args.output:
        raise UsageError("give the summary file: streaming-extractor-summary INPUT SUMMARY.json")
    inputs = [args.input] if args.input else []
    if not inputs and not args.list_file:
        raise UsageError("give a folder, a file or --list FILE")
    profile = load.load_profile(args.profile_option or "summary", args.overrides)
    summary.summary_spec(profile)
    plan = compile.compile_profile(profile)
    output = Path(args.output)
    tracks = Path(args.output_dir) if args.output_dir else output.with_name(output.stem +
                                                                            "_tracks")
    pairs = batch.collect(inputs, args.list_file)
    if not pairs:
        raise UsageError("no audio files found")
    from runner import spool, write

    spool.remove_stale()
    write.check_writable(output)
    write.prepare_folder(tracks)
    jobs, notes = batch.plan_outputs(pairs, tracks, ".json")
    _announce(plan, notes, args.quiet)
    runner = _batch_runner(args.profile_option or "summary", args, "music", plan.digest)
    batch.remove_stale_temporaries(tracks)
    update, close = batch.reporter(len(jobs), args.quiet)
    try:
        result = runner.run(jobs, update)
    finally:
        close()
    failures = Path(args.failures) if args.failures else tracks / "failures.jsonl"
    kept = batch.failures_of_others(failures, result)
    if result.failures or kept:
        batch.write_failures(failures, result.failures, kept)
    batch.write_warnings(failures.with_name("warnings.jsonl"), result, jobs)
    doc = summary.summarise(plan.profile, plan.digest, jobs, result)
    summary.write_summary(doc, output)
    if not args.quiet:
        claimed = (f", {len(result.claimed)} left out: claimed by another run"
                   if result.claimed else "")
        print(f"{doc['summary']['tracks']} tracks summarised in {output} "
              f"({result.done} analysed"
              f"{f' ({len(result.warned)} with warnings)' if result.warned else ''}, "
              f"{result.skipped} reused, {result.failed} failed{claimed}; "
              f"per-track outputs in {tracks})", file=sys.stderr)
    return EXIT_FAILED if result.failed else 0


def summary(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="streaming-extractor-summary",
        description="Summarise a library: per-track analysis (kept and reused), then "
        "statistics, key distribution and a row per track in one JSON file.",
    )
    parser.add_argument("input", nargs="?", help="audio folder or file (or use --list)")
    parser.add_argument("output", nargs="?", help="the summary JSON file")
    parser.add_argument("--profile", dest="profile_option", default=None,
                        help="a library profile (default: the built-in 'summary')")
    _batch_options(parser, "where per-track outputs go (default: SUMMARY_tracks/ beside it)")
    _common(parser)
    args = parser.parse_args(argv)
    return _guard(lambda: _summary(args), args.debug)


class UsageError(ProfileError):
    """Command-line arguments that do not fit together (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, source="usage")


# -- streaming-extractor-<profile> ---------------------------------------------------------------
class _EssentiaParser(argparse.ArgumentParser):
    """Essentia's binary answers wrong arguments with its usage and exit code 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)


# Commands named as Essentia names its binaries (streaming_extractor_music, and
# essentia_streaming_extractor_music as Essentia's builds install it) behave as that binary
# where the tools that call it depend on it: exit codes (_guard), OUT_frames, OUT rewritten in
# place. The hyphenated names keep this project's conventions (README: Commands).
ESSENTIA_SPELLING = "streaming_extractor_"


def _extractor_command(builtin: str, argv: Sequence[str] | None = None,
                       essentia: bool = False) -> int:
    prog = (f"{ESSENTIA_SPELLING}{builtin}" if essentia
            else f"streaming-extractor-{builtin.replace('_', '-')}")
    parser = (_EssentiaParser if essentia else argparse.ArgumentParser)(
        prog=prog,
        description=f"Run the built-in '{builtin}' profile on an audio file, a folder "
        "(recursively) or a list of files, and write JSON."
        + (" Essentia's spelling: Essentia's exit codes (1: failed, 2: no MusicBrainz id "
           "with requireMbid), frames in OUT_frames." if essentia else ""),
    )
    parser.add_argument("input", nargs="?", help="audio file or folder")
    parser.add_argument("output", nargs="?",
                        help="output file (or output folder when INPUT is a folder)")
    parser.add_argument("profile", nargs="?", default=None,
                        help="Essentia profile file (applied as overrides) or a profile of ours")
    parser.add_argument("--profile", dest="profile_option", default=None,
                        help="run this profile (built-in name or path) instead")
    _batch_options(parser)
    _common(parser)
    args = parser.parse_args(argv)
    args.essentia = essentia
    profile = args.profile_option or args.profile or builtin
    return _guard(lambda: _execute(profile, args, legacy_base=builtin), args.debug, essentia)


def _command(builtin: str, essentia: bool = False) -> Callable[..., int]:
    """The console-script entry point (pyproject.toml) of a built-in profile's command."""
    def command(argv: Sequence[str] | None = None) -> int:
        return _extractor_command(builtin, argv, essentia=essentia)

    return command


# streaming-extractor-<name> (our conventions) and streaming_extractor_<name> (Essentia's).
music, essentia_music = _command("music"), _command("music", essentia=True)
lowlevel, essentia_lowlevel = _command("lowlevel"), _command("lowlevel", essentia=True)
tonal, essentia_tonal = _command("tonal"), _command("tonal", essentia=True)
rhythm, essentia_rhythm = _command("rhythm"), _command("rhythm", essentia=True)
beats, essentia_beats = _command("beats"), _command("beats", essentia=True)
freesound_general = _command("freesound_general")
essentia_freesound_general = _command("freesound_general", essentia=True)
freesound_music = _command("freesound_music")
essentia_freesound_music = _command("freesound_music", essentia=True)


def music_highlevel(argv: Sequence[str] | None = None) -> int:
    """The highlevel profile (TensorFlow models) on files or folders, through the batch engine."""
    parser = argparse.ArgumentParser(
        prog="music-highlevel",
        description="Run the built-in 'highlevel' profile (MTG TensorFlow classifiers, musicnn "
        "tags) on an audio file, a folder (recursively) or a list of files.",
    )
    parser.add_argument("input", nargs="?", help="audio file or folder")
    parser.add_argument("output", nargs="?", help="output file (or folder)")
    parser.add_argument("--taxonomies", nargs="+", metavar="NAME", default=None,
                        help="only these outputs (e.g. moods_mirex genre_discogs400)")
    parser.add_argument("--keep-embeddings", action="store_true",
                        help="also write each embedding model's per-patch embeddings (.npy)")
    parser.add_argument("--missing", choices=["error", "skip"], default=None,
                        help="models not in the cache: leave them out and name them (skip, "
                        "the default; none at all is an error), or stop unless every model "
                        "is there (error)")
    parser.add_argument("--profile", dest="profile_option", default="highlevel",
                        help="run this profile instead (built-in name or path)")
    _batch_options(parser)
    _common(parser)
    args = parser.parse_args(argv)
    if args.taxonomies:
        names = [n for item in args.taxonomies for n in item.replace(",", " ").split()]
        args.overrides.append(f"models.select=[{', '.join(names)}]")
    if args.keep_embeddings:
        args.overrides.append("models.keep_embeddings=true")
    if args.missing:
        args.overrides.append(f"models.missing={args.missing}")
    return _guard(lambda: _execute(args.profile_option, args), args.debug)


def music_clap(argv: Sequence[str] | None = None) -> int:
    """`music-clap`: text-to-music search with CLAP (runner/clap_search.py)."""
    from runner import clap_search

    args = clap_search.parser().parse_args(argv)
    return _guard(lambda: clap_search.run(args), args.debug)


# -- extractor ----------------------------------------------------------------------------------
def _cmd_run(args: argparse.Namespace) -> int:
    return _execute(args.profile, args)


def _cmd_validate(args: argparse.Namespace) -> int:
    from runner import compile
    from runner import profile as load

    profile = load.load_profile(args.profile, args.overrides)
    plan = compile.compile_profile(profile)  # Essentia's configure checks included
    _print_notes(profile.notes)
    for line in compile.describe(plan):
        print(line)
    print("ok")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from runner import profile as load

    table = Table("profile", "description", title="built-in profiles")
    for name in load.builtin_names():
        data, _ = load.read_yaml(load.builtin_dir() / f"{name}.yaml")
        text = str((data or {}).get("description", "")).strip().splitlines()
        table.add_row(name, text[0] if text else "")
    Console().print(table)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from runner import compile, write
    from runner import profile as load

    if args.profile == "profile":
        from runner.profile import load_schema

        schema = load_schema("profile.schema.json")
    else:
        plan = compile.compile_profile(load.load_profile(args.profile, args.overrides))
        schema = write.output_schema(plan)
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if args.output:
        write.write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    """Print values of a result by dotted path (for users without jq)."""
    import yaml

    from runner.errors import OutputError

    try:
        with open(args.result, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)  # JSON is YAML
    except (OSError, yaml.YAMLError) as exc:
        raise OutputError(f"{args.result}: cannot read result: {exc}") from None
    for dotted in args.paths:
        node = doc
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise OutputError(f"{args.result}: no value at '{dotted}'")
            node = node[part]
        print(f"{dotted}: {json.dumps(node)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from runner.export import export

    count, skipped = export(Path(args.folder), Path(args.output), args.format, args.keep_lists)
    for path, reason in skipped:
        print(f"warning: {path}: skipped, not a readable result ({reason})", file=sys.stderr)
    line = f"{count} tracks -> {args.output}"
    if skipped:
        names = ", ".join(str(path) for path, _ in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        line += f"; {len(skipped)} unreadable skipped: {names}{more}"
    print(line, file=sys.stderr)
    return EXIT_FAILED if skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="extractor", description="Declarative music-analysis extractor profiles."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a profile on an audio file, a folder or a list")
    p.add_argument("profile", help="built-in profile name or path to a YAML profile")
    p.add_argument("input", nargs="?", help="audio file or folder")
    p.add_argument("output", nargs="?", help="output file (output folder for a folder)")
    _batch_options(p)
    _common(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check a profile and show its compiled graph")
    p.add_argument("profile")
    _common(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("profiles", help="list the built-in profiles")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("schema", help="print the output JSON Schema of a profile "
                       "('profile' prints the profile format's schema)")
    p.add_argument("profile")
    p.add_argument("--output", "-o", default=None, help="write to this file")
    _common(p)
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("export", help="flatten a folder of results into one CSV or Parquet table "
                       "(an unreadable result is skipped, named, and makes the exit code 1)")
    p.add_argument("folder", help="a folder of per-track results (e.g. from --output DIR)")
    p.add_argument("output", help="the table file to write")
    p.add_argument("--format", choices=["csv", "parquet"], default=None,
                   help="default: from the output's extension (.csv, .parquet or .pq)")
    p.add_argument("--keep-lists", action="store_true",
                   help="also keep variable-length lists (beat positions, ...) as JSON text")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("show", help="print values of a result file by dotted path")
    p.add_argument("result", help="a JSON or YAML output")
    p.add_argument("paths", nargs="+", metavar="PATH", help="e.g. rhythm.bpm tonal.key_key")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=_cmd_show)

    from runner.models.commands import add_parser as add_models_parser

    add_models_parser(sub)

    from runner.report.commands import add_commands as add_report_commands

    add_report_commands(sub)

    args = parser.parse_args(argv)
    if args.command == "export" and args.format is None:
        from runner.export import TABLE_FORMATS, table_format

        args.format = table_format(args.output)
        if args.format is None:
            known = ", ".join(sorted(TABLE_FORMATS))
            return _fail(str(UsageError(
                f"{args.output}: no table format for the extension "
                f"'{Path(args.output).suffix}' (supported: {known}; or give --format csv or "
                "--format parquet)")), EXIT_PROFILE)
    return _guard(lambda: args.func(args), getattr(args, "debug", False))


if __name__ == "__main__":
    sys.exit(main())
