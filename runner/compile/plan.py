"""A compiled profile as data: the Plan, its nodes, wires and descriptors (no checks here).

A Plan is everything needed to run a profile on a file: built once by runner.compile, then
reused for every file by the analysis (runner.analysis), the aggregation and the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.compile.models import ModelsConfig
from runner.profile import KeyPath, Profile

AUDIO = "audio"
# Outputs of the built-in audio source (see runner/analysis/audio_input.py for the loader chain
# behind it).
AUDIO_OUTPUTS = {
    "signal": "real",
    "stereo": "stereosample",
    "sample_rate": "real",
    "channels": "integer",
    "md5": "string",
    "bit_rate": "integer",
    "codec": "string",
}

STAT_NAMES = frozenset(
    "mean median var stdev min max dmean dvar dmean2 dvar2 cov icov skew kurt value copy last"
    .split()
)


@dataclass(frozen=True)
class Ref:
    """A wire to ``node.output``; ``take`` set means a value read back after that node ran."""

    node: str
    output: str
    take: str | None = None

    @property
    def key(self) -> str:
        return f"{self.node}.{self.output}"


@dataclass
class Node:
    id: str
    algorithm: str | None  # an essentia.streaming algorithm, or None for a derive function
    function: str | None
    params: dict[str, Any]
    param_refs: dict[str, Ref]
    inputs: dict[str, Ref]
    path: KeyPath
    input_types: dict[str, str] = field(default_factory=dict)
    output_types: dict[str, str] = field(default_factory=dict)
    stage: int = 0
    min_stage: int = 0  # set on chains re-run in a later stage (stages.single_replay_per_network)
    merged_from: list[str] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        """Runs inside an Essentia streaming network (otherwise: one call on recorded values)."""
        return self.algorithm is not None and not self.standard

    @property
    def standard(self) -> bool:
        """An algorithm whose inputs are all read back (``take``) runs once in standard mode."""
        return (
            self.algorithm is not None
            and bool(self.inputs)
            and all(r.take is not None for r in self.inputs.values())
        )

    def dependencies(self) -> list[Ref]:
        return list(self.inputs.values()) + list(self.param_refs.values())


@dataclass
class Descriptor:
    name: str
    ref: Ref
    single: bool
    stats: list[str]
    path: KeyPath
    empty: Any = None  # value of every statistic when no frame was produced (None: omit)


@dataclass
class AudioConfig:
    """The profile's ``audio`` section, checked (defaults: schemas/profile.schema.json)."""

    sample_rate: float
    start_time: float
    end_time: float | None  # None: to the end of the file
    downmix: str
    resample_quality: int
    tags: str  # metadata.tags: Essentia's whitelist (music) or "all" (freesound)
    require_mbid: bool  # refuse files without a MusicBrainz recording id (requireMbid)


@dataclass
class OutputConfig:
    """The profile's ``output`` section, checked (defaults: schemas/profile.schema.json)."""

    format: str
    indent: int
    frames: bool
    schema: str | None
    merge: dict[str, Any]  # dotted name -> value (mergeValues)


@dataclass
class Plan:
    """Everything needed to run the profile on a file; built once, reused for every file."""

    name: str
    digest: str
    nodes: dict[str, Node]
    order: list[str]  # topological order of the nodes that remain
    stages: int
    descriptors: list[Descriptor]
    audio: AudioConfig
    output: OutputConfig
    recorded: set[str]  # node.output keys kept in the work pool (values later nodes read)
    profile: Profile
    models: ModelsConfig | None = None  # model stages run after the network (runner.models)
    # Said of every output of this plan (metadata.warnings): what it was asked for and cannot
    # compute here (Essentia's SVM classifiers without a model).
    warnings: list[str] = field(default_factory=list)

    def nodes_in_stage(self, stage: int) -> list[Node]:
        return [self.nodes[n] for n in self.order if self.nodes[n].stage == stage]


def parse_ref(value: Any) -> Ref:
    """``node.output`` or ``{from: node.output, take: ...}`` (its ``take`` filled in from the
    schema's default; checked by runner.compile.wiring)."""
    if isinstance(value, dict):
        node, _, output = str(value["from"]).partition(".")
        return Ref(node, output, value["take"])
    node, _, output = str(value).partition(".")
    return Ref(node, output)


def describe(plan: Plan) -> list[str]:
    """Human-readable summary of the compiled graph (for `extractor validate`)."""
    lines = [f"profile {plan.name} (hash {plan.digest}): {len(plan.nodes)} nodes, "
             f"{plan.stages} stage(s), {len(plan.descriptors)} descriptors"]
    for stage in range(plan.stages):
        names = [n.id for n in plan.nodes_in_stage(stage)]
        lines.append(f"  stage {stage}: {', '.join(names)}")
    merged = {n.id: n.merged_from for n in plan.nodes.values() if n.merged_from}
    for keep, gone in merged.items():
        lines.append(f"  shared: {keep} also serves {', '.join(gone)}")
    return lines


