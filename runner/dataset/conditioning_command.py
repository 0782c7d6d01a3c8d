"""``extractor conditioning IN... [-o DIR]``: the conditioning profile over files, folders or
a list, with the batch engine (workers, resume, claims, progress, failures.jsonl), writing
``TRACK.INFO`` (merged) and ``TRACK.BEATS_GRID`` beside each track or mirrored under DIR
(runner.dataset.conditioning; docs/conditioning.md)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from runner import batch, compile, procs
from runner import profile as load
from runner.batch.claims import CLAIM_SUFFIX, Claims, drop_claim
from runner.batch.work import BatchResult, Outcome, Report
from runner.dataset.conditioning import KEPT, ConditioningWork, Settings, up_to_date
from runner.dataset.info import INFO_SUFFIX
from runner.dataset.stems import stem_of
from runner.errors import UsageError
from runner.output import prepare_folder

PROFILE = "conditioning"
_OURS = re.compile(r"^\..+\." + procs.TAG + r"\.[^.]+\.tmp$")


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conditioning", help="conditioning features per track (and per stem) merged into "
        "TRACK.INFO, beat grid in TRACK.BEATS_GRID (docs/conditioning.md)")
    p.add_argument("inputs", nargs="*", metavar="IN", help="audio files or folders (recursive)")
    p.add_argument("--list", dest="list_file", metavar="FILE",
                   help="analyse the files listed in FILE (one path per line)")
    p.add_argument("--output", "-o", dest="output_dir", metavar="DIR",
                   help="write TRACK.INFO and TRACK.BEATS_GRID under DIR, mirroring the input "
                   "folders (default: beside each track)")
    p.add_argument("--profile", default=PROFILE, help="run this profile (built-in name or path; "
                   "its 'conditioning' section is what goes into the INFO)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the values of keys the INFO already has (default: keep them)")
    p.add_argument("--stems", dest="stems_root", metavar="DIR",
                   help="stems mirror: DIR/<folder>/<track name>/{drums,bass,other,vocals}.*")
    p.add_argument("--separate", action="store_true",
                   help="tracks without stems: separate them with Demucs first (written once, "
                   "reused; with --force separated again and replaced)")
    p.add_argument("--demucs-model", default="htdemucs", metavar="ID",
                   help="the Demucs model of the lock file (default: htdemucs)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="worker processes (default: the number of cores)")
    p.add_argument("--force", action="store_true",
                   help="recompute tracks that are up to date (with --separate: stems too)")
    p.add_argument("--files-per-worker", type=int, default=None, metavar="N",
                   help="a fresh worker after N files (default: 200; 0: never)")
    p.add_argument("--failures", metavar="FILE", default=None,
                   help="failed files as JSON lines (default: DIR/failures.jsonl, or "
                   "failures.jsonl in the first input folder)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=conditioning)


def tracks(args: argparse.Namespace) -> tuple[list[tuple[Path, Path]], int]:
    """(track, input folder) pairs; stem files (and anything under --stems) are not tracks.
    Also how many stem files were passed over."""
    if not args.inputs and not args.list_file:
        raise UsageError("give audio files, folders or --list FILE")
    root = Path(args.stems_root).resolve() if args.stems_root else None
    kept, stems = [], 0
    for path, base in batch.collect(list(args.inputs), args.list_file):
        under_root = root is not None and root in path.resolve().parents
        if stem_of(path) is not None or under_root:
            stems += 1
        else:
            kept.append((path, base))
    if not kept:
        raise UsageError("no tracks found" + (f" ({stems} stem files are not tracks: "
                                               "give the mixes)" if stems else ""))
    return kept, stems


def plan_jobs(pairs: list[tuple[Path, Path]], out_dir: Path | None
              ) -> tuple[list[batch.Job], list[str]]:
    """Mirrored under ``out_dir``, or beside each track (each input folder is its own root)."""
    if out_dir is not None:
        return batch.plan_outputs(pairs, out_dir, INFO_SUFFIX)
    jobs: list[batch.Job] = []
    notes: list[str] = []
    by_root: dict[Path, list[tuple[Path, Path]]] = {}
    for path, base in pairs:
        by_root.setdefault(base, []).append((path, base))
    for base, group in by_root.items():
        planned, said = batch.plan_outputs(group, base, INFO_SUFFIX)
        jobs += planned
        notes += said
    for index, job in enumerate(jobs):
        job.index = index
    return jobs, notes


def remove_own_leftovers(folders: set[Path]) -> None:
    """Beside the tracks, only what our own killed runs left: temporaries of atomic writes
    whose process is gone and claims nobody holds (a user's own .tmp files are never
    touched, unlike in an output folder of ours: batch.remove_stale_temporaries)."""
    for folder in folders:
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
        except OSError:
            continue
        for name in names:
            path = folder / name
            if name.endswith(INFO_SUFFIX + CLAIM_SUFFIX):
                claim = Claims.try_lock(path)
                if isinstance(claim, int):
                    drop_claim(path, claim)
                continue
            owner = _OURS.match(name)
            try:
                if owner and procs.gone(int(owner[1]), owner[2], path.stat().st_mtime):
                    path.unlink()
            except OSError:
                pass


class KeptKeys:
    """Counts the keys whose existing values were kept, from each track's KEPT warning
    (taken out of its warnings), to say it once at the end."""

    def __init__(self) -> None:
        self.tracks = 0
        self.keys: Counter[str] = Counter()

    def wrap(self, update: Report, close: Callable[[], None]
             ) -> tuple[Report, Callable[[], None]]:
        def report(outcome: Outcome) -> None:
            rest = []
            for warning in outcome.warnings:
                if warning.startswith(KEPT):
                    self.tracks += 1
                    self.keys.update(warning[len(KEPT):].split(", "))
                else:
                    rest.append(warning)
            outcome.warnings[:] = rest
            update(outcome)

        return report, close

    def note(self) -> str | None:
        if not self.tracks:
            return None
        names = ", ".join(name for name, _ in self.keys.most_common(6))
        more = ", ..." if len(self.keys) > 6 else ""
        return (f"note: {self.tracks} INFO file(s) already had values for keys this run "
                f"computes ({names}{more}; {sum(self.keys.values())} values): kept; "
                "--overwrite replaces them")


def failures_path(args: argparse.Namespace, pairs: list[tuple[Path, Path]]) -> tuple[Path, bool]:
    if args.failures:
        return Path(args.failures), True
    if args.output_dir:
        return Path(args.output_dir) / "failures.jsonl", False
    first = Path(args.inputs[0]) if args.inputs else Path(args.list_file).parent
    return (first if first.is_dir() else first.parent) / "failures.jsonl", False


def conditioning(args: argparse.Namespace) -> int:
    from runner.analysis import spool
    from runner.models.stage import prepare

    spool.remove_stale()
    pairs, _ = tracks(args)
    plan = compile.compile_profile(load.load_profile(args.profile, args.overrides))
    stage = prepare(plan, warn=False, load=False)  # completes plan.digest as workers will
    if args.separate:
        from runner.dataset.separation import demucs_model

        demucs_model(args.demucs_model)  # missing, damaged, no demucs package: one line now
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None:
        prepare_folder(out_dir)
    jobs, notes = plan_jobs(pairs, out_dir)
    if stage is not None and stage.missing:
        notes.append(stage.note())
    if not args.quiet:
        for line in plan.profile.notes + notes:
            print(f"note: {line}", file=sys.stderr)
    folders = {}
    if args.stems_root:
        folders = {str(p): str(p.resolve().parent.relative_to(b.resolve()))
                   for p, b in pairs if b.resolve() in p.resolve().parents}
    settings = Settings(args.profile, tuple(args.overrides), args.overwrite, args.separate,
                        args.force, args.stems_root, args.demucs_model, folders)
    workers = batch.LocalWorkers(
        (ConditioningWork, (settings,)), lambda job: up_to_date(job, plan.digest, settings),
        jobs=args.jobs, force=args.force,
        files_per_worker=(batch.FILES_PER_WORKER if args.files_per_worker is None
                          else args.files_per_worker))
    if out_dir is None:
        remove_own_leftovers({job.output.parent for job in jobs})
    failures, chosen = failures_path(args, pairs)
    kept = KeptKeys()
    result = batch.process_batch(workers, jobs, out_dir or Path(os.devnull), failures,
                                 failures_chosen=chosen, quiet=args.quiet,
                                 wrap_progress=kept.wrap)
    return _finish(result, kept, args.quiet, workers)


def _finish(result: BatchResult, kept: KeptKeys, quiet: bool, workers: batch.LocalWorkers
            ) -> int:
    result.warned = [o for o in result.warned if o.warnings]
    note = kept.note()
    if note and not quiet:
        print(note, file=sys.stderr)
    return batch.finish(result, f"{batch.tally(result)} in {result.seconds:.1f} s", quiet,
                        workers.claims)
