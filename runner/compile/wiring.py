"""Check how the nodes of a Plan connect: every wire to an output that exists, of a type its
port takes; every value read back (``take``) or passed as a parameter of the type it is given
to; every required input connected; no cycles; ``single: true`` only where an output gives one
value per track.
"""

from __future__ import annotations

from runner import derive, registry
from runner.compile.plan import AUDIO, AUDIO_OUTPUTS, Descriptor, Node, Ref
from runner.profile import KeyPath, Profile, did_you_mean


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
            path, f"no node named '{ref.node}'", did_you_mean(ref.node, list(nodes) + [AUDIO])
        )
    outputs = _outputs_of(ref.node, nodes)
    if ref.output not in outputs:
        what = "audio" if ref.node == AUDIO else (nodes[ref.node].algorithm
                                                  or nodes[ref.node].function)
        raise profile.error(
            path, f"'{ref.node}' ({what}) has no output '{ref.output}'",
            did_you_mean(ref.output, outputs) or f"outputs: {', '.join(outputs) or 'none'}",
        )
    return outputs[ref.output]


def check_descriptor_source(profile: Profile, desc: Descriptor, nodes: dict[str, Node]
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


def check_wires(profile: Profile, node: Node, nodes: dict[str, Node]) -> None:
    """Every input wired to an existing output of a type the port takes; every value read
    back (``take``) and every parameter reference of the type its port or parameter takes."""
    if node.algorithm:
        _check_algorithm_wires(profile, node, nodes)
    else:
        _check_function_wires(profile, node, nodes)


def _check_algorithm_wires(profile: Profile, node: Node, nodes: dict[str, Node]) -> None:
    ports = node.input_types
    for port, ref in node.inputs.items():
        ipath = node.path + ("inputs", port)
        if port not in ports:
            raise profile.error(
                ipath, f"{node.algorithm} has no input '{port}'",
                did_you_mean(port, ports) or f"inputs: {', '.join(ports) or 'none'}",
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
    known = registry.info(str(node.algorithm), node.standard).params
    for pname, ref in node.param_refs.items():
        ppath = node.path + ("params", pname)
        src_type = _check_source(profile, ref, nodes, ppath)
        _check_value_type(profile, ppath, ref, src_type, known[pname].type,
                          f"{node.algorithm}.{pname}")


def _check_function_wires(profile: Profile, node: Node, nodes: dict[str, Node]) -> None:
    fn = derive.FUNCTIONS[str(node.function)]
    for port, ref in node.inputs.items():
        ipath = node.path + ("inputs", port)
        if port not in fn.inputs:
            raise profile.error(
                ipath, f"{node.function} has no input '{port}'",
                did_you_mean(port, fn.inputs) or f"inputs: {', '.join(fn.inputs)}",
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


def topological_order(profile: Profile, nodes: dict[str, Node]) -> list[str]:
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


def check_single_values(profile: Profile, nodes: dict[str, Node], order: list[str],
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

