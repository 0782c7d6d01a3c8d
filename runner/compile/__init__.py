"""Compile a validated profile into a Plan (step 2 of the pipeline): checked nodes, merged
duplicates, stages.

The whole graph is checked here, before any audio is touched, for every command: algorithm
names and parameters against Essentia's registry, every wire against the ports it joins,
every value read back (``take``) or passed as a parameter against the type it is given to,
every required input connected, no cycles, ``single: true`` only where an output gives one
value per track, every output name written once, and each node configured once by Essentia
itself. What passes runs; what does not is one error at the line a person has to fix.
Identical nodes (same algorithm, parameters and inputs) are merged so shared front ends run
once, and nodes no descriptor needs are dropped.

Compiling reads the profile it is given and never changes it: its options are substituted
into a copy (runner.profile.options), and the schema's defaults filled into another
(runner.profile.schema), from which the Plan is built. The modules, in the order they act:
nodes.py (each node and descriptor), wiring.py (how they connect), names.py (what they write),
stages.py (merging, pruning, stages), settings.py (audio and output); plan.py holds the data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runner import __version__, registry
from runner.compile.models import compile_models
from runner.compile.names import check_merge, check_output_names
from runner.compile.nodes import check_configuration, check_mode, make_descriptors, make_node
from runner.compile.plan import (
    AUDIO,
    AUDIO_OUTPUTS,
    AudioConfig,
    Descriptor,
    Node,
    OutputConfig,
    Plan,
    Ref,
    describe,
    parse_ref,
)
from runner.compile.settings import audio_config, output_config
from runner.compile.stages import (
    assign_stages,
    merge_identical,
    prune,
    recorded_streams,
    replay_sources,
    single_replay_per_network,
    stream_components,
)
from runner.compile.wiring import (
    check_descriptor_source,
    check_single_values,
    check_wires,
    output_rates,
    topological_order,
)
from runner.profile import Profile, apply_defaults, substitute_options

__all__ = [
    "AUDIO", "AUDIO_OUTPUTS", "AudioConfig", "Descriptor", "Node", "OutputConfig", "Plan", "Ref",
    "check_instantiation", "compile_profile", "describe", "output_rates", "parse_ref",
    "replay_sources", "result_digest", "stream_components",
]


def compile_profile(profile: Profile) -> Plan:
    """Check and compile a loaded profile (see the module docstring); ``profile`` is left as
    it was. The Plan keeps the profile with its options substituted (``plan.profile``): its
    hash is the result's, and errors found later still point at the line to fix."""
    resolved = substitute_options(profile)
    settings = resolved.copy(data=apply_defaults(resolved.data))
    data = settings.data
    nodes = {nid: make_node(settings, nid, spec)
             for nid, spec in (data.get("graph") or {}).items()}
    descriptors = make_descriptors(settings, data)
    for node in nodes.values():
        check_wires(settings, node, nodes)
    for desc in descriptors:
        check_descriptor_source(settings, desc, nodes)
    order = topological_order(settings, nodes)
    check_single_values(settings, nodes, order, descriptors)
    check_merge(settings, check_output_names(settings, descriptors))
    merge_identical(nodes, order, descriptors)
    order = [n for n in order if n in nodes]
    prune(nodes, order, descriptors)
    order = [n for n in order if n in nodes]
    for node in nodes.values():
        check_mode(settings, node)
    check_configuration(settings, nodes)
    assign_stages(nodes, order)
    order = single_replay_per_network(settings, nodes, order, descriptors)
    audio = audio_config(settings)
    return Plan(
        name=resolved.name,
        digest=result_digest(resolved),
        nodes=nodes,
        order=order,
        stages=assign_stages(nodes, order),
        descriptors=descriptors,
        audio=audio,
        output=output_config(settings),
        recorded=recorded_streams(nodes),
        profile=resolved,
        models=compile_models(settings),
        warnings=_plan_warnings(data) + _rate_warnings(nodes, audio.sample_rate),
    )


def _plan_warnings(data: dict[str, Any]) -> list[str]:
    models = data.get("models")
    unavailable = models.get("unavailable") if isinstance(models, dict) else None
    if not unavailable:
        return []
    return [f"{models['section']}: {', '.join(map(str, unavailable))} left out: Essentia's "
            "SVM classifiers, with no model here (docs/drop-in.md)"]


# Essentia's algorithms that take their frame sizes and times for 44100 Hz whatever the signal
# (BeatTrackerDegara, BeatTrackerMultiFeature and OnsetRate set it in code; the others use them)
ASSUMES_44100 = ("RhythmExtractor2013", "RhythmDescriptors", "BeatTrackerDegara",
                 "BeatTrackerMultiFeature", "OnsetRate")


def _rate_warnings(nodes: dict[str, Node], sample_rate: float) -> list[str]:
    """What an analysis rate other than 44100 Hz does to the algorithms that assume it (their
    times and tempo are off by the ratio) and to the nodes that keep Essentia's default
    ``sampleRate`` of 44100 (Essentia's extractors leave many so: their frequencies and times
    are off by it): said in every output (metadata.warnings), and by validate and run."""
    if sample_rate == 44100.0:
        return []
    ratio = sample_rate / 44100.0
    late, low = f"{abs(ratio - 1):.1%}", f"{abs(1 - 1 / ratio):.1%}"
    warnings = [f"graph.{node.id}: Essentia's {node.algorithm} assumes 44100 Hz: at an analysis "
                f"rate of {sample_rate:g} Hz its times read {late} "
                f"{'late' if ratio > 1 else 'early'} and its tempo and rates {low} "
                f"{'low' if ratio > 1 else 'high'}"
                for node in nodes.values() if node.algorithm in ASSUMES_44100]
    default = [node.id for node in nodes.values()
               if node.algorithm is not None and node.algorithm not in ASSUMES_44100
               and "sampleRate" not in node.params and "sampleRate" not in node.param_refs
               and "sampleRate" in registry.info(node.algorithm, standard=node.standard).params]
    if default:
        warnings.append(
            f"at an analysis rate of {sample_rate:g} Hz, {len(default)} "
            f"{'node keeps' if len(default) == 1 else 'nodes keep'} Essentia's "
            f"default sampleRate of 44100 Hz (as Essentia's extractors do), so the frequencies "
            f"they compute read {low} {'low' if ratio > 1 else 'high'} and their times {late} "
            f"{'late' if ratio > 1 else 'early'}: {', '.join(f'graph.{n}' for n in default)}")
    return warnings


def result_digest(profile: Profile, models: dict[str, Any] | None = None) -> str:
    """The hash a result carries (metadata.profile.hash), by which a batch keeps an output as
    up to date: everything that decides the output besides the audio. That is the resolved
    profile, the runner's and Essentia's versions (Essentia's git commit too), and, for a
    profile with models, the pins of the models that run and what is left out
    (runner.models.stage.prepare passes them, once the cache has been looked at)."""
    essentia = registry.quiet_essentia()
    parts = {
        "profile": profile.digest(),
        "runner": __version__,
        "essentia": [essentia.__version__, getattr(essentia, "__version_git_sha__", "")],
        "models": models,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_instantiation(plan: Plan) -> None:
    """Configure every node once with its static parameters (Essentia's own checks); part of
    compile_profile, kept for callers that hold a Plan."""
    check_configuration(plan.profile, plan.nodes)
