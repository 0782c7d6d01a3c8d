"""Long tracks: which tracks are long, and what is done differently for them.

A track whose analysed length is over ``LONG_TRACK_SECONDS`` (an hour-long mix, a recorded
concert) is analysed with less held in memory at once, with the same results to the bit:

- its frame-wise descriptors are aggregated as soon as the stage that makes them has finished,
  by parts, and let go before the later stages run (runner.aggregate.EarlyAggregation);
- a pass that reads the audio runs as two networks where that keeps whole-track transients
  apart from the growing frame store (``split_pass``);
- a batch gives it a process that has analysed nothing else (``LongTracks.expects_long``: what a
  process keeps from other files adds to its peak).

``LongTracks.is_long`` is the one place that decides. Before decoding, only the header can be
asked (the batch's choice of a process); the analysis itself decides on the decoded length,
once the first pass has measured it, so a header that lies changes where a file runs, never
how it is analysed. Where frame values are written too (``output.frames``) every frame must
stay: no track is long.
"""

from __future__ import annotations

from typing import NamedTuple

from runner.analysis.audio_input import analysed_seconds, probe
from runner.compile import Plan
from runner.errors import AudioError

# Tracks longer than this (seconds of analysed audio) are long.
LONG_TRACK_SECONDS = 600.0


class PassPart(NamedTuple):
    """One network of a pass: its nodes, and those whose outputs it stores."""

    members: list[str]
    stored: set[str]


class LongTracks:
    """The long-track policy of one compiled profile (see the module docstring)."""

    def __init__(self, plan: Plan, seconds: float | None) -> None:
        """``seconds``: tracks analysed for longer than this are long; None: none is."""
        self.plan = plan
        self.seconds = seconds
        self._parts: dict[tuple[int, int], list[PassPart]] = {}

    @classmethod
    def for_plan(cls, plan: Plan) -> LongTracks:
        """The policy a profile gets: LONG_TRACK_SECONDS, unless it writes frame values."""
        return cls(plan, None if plan.output.frames else LONG_TRACK_SECONDS)

    @property
    def enabled(self) -> bool:
        return self.seconds is not None

    def is_long(self, seconds: float) -> bool:
        """Whether a track of ``seconds`` of analysed audio is long: the decision."""
        return self.seconds is not None and seconds > self.seconds

    def expects_long(self, path: str) -> bool:
        """Whether the file's header promises a long track (nothing is decoded); an
        unreadable file is not long (its analysis reports it)."""
        if self.seconds is None:
            return False
        try:
            return self.is_long(analysed_seconds(probe(path), self.plan.audio))
        except AudioError:
            return False

    def parts(self, stage: int, group: int, members: list[str]) -> list[PassPart]:
        """How a long track runs one pass (``members``, the ``group``-th network of
        ``stage``): see split_pass; worked out once per pass."""
        if (stage, group) not in self._parts:
            self._parts[(stage, group)] = split_pass(self.plan, members)
        return self._parts[(stage, group)]


def split_pass(plan: Plan, group: list[str]) -> list[PassPart]:
    """A long pass as two networks, each reading the analysed signal: first the chains whose
    results are single values or values for later stages, then the ones that store
    frame-wise descriptors.

    A frame store grows with the track, and whole-track work ends a pass with a transient
    of its own (RhythmExtractor2013's beat decoding: 140 MiB per hour, inside Essentia);
    in one network the two coincide. Split only where the two share nothing but what reads
    the decoded audio itself (the gain-normalised signal), which then runs in both; what
    it stores is stored once, by the frame part.

    Returns, per network in running order, its members and the nodes whose outputs it
    stores; a single part when the pass has only one kind of chain.
    """
    nodes = plan.nodes
    single_by_source: dict[str, list[bool]] = {}
    for desc in plan.descriptors:
        single_by_source.setdefault(desc.ref.key, []).append(desc.single)
    inside = set(group)
    frame_sinks, value_sinks = set(), set()
    for nid in group:
        keys = [f"{nid}.{output}" for output in nodes[nid].output_types]
        stored = [single for k in keys for single in single_by_source.get(k, [])]
        if not all(stored):
            frame_sinks.add(nid)
        elif stored or any(k in plan.recorded for k in keys):
            value_sinks.add(nid)
    if not frame_sinks or not value_sinks:
        return [PassPart(group, inside)]

    def upstream(ids: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(ids)
        while todo:
            nid = todo.pop()
            if nid not in seen:
                seen.add(nid)
                todo += [r.node for r in nodes[nid].inputs.values() if r.node in inside]
        return seen

    frames = upstream(frame_sinks)
    first = upstream(value_sinks)
    if any(r.node in inside for n in first & frames for r in nodes[n].inputs.values()):
        return [PassPart(group, inside)]  # they share a chain (a spectrum): not worth it
    return [PassPart([n for n in group if n in first], first - frames),
            PassPart([n for n in group if n in frames], frames)]
