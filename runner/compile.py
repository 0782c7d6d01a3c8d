"""Compile a validated profile into a Plan: checked nodes, merged duplicates, stages.

The whole graph is checked here, before any audio is touched, for every command: algorithm
names and parameters against Essentia's registry, every wire against the ports it joins,
every value read back (``take``) or passed as a parameter against the type it is given to,
every required input connected, no cycles, ``single: true`` only where an output gives one
value per track, every output name written once, and each node configured once by Essentia
itself. What passes runs; what does not is one error at the line a person has to fix.
Identical nodes (same algorithm, parameters and inputs) are merged so shared front ends run
once, and nodes no descriptor needs are dropped.

Stages: a node whose *parameter* (or a reduced input, ``take: mean``) needs a value computed
by another node can only be configured after that node has run, so it goes into a later
stage. A later-stage network that reads the audio decodes the file again (as Essentia's own
extractors do for each pass); other streams that cross stages are recorded and replayed.
No stage keeps the whole decoded signal unless a node reads it back as a value (``take``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import __version__, derive, registry
from runner.load import KeyPath, Profile, is_builtin, substitute_options
from runner.models.plan import ModelsConfig, compile_models

AUDIO = "audio"
# Outputs of the built-in audio source (see runner/run.py for the loader chain behind it).
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
    min_stage: int = 0  # set on chains re-run in a later stage (see _single_replay_per_network)
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
    sample_rate: float = 44100.0
    start_time: float = 0.0
    end_time: float | None = None
    downmix: str = "mix"
    resample_quality: int = 1
    tags: str = "whitelist"  # metadata.tags: Essentia's whitelist (music) or "all" (freesound)
    require_mbid: bool = False  # refuse files without a MusicBrainz recording id (requireMbid)


@dataclass
class OutputConfig:
    format: str = "json"
    indent: int = 2
    frames: bool = False
    schema: str | None = None
    merge: dict[str, Any] = field(default_factory=dict)  # dotted name -> value (mergeValues)


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
    """``node.output`` or ``{from: node.output, take: ...}`` (checked later by _check_source)."""
    if isinstance(value, dict):
        node, _, output = str(value["from"]).partition(".")
        return Ref(node, output, value.get("take", "all"))
    node, _, output = str(value).partition(".")
    return Ref(node, output)


def compile_profile(profile: Profile) -> Plan:
    """Check and compile a loaded profile (see module docstring)."""
    substitute_options(profile)
    data = profile.data
    nodes = {nid: _make_node(profile, nid, spec) for nid, spec in (data.get("graph") or {}).items()}
    descriptors = _make_descriptors(profile, data)
    for node in nodes.values():
        _check_wires(profile, node, nodes)
    for desc in descriptors:
        _check_descriptor_source(profile, desc, nodes)
    order = _topological_order(profile, nodes)
    _check_single_values(profile, nodes, order, descriptors)
    _check_merge(profile, _check_output_names(profile, descriptors))
    _merge_identical(nodes, order, descriptors)
    order = [n for n in order if n in nodes]
    _prune(nodes, order, descriptors)
    order = [n for n in order if n in nodes]
    for node in nodes.values():
        _check_mode(profile, node)
    _check_configuration(profile, nodes)
    stages = _assign_stages(nodes, order)
    order = _single_replay_per_network(profile, nodes, order, descriptors)
    stages = _assign_stages(nodes, order)
    # Descriptors stream straight into the output pools; recorded are only the values that
    # later nodes read (recording every frame-wise descriptor too doubled the frame pools:
    # about 180 MB per hour of music), and the loader's outputs for the metadata section (the
    # analysed length is measured apart).
    recorded = {f"{AUDIO}.{name}" for name in AUDIO_OUTPUTS if name not in ("signal", "stereo")}
    for node in nodes.values():
        for ref in node.dependencies():
            # The audio source feeds streaming nodes directly, in stage 0 and in later stages
            # (which decode the file again); only value readers need it recorded. Recording
            # the signal costs 53 MB per 5 minutes of 44.1 kHz audio (635 MB per hour), the
            # stereo signal twice that.
            if not node.streaming or ref.take is not None:
                recorded.add(ref.key)
            elif ref.node == AUDIO:
                continue
            elif nodes[ref.node].stage < node.stage or not nodes[ref.node].streaming:
                recorded.add(ref.key)
    return Plan(
        name=profile.name,
        digest=result_digest(profile),
        nodes=nodes,
        order=order,
        stages=stages,
        descriptors=descriptors,
        audio=_audio_config(profile),
        output=_output_config(profile),
        recorded=recorded,
        profile=profile,
        models=compile_models(profile),
        warnings=_plan_warnings(profile),
    )


def _plan_warnings(profile: Profile) -> list[str]:
    models = profile.data.get("models")
    unavailable = models.get("unavailable") if isinstance(models, dict) else None
    if not unavailable:
        return []
    section = str(models.get("section", "highlevel"))
    return [f"{section}: {', '.join(map(str, unavailable))} left out: Essentia's SVM "
            "classifiers, with no model here (README: Drop-in)"]


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


def _suggest(name: str, choices: Any) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _derive_param(fn: derive.Function, name: str) -> registry.Param:
    """A derive function's parameter as Essentia would describe it: typed by its default."""
    default = fn.params[name]
    kind = {bool: "bool", int: "integer", float: "real", str: "string"}.get(type(default), "any")
    return registry.Param(name, kind, fn.ranges.get(name), repr(default))


