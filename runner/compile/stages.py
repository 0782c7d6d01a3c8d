"""Arrange a checked graph into stages: shared nodes merged, unused ones dropped, each node
in the first stage it can run in, one source per network, and the streams to record.

A node whose *parameter* (or a reduced input, ``take: mean``) needs a value computed by another
node can only be configured after that node has run, so it goes into a later stage. Each file
is decoded once: a later-stage network that reads the audio reads the analysed signal that the
first stage kept on disk (runner/analysis/spool.py; only where that copy cannot be exact is the
file decoded again, to the same samples). Other streams that cross stages are recorded and
replayed. No stage keeps the whole signal in memory unless a node reads it back (``take``).
"""

from __future__ import annotations

import json

from runner.compile.plan import AUDIO, AUDIO_OUTPUTS, Descriptor, Node, Ref
from runner.profile import Profile, is_builtin


def merge_identical(nodes: dict[str, Node], order: list[str], descs: list[Descriptor]) -> None:
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


def prune(nodes: dict[str, Node], order: list[str], descs: list[Descriptor]) -> None:
    """Drop nodes that no descriptor depends on (e.g. after a profile removed descriptors)."""
    needed = {d.ref.node for d in descs}
    for nid in reversed(order):
        if nid in needed:
            needed.update(r.node for r in nodes[nid].dependencies())
    for nid in order:
        if nid not in needed:
            del nodes[nid]


def assign_stages(nodes: dict[str, Node], order: list[str]) -> int:
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


def single_replay_per_network(
    profile: Profile, nodes: dict[str, Node], order: list[str], descriptors: list[Descriptor]
) -> list[str]:
    """Essentia runs a network from one source, so each later-stage network gets exactly one.

    A later-stage network reads the analysed signal again (from the spool); the streaming chain
    between the audio and the network (e.g. gain, frame cutter, spectrum, spectral peaks) is
    re-run in that stage, as Essentia's own extractors do in their second pass. Recording every
    intermediate stream instead would multiply memory per track, and Essentia cannot drive one
    network from several recorded streams.
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
                assign_stages(nodes, order)
        if not changed:
            break
    order = [n for n in order if n in nodes]
    prune(nodes, order, descriptors)
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


def recorded_streams(nodes: dict[str, Node]) -> set[str]:
    """The ``node.output`` keys the run keeps in its work pool.

    Descriptors stream straight into the output pools; recorded are only the values that
    later nodes read (recording every frame-wise descriptor too doubled the frame pools: about
    180 MB per hour of music), and the loader's outputs for the metadata section (the analysed
    length is measured apart).
    """
    recorded = {f"{AUDIO}.{name}" for name in AUDIO_OUTPUTS if name not in ("signal", "stereo")}
    for node in nodes.values():
        for ref in node.dependencies():
            # The audio source feeds streaming nodes directly, in stage 0 and in later stages
            # (which read the spooled signal); only value readers need it recorded. Recording
            # the signal costs 53 MB per 5 minutes of 44.1 kHz audio (635 MB per hour), the
            # stereo signal twice that.
            if not node.streaming or ref.take is not None:
                recorded.add(ref.key)
            elif ref.node == AUDIO:
                continue
            elif nodes[ref.node].stage < node.stage or not nodes[ref.node].streaming:
                recorded.add(ref.key)
    return recorded
