"""The whole pipeline for one profile: load -> validate -> compile -> run -> aggregate -> write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import aggregate, compile, load, write
from runner.errors import AudioError
from runner.run import Executor


class Extractor:
    """A profile compiled once, applied to any number of files."""

    def __init__(self, profile: str, overrides: list[str] | None = None,
                 legacy_base: str = "music") -> None:
        self.profile = load.load_profile(profile, overrides, legacy_base=legacy_base)
        self.plan = compile.compile_profile(self.profile)
        self.executor = Executor(self.plan)
        self.schema = write.output_schema(self.plan)
        self.user_schema: dict[str, Any] | None = None
        if self.plan.output.schema:
            from runner.validate import load_schema

            self.user_schema = load_schema(self.plan.output.schema)

    def analyse(self, path: str) -> tuple[dict[str, Any], Any]:
        """Analyse one file; return the validated document and the raw analysis."""
        analysis = self.executor.analyse(path)
        try:
            flat = aggregate.aggregate(self.plan, analysis)
        except RuntimeError as exc:  # e.g. a covariance matrix of silence cannot be inverted
            reason = str(exc).strip().splitlines()[-1]
            raise AudioError(path, f"cannot compute statistics ({reason}); "
                             "is the audio silent?") from None
        doc = write.document(self.plan, analysis, flat, path)
        write.validate_output(doc, self.schema, path)
        if self.user_schema is not None:
            write.validate_output(doc, self.user_schema, path)
        return doc, analysis

    def extract(self, path: str, output: str) -> dict[str, Any]:
        """Analyse ``path`` and write ``output`` (and its frames file if asked) atomically."""
        doc, analysis = self.analyse(path)
        cfg = self.plan.output
        write.write_atomic(output, write.render(doc, cfg.format, cfg.indent))
        if cfg.frames:
            out = Path(output)
            frames_path = out.with_name(f"{out.stem}_frames{out.suffix or '.' + cfg.format}")
            frames = write.frames_document(self.plan, analysis)
            write.write_atomic(frames_path, write.render(frames, cfg.format, cfg.indent))
        return doc
