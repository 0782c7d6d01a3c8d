"""The frame-wise family (lock-entry kinds ``crepe``, ``madmom-beats``, ``transformers-audio``,
``mert``, ``basic-pitch``):
models that give one row of numbers per frame of a track (docs/embeddings.md).

Each model is loaded once per extractor (a worker) from files verified against their pins,
and run once per track however many outputs read it. Its frames (T, D), or (T,) for one
number per frame, go to ``results.embeddings[model id]`` (what music-embeddings writes as
.npy, and ``keep_embeddings`` beside a result). Outputs of a profile's ``models:`` section:

- ``embeddings``: the mean over frames, a vector per track;
- ``pitch`` (CREPE): statistics of the frequency [Hz] over its voiced frames (confidence at
  least ``params.voicing``, default 0.5), e.g. ``tonal.pitch_crepe.mean``;
- ``confidence`` (CREPE) and ``activation`` (madmom's beats): statistics over all frames;
- ``notes`` (basic-pitch): statistics of the notes made from its frames (count, notes per
  second, pitch, duration, velocity), with the note settings in ``params``
  (runner.models.basic_pitch.NOTE_SETTINGS).

``stats`` names the statistics (default mean, stdev, median, min, max); ``params`` are the
model's settings (CREPE: ``step_ms``, default 10). A statistic that is undefined (no voiced
frame) is null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelError
from runner.models.family import AudioAt, ModelResults, used_pin
from runner.models.supply import cache, lock

DEFAULT_STATS = ("mean", "stdev", "median", "min", "max")
VOICING = 0.5  # CREPE's confidence from which a frame is voiced (``pitch`` statistics)
# output -> the kinds that write it
OUTPUTS: dict[str, tuple[str, ...]] = {
    "embeddings": ("crepe", "madmom-beats", "transformers-audio", "mert", "basic-pitch"),
    "pitch": ("crepe",),
    "confidence": ("crepe",),
    "activation": ("madmom-beats",),
    "notes": ("basic-pitch",),
}
# params of one output, not of the model (which runs once for all its outputs)
OUTPUT_PARAMS = ("voicing", "onset_threshold", "frame_threshold", "min_note_ms",
                 "melodia_trick")


@dataclass(frozen=True)
class FrameModel:
    """A loaded model: ``run`` takes mono float32 at ``sample_rate`` and gives (T, D) or (T,)
    at ``frame_rate`` frames/s (0: one row per track)."""

    run: Callable[[np.ndarray], np.ndarray]
    sample_rate: int
    frame_rate: float


def _numbers(values: np.ndarray, stats: tuple[str, ...]) -> dict[str, float | None]:
    """Named statistics of a 1-D series (None where undefined: no values, or no difference)."""
    values = np.asarray(values, dtype=np.float64)
    first = np.abs(np.diff(values)) if len(values) > 1 else np.zeros(0)
    second = np.abs(np.diff(first)) if len(first) > 1 else np.zeros(0)
    table: dict[str, Callable[[], float]] = {
        "mean": lambda: values.mean(), "median": lambda: np.median(values),
        "var": lambda: values.var(), "stdev": lambda: values.std(),
        "min": lambda: values.min(), "max": lambda: values.max(),
        "dmean": lambda: first.mean(), "dvar": lambda: first.var(),
        "dmean2": lambda: second.mean(), "dvar2": lambda: second.var(),
    }
    out: dict[str, float | None] = {}
    for stat in stats:
        if stat not in table:
            raise ModelError(f"statistic '{stat}' is not one of {', '.join(table)} for a model "
                             "output")
        sample = {"dmean": first, "dvar": first, "dmean2": second, "dvar2": second}.get(
            stat, values)
        out[stat] = float(table[stat]()) if len(sample) else None
    return out


def summarise(frames: np.ndarray, output: ModelOutput) -> Any:
    """What ``output`` writes from a model's frames (see the module's docstring)."""
    stats = output.stats or DEFAULT_STATS
    if output.output == "embeddings":
        return [float(v) for v in np.atleast_1d(frames.mean(axis=0))] if len(frames) else []
    if output.output == "pitch":
        voicing = float(output.params.get("voicing", VOICING))
        return _numbers(frames[frames[:, 1] >= voicing, 0], stats)
    if output.output == "confidence":
        return _numbers(frames[:, 1], stats)
    if output.output == "notes":
        from runner.models.basic_pitch import note_settings, note_statistics, notes

        return note_statistics(notes(frames, **note_settings(output.params)), len(frames))
    return _numbers(frames.reshape(-1), stats)  # activation


# -- loaders: lock-entry kind -> the function that builds its FrameModel -------------------------
def _crepe(model: lock.Model, files: list[tuple[Path, str]], params: dict[str, Any]
           ) -> FrameModel:
    from runner.models.crepe import SAMPLE_RATE, STEP_MS, Crepe

    path, sha = files[0]
    network = Crepe(cache.verified_bytes(path, sha), str(model.extra.get("capacity", "full")),
                    float(params.get("step_ms", STEP_MS)))
    return FrameModel(network, SAMPLE_RATE, network.frame_rate)


def _madmom_beats(model: lock.Model, files: list[tuple[Path, str]], params: dict[str, Any]
                  ) -> FrameModel:
    from runner.tempo.neural import FPS, MODEL_SR, beat_network

    network = beat_network([cache.verified_bytes(path, sha) for path, sha in files])

    def run(audio: np.ndarray) -> np.ndarray:
        from madmom.audio.signal import Signal

        signal = Signal(np.asarray(audio, dtype=np.float32), sample_rate=MODEL_SR,
                        num_channels=1)
        return np.asarray(network(signal), dtype=np.float32).reshape(-1)

    return FrameModel(run, MODEL_SR, float(FPS))


def _transformers(model: lock.Model, files: list[tuple[Path, str]], params: dict[str, Any]
                  ) -> FrameModel:
    from runner.models.hub_audio import load

    network = load(model, files)
    return FrameModel(network, network.sample_rate, network.frame_rate)


def _mert(model: lock.Model, files: list[tuple[Path, str]], params: dict[str, Any]
          ) -> FrameModel:
    from runner.models.mert import load

    network = load(model, files)
    return FrameModel(network, network.sample_rate, network.frame_rate)


def _basic_pitch(model: lock.Model, files: list[tuple[Path, str]], params: dict[str, Any]
                 ) -> FrameModel:
    from runner.models.basic_pitch import BasicPitch

    path, sha = files[0]
    network = BasicPitch(cache.verified_bytes(path, sha))
    return FrameModel(network, network.sample_rate, network.frame_rate)


LOADERS: dict[str, Callable[[lock.Model, list[tuple[Path, str]], dict[str, Any]], FrameModel]] = {
    "crepe": _crepe,
    "madmom-beats": _madmom_beats,
    "transformers-audio": _transformers,
    "mert": _mert,
    "basic-pitch": _basic_pitch,
}


def _unavailable(model: lock.Model) -> str | None:
    """Why a model whose files come with a package cannot run here (None: it can)."""
    if model.kind == "madmom-beats":
        from runner.tempo import missing

        return missing()
    if model.kind == "basic-pitch":
        from runner.models.basic_pitch import missing as basic_pitch_missing

        return basic_pitch_missing()
    return None


class Runner:
    """The frame-wise models of one extractor: each loaded once, run once per track."""

    writes_classes = False

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.outputs: list[tuple[ModelOutput, lock.Model]] = []
        self.files: dict[str, list[tuple[Path, str]]] = {}  # model id -> verified files
        self.params: dict[str, dict[str, Any]] = {}  # model id -> its settings
        self.loaded: dict[str, FrameModel] = {}

    @staticmethod
    def schema(output: ModelOutput) -> dict[str, Any]:
        """A vector (``embeddings``) or an object of statistics (numbers or null)."""
        if output.output == "embeddings":
            return {"type": "array", "items": {"type": "number"}}
        stat = {"type": ["number", "null"]}
        if output.output == "notes":
            from runner.models.basic_pitch import NOTE_STATISTICS

            return {"type": "object", "properties": {s: stat for s in NOTE_STATISTICS}}
        return {"type": "object", "properties": {s: stat for s in output.stats or DEFAULT_STATS}}

    def add(self, output: ModelOutput, model: lock.Model) -> dict[str, dict[str, str]]:
        writes = [name for name, kinds in OUTPUTS.items() if model.kind in kinds]
        if output.output not in writes:
            raise ModelError(f"model '{model.id}' writes {', '.join(writes)}; not "
                             f"'{output.output}' (output '{output.name}')")
        if output.output == "notes":
            from runner.models.basic_pitch import note_settings

            note_settings(output.params, f"model '{model.id}': output '{output.name}'")
        settings = {k: v for k, v in output.params.items() if k not in OUTPUT_PARAMS}
        if self.params.setdefault(model.id, settings) != settings:
            raise ModelError(f"model '{model.id}': its outputs give it different params "
                             f"({self.params[model.id]} and {settings})")
        if model.id not in self.files:
            self.files[model.id] = cache.resolved_files(model, "see docs/embeddings.md",
                                                        _unavailable(model))
        self.outputs.append((output, model))
        return {model.id: {path.name: sha for path, sha in self.files[model.id]}}

    def load(self) -> None:
        for model_id, files in self.files.items():
            model = lock.get(model_id)
            self.loaded[model_id] = LOADERS[model.kind](model, files, self.params[model_id])

    def frame_rate(self, model_id: str) -> float:
        """Frames per second of a loaded model's output."""
        return self.loaded[model_id].frame_rate

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        done: dict[str, np.ndarray] = {}
        for output, model in self.outputs:
            if model.id not in done:
                network = self.loaded[model.id]
                done[model.id] = network.run(audio(float(network.sample_rate)))
                results.embeddings[model.id] = done[model.id]
            results.descriptors[f"{self.config.section}.{output.name}"] = summarise(
                done[model.id], output)
            results.used[model.id] = used_pin(model)
