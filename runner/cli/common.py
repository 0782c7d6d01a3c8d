"""What every command shares: options, notes, and turning failures into one line and an exit
code (1: an input could not be analysed, 2: a profile or usage problem; see runner.errors)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from runner.batch.engine import ProgressWrapper
from runner.catalog.commands import add_batch_options as add_catalog_options
from runner.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_MBID,
    EXIT_PROFILE,
    AudioError,
    ExtractorError,
    MissingMbidError,
    ModelError,
    OutputError,
    ProfileError,
)

# Commands named as Essentia names its binaries (streaming_extractor_music, and
# essentia_streaming_extractor_music as Essentia's builds install it) behave as that binary
# where the tools that call it depend on it: exit codes (guard), OUT_frames, OUT rewritten in
# place. The hyphenated names keep this project's conventions (README: Commands).
ESSENTIA_SPELLING = "streaming_extractor_"


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def guard(action: Callable[[], int], debug: bool, essentia: bool = False) -> int:
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
        return fail(str(exc), profile_code)
    except MissingMbidError as exc:
        if debug:
            raise
        return fail(str(exc), EXIT_NO_MBID if essentia else EXIT_FAILED)
    except (AudioError, OutputError, ModelError, ExtractorError) as exc:
        if debug:
            raise
        return fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if debug:
            raise
        return fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
                    "for the traceback)", EXIT_FAILED)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a profile value, e.g. options.lowlevel.frameSize=4096")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def add_batch_options(parser: argparse.ArgumentParser,
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
    parser.add_argument("--allow-mixed", action="store_true",
                        help="with --dask-scheduler: run on workers that would compute another "
                        "analysis than this client (other versions or models); each output "
                        "records its worker in metadata.mixed_cluster")
    parser.add_argument("--write-on", choices=("workers", "client"), default=None,
                        help="with --dask-scheduler: 'workers' (default) read the inputs and "
                        "write the outputs at paths they share with this machine; 'client' "
                        "sends each input's bytes and writes the results here (no shared "
                        "filesystem; inputs over 1 GiB are refused)")
    add_catalog_options(parser)


def catalog_feed(args: argparse.Namespace, out_dir: str | Path) -> ProgressWrapper | None:
    """--catalog: outputs go into the catalog as the batch finishes them (runner.catalog)."""
    if not (args.catalog or args.catalog_db):
        return None
    from runner.catalog.feed import feeding

    return lambda update, close: feeding(update, close, str(out_dir), args.catalog_db,
                                         args.input)


def print_notes(notes: list[str], quiet: bool = False) -> None:
    """What loading the profile did that a person should know (a removed node took its
    dependents with it), once per command, never per file."""
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)


class EssentiaParser(argparse.ArgumentParser):
    """Essentia's binary answers wrong arguments with its usage and exit code 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