def _make_node(profile: Profile, nid: str, spec: dict[str, Any]) -> Node:
    path: KeyPath = ("graph", nid)
    algorithm = spec.get("algorithm")
    function = spec.get("function")
    params: dict[str, Any] = {}
    param_refs: dict[str, Ref] = {}
    raw_params = spec.get("params") or {}
    inputs = {
        port: parse_ref(value)
        for port, value in (spec.get("inputs") or {}).items()
    }
    node = Node(nid, algorithm, function, params, param_refs, inputs, path)
    if algorithm is not None:
        if algorithm not in registry.algorithm_names():
            raise profile.error(
                path + ("algorithm",),
                f"unknown Essentia streaming algorithm '{algorithm}'",
                _suggest(algorithm, registry.algorithm_names())
                or "see essentia.streaming.algorithmNames()",
            )
        known = registry.info(algorithm, node.standard).params
        label = f"{algorithm} (standard mode)" if node.standard else algorithm
        for pname, value in raw_params.items():
            ppath = path + ("params", pname)
            if pname not in known:
                hint = _suggest(pname, known) or f"{algorithm} takes: {', '.join(sorted(known))}"
                raise profile.error(ppath, f"{label} has no parameter '{pname}'", hint)
            if isinstance(value, dict):
                param_refs[pname] = parse_ref(value)
                continue
            coerced, problem = registry.check_value(known[pname], value)
            if problem:
                raise profile.error(ppath, problem, value=True)
            params[pname] = coerced
        try:
            node.input_types, node.output_types = registry.ports(algorithm, params,
                                                                 node.standard)
        except registry.ConfigureError as exc:
            raise profile.error(path + ("params",), str(exc), value=True) from None
    else:
        if function not in derive.FUNCTIONS:
            raise profile.error(
                path + ("function",), f"unknown derive function '{function}'",
                _suggest(str(function), derive.FUNCTIONS)
                or f"available: {', '.join(sorted(derive.FUNCTIONS))}",
            )
        fn = derive.FUNCTIONS[function]
        for pname, value in raw_params.items():
            if pname not in fn.params:
                raise profile.error(
                    path + ("params", pname), f"{function} has no parameter '{pname}'",
                    _suggest(pname, fn.params)
                    or f"{function} takes: {', '.join(fn.params) or 'none'}",
                )
            if isinstance(value, dict):
                raise profile.error(path + ("params", pname), "a derive function's parameters "
                                    "are values, not references")
            coerced, problem = registry.check_value(_derive_param(fn, pname), value)
            if problem:
                raise profile.error(path + ("params", pname), problem, value=True)
            params[pname] = coerced
        node.inputs = {p: r if r.take else Ref(r.node, r.output, "all") for p, r in inputs.items()}
        node.input_types = dict(fn.input_types)
        node.output_types = dict(fn.types)
    return node


def _make_descriptors(profile: Profile, data: dict[str, Any]) -> list[Descriptor]:
    prefixes = data.get("stats") or {}
    result = []
    for name, spec in (data.get("descriptors") or {}).items():
        path: KeyPath = ("descriptors", name)
        if spec is None:
            continue
        if isinstance(spec, str):
            spec = {"from": spec}
        enabled = spec.get("enabled", True)
        if isinstance(enabled, str):
            raise profile.error(path + ("enabled",), f"expected true or false, got {enabled!r}")
        if not enabled:
            continue
        ref = parse_ref(spec["from"])
        single = bool(spec.get("single", False))
        stats = spec.get("stats")
        if stats is None:
            stats = [] if single else _stats_for(name, prefixes)
        if not single and not stats:
            raise profile.error(
                path, "a frame-wise descriptor needs statistics",
                "set 'stats', add a prefix under 'stats:', or mark it 'single: true'",
            )
        for stat in stats:
            if stat not in STAT_NAMES:
                raise profile.error(path + ("stats",), f"unknown statistic '{stat}'",
                                    _suggest(stat, STAT_NAMES))
        result.append(Descriptor(name, ref, single, list(stats), path, spec.get("empty")))
    return result


