"""Make the nodes and descriptors of a Plan from a profile, each checked on its own.

A node's algorithm (or derive function) must exist, and each of its parameters must be one it
takes, of the type and within the range Essentia's registry states; Essentia itself then
configures it once. A descriptor must name statistics that exist, or say ``single: true``.
How nodes connect is checked afterwards (runner.compile.wiring).
"""

from __future__ import annotations

from typing import Any

from runner import (
    conditioning,  # noqa: F401  (registers its derive functions)
    derive,
    registry,
)
from runner.compile.plan import STAT_NAMES, Descriptor, Node, Ref, parse_ref
from runner.profile import KeyPath, Profile, did_you_mean
from runner.profile.schema import defaults


def make_node(profile: Profile, nid: str, spec: dict[str, Any]) -> Node:
    """The node ``graph.<nid>`` of ``profile``, its parameters checked and typed."""
    inputs = {port: parse_ref(value) for port, value in (spec.get("inputs") or {}).items()}
    node = Node(nid, spec.get("algorithm"), spec.get("function"), {}, {}, inputs, ("graph", nid))
    raw_params = spec.get("params") or {}
    if node.algorithm is not None:
        _algorithm_node(profile, node, raw_params)
    else:
        _function_node(profile, node, raw_params)
    return node


def _algorithm_node(profile: Profile, node: Node, raw_params: dict[str, Any]) -> None:
    """An Essentia algorithm: its parameters checked against the registry, its port types
    as Essentia states them for these parameters."""
    algorithm, path = str(node.algorithm), node.path
    if algorithm not in registry.algorithm_names():
        raise profile.error(
            path + ("algorithm",),
            f"unknown Essentia streaming algorithm '{algorithm}'",
            did_you_mean(algorithm, registry.algorithm_names())
            or "see essentia.streaming.algorithmNames()",
        )
    known = registry.info(algorithm, node.standard).params
    label = f"{algorithm} (standard mode)" if node.standard else algorithm
    for pname, value in raw_params.items():
        ppath = path + ("params", pname)
        if pname not in known:
            hint = did_you_mean(pname, known) or f"{algorithm} takes: {', '.join(sorted(known))}"
            raise profile.error(ppath, f"{label} has no parameter '{pname}'", hint)
        if isinstance(value, dict):
            node.param_refs[pname] = parse_ref(value)
            continue
        coerced, problem = registry.check_value(known[pname], value)
        if problem:
            raise profile.error(ppath, problem, value=True)
        node.params[pname] = coerced
    try:
        node.input_types, node.output_types = registry.ports(algorithm, node.params,
                                                             node.standard)
    except registry.ConfigureError as exc:
        raise profile.error(path + ("params",), str(exc), value=True) from None


def _function_node(profile: Profile, node: Node, raw_params: dict[str, Any]) -> None:
    """A derive function: parameters are values of the types of its defaults; every input is
    read back (a plain wire reads all its values)."""
    function, path = node.function, node.path
    if function not in derive.FUNCTIONS:
        raise profile.error(
            path + ("function",), f"unknown derive function '{function}'",
            did_you_mean(str(function), derive.FUNCTIONS)
            or f"available: {', '.join(sorted(derive.FUNCTIONS))}",
        )
    fn = derive.FUNCTIONS[function]
    for pname, value in raw_params.items():
        if pname not in fn.params:
            raise profile.error(
                path + ("params", pname), f"{function} has no parameter '{pname}'",
                did_you_mean(pname, fn.params)
                or f"{function} takes: {', '.join(fn.params) or 'none'}",
            )
        if isinstance(value, dict):
            raise profile.error(path + ("params", pname), "a derive function's parameters "
                                "are values, not references")
        coerced, problem = registry.check_value(_derive_param(fn, pname), value)
        if problem:
            raise profile.error(path + ("params", pname), problem, value=True)
        node.params[pname] = coerced
    node.inputs = {p: r if r.take else Ref(r.node, r.output, "all")
                   for p, r in node.inputs.items()}
    node.input_types = dict(fn.input_types)
    node.output_types = dict(fn.types)


def _derive_param(fn: derive.Function, name: str) -> registry.Param:
    """A derive function's parameter as Essentia would describe it: typed by its default."""
    default = fn.params[name]
    kind = {bool: "bool", int: "integer", float: "real", str: "string"}.get(type(default), "any")
    return registry.Param(name, kind, fn.ranges.get(name), repr(default))


def make_descriptors(profile: Profile, data: dict[str, Any]) -> list[Descriptor]:
    """The descriptors that are enabled, each with its statistics (its own, or those of the
    longest ``stats`` prefix of its name)."""
    prefixes = data.get("stats") or {}
    short_form = defaults("descriptor")  # what `name: node.output` leaves unsaid
    result = []
    for name, spec in (data.get("descriptors") or {}).items():
        path: KeyPath = ("descriptors", name)
        if spec is None:
            continue
        if isinstance(spec, str):
            spec = {**short_form, "from": spec}
        enabled = spec["enabled"]
        if isinstance(enabled, str):
            raise profile.error(path + ("enabled",), f"expected true or false, got {enabled!r}")
        if not enabled:
            continue
        ref = parse_ref(spec["from"])
        single = bool(spec["single"])
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
                                    did_you_mean(stat, STAT_NAMES))
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


def check_mode(profile: Profile, node: Node) -> None:
    """A node streams all its inputs or reads all of them back: never a mix."""
    if node.streaming and any(r.take is not None for r in node.inputs.values()):
        port = next(p for p, r in node.inputs.items() if r.take is not None)
        raise profile.error(
            node.path + ("inputs", port),
            "a node either streams all its inputs or reads all of them back with 'take'",
            "wire every input as node.output, or give every input a 'take'",
        )


def check_configuration(profile: Profile, nodes: dict[str, Node]) -> None:
    """Essentia's own check of every node's static parameters (beyond types and ranges: MFCC
    refuses more coefficients than bands), for every command before anything runs."""
    for node in nodes.values():
        if not node.algorithm:
            continue
        problem = registry.configure_problem(node.algorithm, node.params, node.standard)
        if problem:
            raise profile.error(node.path + ("params",), problem, value=True)
