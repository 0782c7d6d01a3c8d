"""`extractor`: the subcommands (run, validate, profiles, schema, export, show, models, catalog,
train, evaluate)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from runner import __version__, compile
from runner import output as write
from runner import profile as load
from runner.catalog.commands import add_commands as add_catalog_commands
from runner.cli.common import add_batch_options, add_common_options, fail, guard, print_notes
from runner.cli.extraction import extract_command
from runner.dataset.commands import add_commands as add_dataset_commands
from runner.dataset.conditioning_command import add_command as add_conditioning_command
from runner.errors import EXIT_FAILED, EXIT_PROFILE, OutputError, UsageError
from runner.library.export import TABLE_FORMATS, export, table_format
from runner.models.commands import add_parser as add_models_parser
from runner.profile import load_schema
from runner.report.commands import add_commands as add_report_commands
from runner.training.commands import add_commands as add_training_commands


def _cmd_run(args: argparse.Namespace) -> int:
    return extract_command(args.profile, args)


def _cmd_validate(args: argparse.Namespace) -> int:
    profile = load.load_profile(args.profile, args.overrides)
    plan = compile.compile_profile(profile)  # Essentia's configure checks included
    notes = list(profile.notes) + plan.warnings  # plan.warnings: in every output, too
    if plan.models is not None:  # each output through its model's family, as a run does
        from runner.models.stage import prepare
        from runner.models.supply.cache import MissingModel

        try:
            prepare(plan, warn=False, load=False)
        except MissingModel as exc:  # not fetched yet: the profile is fine, a run says so
            notes.append(f"a run needs models that are not in the cache: {exc}")
    print_notes(notes)
    for line in compile.describe(plan):
        print(line)
    print("ok")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    table = Table("profile", "description", title="built-in profiles")
    for name in load.builtin_names():
        data, _ = load.read_yaml(load.builtin_dir() / f"{name}.yaml")
        text = str((data or {}).get("description", "")).strip().splitlines()
        table.add_row(name, text[0] if text else "")
    Console().print(table)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.profile == "profile":
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
    add_batch_options(p)
    add_common_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check a profile and show its compiled graph")
    p.add_argument("profile")
    add_common_options(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("profiles", help="list the built-in profiles")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("schema", help="print the output JSON Schema of a profile "
                       "('profile' prints the profile format's schema)")
    p.add_argument("profile")
    p.add_argument("--output", "-o", default=None, help="write to this file")
    add_common_options(p)
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

    add_models_parser(sub)
    add_catalog_commands(sub)
    add_report_commands(sub)
    add_training_commands(sub)
    add_conditioning_command(sub)
    add_dataset_commands(sub)

    args = parser.parse_args(argv)
    if args.command == "export" and args.format is None:
        args.format = table_format(args.output)
        if args.format is None:
            known = ", ".join(sorted(TABLE_FORMATS))
            return fail(str(UsageError(
                f"{args.output}: no table format for the extension "
                f"'{Path(args.output).suffix}' (supported: {known}; or give --format csv or "
                "--format parquet)")), EXIT_PROFILE)
    return guard(lambda: args.func(args), getattr(args, "debug", False))

