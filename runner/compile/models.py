"""Compile a profile's ``models:`` section: which lock-file models write which descriptors.

The model stage's plan, as data (ModelsConfig, ModelOutput): what runs them is
runner.models.stage, after the network. Every default (``section: highlevel``, ``missing:
error``, an output's ``output: predictions``) is the profile schema's, filled in before this
reads the section (runner.profile.schema); none is stated here.

    models:
      section: highlevel        # descriptors are written as <section>.<name>
      compute: true             # false (or ${highlevel.compute}) turns the section off
      missing: skip             # skip: leave out models not in the cache and say so; error: stop
      overlap: false            # true: Essentia's overlapping patches (about 2x the cost)
      select: [moods_mirex]     # only these names (music-highlevel --taxonomies); a lock-file
                                # model id that names no output runs as ``id: id`` (a model
                                # trained with `extractor train` and `extractor models add`)
      outputs:
        moods_mirex: moods_mirex-msd-musicnn-1   # class probabilities: value, probability, all
        msd_musicnn_embedding: {model: musicnn-msd, output: embeddings}   # mean embedding vector
        mood_happy: {model: mood_happy-msd-musicnn-1, labels: {non_happy: not_happy}}
        moods_mirex: {model: moods_mirex-msd-musicnn-1, labels: [Cluster1, Cluster2, Cluster3,
                                                                 Cluster4, Cluster5]}
        genre: {model: genre_discogs400-discogs-effnet-1, write: map, threshold: 0.1}
        danceability: {model: danceability-discogs-effnet-1, write: probability,
                       class: danceable}          # a number
        downbeats: {model: madmom-downbeats, section: rhythm}   # written as rhythm.downbeats

``labels`` renames a model's classes in the output (``value`` and ``all``): a mapping from the
model's class names, or a list of new names in the order of the model's classes. It is how the
names Essentia's SVM models wrote (``not_happy``, ``Cluster1``) are kept for existing queries;
it is checked against the model's metadata when the model stage is built.

Model ids are checked against the lock file here (runner.models.supply.lock: data, not code
that runs a model), before anything runs; whether their files are in the cache is checked when
the extractor starts (runner.models.stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.errors import ModelError
from runner.models.supply import lock
from runner.profile import Profile
from runner.profile.schema import defaults


@dataclass(frozen=True)
class ModelOutput:
    name: str  # <section>.<name> in the output
    model: str  # lock-file id
    output: str  # "predictions" (class probabilities) or "embeddings" (mean vector)
    path: tuple[Any, ...]  # profile key path, for errors
    labels: dict[str, str] | tuple[str, ...] | None = None  # class renames (see above)
    section: str | None = None  # written in this section instead of the models section's
    write: str = "classes"  # classes (value, probability, all) | map | probability
    threshold: float = 0.0  # write: map keeps the classes at or above it
    class_name: str | None = None  # write: probability writes this class's probability
    # statistics of a frame-wise model's pitch/confidence/activation output (runner.models.
    # framewise; empty: its defaults), and the model's settings (CREPE's step_ms; basic-pitch's
    # note settings for a notes output)
    stats: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def key(self, section: str) -> str:
        """Its descriptor name: <section>.<name>, the output's own section if it has one."""
        return f"{self.section or section}.{self.name}"


@dataclass
class ModelsConfig:
    """The models section, every setting given (the schema's defaults filled in)."""

    section: str
    outputs: list[ModelOutput]
    missing: str  # "error" or "skip"
    overlap: bool
    keep_embeddings: bool
    skipped: list[str]  # names left out by `select`


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def compile_models(profile: Profile) -> ModelsConfig | None:
    """The models section (its defaults filled in: runner.profile.apply_defaults) as a
    ModelsConfig; None when there is none or it is turned off."""
    spec = profile.data.get("models")
    if not spec or not _flag(spec["compute"]):
        return None
    base = ("models",)
    entries = dict(spec["outputs"] or {})
    select = _selected(profile, spec.get("select"), list(entries))
    for name in select or []:
        if name not in entries:  # a model of the lock file, selected by its id
            entries[name] = name
    outputs = [_output(profile, base + ("outputs", name), name, entry)
               for name, entry in entries.items()]
    if spec["missing"] not in ("error", "skip"):
        raise profile.error(base + ("missing",),
                            f"{spec['missing']!r} is not 'error' or 'skip'")
    return ModelsConfig(
        section=str(spec["section"]),
        outputs=[out for out in outputs if select is None or out.name in select],
        missing=spec["missing"],
        overlap=_flag(spec["overlap"]),
        keep_embeddings=_flag(spec["keep_embeddings"]),
        skipped=[name for name in entries if select is not None and name not in select],
    )


def _selected(profile: Profile, select: Any, names: list[str]) -> list[str] | None:
    """The output names ``select`` keeps (a list, or a string of names), checked; None: all."""
    if isinstance(select, str):
        select = [s for s in select.replace(",", " ").split() if s]
    if select is not None:
        known = lock.models()
        unknown = [s for s in select if s not in names and s not in known]
        if unknown:
            raise profile.error(("models", "select"), f"no model output or model named "
                                f"{unknown[0]!r}", hint=f"this profile has: {', '.join(names)}")
    return select


def _output(profile: Profile, path: tuple[Any, ...], name: str, entry: Any) -> ModelOutput:
    """One output: the short form ``name: model-id`` is ``{model: model-id}`` with the
    schema's defaults (``$defs/model_output``); its model checked against the lock file."""
    entry = {**defaults("model_output"), **({"model": entry} if isinstance(entry, str)
                                             else entry)}
    model_id, output, labels = str(entry["model"]), entry["output"], entry.get("labels")
    if labels is not None and output != "predictions":
        raise profile.error(path + ("labels",), "labels rename classes: only for "
                            "'predictions' outputs")
    if isinstance(labels, list):
        labels = tuple(str(label) for label in labels)
    elif isinstance(labels, dict):
        labels = {str(k): str(v) for k, v in labels.items()}
    write, class_name = str(entry["write"]), entry.get("class")
    if write != "classes" and output != "predictions":
        raise profile.error(path + ("write",), f"write: {write} is for 'predictions' outputs")
    if (write == "probability") != (class_name is not None):
        raise profile.error(path + ("class",) if class_name is not None else path + ("write",),
                            "'class' names the class whose probability 'write: probability' "
                            "writes: give both or neither")
    try:
        lock.get(model_id)
    except ModelError as exc:
        raise profile.error(path, str(exc)) from None
    stats = tuple(str(s) for s in entry.get("stats") or ())
    if stats and output not in ("pitch", "confidence", "activation"):
        raise profile.error(path + ("stats",), "stats are for frame-wise outputs (pitch, "
                            "confidence, activation)")
    return ModelOutput(name, model_id, output, path, labels, entry.get("section"), write,
                       float(entry["threshold"]), class_name, stats,
                       dict(entry.get("params") or {}))
