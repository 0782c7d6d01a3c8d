"""`extractor catalog update`, `extractor find`, `extractor similar`: the catalog's commands.

The command line registers them with :func:`add_commands`; each is a thin layer over the
package's functions (update, query, similar), which are the API.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runner.catalog.backend import DEFAULT_NAME, connect

DB_ENV = "EXTRACTOR_CATALOG"


def _default_db(folder: str | None = None) -> str:
    """--db, else $EXTRACTOR_CATALOG, else catalog.sqlite in the output folder (or here)."""
    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    return str(Path(folder or ".") / DEFAULT_NAME)


def _db_option(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument("--db", metavar="URL", default=None,
                        help="an SQLite file (or its folder) or postgresql://user@host:port/db "
                             f"(default: ${DB_ENV}, else {where})")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _cmd_update(args: argparse.Namespace) -> int:
    from runner.catalog.update import print_report, update

    folder = Path(args.output_dir)
    db = connect(args.db or _default_db(args.output_dir))
    try:
        report = update(db, folder, None if args.quiet else
                        (lambda line: print(line, file=sys.stderr, flush=True)),
                        Path(args.audio_root) if args.audio_root else None, args.replace)
    finally:
        db.close()
    print_report(report, args.quiet)
    return 1 if report.skipped else 0


def _cmd_find(args: argparse.Namespace) -> int:
    from runner.catalog import query

    db = connect(args.db or _default_db(), read_only=True)
    try:
        found = query.find(db, query.Filters.from_args(args), args.limit)
    finally:
        db.close()
    query.show(found, args.format, sys.stdout)
    return 0


def _cmd_similar(args: argparse.Namespace) -> int:
    from runner.catalog import query, similar

    db = connect(args.db or _default_db(), read_only=True)
    try:
        found = similar.similar(db, args.track, args.by, args.k,
                                note=lambda line: print(f"note: {line}", file=sys.stderr))
    finally:
        db.close()
    query.show(found, args.format, sys.stdout)
    return 0


def _output_formats(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", dest="format", action="store_const", const="json",
                       help="a JSON list of the tracks found")
    group.add_argument("--m3u", dest="format", action="store_const", const="m3u",
                       help="an M3U playlist of the audio files")
    group.add_argument("--paths", dest="format", action="store_const", const="paths",
                       help="the audio files, one per line")
    parser.set_defaults(format="table")


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """A batch's --catalog (runner.catalog.feed)."""
    parser.add_argument("--catalog", action="store_true",
                        help="load outputs into a catalog as they finish "
                             f"(DIR/{DEFAULT_NAME} unless --catalog-db; docs/catalog.md)")
    parser.add_argument("--catalog-db", metavar="URL", default=None,
                        help="the catalog for --catalog: an SQLite file or postgresql://...")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `catalog`, `find` and `similar` on the `extractor` command line."""
    catalog = sub.add_parser("catalog", help="a queryable catalog of a folder of outputs "
                             "(SQLite or PostgreSQL)")
    actions = catalog.add_subparsers(dest="catalog_command", required=True)
    p = actions.add_parser("update", help="load new and changed outputs, remove gone ones "
                           "(one transaction)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="a folder of outputs (--output DIR)")
    _db_option(p, f"OUTPUT_DIR/{DEFAULT_NAME}")
    p.add_argument("--audio-root", metavar="DIR", help="the folder that was analysed: "
                   "playlists (find --m3u, --paths) then name the audio files in full")
    p.add_argument("--replace", action="store_true", help="the catalog held another folder's "
                   "outputs: replace them with this folder's (else refused)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only what was skipped")
    p.set_defaults(func=_cmd_update)

    p = sub.add_parser("find", help="tracks of a catalog by tempo, key and descriptors")
    p.add_argument("--bpm", metavar="A..B", help="rhythm.bpm from A to B (inclusive)")
    p.add_argument("--key", metavar="KEY", help='e.g. "A minor", "F# major", "Am", "C"')
    p.add_argument("--where", action="append", default=[], metavar="CONDITION",
                   help="e.g. \"highlevel.mood_happy.value = 'happy'\" or \"rhythm.danceability "
                        "> 1.2 and tonal.key_scale = 'minor'\" (parsed, never run as SQL)")
    p.add_argument("--limit", type=int, default=50, help="at most this many tracks (default 50)")
    _output_formats(p)
    _db_option(p, f"./{DEFAULT_NAME}")
    p.set_defaults(func=_cmd_find)

    p = sub.add_parser("similar", help="the tracks nearest to one track (cosine)")
    p.add_argument("track", metavar="TRACK", help="a track's audio path or output path (or a "
                   "unique part of it)")
    p.add_argument("--by", default="auto", metavar="clap|musicnn|descriptors|NAME",
                   help="an embedding (clap, musicnn, or a vector's dotted name) or "
                        "'descriptors' (standardised scalars); default: clap, else musicnn, "
                        "else descriptors")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    _output_formats(p)
    _db_option(p, f"./{DEFAULT_NAME}")
    p.set_defaults(func=_cmd_similar)