def _stats_for(name: str, prefixes: dict[str, list[str]]) -> list[str]:
    """Statistics of the longest matching name prefix (``lowlevel.mfcc`` beats ``lowlevel``)."""
    best: tuple[int, list[str]] = (-1, [])
    for prefix, stats in prefixes.items():
        if name == prefix or name.startswith(prefix + ".") or prefix == "*":
            weight = 0 if prefix == "*" else len(prefix)
            if weight > best[0]:
                best = (weight, stats)
    return list(best[1])


def _outputs_of(nid: str, nodes: dict[str, Node]) -> dict[str, str]:
    if nid == AUDIO:
        return AUDIO_OUTPUTS
    return nodes[nid].output_types


def _check_source(profile: Profile, ref: Ref, nodes: dict[str, Node], path: KeyPath) -> str:
    """Check that ``ref`` names an existing node output; return its Essentia type."""
    if not ref.output:
        raise profile.error(path, f"'{ref.node}' must name an output: node.output")
    if ref.node != AUDIO and ref.node not in nodes:
        raise profile.error(
            path, f"no node named '{ref.node}'", _suggest(ref.node, list(nodes) + [AUDIO])
        )
    outputs = _outputs_of(ref.node, nodes)
    if ref.output not in outputs:
        what = "audio" if ref.node == AUDIO else (nodes[ref.node].algorithm
                                                  or nodes[ref.node].function)
        raise profile.error(
            path, f"'{ref.node}' ({what}) has no output '{ref.output}'",
            _suggest(ref.output, outputs) or f"outputs: {', '.join(outputs) or 'none'}",
        )
    return outputs[ref.output]


def _check_descriptor_source(profile: Profile, desc: Descriptor, nodes: dict[str, Node]
                             ) -> None:
    """A descriptor's source exists; statistics are computed on numbers (Essentia's
    PoolAggregator passes strings through unchanged and crashes on matrices); ``empty``
    fills statistics with a value of their type."""
    kind = _check_source(profile, desc.ref, nodes, desc.path)
    if desc.single:
        if kind == "stereosample":
            raise profile.error(desc.path, f"{desc.ref.key} is the stereo signal: no value "
                                "to write")
        return
    if kind not in ("real", "integer", "vector_real", "any"):
        raise profile.error(
            desc.path, f"statistics need numbers or lists of numbers; {desc.ref.key} gives "
            f"{kind}", "mark it 'single: true' if it gives one value per track")
    matrix = sorted({"cov", "icov"} & set(desc.stats))
    if matrix and kind in ("real", "integer"):  # PoolAggregator writes nothing for them
        path = desc.path + ("stats",) if desc.path + ("stats",) in profile.origins else desc.path
        raise profile.error(path, f"'{matrix[0]}' needs frames that are lists of numbers; "
                            f"{desc.ref.key} gives {kind}", "use var for one number per frame")
    source = nodes.get(desc.ref.node)
    if kind.startswith("vector_") and source is not None and not source.streaming:
        # the run stores the items of one value as frames: statistics of numbers, where the
        # output schema (from the type) promises statistics of vectors
        raise profile.error(desc.path, f"{desc.ref.key} gives one {kind} per track: no frames "
                            "to compute statistics over", "mark it 'single: true'")
    if desc.empty is not None:
        number = isinstance(desc.empty, (int, float)) and not isinstance(desc.empty, bool)
        numbers = isinstance(desc.empty, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in desc.empty)
        matrix = {"cov", "icov"} & set(desc.stats)
        fits = (not matrix and (number if kind in ("real", "integer") else numbers
                                if kind == "vector_real" else number or numbers))
        if not fits:
            want = "a number" if kind in ("real", "integer") else "a list of numbers"
            raise profile.error(desc.path + ("empty",), f"{desc.empty!r} cannot stand for "
                                f"these statistics ({', '.join(desc.stats)}): give {want}"
                                if not matrix else "'empty' cannot fill cov or icov", value=True)


