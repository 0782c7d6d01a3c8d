"""Where a network's outputs go, and the values later stages read back from them.

A stream's output goes to the descriptor pools (frame-wise descriptors to ``frames``, one value
per track to ``singles``), to the work pool when a later stage reads it back (``recorded``), or
nowhere. After each pass the recorded streams become values: token sequences by stream key
(``node.output``), which later stages ``take`` (first, last, mean, ...) as algorithm parameters
or replay as inputs. Standard-mode algorithms and derive functions run on those values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner import (
    conditioning,  # noqa: F401  (registers its derive functions)
    derive,
    registry,
)
from runner.analysis.audio_input import MEASURED, essentia_reason
from runner.compile import AUDIO, AUDIO_OUTPUTS, Node, Plan, Ref
from runner.errors import AudioError
from runner.pools import pool_values


class Sinks:
    """The pools one executor stores into, and which stream goes where.

    Pools live as long as the executor (its networks are wired to them) and are cleared per
    file.
    """

    def __init__(self, plan: Plan, essentia: Any) -> None:
        self.plan = plan
        self.descriptors_by_source: dict[str, list[tuple[str, bool]]] = {}
        for desc in plan.descriptors:
            self.descriptors_by_source.setdefault(desc.ref.key, []).append(
                (desc.name, desc.single)
            )
        # Recorded streams that also stream into the frame pool as a descriptor (the HPCP
        # frames, for one) are stored once, there, and read back from it.
        self.recorded_frames = {
            key: name for key in plan.recorded
            for name, single in self.descriptors_by_source.get(key, []) if not single
        }
        self.frames = essentia.Pool()  # frame-wise descriptors, by descriptor name
        self.singles = essentia.Pool()  # one value per track, by descriptor name
        self.work = essentia.Pool()  # recorded streams and measures of the input, by key
        # one-per-track values a Pool cannot hold: a derive function's bool, or None (null:
        # undefined for this file, e.g. the key of silence)
        self.plain: dict[str, Any] = {}
        self.warnings: list[str] = []  # from derive functions (see run_value_nodes)

    def clear(self) -> None:
        for pool in (self.frames, self.singles, self.work):
            pool.clear()
        self.plain.clear()
        self.warnings.clear()

    def connect(self, key: str, port: Any, allow_none: bool) -> None:
        """Send an output to the descriptor pools and/or the work pool; otherwise nowhere."""
        used = False
        for name, single in self.descriptors_by_source.get(key, []):
            port >> ((self.singles if single else self.frames), name)
            used = True
        if key in self.plan.recorded and key not in self.recorded_frames:
            port >> (self.work, key)
            used = True
        if not used and allow_none:
            port >> None

    def store(self, key: str, value: Any) -> None:
        """A value computed outside the networks, into the descriptor pools that want it."""
        for name, single in self.descriptors_by_source.get(key, []):
            pool = self.singles if single else self.frames
            if single and (value is None or isinstance(value, bool)):
                self.plain[name] = value
            elif single:
                pool.add(name, value)
            else:
                for item in np.atleast_1d(value):
                    pool.add(name, item)

    def read_recorded(self, stage: int) -> dict[str, Any]:
        """The streams recorded in this stage, as token sequences (Essentia's Pool collapses
        a single token)."""
        recorded = pool_values(self.work)
        frames = self.frames.cppPool
        present = set(frames.descriptorNames())
        for key, name in self.recorded_frames.items():
            node = self.plan.nodes.get(key.partition(".")[0])
            if node is not None and node.streaming and node.stage == stage and name in present:
                recorded[key] = frames.__value__(name, frames.__keyType__(name))
        return {key: tokens(value, self.type_of(key)) for key, value in recorded.items()}

    def single_values(self) -> dict[str, Any]:
        """The one-per-track descriptors stored, by name: one token as itself."""
        singles = {}
        stored = pool_values(self.singles)
        for desc in self.plan.descriptors:
            if desc.single and desc.name in stored:
                found = tokens(stored[desc.name], self.type_of(desc.ref.key))
                singles[desc.name] = found[-1] if len(found) == 1 else found
        singles.update(self.plain)
        return singles

    def type_of(self, key: str) -> str:
        """The Essentia type of one token of a stream."""
        node_id, _, output = key.partition(".")
        if key in MEASURED:
            return "real"
        if node_id == AUDIO:
            return AUDIO_OUTPUTS[output]
        return self.plan.nodes[node_id].output_types[output]


def take(values: dict[str, Any], ref: Ref) -> Any:
    """The value a reference reads (``take``: all, first, last, count, mean, median)."""
    take = ref.take or "all"
    if ref.key not in values:
        if take == "all":  # a stream that carried no token (audio shorter than a frame)
            return []
        if take == "count":  # ... has carried none
            return 0.0
        raise AudioError(
            "<input>", f"'{ref.key}' produced nothing (the audio may be too short or silent)"
        )
    value = values[ref.key]
    if take == "all":
        return value
    seq = value if isinstance(value, (list, np.ndarray)) else [value]
    if len(seq) == 0:
        raise AudioError("<input>", f"'{ref.key}' produced nothing to take the {take} of")
    if take == "first":
        return seq[0]
    if take == "last":
        return seq[-1]
    if take == "count":
        return float(len(seq))
    try:
        array = np.asarray(seq, dtype=np.float32)
    except ValueError:  # frames of different lengths (spectral peaks): no mean of them
        raise AudioError("<input>", f"'take: {take}' of '{ref.key}': its values are lists "
                         "of different lengths") from None
    if take == "mean":
        return array.mean(axis=0)
    return np.median(array, axis=0).astype(np.float32)


def node_params(plan: Plan, node: Node, values: dict[str, Any]) -> dict[str, Any]:
    """A node's parameters for this file: those written in the profile, and those read from
    earlier stages' values, each checked as a written one would be."""
    params = dict(node.params)
    for pname, ref in node.param_refs.items():
        value = take(values, ref)
        param = registry.info(node.algorithm, node.standard).params[pname]
        value, problem = registry.check_value(param, _as_param(value, param.type))
        if problem:  # as a written value would be (some crash Essentia, not only refused)
            raise plan.profile.error(
                node.path + ("params", pname), f"{problem} (read from {ref.key} with "
                f"'take: {ref.take}' on this file)")
        params[pname] = value
    return params


