"""`extractor report OUTPUT_DIR|--db URL -o report.html`: the library report from a folder of
outputs or from a catalog."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.errors import OutputError, UsageError


def report(args: argparse.Namespace) -> int:
    """Write the report; unreadable outputs are named on stderr and counted in the page."""
    from runner.report.build import build_report, build_report_from_catalog

    if (args.folder is None) == (args.db is None):
        raise UsageError("give an output folder or --db URL (a catalog), one of the two")
    if args.db is not None and args.jobs is not None:
        raise UsageError("-j/--jobs is for an output folder; a catalog is read by one process")
    output = Path(args.output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise OutputError(f"{output}: the report is an HTML page: name it .html")
    if args.db is not None:
        built = build_report_from_catalog(args.db, output, args.map)
    else:
        built = build_report(Path(args.folder), output, args.map, args.jobs)
    for path, reason in built.unreadable[:5]:
        print(f"warning: {path}: skipped, not a readable result ({reason})", file=sys.stderr)
    line = (f"{built.tracks} tracks -> {output} ({built.size / 1e6:.1f} MB, "
            f"{built.seconds:.1f} s; sections: {', '.join(built.sections)})")
    if built.unreadable:
        more = len(built.unreadable) - 5
        line += f"; {len(built.unreadable)} unreadable skipped" + (
            f" ({more} more not named above)" if more > 0 else "")
    if built.not_results:
        line += f"; {built.not_results} JSON files that are not results left out"
    print(line, file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not '{text}'")
    return int(text)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `extractor report`."""
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML page of a folder of results or a catalog: "
        "tempo, keys, loudness, classifiers, embedding map, a searchable table")
    parser.add_argument("folder", metavar="OUTPUT_DIR", nargs="?",
                        help="a folder of per-track results (any profile; read recursively)")
    parser.add_argument("--db", metavar="URL",
                        help="read a catalog instead of a folder: an SQLite file (or its "
                        "folder) or postgresql://... (see `extractor catalog update`)")
    parser.add_argument("-o", "--output", default="report.html",
                        help="the HTML file to write (default: report.html)")
    parser.add_argument("--map", choices=["pca", "umap"], default="pca",
                        help="how embeddings are projected to 2-D (umap needs umap-learn; "
                        "default: pca)")
    parser.add_argument("-j", "--jobs", type=_positive, default=None,
                        help="processes reading the outputs (default: one per core where the "
                        "outputs add up to 32 MB or more, else one)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=report)
