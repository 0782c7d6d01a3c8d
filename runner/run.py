"""Run a compiled Plan on one audio file: decode it once, stream it, collect pools.

Stage 0 is one Essentia streaming network driven by the loader chain
(AudioLoader -> MonoMixer -> Resample [-> Trimmer]), the same chain as Essentia's
MonoLoader/EasyLoader. While it runs, the analysed signal is also written to disk (see
runner.spool), and a later-stage network that reads the audio reads that file (on long
tracks a pass may run as two networks, each reading it, see Executor._split), so the decoded
signal is never held in memory and the file is decoded once. Where the spool cannot be exact,
those networks decode the file again through the same chain, as Essentia's extractors do. A
network that reads another recorded stream replays it (VectorInput). Standard-mode and derive
nodes of a stage work on recorded values first.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from runner import derive, multichannel, registry
from runner.compile import AUDIO, AUDIO_OUTPUTS, Node, Plan, Ref, replay_sources, stream_components
from runner.errors import AudioError
from runner.spool import Spool
from runner.tagwhitelist import TAG_WHITELIST

# Lengths in seconds (Essentia's Duration, float32 like Essentia's own metadata), measured while
# the signal streams by: the analysed (trimmed) signal, and the whole input when trimming.
_ANALYSED = "audio.analysed_seconds"
_UNTRIMMED = "audio.untrimmed_seconds"
# The analysed signal's energy and mean, per block of _LEVEL_BLOCK samples: its level
# without a DC offset (silence).
_ENERGY = "audio.block_energy"
_MEAN = "audio.block_mean"
_LEVEL_BLOCK = 65536
# Below this mean power (-90 dBFS, FreesoundExtractor's silence threshold) a file is silent.
SILENT_POWER = 1e-9
# A decoded length shorter than the header's by more than this (seconds, or this fraction of
# the header's, whichever is larger) is reported: a truncated or damaged file. Headers give
# whole seconds (MetadataReader), and a VBR MP3 without a Xing header only an estimate.
SHORTFALL_SECONDS = 0.5
SHORTFALL_FRACTION = 0.05

# Essentia's loader outputs behind the built-in `audio` node.
_LOADER_PORTS = {
    "sample_rate": "sampleRate",
    "channels": "numberChannels",
    "md5": "md5",
    "bit_rate": "bit_rate",
    "codec": "codec",
}


@dataclass
class Analysis:
    """Everything one run produced, before aggregation."""

    frames: Any  # essentia Pool: frame-wise descriptors, by descriptor name
    singles: dict[str, Any]  # one value per track, by descriptor name
    values: dict[str, Any] = field(default_factory=dict)  # audio.signal, when kept
    audio: dict[str, Any] = field(default_factory=dict)  # properties of the input
    models: Any = None  # runner.models.stage.ModelResults, when the profile has models
    # What makes the result doubtful (silent, truncated, downmixed, undefined statistics):
    # one line each, for metadata.warnings and the user.
    warnings: list[str] = field(default_factory=list)
    # statistics that do not exist, written as null: name -> why (runner.aggregate)
    undefined: dict[str, str] = field(default_factory=dict)


def check_audio_file(path: str) -> None:
    """Fail early, with one line, on inputs that cannot be audio."""
    if not os.path.exists(path):
        raise AudioError(path, "no such file")
    if os.path.isdir(path):
        raise AudioError(path, "is a folder (give a file)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file")


def probe(path: str, all_tags: bool = False) -> dict[str, Any]:
    """Read the header (sample rate, channels, duration, tags) without decoding.

    Tags are filtered by the music extractor's whitelist unless ``all_tags`` (FreesoundExtractor
    keeps every tag).
    """
    std = registry.quiet_essentia().standard
    try:
        result = std.MetadataReader(
            filename=path, failOnError=True, tagPoolName="metadata.tags",
            filterMetadata=not all_tags, filterMetadataTags=TAG_WHITELIST,
        )()
    except Exception as exc:
        reason = _reason(exc)
        if reason != "not a supported audio file":
            reason = f"cannot read audio: {reason}"
        raise AudioError(path, reason) from None
    tags_pool = result[7]
    tags = pool_values(tags_pool)
    return {
        "duration": result[8],
        "bit_rate": result[9],
        "sample_rate": float(result[10]),
        "channels": result[11],
        "tags": tags,
    }


def pool_values(pool: Any) -> dict[str, Any]:
    """Every entry of an Essentia Pool by name.

    ``pool[name]`` lists all of the pool's names to check the key first, so reading n entries
    that way costs O(n^2): about 40 ms per file for the music profile's pools.
    """
    cpp = pool.cppPool
    return {name: cpp.__value__(name, cpp.__keyType__(name)) for name in cpp.descriptorNames()}


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to call
        return None


def give_back_freed_memory() -> None:
    """Return memory just freed (a pass's recorded streams, a removed descriptor) to the system.

    glibc keeps freed heap memory for reuse, but pools hold many small blocks that later,
    larger allocations do not fit, so without this the process grew by the new allocations on
    top of the freed ones (on 60 minutes: +184 MiB over the frame pool while aggregating).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _reason(exc: BaseException) -> str:
    """Essentia's exception text, shortened to the part a person can act on."""
    text = str(exc).strip()
    if "does not seem to be of a supported filetype" in text:
        return "not a supported audio file"
    for prefix in ("Error while configuring MetadataReader:", "AudioLoader:"):
        text = text.replace(prefix, "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclass
class _Network:
    """One streaming network, built once and run again for every file (see Executor)."""

    source: Any  # the generator: AudioLoader (stage 0) or the replay MonoLoader/VectorInput
    algos: dict[str, Any]  # node id -> streaming algorithm
    refreshed: list[Node]  # nodes whose parameters come from values: reconfigured per file
    keep: list[Any] = field(default_factory=list)  # other algorithms Python must keep alive
    resamplers: list[Any] = field(default_factory=list)  # take the input's rate per file
    spool: Spool | None = None  # stage 0: writes the analysed signal for the later stages


class Executor:
    """Runs one Plan on many files; the Plan is compiled once and reused.

    The streaming networks are built for the first file and then reconfigured (file names,
    input sample rate, parameters read from earlier stages) and run again for every file.
    Building a new Essentia network per file leaks its connection buffers (a few MB per
    connection, never freed by Python), which would cost the music graph about 55 MB per file.
    """

    def __init__(self, plan: Plan, keep_signal: bool = False) -> None:
        """``keep_signal``: also record the whole analysed signal (``audio.signal`` in the
        values), for readers outside the graph (the model stage); 635 MB per hour."""
        self.plan = plan
        self.keep_signal = keep_signal
        self.essentia = registry.quiet_essentia()
        self.streaming = self.essentia.streaming
        self.standard = self.essentia.standard
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
        # Pools and networks live as long as the executor; pools are cleared per file.
        self.frames = self.essentia.Pool()
        self.singles = self.essentia.Pool()
        self.work = self.essentia.Pool()
        self.networks: dict[tuple[int, int], _Network] = {}
        # Called after each stage with (stage, frame pool, analysed seconds): a caller may
        # aggregate and remove the descriptors that stage finished (see Extractor).
        self.after_stage: Callable[[int, Any, float], None] | None = None
        # Inputs longer than this run each pass as two networks (see _split); None: never.
        self.split_seconds: float | None = None
        self.splits: dict[tuple[int, int], list[tuple[list[str], set[str]]]] = {}
        # Later stages read the analysed signal from the spool (False: decode it again).
        self.spool_audio = True
        self.spooled: str | None = None  # this file's spooled signal, while it is analysed

    def analyse(self, path: str) -> Analysis:
        """Analyse one file. The returned Analysis is valid until the next call."""
        check_audio_file(path)
        header = probe(path, all_tags=self.plan.audio.tags == "all")
        if header["sample_rate"] <= 0:
            raise AudioError(path, "unsupported or corrupt audio (no sample rate in its header)")
        for pool in (self.frames, self.singles, self.work):
            pool.clear()
        values: dict[str, Any] = {}
        # More than two channels: Essentia's loader refuses them; the analysis reads a stereo
        # downmix instead (runner.multichannel), like any stereo file.
        downmixed = multichannel.downmix(path, header["channels"]) if (
            header["channels"] > 2) else None
        source = downmixed.wav if downmixed is not None else path
        try:
            self._run_stage0(source, header)
            self._stage_done(0, values)
            for stage in range(1, self.plan.stages):
                self._values_stage(stage, values)
                for index, group in enumerate(stream_components(self.plan.nodes, stage)):
                    self._run_group(stage, index, group, source, header, values)
                self._stage_done(stage, values)
        except AudioError as exc:
            self._discard_networks()
            if exc.audio_path != path:  # the downmix, or "<input>" (runner._take)
                raise AudioError(path, str(exc).removeprefix(f"{exc.audio_path}: ")) from None
            raise
        except RuntimeError as exc:
            self._discard_networks()
            samples = _tiny(source, header)
            if samples is not None:  # Essentia's algorithms refusing a few samples
                raise AudioError(path, f"too short to analyse: {samples} sample"
                                 f"{'s' if samples != 1 else ''} of audio") from None
            raise AudioError(path, f"analysis failed: {_reason(exc)}") from None
        except BaseException:
            self._discard_networks()
            raise
        finally:
            self._drop_spooled()
            if downmixed is not None:
                downmixed.remove()
        audio = dict(header)
        for name in _LOADER_PORTS:
            key = f"{AUDIO}.{name}"
            if key in values and len(values[key]):
                audio[name] = values[key][-1]
        warnings = []
        if downmixed is not None:  # the original's properties, not the downmix's
            audio.update(channels=header["channels"], codec=downmixed.codec)
            audio.pop("md5", None)  # Essentia's md5 of the encoded payload: not computable
            warnings.append(downmixed.warning())
        analysed = float(values[_ANALYSED][-1])
        audio["analysis_length"] = analysed
        audio["length"] = float(values[_UNTRIMMED][-1]) if _UNTRIMMED in values else analysed
        if analysed == 0:
            raise AudioError(path, "no audio in the analysed range (empty signal)")
        warnings += _doubts(audio["length"], _promised_seconds(path, header),
                            analysed * self.plan.audio.sample_rate,
                            values.get(_ENERGY), values.get(_MEAN))
        singles = {}
        stored = pool_values(self.singles)
        for desc in self.plan.descriptors:
            if desc.single and desc.name in stored:
                tokens = _tokens(stored[desc.name], self._type(desc.ref.key))
                singles[desc.name] = tokens[-1] if len(tokens) == 1 else tokens
        # Only the signal (for the model stage) is read after this; the recorded streams the
        # stages read (HPCP frames, for one: 40 MB per hour) are let go before aggregation.
        kept = {key: values[key] for key in (f"{AUDIO}.signal",) if key in values}
        del values
        return Analysis(frames=self.frames, singles=singles, values=kept, audio=audio,
                        warnings=warnings)

    def _stage_done(self, stage: int, values: dict[str, Any]) -> None:
        """After a pass: its recorded streams become values (the pool's copy is let go before
        anything else is allocated), then the caller's hook (see ``after_stage``)."""
        values.update(self._read_recorded(stage))
        self.work.clear()
        give_back_freed_memory()
        if self.after_stage is not None and values.get(_ANALYSED):
            self.after_stage(stage, self.frames, float(values[_ANALYSED][-1]))

    def _discard_networks(self) -> None:
        """After a failed run a network may be half-way: build fresh ones for the next file."""
        self._drop_spooled()
        for net in self.networks.values():
            if net.spool is not None:
                net.spool.close()
        self.networks.clear()
        gc.collect()  # the wrappers form reference cycles

    def _drop_spooled(self) -> None:
        self.spooled = None
        stage0 = self.networks.get((0, 0))
        if stage0 is not None and stage0.spool is not None:
            stage0.spool.discard()

    def _spools(self) -> bool:
        """Whether a later stage reads the analysed signal (so stage 0 spools it)."""
        if not self.spool_audio:
            return False
        return any(replay_sources(self.plan.nodes, group) == {f"{AUDIO}.signal"}
                   for stage in range(1, self.plan.stages)
                   for group in stream_components(self.plan.nodes, stage))

    # -- stage 0: the loader chain and everything that streams from it -----------------------
    def _run_stage0(self, path: str, header: dict[str, Any]) -> None:
        net = self.networks.get((0, 0))
        if net is None:
            net = self.networks[(0, 0)] = self._build_stage0(path, header)
        else:
            self._reload(net, path, header, computeMD5=self._md5_needed())
        if net.spool is not None:
            net.spool.begin(self._seconds(header) * self.plan.audio.sample_rate)
        try:
            self.essentia.run(net.source)
            self.essentia.reset(net.source)
        except BaseException:
            if net.spool is not None:
                net.spool.end()
            raise
        if net.spool is not None:
            self.spooled = net.spool.finish()

    def _reload(self, net: _Network, path: str, header: dict[str, Any], **loader: Any) -> None:
        """Point a built network's loader chain at the next file."""
        try:
            net.source.configure(filename=path, **loader)
        except Exception as exc:
            self._discard_networks()
            raise AudioError(path, f"cannot decode: {_reason(exc)}") from None
        cfg = self.plan.audio
        for resampler in net.resamplers:
            resampler.configure(inputSampleRate=header["sample_rate"],
                                outputSampleRate=cfg.sample_rate, quality=cfg.resample_quality)

    def _md5_needed(self) -> bool:
        return f"{AUDIO}.md5" in self.plan.recorded or f"{AUDIO}.md5" in self.descriptors_by_source

    def _loader_chain(self, path: str, header: dict[str, Any], md5: bool,
                      lengths: bool, spooled: bool = False) -> tuple[_Network, Any]:
        """AudioLoader -> MonoMixer -> Resample [-> Trimmer]: a network and its mono signal.

        With ``lengths``, the analysed length (and the input's, when trimming) is measured on
        the way (Duration), in seconds. A ``spooled`` signal (runner.spool) is resampled and
        trimmed already: AudioLoader -> MonoMixer.
        """
        es = self.streaming
        cfg = self.plan.audio
        try:
            loader = es.AudioLoader(filename=path, computeMD5=md5)
        except Exception as exc:
            raise AudioError(path, f"cannot decode: {_reason(exc)}") from None
        mono = es.MonoMixer(type=cfg.downmix)
        loader.audio >> mono.audio
        loader.numberChannels >> mono.numberChannels
        if spooled:
            return _Network(source=loader, algos={}, refreshed=[], keep=[mono]), mono.audio
        resample = es.Resample(inputSampleRate=header["sample_rate"],
                               outputSampleRate=cfg.sample_rate, quality=cfg.resample_quality)
        mono.audio >> resample.signal
        signal = resample.signal
        net = _Network(source=loader, algos={}, refreshed=[], keep=[mono, resample],
                       resamplers=[resample])
        if self._trimming():
            trim = es.Trimmer(sampleRate=cfg.sample_rate, **self._trim_args())
            signal >> trim.signal
            net.keep.append(trim)
            if lengths:
                net.keep.append(self._duration(signal, _UNTRIMMED))
            signal = trim.signal
        if lengths:
            net.keep.append(self._duration(signal, _ANALYSED))
            net.keep += self._level(signal)
        return net, signal

    def _level(self, signal: Any) -> list[Any]:
        """The signal's energy per block (a few values per minute), for its level."""
        es = self.streaming
        cutter = es.FrameCutter(frameSize=_LEVEL_BLOCK, hopSize=_LEVEL_BLOCK, startFromZero=True,
                                validFrameThresholdRatio=0, lastFrameToEndOfFile=False,
                                silentFrames="keep")
        energy, mean = es.Energy(), es.Mean()
        signal >> cutter.signal
        cutter.frame >> energy.array
        cutter.frame >> mean.array
        energy.energy >> (self.work, _ENERGY)
        mean.mean >> (self.work, _MEAN)
        return [cutter, energy, mean]

    def _duration(self, signal: Any, key: str) -> Any:
        duration = self.streaming.Duration(sampleRate=self.plan.audio.sample_rate)
        signal >> duration.signal
        duration.duration >> (self.work, key)
        return duration

    def _trimming(self) -> bool:
        cfg = self.plan.audio
        return cfg.start_time > 0 or cfg.end_time is not None

    def _trim_args(self) -> dict[str, float]:
        cfg = self.plan.audio
        return {"startTime": cfg.start_time,
                "endTime": cfg.end_time if cfg.end_time is not None else 1e6}

    def _build_stage0(self, path: str, header: dict[str, Any]) -> _Network:
        es = self.streaming
        cfg = self.plan.audio
        net, signal = self._loader_chain(path, header, md5=self._md5_needed(), lengths=True)
        loader = net.source
        outputs = {f"{AUDIO}.signal": signal}
        stage0 = self.plan.nodes_in_stage(0)
        consumed = {r.key for n in stage0 if n.streaming for r in n.inputs.values()}
        if f"{AUDIO}.stereo" in consumed:
            # Both channels, resampled and trimmed, for measures defined on stereo (EBU R128).
            demux, mux = es.StereoDemuxer(), es.StereoMuxer()
            loader.audio >> demux.audio
            for side in ("left", "right"):
                rs = es.Resample(inputSampleRate=header["sample_rate"],
                                 outputSampleRate=cfg.sample_rate, quality=cfg.resample_quality)
                getattr(demux, side) >> rs.signal
                rs.signal >> getattr(mux, side)
                net.keep.append(rs)
                net.resamplers.append(rs)
            stereo_trim = es.StereoTrimmer(sampleRate=cfg.sample_rate, **self._trim_args())
            mux.audio >> stereo_trim.signal
            outputs[f"{AUDIO}.stereo"] = stereo_trim.signal
            net.keep += [demux, mux, stereo_trim]
        outputs.update({f"{AUDIO}.{name}": getattr(loader, port)
                        for name, port in _LOADER_PORTS.items()})
        consumed |= {f"{AUDIO}.signal", f"{AUDIO}.channels"}  # the mixer reads the channels
        for key, port in outputs.items():
            self._sink(key, port, allow_none=key not in consumed)
        if self.keep_signal and f"{AUDIO}.signal" not in self.plan.recorded:
            signal >> (self.work, f"{AUDIO}.signal")
        if self._spools():
            net.spool = Spool(self.essentia, cfg.sample_rate)
            net.keep += net.spool.attach(signal)
        net.algos = self._build(stage0, outputs, values={})
        return net

    # -- later stages ---------------------------------------------------------------------------
    def _values_stage(self, stage: int, values: dict[str, Any]) -> None:
        """Standard-mode algorithms and derive functions of this stage, in graph order."""
        for node in self.plan.nodes_in_stage(stage):
            if node.streaming:
                continue
            args = {port: self._take(values, ref) for port, ref in node.inputs.items()}
            if node.function:
                fn = derive.FUNCTIONS[node.function]
                results = fn.run(**args, **{**fn.params, **node.params})
            else:
                algo = getattr(self.standard, node.algorithm)(**self._params(node, values))
                outs = algo(*[args[p] for p in node.input_types])
                if len(node.output_types) == 1:
                    outs = (outs,)
                results = dict(zip(node.output_types, outs, strict=True))
            for output, value in results.items():
                key = f"{node.id}.{output}"
                values[key] = [value]  # one token, like a stream that produced one value
                for name, single in self.descriptors_by_source.get(key, []):
                    _store(self.singles if single else self.frames, name, value, single)

    def _run_group(self, stage: int, index: int, group: list[str], path: str,
                   header: dict[str, Any], values: dict[str, Any]) -> None:
        (key,) = replay_sources(self.plan.nodes, group)
        from_audio = key == f"{AUDIO}.signal"
        parts = [(group, set(group))]
        if from_audio and self._long(header):
            if (stage, index) not in self.splits:
                self.splits[(stage, index)] = self._split(group)
            parts = self.splits[(stage, index)]
        spooled = self.spooled if from_audio else None
        for part, (members, stored) in enumerate(parts):
            net_key = (stage, index, part, spooled is not None)
            net = self.networks.get(net_key)
            if net is None or not from_audio:  # a VectorInput holds its data: rebuilt per file
                net = self._build_group(members, stored, key, path, header, values, spooled)
                if from_audio:
                    self.networks[net_key] = net
            else:
                self._reload(net, spooled or path, header)
                for node in net.refreshed:
                    net.algos[node.id].configure(**self._params(node, values))
            self.essentia.run(net.source)
            self.essentia.reset(net.source)

    def is_long(self, path: str) -> bool:
        """Whether this file's passes would run split (read from its header only)."""
        if self.split_seconds is None:
            return False
        try:
            return self._long(probe(path))
        except AudioError:
            return False  # analyse() reports it

    def _long(self, header: dict[str, Any]) -> bool:
        if self.split_seconds is None:
            return False
        return self._seconds(header) > self.split_seconds

    def _seconds(self, header: dict[str, Any]) -> float:
        """The analysed length the header promises (the decoder has the last word)."""
        cfg = self.plan.audio
        seconds = float(header["duration"]) - cfg.start_time
        if cfg.end_time is not None:
            seconds = min(seconds, cfg.end_time - cfg.start_time)
        return max(seconds, 0.0)

    def _split(self, group: list[str]) -> list[tuple[list[str], set[str]]]:
        """A long pass as two networks, each decoding the file: first the chains whose
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
        nodes = self.plan.nodes
        inside = set(group)
        frame_sinks, value_sinks = set(), set()
        for nid in group:
            keys = [f"{nid}.{output}" for output in nodes[nid].output_types]
            stored = [single for k in keys for _, single in self.descriptors_by_source.get(k, [])]
            if not all(stored):
                frame_sinks.add(nid)
            elif stored or any(k in self.plan.recorded for k in keys):
                value_sinks.add(nid)
        if not frame_sinks or not value_sinks:
            return [(group, inside)]

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
            return [(group, inside)]  # they share a chain (a spectrum): not worth running twice
        return [([n for n in group if n in first], first - frames),
                ([n for n in group if n in frames], frames)]

    def _build_group(self, group: list[str], stored: set[str], key: str, path: str,
                     header: dict[str, Any], values: dict[str, Any],
                     spooled: str | None = None) -> _Network:
        members = [self.plan.nodes[n] for n in self.plan.order if n in set(group)]
        if key == f"{AUDIO}.signal":
            # The analysed signal as stage 0 spooled it, or else the file decoded again through
            # the same (deterministic) chain as in stage 0: the same samples, without keeping
            # an hour of audio (635 MB) in memory. Replaying a recorded signal sample by sample
            # through VectorInput would also cost a scheduler round per sample (minutes per
            # track).
            net, port = self._loader_chain(spooled or path, header, md5=False, lengths=False,
                                           spooled=spooled is not None)
            for name, loader_port in _LOADER_PORTS.items():
                if name != "channels":  # the mixer reads the channels
                    getattr(net.source, loader_port) >> None
        else:
            data = values[key]
            if isinstance(data, np.ndarray):
                data = np.ascontiguousarray(data, dtype=np.float32)
            source = self.streaming.VectorInput(data)
            net, port = _Network(source=source, algos={}, refreshed=[]), source.data
        net.algos = self._build(members, {key: port}, values, stored)
        net.refreshed = [n for n in members if n.streaming and n.param_refs]
        return net

    # -- helpers ----------------------------------------------------------------------------------
    def _params(self, node: Node, values: dict[str, Any]) -> dict[str, Any]:
        params = dict(node.params)
        for pname, ref in node.param_refs.items():
            value = self._take(values, ref)
            kind = registry.info(node.algorithm, node.standard).params[pname].type
            params[pname] = _as_param(value, kind)
        return params

    def _take(self, values: dict[str, Any], ref: Ref) -> Any:
        take = ref.take or "all"
        if ref.key not in values:
            if take == "all":  # a stream that carried no token (audio shorter than a frame)
                return []
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
        array = np.asarray(seq, dtype=np.float32)
        if take == "mean":
            return array.mean(axis=0)
        return np.median(array, axis=0).astype(np.float32)

    def _build(self, members: list[Node], sources: dict[str, Any], values: dict[str, Any],
               stored: set[str] | None = None) -> dict[str, Any]:
        """Instantiate and wire the streaming nodes of one network; ``stored``: the nodes
        whose outputs go to the pools here (all of them unless given)."""
        algos: dict[str, Any] = {}
        for node in members:
            if not node.streaming:
                continue
            try:
                algos[node.id] = getattr(self.streaming, node.algorithm)(
                    **self._params(node, values)
                )
            except AudioError:
                raise
            except Exception as exc:
                raise self.plan.profile.error(node.path + ("params",), _reason(exc)) from None
        consumed: set[str] = set()
        for node in members:
            if not node.streaming:
                continue
            for port, ref in node.inputs.items():
                if ref.key in sources:
                    src = sources[ref.key]
                else:
                    src = getattr(algos[ref.node], ref.output)
                src >> getattr(algos[node.id], port)
                consumed.add(ref.key)
        for node in members:
            if not node.streaming:
                continue
            for output in node.output_types:
                key = f"{node.id}.{output}"
                port = getattr(algos[node.id], output)
                if stored is None or node.id in stored:
                    self._sink(key, port, allow_none=key not in consumed)
                elif key not in consumed:
                    port >> None
        return algos

    def _sink(self, key: str, port: Any, allow_none: bool) -> None:
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

    def _read_recorded(self, stage: int) -> dict[str, Any]:
        """The streams recorded in this stage, as token sequences (Essentia's Pool collapses
        a single token)."""
        recorded = pool_values(self.work)
        frames = self.frames.cppPool
        present = set(frames.descriptorNames())
        for key, name in self.recorded_frames.items():
            node = self.plan.nodes.get(key.partition(".")[0])
            if node is not None and node.streaming and node.stage == stage and name in present:
                recorded[key] = frames.__value__(name, frames.__keyType__(name))
        return {key: _tokens(value, self._type(key)) for key, value in recorded.items()}

    def _type(self, key: str) -> str:
        node_id, _, output = key.partition(".")
        if key in (_ANALYSED, _UNTRIMMED, _ENERGY, _MEAN):
            return "real"
        if node_id == AUDIO:
            return AUDIO_OUTPUTS[output]
        node = self.plan.nodes[node_id]
        return node.output_types[output]


TINY_SAMPLES = 64  # fewer decoded samples than this: "too short" when an analysis fails


def _tiny(path: str, header: dict[str, Any]) -> int | None:
    """The number of samples of a file under a second long, if it has fewer than
    TINY_SAMPLES (a few samples: some Essentia algorithms refuse to run on them)."""
    if float(header["duration"]) >= 1:
        return None
    try:
        std = registry.quiet_essentia().standard
        samples = len(std.AudioLoader(filename=path)()[0])
    except Exception:  # noqa: BLE001 - only an explanation for a failure already reported
        return None
    return samples if samples < TINY_SAMPLES else None


def _promised_seconds(path: str, header: dict[str, Any]) -> float:
    """The length the file's header promises: MetadataReader's (whole seconds), or for a
    RIFF WAV the size of its data chunk (TagLib gives 0 for a truncated WAV)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return float(header["duration"])
            byte_rate = 0
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    break
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt ":
                    fmt = handle.read(size + size % 2)
                    byte_rate = int.from_bytes(fmt[8:12], "little")
                    continue
                if chunk[:4] == b"data":
                    if byte_rate > 0 and size != 0xFFFFFFFF:  # streamed WAVs leave it unset
                        return size / byte_rate
                    break
                handle.seek(size + size % 2, os.SEEK_CUR)
    except OSError:
        pass
    return float(header["duration"])


def _doubts(decoded: float, promised: float, samples: float, energy: Any, mean: Any
            ) -> list[str]:
    """Warnings about the audio itself: decoded much shorter than its header says (a
    truncated or damaged file), or silent: its power without its DC offset (per-block
    energies and means of _LEVEL_BLOCK samples, the last block zero-padded) below
    SILENT_POWER."""
    found = []
    if promised - decoded > max(SHORTFALL_SECONDS, SHORTFALL_FRACTION * promised):
        found.append(f"truncated: decoded {decoded:.2f} s of audio, its header says "
                     f"{round(promised, 1):g} s (a damaged or incomplete file?)")
    if energy is None or mean is None or samples <= 0:
        return found
    power = float(np.sum(np.asarray(energy, dtype=np.float64))) / samples
    offset = float(np.sum(np.asarray(mean, dtype=np.float64))) * _LEVEL_BLOCK / samples
    level = max(power - offset * offset, 0.0)
    if power == 0.0:
        found.append("silent: digital silence (every sample is 0); the descriptors describe "
                     "silence (tempo, key and the like mean nothing)")
    elif level < SILENT_POWER:
        rms = f"{10 * np.log10(level):.1f} dBFS" if level > 0 else "-inf dBFS"
        found.append(f"silent: the level is {rms} (RMS without DC offset), below -90 dBFS; "
                     "the descriptors describe near silence (tempo, key and the like mean "
                     "nothing)")
    return found


def _tokens(value: Any, kind: str) -> Any:
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


def _store(pool: Any, name: str, value: Any, single: bool) -> None:
    if single:
        pool.add(name, value)
        return
    for item in np.atleast_1d(value):
        pool.add(name, item)
