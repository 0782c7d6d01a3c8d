"""Compile a validated profile into a Plan: checked nodes, merged duplicates, stages.

The whole graph is checked here, before any audio is touched: algorithm names and
parameters against Essentia's registry, every wire against the ports it joins, every
required input connected, no cycles. Identical nodes (same algorithm, parameters and
inputs) are merged so shared front ends run once, and nodes no descriptor needs are dropped.

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
from dataclasses import dataclass, field
from typing import Any

from runner import __version__, derive, registry
from runner.load import KeyPath, Profile, substitute_options
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


@dataclass
class OutputConfig:
    format: str = "json"
    indent: int = 2
    frames: bool = False
    schema: str | None = None


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
        _check_source(profile, desc.ref, nodes, desc.path)
    order = _topological_order(profile, nodes)
    _merge_identical(nodes, order, descriptors)
    order = [n for n in order if n in nodes]
    _prune(nodes, order, descriptors)
    order = [n for n in order if n in nodes]
    for node in nodes.values():
        _check_mode(profile, node)
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
    )


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
                raise profile.error(ppath, problem)
            params[pname] = coerced
        node.input_types, node.output_types = registry.ports(algorithm, params, node.standard)
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
            params[pname] = value
        node.inputs = {p: r if r.take else Ref(r.node, r.output, "all") for p, r in inputs.items()}
        node.input_types = {name: "any" for name in fn.inputs}
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
            _suggest(ref.output, outputs) or f"outputs: {', '.join(outputs)}",
        )
    return outputs[ref.output]


def _check_wires(profile: Profile, node: Node, nodes: dict[str, Node]) -> None:
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
        missing = [p for p in ports if p not in node.inputs]
        if missing:
            raise profile.error(
                node.path + ("inputs",),
                f"{node.algorithm} input '{missing[0]}' is not connected",
                f"wire it, e.g. inputs: {{{missing[0]}: <node>.<output>}}",
            )
    else:
        fn = derive.FUNCTIONS[node.function]
        for port, ref in node.inputs.items():
            if port not in fn.inputs:
                raise profile.error(
                    node.path + ("inputs", port), f"{node.function} has no input '{port}'",
                    _suggest(port, fn.inputs) or f"inputs: {', '.join(fn.inputs)}",
                )
            _check_source(profile, ref, nodes, node.path + ("inputs", port))
        missing = [p for p in fn.inputs if p not in node.inputs]
        if missing:
            raise profile.error(node.path + ("inputs",),
                                f"{node.function} input '{missing[0]}' is not connected")
    for pname, ref in node.param_refs.items():
        _check_source(profile, ref, nodes, node.path + ("params", pname))


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
                if not node.streaming:
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


def _number(profile: Profile, path: KeyPath, value: Any, kind: type = float) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise profile.error(path, f"expected a number, got {value!r}") from None


def _audio_config(profile: Profile) -> AudioConfig:
    spec = profile.data.get("audio") or {}
    cfg = AudioConfig()
    if "sample_rate" in spec:
        cfg.sample_rate = _number(profile, ("audio", "sample_rate"), spec["sample_rate"])
    if "start_time" in spec:
        cfg.start_time = _number(profile, ("audio", "start_time"), spec["start_time"])
    if spec.get("end_time") is not None:
        cfg.end_time = _number(profile, ("audio", "end_time"), spec["end_time"])
        if cfg.end_time >= 1e6:  # Essentia's way of saying "to the end"
            cfg.end_time = None
        if cfg.end_time is not None and cfg.end_time <= cfg.start_time:
            raise profile.error(("audio", "end_time"), "end_time must be after start_time")
    cfg.downmix = spec.get("downmix", cfg.downmix)
    cfg.tags = spec.get("tags", cfg.tags)
    if "resample_quality" in spec:
        cfg.resample_quality = _number(profile, ("audio", "resample_quality"),
                                       spec["resample_quality"], int)
    if cfg.sample_rate <= 0:
        raise profile.error(("audio", "sample_rate"), "must be positive")
    return cfg


def _output_config(profile: Profile) -> OutputConfig:
    spec = profile.data.get("output") or {}
    cfg = OutputConfig()
    cfg.format = spec.get("format", cfg.format)
    if cfg.format not in ("json", "yaml"):
        raise profile.error(("output", "format"), f"{cfg.format!r} is not json or yaml")
    if "indent" in spec:
        cfg.indent = _number(profile, ("output", "indent"), spec["indent"], int)
    frames = spec.get("frames", False)
    if isinstance(frames, str):
        frames = frames.lower() in ("1", "true", "yes")
    cfg.frames = bool(frames)
    cfg.schema = spec.get("schema")
    return cfg


def check_instantiation(plan: Plan) -> None:
    """Configure every streaming node once with its static parameters (Essentia's own checks)."""
    essentia = registry.quiet_essentia()
    for node in plan.nodes.values():
        if not node.algorithm:
            continue
        try:
            getattr(essentia.streaming, node.algorithm)(**node.params)
        except Exception as exc:  # Essentia raises RuntimeError/EssentiaException
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise plan.profile.error(node.path + ("params",), message) from None


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


