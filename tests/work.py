"""Per-file work for the batch engines' tests (LocalWorkers and DaskWorkers take it as
``make``): faults are injected here, by the tests, never by a hook in the runner.

Module level, so spawned workers and Dask workers can import it (PYTHONPATH: the checkout).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from runner import procs
from runner.batch.extract_job import ExtractorWork


class AbortInTheMiddle:
    """The real extractor, whose process aborts (SIGABRT, as a crash in native code would)
    in the middle of analysing the file named ``name``: once its spool folder exists, so
    the crash leaves what a real one leaves."""

    def __init__(self, profile: str, name: str) -> None:
        self.work = ExtractorWork(profile, [], profile, False)
        self.name = name

    def __call__(self, src: str, dst: str) -> list[str]:
        if os.path.basename(src) == self.name:
            threading.Thread(target=_abort_once_spooling, daemon=True).start()
            self.work(src, dst)
            time.sleep(60)  # never reached with a spooling profile: the thread aborts first
        return self.work(src, dst)


def _abort_once_spooling() -> None:
    mine = f"extractor-spool-{procs.tag()}."
    while not any(n.startswith(mine) for n in os.listdir(tempfile.gettempdir())):
        time.sleep(0.001)
    os.abort()


class Counted:
    """Writes its output after ``seconds``, and appends ``<pid> <input>`` to ``log`` when it
    starts: the log counts the analyses of every run sharing it."""

    def __init__(self, log: str, seconds: float) -> None:
        self.log = log
        self.seconds = seconds

    def __call__(self, src: str, dst: str) -> None:
        with open(self.log, "a", encoding="utf-8") as handle:  # O_APPEND: lines never mix
            handle.write(f"{os.getpid()} {src}\n")
        time.sleep(self.seconds)
        gate = os.environ.get("COUNTED_GATE")  # a test holds every analysis until it says go
        deadline = time.monotonic() + 120
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(dst).write_text('{"metadata": {"profile": {"hash": "counted"}}}')


def main(argv: list[str]) -> int:
    """``python -m tests.work LOG SECONDS JOBS IN_DIR OUT_DIR``: a batch of Counted work over
    the files of IN_DIR, as the commands run it (claims, resume); prints its counts."""
    import json
    import sys

    from runner.batch import LocalWorkers, collect, plan_outputs, remove_stale_temporaries

    log, seconds, workers, in_dir, out_dir = argv
    jobs, _ = plan_outputs(collect([in_dir]), Path(out_dir), ".json")
    remove_stale_temporaries(Path(out_dir))
    engine = LocalWorkers((Counted, (log, float(seconds))), lambda job: job.output.exists(),
                          jobs=int(workers))
    summary = engine.process(jobs, lambda outcome: print(outcome.status, outcome.job.input,
                                                     file=sys.stderr, flush=True))
    print(json.dumps({"done": summary.done, "skipped": summary.skipped,
                      "claimed": len(summary.claimed), "failed": summary.failed}))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
