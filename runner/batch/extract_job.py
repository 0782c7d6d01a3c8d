"""The per-file job of the profile commands: a compiled profile's ``extract(src, dst)``."""

from __future__ import annotations

from typing import Any

from runner.batch.sending import SentProfile, local_profile
from runner.batch.work import share_torch_threads


class ExtractorWork:
    """A profile compiled once per worker, then run on each file it gets; long tracks are
    analysed alone (``Extractor.wants_own_process``)."""

    def __init__(self, profile: str | SentProfile, overrides: list[str], essentia_base: str,
                 long_tracks_alone: bool = True) -> None:
        # Imported here, in the worker that builds it: a module that only names this job
        # (the parent, other jobs' workers) does not load the analysis modules.
        from runner.extract import Extractor

        self.extractor = Extractor(local_profile(profile), list(overrides), essentia_base,
                                   warn=False)
        share_torch_threads()  # the models' torch (CREPE, CLAP, hub models): this worker's share
        if long_tracks_alone:  # bench/bench_memory.py mixed compares both
            self.alone = self.extractor.wants_own_process

    def describe(self) -> dict[str, Any]:
        """What this worker computes (runner.batch.agreement), checked against the client's."""
        from runner.batch.agreement import describe

        return describe(self.extractor.plan, self.extractor.models)

    def record(self, key: str, value: Any) -> None:
        """Write ``metadata.KEY = value`` into every output (a mixed cluster: mixed_cluster)."""
        self.extractor.extra_metadata[key] = value

    def __call__(self, src: str, dst: str) -> list[str]:
        return self.extractor.extract(src, dst)["metadata"]["warnings"]
