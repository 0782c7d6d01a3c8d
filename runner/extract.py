"""The whole pipeline for one profile: load -> validate -> compile -> analysis -> aggregate ->
output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runner import aggregate, compile
from runner import profile as load
from runner.analysis import Analysis, Executor, LongTracks
from runner.compile import AUDIO
from runner.errors import AudioError, ModelError
from runner.output import (
    document,
    frames_document,
    output_format,
    output_schema,
    render,
    validate_output,
    validator,
    write_atomic,
    write_in_place,
    write_npy_atomic,
)


def embeddings_path(output: str | Path, model_id: str) -> Path:
    """``out/song.json`` -> ``out/song.<model id>.npy`` (per-patch embeddings)."""
    out = Path(output)
    return out.with_name(f"{out.stem}.{model_id}.npy")


def _note_undefined(analysis: Analysis) -> None:
    """One warning for the statistics written as null, joined to the silence warning where
    that is their cause: a silent or too-short file gets one line, not two."""
    if not analysis.undefined:
        return
    names = ", ".join(sorted(analysis.undefined))
    for index, warning in enumerate(analysis.warnings):
        if warning.startswith("silent:"):
            analysis.warnings[index] = f"{warning}; null where undefined: {names}"
            return
    if aggregate.FEW in analysis.undefined.values():
        seconds = float(analysis.audio.get("analysis_length", 0.0))
        analysis.warnings.append(f"too short: {seconds:.3f} s of audio, too few frames for "
                                 f"every statistic; null where undefined: {names}")
    else:
        analysis.warnings.append(f"frames that do not vary; null where undefined: {names}")


class Extractor:
    """A profile compiled once, applied to any number of files."""

    def __init__(self, profile: str, overrides: list[str] | None = None,
                 essentia_base: str = "music", warn: bool = True) -> None:
        self.profile = load.load_profile(profile, overrides, essentia_base=essentia_base)
        self.plan = compile.compile_profile(self.profile)
        self.models = None
        # more metadata for every document (a batch on a mixed cluster records it there)
        self.extra_metadata: dict[str, Any] = {}
        if self.plan.models is not None and self.plan.models.outputs:
            from runner.models.stage import prepare

            self.models = prepare(self.plan, warn=warn)  # also completes plan.digest
        self.long_tracks = LongTracks.for_plan(self.plan)
        # the models read the whole signal; without them it is never held in memory
        self.executor = Executor(self.plan, keep_signal=bool(self.models and
                                                              self.models.reads_audio),
                                 long_tracks=self.long_tracks)
        # Long tracks: each stage's frame-wise descriptors are aggregated as soon as that
        # stage has finished, not beside later stages.
        self.early = (aggregate.EarlyAggregation(self.plan) if self.long_tracks.enabled
                      else None)
        if self.early is not None:
            self.executor.after_stage = self.early.after_stage
        self.schema = output_schema(self.plan)
        self.checks = [validator(self.schema)]
        if self.plan.output.schema:
            self.checks.append(validator(load.load_schema(self.plan.output.schema)))

    def wants_own_process(self, path: str) -> bool:
        """Whether ``path`` is a long track by its header, best analysed in a process that has
        analysed nothing else (see batch.LocalWorkers and runner.analysis.long_tracks)."""
        return self.long_tracks.expects_long(path)

    def analyse(self, path: str) -> tuple[dict[str, Any], Any]:
        """Analyse one file; return the validated document and the raw analysis."""
        if self.early is not None:
            self.early.clear()
        analysis = self.executor.analyse(path)
        try:
            flat = aggregate.aggregate(self.plan, analysis, done=self.early)
        except RuntimeError as exc:  # not expected: undefined statistics are written as null
            reason = str(exc).strip().splitlines()[-1]
            raise AudioError(path, f"cannot compute statistics ({reason})") from None
        _note_undefined(analysis)
        models = None
        if self.models is not None:
            signal = (analysis.values[f"{AUDIO}.signal"] if self.models.reads_audio
                      else np.zeros(0, dtype=np.float32))  # nothing to run: names what is missing
            try:
                models = self.models.run(signal, self.plan.audio.sample_rate, flat)
            except ModelError as exc:
                raise AudioError(path, f"model stage: {exc}") from None
            flat.update(models.descriptors)
            analysis.warnings.extend(models.warnings)
        doc = document(self.plan, analysis, flat, path)
        if self.models is not None and models is not None:
            doc["metadata"]["models"] = {"used": models.used, "missing": self.models.missing,
                                         "left_out": self.models.left_out}
        analysis.models = models
        doc["metadata"].update(self.extra_metadata)
        for check in self.checks:
            validate_output(doc, check, path)
        return doc, analysis

    def extract(self, path: str, output: str, frames_output: str | None = None,
                in_place: bool = False) -> dict[str, Any]:
        """Analyse ``path`` and write ``output`` (and its frames file if asked) atomically.

        ``frames_output``: where the frame values go (default ``out_frames.json`` beside
        ``out.json``). ``in_place``: an ``output`` that exists is rewritten in its own file
        once the document is complete (see runner.output.write_in_place), as Essentia's binary
        does.
        """
        doc, analysis = self.analyse(path)
        cfg = self.plan.output
        fmt = output_format(output, cfg.format)  # out.yaml is YAML, out.json JSON
        text = render(doc, fmt, cfg.indent)
        if in_place and Path(output).is_file():
            write_in_place(output, text)
        else:
            write_atomic(output, text)
        if analysis.models is not None and self.plan.models and self.plan.models.keep_embeddings:
            for model_id, vectors in analysis.models.embeddings.items():
                write_npy_atomic(embeddings_path(output, model_id), vectors)
        if cfg.frames:
            out = Path(output)
            frames_path = frames_output or out.with_name(
                f"{out.stem}_frames{out.suffix or '.' + fmt}")
            frames = frames_document(self.plan, analysis)
            write_atomic(frames_path, render(frames, fmt, cfg.indent))
        return doc
