"""The model stage: after the Essentia network, run the profile's models on the decoded audio.

Built once per extractor: every output is handed to the family that runs its model
(runner.models.family: a lock entry's ``kind`` names it), which resolves and verifies its
files in the cache (a missing or tampered file is refused here, before any audio is read)
and loads them once. Here is only what every family shares: which outputs are left out for
models not in the cache (``missing: skip``), the note saying so, what decides a result's
hash, and the analysed signal at each rate a family asks for, resampled once per track.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from runner import registry
from runner.compile import Plan, result_digest
from runner.compile.models import ModelOutput, ModelsConfig
from runner.errors import ModelOutputError
from runner.models import family
from runner.models.family import ModelResults, ModelRunner
from runner.models.supply import cache, lock

__all__ = ["ModelResults", "ModelStage", "prepare"]

HIDDEN = "_feeds_"  # the name of an embedding model's output run only for the heads on it


def prepare(plan: Plan, warn: bool = True, load: bool = True) -> ModelStage | None:
    """The plan's model stage (None without one), resolved in the cache; and the plan's
    digest made final: the models that will run, and what is left out, decide the results
    as much as the profile does (runner.compile.result_digest). The batch parent (load=False)
    and every worker call this, so both compare and write the same hash."""
    if plan.models is None or not plan.models.outputs:
        return None
    stage = ModelStage(plan.models, warn=warn, load=load, alone=not plan.descriptors,
                       profile=plan.profile)
    plan.digest = result_digest(plan.profile, stage.fingerprint())
    return stage


class ModelStage:
    """A profile's models in one extractor: each output handed to the runner of its family."""

    def __init__(self, config: ModelsConfig, warn: bool = True, load: bool = True,
                 alone: bool = False, profile: Any = None) -> None:
        """Resolve and verify every model; ``load=False`` stops there (no graph is loaded:
        the batch parent only wants to know what is missing). ``alone``: the profile computes
        nothing but these models, so with every one of them missing there is nothing to
        write and ``missing: skip`` refuses too. ``profile``: an output its family refuses
        (ModelOutputError) is reported at that output's line of the profile."""
        self.config = config
        self.runners: dict[Any, ModelRunner] = {}  # family table entry -> its runner
        self.missing: list[str] = []  # model ids not in the cache (missing: skip)
        self.left_out: list[str] = []  # output names left out for them
        self.pins: dict[str, dict[str, str]] = {}  # model id -> file -> sha256, of those used
        self.hidden: list[str] = []  # descriptors run only to feed others, not written
        first: cache.MissingModel | None = None
        for out in config.outputs:
            model = lock.get(out.model)
            try:
                runner = self._runner(model)
                if model.embedding and getattr(runner, "reads_embeddings", False):
                    self._feed(model.embedding)
                self.pins.update(runner.add(out, model))
            except ModelOutputError as exc:
                if profile is None:
                    raise
                raise profile.error(out.path, str(exc)) from None
            except cache.MissingModel as exc:  # a file that does not match its pin: raised
                if exc.model_id is None:
                    raise
                first = first or exc
                self.left_out.append(out.name)
                if exc.model_id not in self.missing:
                    self.missing.append(exc.model_id)
        self._refuse_missing(first, alone)
        # the runners write in the family table's order, whatever the profile's order; those
        # that read other families' embeddings (``reads_embeddings``) after all the others
        self.runners = dict(sorted(self.runners.items(), key=lambda item: (
            bool(getattr(item[1], "reads_embeddings", False)), family.order(item[0]))))
        for runner in self.runners.values() if load else ():
            runner.load()
        if self.missing and warn:
            print(f"note: {self.note()}", file=sys.stderr)

    def _feed(self, embedding: str) -> None:
        """Have the embedding model's own family compute its embeddings for every track (once,
        however many heads read them), as an output that is not written."""
        name = f"{HIDDEN}{embedding}"
        if f"{self.config.section}.{name}" in self.hidden:
            return
        model = lock.get(embedding)
        feed = ModelOutput(name, embedding, "embeddings", ("models", "outputs", name))
        self.pins.update(self._runner(model).add(feed, model))
        self.hidden.append(f"{self.config.section}.{name}")

    def _runner(self, model: lock.Model) -> ModelRunner:
        """The runner of the model's family, made when the first of its outputs comes."""
        entry, factory = family.factory_for(model)
        if entry not in self.runners:
            self.runners[entry] = factory(self.config)
        return self.runners[entry]

    def _refuse_missing(self, first: cache.MissingModel | None, alone: bool) -> None:
        """Stop for missing models, unless ``missing: skip`` and something is left to run."""
        config = self.config
        if first is not None and config.missing == "error":
            if len(self.missing) == 1:
                raise first
            raise cache.MissingModel(f"{config.section}: {len(self.missing)} models are not in "
                                     f"the model cache ({cache.user_cache()}): "
                                     f"{', '.join(self.missing)}; "
                                     f"{lock.fetch_hint(self.missing)}", self.missing[0])
        if config.outputs and len(self.left_out) == len(config.outputs) and alone:
            raise cache.MissingModel(f"{config.section}: none of the models of its "
                                     f"{len(config.outputs)} outputs is in the model cache "
                                     f"({cache.user_cache()}), and the profile computes "
                                     f"nothing else; {lock.fetch_hint(self.missing)}")

    @property
    def reads_audio(self) -> bool:
        """Whether run() will read the signal (some model is in the cache)."""
        return len(self.left_out) < len(self.config.outputs)

    def note(self) -> str:
        """One line naming what was left out and the command that can fetch it here."""
        total = len(self.config.outputs)
        if len(self.left_out) == total and total > 3:  # the names add nothing: all of them
            which = f"all {total} outputs left out"
        else:
            which = (f"{len(self.left_out)} of {total} outputs left out "
                     f"({', '.join(self.left_out)})")
        return (f"{self.config.section}: {which}, their models are not in the model cache; "
                f"{lock.fetch_hint(self.missing)}")

    def fingerprint(self) -> dict[str, Any]:
        """What decides this stage's results besides the audio: every file of every model
        that runs (sha256), and which outputs are left out. Part of each result's hash."""
        return {"section": self.config.section, "used": self.pins,
                "left_out": sorted(self.left_out)}

    # -- running --------------------------------------------------------------------------
    def run(self, signal: np.ndarray, rate: float,
            track: dict[str, Any] | None = None) -> ModelResults:
        """One track's model descriptors, from the analysed signal at ``rate`` (and, for
        classifiers of descriptors, the track's own descriptors ``track``, flat)."""
        results = ModelResults({}, {}, {}, dict(track or {}))
        resampled: dict[float, np.ndarray] = {}

        def audio(target: float) -> np.ndarray:
            return _at_rate(signal, rate, target, resampled)

        for runner in self.runners.values():
            runner.run(audio, results)
        for name in self.hidden:
            results.descriptors.pop(name, None)
        return results


def _at_rate(signal: np.ndarray, rate: float, target: float,
             done: dict[float, np.ndarray]) -> np.ndarray:
    """The analysed signal at a model's rate (Essentia's Resample, MonoLoader's fastest
    quality, as MTG's examples load audio for these models)."""
    if target not in done:
        if abs(rate - target) < 1e-6:
            done[target] = np.asarray(signal, dtype=np.float32)
        else:
            std = registry.quiet_essentia().standard
            resample = std.Resample(inputSampleRate=rate, outputSampleRate=target, quality=4)
            done[target] = resample(np.ascontiguousarray(signal, dtype=np.float32))
    return done[target]