def run_value_nodes(plan: Plan, sinks: Sinks, stage: int, values: dict[str, Any]) -> None:
    """Standard-mode algorithms and derive functions of this stage, in graph order, on the
    values recorded so far; their results become values and descriptors."""
    standard = registry.quiet_essentia().standard
    for node in plan.nodes_in_stage(stage):
        if node.streaming:
            continue
        args = {port: take(values, ref) for port, ref in node.inputs.items()}
        if node.function:
            fn = derive.FUNCTIONS[node.function]
            results = fn.run(**args, **{**fn.params, **node.params})
            warning = results.pop("warning", None)  # why a value is null: one line
            if warning:
                sinks.warnings.append(str(warning))
        else:
            params = node_params(plan, node, values)
            try:
                algo = getattr(standard, node.algorithm)(**params)
            except Exception as exc:  # configured from values of this file: as in networks
                raise plan.profile.error(node.path + ("params",),
                                         essentia_reason(exc)) from None
            outs = algo(*[args[p] for p in node.input_types])
            if len(node.output_types) == 1:
                outs = (outs,)
            results = dict(zip(node.output_types, outs, strict=True))
        for output, value in results.items():
            key = f"{node.id}.{output}"
            values[key] = [value]  # one token, like a stream that produced one value
            sinks.store(key, value)


def tokens(value: Any, kind: str) -> Any:
    """A pool entry as the sequence of tokens the stream carried.

    Essentia's Pool returns one token of a vector stream as that vector, and one token of a
    scalar stream as a scalar; the port type tells which it was.
    """
    if kind.startswith(("vector_", "matrix_")):
        if isinstance(value, np.ndarray) and value.ndim == 1:
            return [value]
        if isinstance(value, list) and value and not isinstance(value[0], (list, np.ndarray)):
            return [value]
        return value
    if isinstance(value, (str, int, float, np.floating, np.integer)):
        return [value]
    return value


def _as_param(value: Any, kind: str) -> Any:
    if kind == "real":
        return float(np.asarray(value).reshape(-1)[-1]) if np.size(value) else 0.0
    if kind == "integer":
        return int(np.asarray(value).reshape(-1)[-1])
    if kind.startswith("vector_real"):
        return [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]
    return value
