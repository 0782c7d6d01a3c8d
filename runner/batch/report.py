"""What a batch tells a person: progress per file while it runs, then the epilogue every
command shares (failures.jsonl, warnings.jsonl, the closing line, the exit code)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.batch.claims import Claims
from runner.batch.inputs import Job
from runner.batch.work import BatchResult, Outcome, Report
from runner.errors import EXIT_FAILED


def write_failures(path: Path, failures: list[Outcome], kept: list[str] | None = None) -> None:
    """JSON lines: {"path": ..., "error": ...}, one per failed file; ``kept``: lines of the
    existing file to keep (see failures_of_others)."""
    from runner.output import write_atomic  # loads compile and analysis: only when used
    lines = (kept or []) + [json.dumps({"path": str(o.job.input), "error": o.message})
                            for o in failures]
    write_atomic(path, "".join(line + "\n" for line in lines))


def failures_of_others(path: Path, result: BatchResult) -> list[str]:
    """The lines of an existing failures file about files that another run had claimed:
    that run reports them, and whichever of the runs sharing a folder ends last leaves a
    list that covers both."""
    if not result.claimed:
        return []
    claimed = {str(o.job.input) for o in result.claimed}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    kept = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("path") in claimed:
            kept.append(line)
    return kept


def write_warnings(path: Path, result: BatchResult, jobs: list[Job]) -> bool:
    """JSON lines: {"path": ..., "warning": ...}, one per warning of a done file, beside
    failures.jsonl. Lines an earlier run wrote for files this run skipped (up to date) are
    kept; files analysed again replace theirs. Returns whether any line is left (the file
    is removed otherwise)."""
    from runner.output import write_atomic  # loads compile and analysis: only when used
    inputs = {str(job.input) for job in jobs}
    analysed = result.analysed
    kept: list[str] = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("path") in inputs - analysed:
                kept.append(line)
    except OSError:
        pass
    kept += [json.dumps({"path": str(o.job.input), "warning": warning})
             for o in result.warned for warning in o.warnings]
    if kept:
        write_atomic(path, "".join(line + "\n" for line in kept))
    elif path.exists():
        path.unlink()
    return bool(kept)


def progress(total: int, quiet: bool) -> tuple[Report, Callable[[], None]]:
    """A progress callback and a closer: a rich bar on a terminal, plain lines otherwise."""
    if quiet:
        return (lambda outcome: None), (lambda: None)
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True),
        )
        task = progress.add_task("analysing", total=total, rate="")
        progress.start()
        started = time.perf_counter()
        done = [0]

        def update(outcome: Outcome) -> None:
            done[0] += 1
            rate = done[0] / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=f"{rate:.2f} files/s")
            if outcome.status == "failed":
                progress.console.print(f"[red]failed[/red] {outcome.message}")
            for warning in outcome.warnings:
                progress.console.print(f"[yellow]warning[/yellow] {escape(str(outcome.job.input))}"
                                       f": {escape(warning)}", highlight=False)

        return update, progress.stop
    count = [0]

    def line(outcome: Outcome) -> None:
        count[0] += 1
        detail = f" ({outcome.seconds:.1f} s)" if outcome.status == "done" else ""
        text = outcome.message if outcome.status == "failed" else str(outcome.job.input)
        print(f"[{count[0]}/{total}] {outcome.status} {text}{detail}", file=sys.stderr,
              flush=True)
        for warning in outcome.warnings:
            print(f"warning: {outcome.job.input}: {warning}", file=sys.stderr, flush=True)

    return line, (lambda: None)


# -- the epilogue every command shares ---------------------------------------------------------
def record_lists(result: BatchResult, jobs: list[Job], failures: Path | None,
                 chosen: bool = False) -> None:
    """failures.jsonl, and warnings.jsonl beside it, after a batch.

    ``failures``: where failed files are listed (None: nowhere); ``chosen``: the user named
    that file (--failures), so it is never removed. Otherwise a rerun that failed nowhere
    removes the list an earlier batch left (its failures are done). Lines about files another
    run claimed are kept: that run reports them (see failures_of_others).
    """
    if failures is None:
        return
    kept = failures_of_others(failures, result)
    if result.failures or kept:
        write_failures(failures, result.failures, kept)
        if result.failures:
            result.failures_file = failures
    elif failures.exists() and not chosen:
        failures.unlink()  # from an earlier batch whose failures are now done
    warnings = failures.with_name("warnings.jsonl")
    if write_warnings(warnings, result, jobs):
        result.warnings_file = warnings


@dataclass(frozen=True)
class Words:
    """How a command names its counts in its closing line."""

    done: str = "done"
    skipped: str = "skipped (up to date)"
    claimed: str = "claimed by another run"


def tally(result: BatchResult, words: Words = Words()) -> str:
    """``3 done (1 with warnings), 2 skipped (up to date), 1 claimed by another run, 0 failed``."""
    warned = f" ({len(result.warned)} with warnings)" if result.warned else ""
    claimed = f"{len(result.claimed)} {words.claimed}, " if result.claimed else ""
    return (f"{result.done} {words.done}{warned}, {result.skipped} {words.skipped}, {claimed}"
            f"{result.failed} failed")


def finish(result: BatchResult, sentence: str, quiet: bool, claims: Claims | None = None
           ) -> int:
    """Print the closing line (``sentence``, then where the failures and warnings are
    listed) and a note when claims could not be taken; the exit code of the batch."""
    if not quiet:
        line = sentence
        if result.failures_file:
            line += f"; failures listed in {result.failures_file}"
        if result.warnings_file:
            line += f"; warnings listed in {result.warnings_file}"
        print(line, file=sys.stderr)
        if claims is not None and claims.unsupported:
            print(f"note: {claims.unsupported}: runs sharing this folder may analyse a file "
                  "twice", file=sys.stderr)
    return EXIT_FAILED if result.failed else 0
