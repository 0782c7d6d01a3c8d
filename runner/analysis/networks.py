"""Essentia streaming networks built from a compiled Plan, once, and reused for every file.

Stage 0 is one network driven by the loader chain (runner.analysis.audio_input); it also
spools the analysed signal when a later pass reads it (runner.analysis.spool). A later pass
that reads the audio is a network whose source is a loader on the spooled signal (or, where the
spool cannot be exact, on the file itself, decoded again through the same chain); one that
replays another recorded stream reads it from a VectorInput, rebuilt per file since it holds
its data.

Building a new Essentia network per file leaks its connection buffers (a few MB per
connection, never freed by Python), which would cost the music graph about 55 MB per file:
built networks are kept under a NetworkKey and reconfigured for the next file (file name,
input sample rate, parameters read from earlier stages).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.analysis import audio_input
from runner.analysis.audio_input import LOADER_PORTS, essentia_reason
from runner.analysis.spool import Spool
from runner.analysis.values import Sinks, node_params
from runner.compile import AUDIO, Node, Plan, replay_sources, stream_components
from runner.errors import AudioError


@dataclass(frozen=True)
class NetworkKey:
    """Which built network: the ``group``-th network of a ``stage``; a long track's pass may
    run as two networks (``split``, ``part`` 0 and 1, see long_tracks.split_pass); a pass
    reading the audio reads the ``spooled`` signal or decodes the file again."""

    stage: int
    group: int = 0
    part: int = 0
    split: bool = False
    spooled: bool = False
    mono: bool = False  # stage 0 of mono files, where a profile reads the stereo signal


STAGE0 = NetworkKey(stage=0)
# Essentia's AudioLoader writes only the left channel of its stereo output for a mono file: a
# loader that decoded a stereo file before hands the next mono file the previous file's right
# channel (EBU R128 loudness then measured both). A fresh loader's right channel is silence,
# as Essentia's extractors (one loader per file) see it; so mono files get a stage 0 of their
# own wherever the stereo signal is read.
STAGE0_MONO = NetworkKey(stage=0, mono=True)


@dataclass
class Network:
    """One streaming network, built once and run again for every file."""

    source: Any  # the generator: AudioLoader (stage 0, a pass on the audio) or VectorInput
    algos: dict[str, Any]  # node id -> streaming algorithm
    refreshed: list[Node]  # nodes whose parameters come from values: reconfigured per file
    keep: list[Any] = field(default_factory=list)  # other algorithms Python must keep alive
    resamplers: list[Any] = field(default_factory=list)  # take the input's rate per file
    spool: Spool | None = None  # stage 0: writes the analysed signal for the later stages


class Networks:
    """The networks of one Plan, by NetworkKey (``built``)."""

    def __init__(self, plan: Plan, essentia: Any, sinks: Sinks, keep_signal: bool = False,
                 spool_audio: bool = True) -> None:
        """``keep_signal``: also record the whole analysed signal into the work pool.
        ``spool_audio``: later passes read the analysed signal from the spool (False: they
        decode the file again)."""
        self.plan = plan
        self.essentia = essentia
        self.streaming = essentia.streaming
        self.sinks = sinks
        self.keep_signal = keep_signal
        self.spool_audio = spool_audio
        self.built: dict[NetworkKey, Network] = {}
        self.stage0_key = STAGE0  # the stage 0 of the file under way

    def stage0(self, path: str, header: dict[str, Any]) -> Network:
        """The first pass, pointed at ``path`` (built for the first file, and for the first
        mono file where the stereo signal is read: see STAGE0_MONO)."""
        mono = header.get("channels") == 1 and self._reads_stereo()
        key = self.stage0_key = STAGE0_MONO if mono else STAGE0
        net = self.built.get(key)
        if net is None:
            net = self.built[key] = self._build_stage0(path, header)
        else:
            self._point_at(net, path, header, computeMD5=self._md5_needed())
        return net

    def _reads_stereo(self) -> bool:
        return any(r.key == f"{AUDIO}.stereo" for n in self.plan.nodes_in_stage(0)
                   if n.streaming for r in n.inputs.values())

    def later(self, key: NetworkKey, source: str, part: tuple[list[str], set[str]], path: str,
              header: dict[str, Any], values: dict[str, Any], spooled: str | None) -> Network:
        """A later pass's network, ready to run on this file. ``source``: the stream it
        replays; ``part``: its members, and those whose outputs it stores; ``path`` or its
        ``spooled`` signal; ``values``: those of the earlier stages."""
        members, stored = part
        from_audio = source == f"{AUDIO}.signal"
        net = self.built.get(key)
        if net is None or not from_audio:  # a VectorInput holds its data: rebuilt per file
            net = self._build_later(members, stored, source, path, header, values, spooled)
            if from_audio:
                self.built[key] = net
        else:
            self._point_at(net, spooled or path, header)
            for node in net.refreshed:
                net.algos[node.id].configure(**node_params(self.plan, node, values))
        return net

    def drop_spooled(self) -> None:
        """Remove this file's spooled signal (the next file writes its own)."""
        stage0 = self.built.get(self.stage0_key)
        if stage0 is not None and stage0.spool is not None:
            stage0.spool.discard()

    def discard(self) -> None:
        """After a failed run a network may be half-way: build fresh ones for the next file."""
        self.drop_spooled()
        for net in self.built.values():
            if net.spool is not None:
                net.spool.close()
        self.built.clear()
        gc.collect()  # the wrappers form reference cycles

    def spools(self) -> bool:
        """Whether a later stage reads the analysed signal (so stage 0 spools it)."""
        if not self.spool_audio:
            return False
        return any(replay_sources(self.plan.nodes, group) == {f"{AUDIO}.signal"}
                   for stage in range(1, self.plan.stages)
                   for group in stream_components(self.plan.nodes, stage))

    # -- building -------------------------------------------------------------------------------
    def _point_at(self, net: Network, path: str, header: dict[str, Any], **loader: Any) -> None:
        try:
            audio_input.point_at(net.source, net.resamplers, self.plan.audio, path, header,
                                 **loader)
        except AudioError:
            self.discard()
            raise

    def _md5_needed(self) -> bool:
        key = f"{AUDIO}.md5"
        return key in self.plan.recorded or key in self.sinks.descriptors_by_source

    def _build_stage0(self, path: str, header: dict[str, Any]) -> Network:
        cfg = self.plan.audio
        chain = audio_input.loader_chain(self.streaming, cfg, path, header,
                                         md5=self._md5_needed(), measure_into=self.sinks.work)
        outputs = {f"{AUDIO}.signal": chain.signal}
        stage0 = self.plan.nodes_in_stage(0)
        consumed = {r.key for n in stage0 if n.streaming for r in n.inputs.values()}
        if f"{AUDIO}.stereo" in consumed:
            outputs[f"{AUDIO}.stereo"] = audio_input.stereo_signal(self.streaming, cfg, chain,
                                                                   header)
        outputs.update({f"{AUDIO}.{name}": getattr(chain.source, port)
                        for name, port in LOADER_PORTS.items()})
        consumed |= {f"{AUDIO}.signal", f"{AUDIO}.channels"}  # the mixer reads the channels
        for key, port in outputs.items():
            self.sinks.connect(key, port, allow_none=key not in consumed)
        if self.keep_signal and f"{AUDIO}.signal" not in self.plan.recorded:
            chain.signal >> (self.sinks.work, f"{AUDIO}.signal")
        net = Network(source=chain.source, algos={}, refreshed=[], keep=chain.keep,
                      resamplers=chain.resamplers)
        if self.spools():
            net.spool = Spool(self.essentia, cfg.sample_rate)
            net.keep += net.spool.attach(chain.signal)
        net.algos = self._wire(stage0, outputs, values={})
        return net

    def _build_later(self, members_ids: list[str], stored: set[str], key: str, path: str,
                     header: dict[str, Any], values: dict[str, Any],
                     spooled: str | None) -> Network:
        members = [self.plan.nodes[n] for n in self.plan.order if n in set(members_ids)]
        if key == f"{AUDIO}.signal":
            # The analysed signal as stage 0 spooled it, or else the file decoded again through
            # the same (deterministic) chain as in stage 0: the same samples, without keeping
            # an hour of audio (635 MB) in memory. Replaying a recorded signal sample by sample
            # through VectorInput would also cost a scheduler round per sample (minutes per
            # track).
            chain = audio_input.loader_chain(self.streaming, self.plan.audio, spooled or path,
                                             header, md5=False, spooled=spooled is not None)
            for name, loader_port in LOADER_PORTS.items():
                if name != "channels":  # the mixer reads the channels
                    getattr(chain.source, loader_port) >> None
            net = Network(source=chain.source, algos={}, refreshed=[], keep=chain.keep,
                          resamplers=chain.resamplers)
            port = chain.signal
        else:
            data = values[key]
            if isinstance(data, np.ndarray):
                data = np.ascontiguousarray(data, dtype=np.float32)
            source = self.streaming.VectorInput(data)
            net, port = Network(source=source, algos={}, refreshed=[]), source.data
        net.algos = self._wire(members, {key: port}, values, stored)
        net.refreshed = [n for n in members if n.streaming and n.param_refs]
        return net

    def _wire(self, members: list[Node], sources: dict[str, Any], values: dict[str, Any],
              stored: set[str] | None = None) -> dict[str, Any]:
        """Instantiate and wire the streaming nodes of one network; ``stored``: the nodes
        whose outputs go to the pools here (all of them unless given)."""
        algos: dict[str, Any] = {}
        for node in members:
            if not node.streaming:
                continue
            try:
                algos[node.id] = getattr(self.streaming, node.algorithm)(
                    **node_params(self.plan, node, values)
                )
            except AudioError:
                raise
            except Exception as exc:
                raise self.plan.profile.error(node.path + ("params",),
                                              essentia_reason(exc)) from None
        consumed: set[str] = set()
        for node in members:
            if not node.streaming:
                continue
            for port, ref in node.inputs.items():
                src = sources[ref.key] if ref.key in sources else getattr(algos[ref.node],
                                                                          ref.output)
                src >> getattr(algos[node.id], port)
                consumed.add(ref.key)
        for node in members:
            if not node.streaming:
                continue
            for output in node.output_types:
                key = f"{node.id}.{output}"
                port = getattr(algos[node.id], output)
                if stored is None or node.id in stored:
                    self.sinks.connect(key, port, allow_none=key not in consumed)
                elif key not in consumed:
                    port >> None
        return algos