def _check_wires(profile: Profile, node: Node, nodes: dict[str, Node]) -> None:
    """Every input wired to an existing output of a type the port takes; every value read
    back (``take``) and every parameter reference of the type its port or parameter takes."""
    label = node.algorithm or node.function
    if node.algorithm:
        ports = node.input_types
        for port, ref in node.inputs.items():
            ipath = node.path + ("inputs", port)
            if port not in ports:
                raise profile.error(
                    ipath, f"{node.algorithm} has no input '{port}'",
                    _suggest(port, ports) or f"inputs: {', '.join(ports) or 'none'}",
                )
            src_type = _check_source(profile, ref, nodes, ipath)
            if ref.take is None and src_type not in ("any", ports[port]):
                raise profile.error(
                    ipath, f"type mismatch: {ref.key} gives {src_type}, "
                    f"{node.algorithm}.{port} takes {ports[port]}",
                )
            if ref.take is not None and node.standard:
                _check_value_type(profile, ipath, ref, src_type, ports[port],
                                  f"{node.algorithm}.{port} (standard mode)")
        missing = [p for p in ports if p not in node.inputs]
        if missing:
            raise profile.error(
                node.path + ("inputs",),
                f"{node.algorithm} input '{missing[0]}' is not connected",
                f"wire it, e.g. inputs: {{{missing[0]}: <node>.<output>}}",
            )
        known = registry.info(node.algorithm, node.standard).params
        for pname, ref in node.param_refs.items():
            ppath = node.path + ("params", pname)
            src_type = _check_source(profile, ref, nodes, ppath)
            _check_value_type(profile, ppath, ref, src_type, known[pname].type,
                              f"{label}.{pname}")
    else:
        fn = derive.FUNCTIONS[node.function]
        for port, ref in node.inputs.items():
            ipath = node.path + ("inputs", port)
            if port not in fn.inputs:
                raise profile.error(
                    ipath, f"{node.function} has no input '{port}'",
                    _suggest(port, fn.inputs) or f"inputs: {', '.join(fn.inputs)}",
                )
            src_type = _check_source(profile, ref, nodes, ipath)
            _check_value_type(profile, ipath, ref, src_type, fn.input_types[port],
                              f"{node.function}.{port}")
        missing = [p for p in fn.inputs if p not in node.inputs]
        if missing:
            raise profile.error(node.path + ("inputs",),
                                f"{node.function} input '{missing[0]}' is not connected")


# Types a value read back with `take` has: ``all`` lists every token, ``count`` counts them.
_NUMERIC = {"real", "integer", "vector_real", "vector_integer", "matrix_real"}


def _taken_type(src_type: str, take: str) -> str | None:
    """The Essentia type of the value ``take`` reads from a stream of ``src_type`` (None: it
    cannot: the mean of strings)."""
    if src_type == "any":
        return "any"
    if take in ("first", "last"):
        return src_type
    if take == "count":
        return "integer"
    if take in ("mean", "median"):
        if src_type not in _NUMERIC:
            return None
        return "real" if src_type == "integer" else src_type.replace("_integer", "_real")
    # all: one entry per token (Essentia's pool keeps integers as reals)
    return "vector_" + ("real" if src_type == "integer" else src_type)


def _accepts(wanted: str, got: str) -> bool:
    """Whether a value of type ``got`` can be given where Essentia (or a derive function)
    takes ``wanted``: the same type, an integer for a real, a list of equal-length frames for
    a matrix. A vector is never taken for a scalar (that silently used its last element)."""
    if wanted == got or "any" in (wanted, got):
        return True
    same = {("real", "integer"), ("vector_real", "vector_integer"),
            ("matrix_real", "vector_vector_real"), ("vector_vector_real", "matrix_real")}
    return (wanted, got) in same


def _check_value_type(profile: Profile, path: KeyPath, ref: Ref, src_type: str, wanted: str,
                      where: str) -> None:
    take = ref.take or "all"
    got = _taken_type(src_type, take)
    if got is None:
        raise profile.error(path, f"'take: {take}' needs numbers; {ref.key} gives {src_type}",
                            "take: first, last, all or count")
    if not _accepts(wanted, got):
        hint = None
        if take == "all" and got == f"vector_{wanted}":
            hint = "'take: all' gives every value as a list; take: last, first, mean or median " \
                "gives one"
        elif got.startswith("vector_") and not wanted.startswith(("vector_", "matrix_")):
            hint = f"{ref.key} gives lists ({src_type}): no single {wanted} to take from them"
        raise profile.error(path, f"type mismatch: {ref.key} with 'take: {take}' gives {got}, "
                            f"{where} takes {wanted}", hint)


def _topological_order(profile: Profile, nodes: dict[str, Node]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(nid: str, trail: list[str]) -> None:
        if state.get(nid) == 2 or nid == AUDIO:
            return
        if state.get(nid) == 1:
            cycle = trail[trail.index(nid):] + [nid]
            raise profile.error(nodes[nid].path, "the graph has a cycle: " + " -> ".join(cycle))
        state[nid] = 1
        for ref in nodes[nid].dependencies():
            visit(ref.node, trail + [nid])
        state[nid] = 2
        order.append(nid)

    for nid in nodes:
        visit(nid, [])
    return order


def output_rates(nodes: dict[str, Node], order: list[str]) -> dict[str, str]:
    """How often each ``node.output`` produces a value: registry.ONCE (one per track), MANY
    or UNKNOWN, from Essentia's forms of each algorithm (registry.output_rates); values read
    back run once; an algorithm that maps token to token produces as often as its inputs."""
    rates = {f"{AUDIO}.{name}": registry.ONCE for name in AUDIO_OUTPUTS}
    rates[f"{AUDIO}.signal"] = rates[f"{AUDIO}.stereo"] = registry.MANY
    for nid in order:
        node = nodes[nid]
        table = registry.output_rates(node.algorithm) if node.streaming else {}
        for output in node.output_types:
            rate = table.get(output, table.get("*")) if node.streaming else registry.ONCE
            if rate == registry.PER_TOKEN:
                inputs = [rates.get(ref.key, registry.UNKNOWN) for ref in node.inputs.values()]
                rate = (registry.UNKNOWN if registry.UNKNOWN in inputs or not inputs
                        else registry.MANY if registry.MANY in inputs else registry.ONCE)
            rates[f"{nid}.{output}"] = rate
    return rates


def _check_single_values(profile: Profile, nodes: dict[str, Node], order: list[str],
                         descriptors: list[Descriptor]) -> None:
    """``single: true`` only on outputs that give one value per track: on a frame-wise output
    the run would write a list where the output schema promises one value."""
    rates = output_rates(nodes, order)
    for desc in descriptors:
        rate = rates.get(desc.ref.key, registry.UNKNOWN)
        source = nodes.get(desc.ref.node)
        if not desc.single:
            if rate == registry.ONCE and (desc.ref.node == AUDIO or (
                    source is not None and source.streaming)):
                raise profile.error(desc.path, f"{desc.ref.key} gives one value per track: "
                                    "there are no frames to compute statistics over",
                                    "mark it 'single: true'")
            continue
        if rate == registry.ONCE:
            continue
        what = (f"{desc.ref.key} gives a value per frame (or per event), not one per track"
                if rate == registry.MANY else
                f"Essentia does not say that {desc.ref.key} gives one value per track")
        path = desc.path + ("single",) if desc.path + ("single",) in profile.origins else \
            desc.path
        raise profile.error(path, f"'single: true', but {what}",
                            "drop 'single' to write its statistics (stats: [...])")


# What the runner itself writes in the metadata section (runner/write.py): a descriptor may
# not replace these or sit inside them (md5_encoded is the loader's md5 either way).
_RUNNER_SECTIONS = ("metadata", "metadata.version", "metadata.profile", "metadata.tags",
                    "metadata.models", "metadata.warnings", "metadata.audio_properties",
                    "metadata.audio_properties.analysis")
_RUNNER_VALUES = tuple(
    [f"metadata.version.{k}" for k in ("essentia", "essentia_git_sha", "extractor", "runner")]
    + ["metadata.profile.name", "metadata.profile.hash"]
    + [f"metadata.audio_properties.{k}" for k in ("sample_rate", "number_channels", "bit_rate",
                                                 "codec", "lossless", "length")])


def _check_output_names(profile: Profile, descriptors: list[Descriptor]) -> set[str]:
    """Every value of the output has a name of its own: no descriptor (or statistic of one,
    or model output) is written where another one is a value or a section: ``rhythm.bpm``
    and ``rhythm.bpm.x`` cannot both be written (one would have to be a number and an
    object at once)."""
    writes: dict[str, tuple[KeyPath, str]] = {}  # output key -> (profile path, what)

    def claim(key: str, path: KeyPath, what: str) -> None:
        if key in writes:
            other_path, other = writes[key]
            culprit, path_other = _blame(profile, path, other_path)
            raise profile.error(culprit, f"{what if culprit == path else other} writes "
                                f"'{key}', as does {_at(profile, path_other)}",
                                "rename one of them")
        writes[key] = (path, what)

    for desc in descriptors:
        if desc.single:
            claim(desc.name, desc.path, f"descriptor '{desc.name}'")
            continue
        for stat in desc.stats:
            key = desc.name if stat in ("copy", "last") else f"{desc.name}.{stat}"
            claim(key, desc.path, f"descriptor '{desc.name}' ({stat})")
    models = profile.data.get("models")
    if isinstance(models, dict) and isinstance(models.get("outputs"), dict):
        section = str(models.get("section", "highlevel"))
        for name in models["outputs"]:
            claim(f"{section}.{name}", ("models", "outputs", name), f"model output '{name}'")
    sections: dict[str, str] = {}  # every dotted prefix of a written key -> that key
    for key in writes:
        parts = key.split(".")
        for end in range(1, len(parts)):
            sections.setdefault(".".join(parts[:end]), key)
    for key, (path, _what) in writes.items():
        inside = sections.get(key)
        if inside is not None:
            inner = writes[inside][0]
            culprit, other = _blame(profile, path, inner)
            message = (f"'{key}' is written as a value, but {_at(profile, other)} writes "
                       f"'{inside}' inside it" if culprit == path else
                       f"'{inside}' cannot be written inside '{key}', which "
                       f"{_at(profile, other)} writes as a value")
            raise profile.error(culprit, message,
                                "a name cannot be both a value and a section: rename one")
        reserved = key in _RUNNER_SECTIONS or key in _RUNNER_VALUES or any(
            key.startswith(prefix + ".") for prefix in _RUNNER_VALUES + (
                "metadata.version", "metadata.profile", "metadata.tags", "metadata.models",
                "metadata.warnings", "metadata.audio_properties.analysis"))
        if reserved:
            raise profile.error(path, f"'{key}' is written by the runner itself (metadata)",
                                "choose another name")
    return set(writes)


def _check_merge(profile: Profile, written: set[str]) -> None:
    """``output.merge`` (Essentia's mergeValues) adds values; it never replaces a value the
    analysis computes or the runner writes about it (a submission must not claim another
    profile, version or length). New keys anywhere, and the file's tags, are the user's."""
    merge = (profile.data.get("output") or {}).get("merge") or {}
    for key in merge:
        path = ("output", "merge", key)
        computed = next((w for w in written if w == key or w.startswith(key + ".")
                         or key.startswith(w + ".")), None)
        if computed is not None:
            raise profile.error(path, f"'{key}' would replace '{computed}', which the analysis "
                                "computes", "merge only values of your own")
        runner = key in _RUNNER_VALUES or key in _RUNNER_SECTIONS or any(
            key.startswith(prefix + ".") for prefix in _RUNNER_VALUES + (
                "metadata.profile", "metadata.models", "metadata.warnings",
                "metadata.audio_properties"))
        if runner:
            raise profile.error(path, f"'{key}' is written by the runner itself (metadata)",
                                "merge only values of your own")


def _at(profile: Profile, path: KeyPath) -> str:
    """``descriptors.rhythm.bpm (p.yaml:5)``: another key named in an error, with its line."""
    source, line = profile.where(path)
    where = f"{Path(source).name}:{line}" if line else Path(source).name
    return f"{'.'.join(path)} ({where})"


def _blame(profile: Profile, one: KeyPath, other: KeyPath) -> tuple[KeyPath, KeyPath]:
    """Of two clashing entries, the one a person wrote last (never a built-in's)."""
    def rank(path: KeyPath) -> tuple[bool, int]:
        source, line = profile.where(path)
        return (not is_builtin(source) and source != "--set", line)

    return (one, other) if rank(one) >= rank(other) else (other, one)


def _check_configuration(profile: Profile, nodes: dict[str, Node]) -> None:
    """Essentia's own check of every node's static parameters (beyond types and ranges: MFCC
    refuses more coefficients than bands), for every command before anything runs."""
    for node in nodes.values():
        if not node.algorithm:
            continue
        problem = registry.configure_problem(node.algorithm, node.params, node.standard)
        if problem:
            raise profile.error(node.path + ("params",), problem, value=True)


def _merge_identical(nodes: dict[str, Node], order: list[str], descs: list[Descriptor]) -> None:
    """Common-subexpression elimination over the graph: one node per distinct computation."""
    alias: dict[str, str] = {}
    seen: dict[str, str] = {}

    def rename(ref: Ref) -> Ref:
        return Ref(alias.get(ref.node, ref.node), ref.output, ref.take)

    for nid in order:
        node = nodes[nid]
        node.inputs = {p: rename(r) for p, r in node.inputs.items()}
        node.param_refs = {p: rename(r) for p, r in node.param_refs.items()}
        signature = json.dumps(
            [node.algorithm, node.function, node.params,
             {p: [r.key, r.take] for p, r in node.inputs.items()},
             {p: [r.key, r.take] for p, r in node.param_refs.items()}],
            sort_keys=True, default=str,
        )
        if signature in seen:
            keep = seen[signature]
            alias[nid] = keep
            nodes[keep].merged_from.append(nid)
            del nodes[nid]
        else:
            seen[signature] = nid
    for desc in descs:
        desc.ref = rename(desc.ref)


def _prune(nodes: dict[str, Node], order: list[str], descs: list[Descriptor]) -> None:
    """Drop nodes that no descriptor depends on (e.g. after a profile removed descriptors)."""
    needed = {d.ref.node for d in descs}
    for nid in reversed(order):
        if nid in needed:
            needed.update(r.node for r in nodes[nid].dependencies())
    for nid in order:
        if nid not in needed:
            del nodes[nid]


def _check_mode(profile: Profile, node: Node) -> None:
    if node.streaming and any(r.take is not None for r in node.inputs.values()):
        port = next(p for p, r in node.inputs.items() if r.take is not None)
        raise profile.error(
            node.path + ("inputs", port),
            "a node either streams all its inputs or reads all of them back with 'take'",
            "wire every input as node.output, or give every input a 'take'",
        )


def _assign_stages(nodes: dict[str, Node], order: list[str]) -> int:
    """Stage of a node: after everything it reads back; same stage as the streams it consumes.

    Standard-mode and derive nodes of stage k run before the streaming network of stage k.
    """
    for nid in order:
        node = nodes[nid]
        stage = 0
        for ref in node.dependencies():
            if ref.node == AUDIO:
                # a value of the audio (a take, a parameter) exists once stage 0 has run
                if not node.streaming or ref.take is not None or ref in node.param_refs.values():
                    stage = max(stage, 1)
                continue
            src = nodes[ref.node]
            reads_value = ref.take is not None or ref in node.param_refs.values()
            if src.streaming and (reads_value or not node.streaming):
                stage = max(stage, src.stage + 1)
            else:
                stage = max(stage, src.stage)
        node.stage = max(stage, node.min_stage)
    return 1 + max((n.stage for n in nodes.values()), default=0)


def stream_components(nodes: dict[str, Node], stage: int) -> list[list[str]]:
    """Connected groups of the streaming nodes of one stage (each runs as one network)."""
    members = [n for n in nodes.values() if n.streaming and n.stage == stage]
    parent = {n.id: n.id for n in members}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for node in members:
        for ref in node.inputs.values():
            if ref.node in parent:
                parent[find(ref.node)] = find(node.id)
    groups: dict[str, list[str]] = {}
    for node in members:
        groups.setdefault(find(node.id), []).append(node.id)
    return list(groups.values())


def replay_sources(nodes: dict[str, Node], group: list[str]) -> set[str]:
    """Streams a group of same-stage nodes reads from outside itself (each needs a source)."""
    inside = set(group)
    keys = set()
    for nid in group:
        for ref in nodes[nid].inputs.values():
            if ref.node not in inside:
                keys.add(ref.key)
    return keys


def _single_replay_per_network(
    profile: Profile, nodes: dict[str, Node], order: list[str], descriptors: list[Descriptor]
) -> list[str]:
    """Essentia runs a network from one source, so each later-stage network gets exactly one.

    A later-stage network reads the audio (decoded again); the streaming chain between the
    audio and the network (e.g. gain, frame cutter, spectrum, spectral peaks) is re-run in that
    stage, as Essentia's own extractors do in their second pass. Recording every intermediate
    stream instead would multiply memory per track, and Essentia cannot drive one network
    from several recorded streams.
    """
    for _ in range(64):
        changed = False
        for stage in range(1, 1 + max((n.stage for n in nodes.values()), default=0)):
            for group in stream_components(nodes, stage):
                sources = replay_sources(nodes, group)
                movable = {k.split(".")[0] for k in sources} - {AUDIO}
                movable = {m for m in movable if nodes[m].streaming}
                audio = {k for k in sources if k.startswith(AUDIO + ".")} - {f"{AUDIO}.signal"}
                if audio:  # only the (mono) analysed signal is read again in a later stage
                    _refuse_later_audio(profile, nodes, group, sorted(audio)[0])
                if not movable and len(sources) <= 1:
                    continue
                if not movable:
                    first = nodes[group[0]]
                    raise profile.error(
                        first.path, "this part of the graph reads several recorded streams "
                        f"({', '.join(sorted(sources))}) that cannot be replayed together",
                    )
                for src in sorted(movable):
                    clone_id = f"{src}__s{stage}"
                    if clone_id not in nodes:
                        orig = nodes[src]
                        nodes[clone_id] = Node(clone_id, orig.algorithm, orig.function,
                                               dict(orig.params), dict(orig.param_refs),
                                               dict(orig.inputs), orig.path, orig.input_types,
                                               orig.output_types, stage, stage)
                        order.insert(order.index(src) + 1, clone_id)
                    for nid in group:
                        node = nodes[nid]
                        node.inputs = {p: Ref(clone_id, r.output) if r.node == src else r
                                       for p, r in node.inputs.items()}
                changed = True
                _assign_stages(nodes, order)
        if not changed:
            break
    order = [n for n in order if n in nodes]
    _prune(nodes, order, descriptors)
    return [n for n in order if n in nodes]


def _refuse_later_audio(profile: Profile, nodes: dict[str, Node], group: list[str],
                        key: str) -> None:
    """A later stage reads ``key`` (the stereo signal, say) as a stream: it cannot (only the
    analysed mono signal is read again). Blamed on the part a person wrote, if any."""
    readers = [n for n in group if any(r.key == key for r in nodes[n].inputs.values())]
    ours = [n for n in group if not is_builtin(profile.where(nodes[n].path)[0])]
    culprit = nodes[(ours or readers or group)[0]]
    raise profile.error(
        culprit.path, f"this part of the graph runs after values computed from the audio and "
        f"streams {key} (through {', '.join(r.split('__')[0] for r in readers)}): a later "
        "stage reads only the analysed mono signal again",
        "feed it from audio.signal, or keep it apart from what needs those values")


def _number(profile: Profile, path: KeyPath, value: Any, kind: type = float,
            low: float = -math.inf, high: float = math.inf) -> Any:
    """A number within [low, high] (options are substituted only now: the schema saw text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise profile.error(path, f"expected a number, got {value!r}", value=True)
    try:
        number = float(value)
    except ValueError:
        raise profile.error(path, f"expected a number, got {value!r}", value=True) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise profile.error(path, f"{value!r} is not within [{low:g}, {high:g}]", value=True)
    if kind is int:
        if not number.is_integer():
            raise profile.error(path, f"expected an integer, got {value!r}", value=True)
        return int(number)
    return number


def _choice(profile: Profile, path: KeyPath, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise profile.error(path, f"{value!r} is not one of {', '.join(choices)}", value=True)
    return value


def _flag(profile: Profile, path: KeyPath, value: Any) -> bool:
    """true/false (or Essentia's 1/0, and yes/no): anything else is an error, not False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if isinstance(value, str) and text in ("1", "true", "yes", "0", "false", "no"):
        return text in ("1", "true", "yes")
    raise profile.error(path, f"expected true or false, got {value!r}", value=True)


# Analysis rates a profile may ask for: below 1 kHz nothing musical is left, above 384 kHz
# the resampled signal (and every frame-wise pool) grows past what any audio needs.
SAMPLE_RATE_RANGE = (1000.0, 384000.0)
MAX_INDENT = 16


def _audio_config(profile: Profile) -> AudioConfig:
    spec = profile.data.get("audio") or {}
    cfg = AudioConfig()
    if "sample_rate" in spec:
        cfg.sample_rate = _number(profile, ("audio", "sample_rate"), spec["sample_rate"],
                                  float, *SAMPLE_RATE_RANGE)
    if "start_time" in spec:
        cfg.start_time = _number(profile, ("audio", "start_time"), spec["start_time"],
                                 float, 0.0)
    if spec.get("end_time") is not None:
        cfg.end_time = _number(profile, ("audio", "end_time"), spec["end_time"], float, 0.0)
        if cfg.end_time >= 1e6:  # Essentia's way of saying "to the end"
            cfg.end_time = None
        if cfg.end_time is not None and cfg.end_time <= cfg.start_time:
            raise profile.error(("audio", "end_time"), "end_time must be after start_time",
                                value=True)
    cfg.downmix = _choice(profile, ("audio", "downmix"), spec.get("downmix", cfg.downmix),
                          ("mix", "left", "right"))
    cfg.tags = _choice(profile, ("audio", "tags"), spec.get("tags", cfg.tags),
                       ("whitelist", "all"))
    if "resample_quality" in spec:
        cfg.resample_quality = _number(profile, ("audio", "resample_quality"),
                                       spec["resample_quality"], int, 0, 4)
    cfg.require_mbid = _flag(profile, ("audio", "require_mbid"), spec.get("require_mbid", False))
    return cfg


def _output_config(profile: Profile) -> OutputConfig:
    spec = profile.data.get("output") or {}
    cfg = OutputConfig()
    cfg.format = spec.get("format", cfg.format)
    if cfg.format not in ("json", "yaml"):
        raise profile.error(("output", "format"), f"{cfg.format!r} is not json or yaml",
                            value=True)
    if "indent" in spec:
        cfg.indent = _number(profile, ("output", "indent"), spec["indent"], int, 0, MAX_INDENT)
    cfg.frames = _flag(profile, ("output", "frames"), spec.get("frames", False))
    cfg.schema = spec.get("schema")
    if cfg.schema is not None:
        _check_output_schema(profile, str(cfg.schema))
    cfg.merge = dict(spec.get("merge") or {})
    return cfg


def _check_output_schema(profile: Profile, name: str) -> None:
    """``output.schema`` names a readable JSON Schema (checked now, not on the first file)."""
    import jsonschema

    from runner.validate import load_schema

    path = ("output", "schema")
    try:
        schema = load_schema(name)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise profile.error(path, f"cannot read the schema {name!r}: {reason}") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise profile.error(path, f"{name!r} is not a valid JSON Schema: "
                            f"{exc.message[:200]}") from None


def check_instantiation(plan: Plan) -> None:
    """Configure every node once with its static parameters (Essentia's own checks); part of
    compile_profile, kept for callers that hold a Plan."""
    _check_configuration(plan.profile, plan.nodes)


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


