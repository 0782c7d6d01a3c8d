"""Run a compiled Plan on one audio file: decode once, stream every stage, collect pools.

Stage 0 is one Essentia streaming network driven by the loader chain
(AudioLoader -> MonoMixer -> Resample [-> Trimmer]), the same chain as Essentia's
MonoLoader/EasyLoader. Later stages are networks driven by a replay of a recorded stream
(VectorInput), preceded by standard-mode and derive nodes that work on recorded values.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner import derive, registry
from runner.compile import AUDIO, AUDIO_OUTPUTS, Node, Plan, Ref, replay_sources, stream_components
from runner.errors import AudioError
from runner.tagwhitelist import TAG_WHITELIST

_UNTRIMMED = "audio.untrimmed"  # the resampled signal before trimming (only when trimming)

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
    values: dict[str, Any] = field(default_factory=dict)  # recorded node.output values
    audio: dict[str, Any] = field(default_factory=dict)  # properties of the input


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


def probe(path: str) -> dict[str, Any]:
    """Read the header (sample rate, channels, duration, tags) without decoding."""
    std = registry.quiet_essentia().standard
    try:
        result = std.MetadataReader(
            filename=path, failOnError=True, tagPoolName="metadata.tags",
            filterMetadata=True, filterMetadataTags=TAG_WHITELIST,
        )()
    except Exception as exc:
        reason = _reason(exc)
        if reason != "not a supported audio file":
            reason = f"cannot read audio: {reason}"
        raise AudioError(path, reason) from None
    tags_pool = result[7]
    tags = {name: tags_pool[name] for name in tags_pool.descriptorNames()}
    return {
        "duration": result[8],
        "bit_rate": result[9],
        "sample_rate": float(result[10]),
        "channels": result[11],
        "tags": tags,
    }


def _reason(exc: BaseException) -> str:
    """Essentia's exception text, shortened to the part a person can act on."""
    text = str(exc).strip()
    if "does not seem to be of a supported filetype" in text:
        return "not a supported audio file"
    for prefix in ("Error while configuring MetadataReader:", "AudioLoader:"):
        text = text.replace(prefix, "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class Executor:
    """Runs one Plan on many files; the Plan is compiled once and reused."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.essentia = registry.quiet_essentia()
        self.streaming = self.essentia.streaming
        self.standard = self.essentia.standard
        self.descriptors_by_source: dict[str, list[tuple[str, bool]]] = {}
        for desc in plan.descriptors:
            self.descriptors_by_source.setdefault(desc.ref.key, []).append(
                (desc.name, desc.single)
            )

    def analyse(self, path: str) -> Analysis:
        check_audio_file(path)
        header = probe(path)
        if header["sample_rate"] <= 0:
            raise AudioError(path, "unsupported or corrupt audio (no sample rate in its header)")
        frames = self.essentia.Pool()
        singles_pool = self.essentia.Pool()
        work = self.essentia.Pool()
        values: dict[str, Any] = {}
        self._replay_file: str | None = None
        try:
            self._stage0(path, header, frames, singles_pool, work)
            values.update(self._read_recorded(work, 0))
            for stage in range(1, self.plan.stages):
                self._values_stage(stage, values, frames, singles_pool)
                work = self.essentia.Pool()
                for group in stream_components(self.plan.nodes, stage):
                    self._stream_group(group, values, frames, singles_pool, work)
                values.update(self._read_recorded(work, stage))
        except AudioError:
            raise
        except RuntimeError as exc:
            raise AudioError(path, f"analysis failed: {_reason(exc)}") from None
        finally:
            if self._replay_file:
                os.unlink(self._replay_file)
        signal = values.get(f"{AUDIO}.signal")
        audio = dict(header)
        for name in _LOADER_PORTS:
            key = f"{AUDIO}.{name}"
            if key in values and len(values[key]):
                audio[name] = values[key][-1]
        if signal is not None:
            audio["analysis_length"] = len(signal) / self.plan.audio.sample_rate
            audio["length"] = len(values.get(_UNTRIMMED, signal)) / self.plan.audio.sample_rate
            if len(signal) == 0:
                raise AudioError(path, "no audio in the analysed range (empty signal)")
        singles = {}
        for desc in self.plan.descriptors:
            if desc.single and desc.name in singles_pool.descriptorNames():
                tokens = _tokens(singles_pool[desc.name], self._type(desc.ref.key))
                singles[desc.name] = tokens[-1] if len(tokens) == 1 else tokens
        return Analysis(frames=frames, singles=singles, values=values, audio=audio)

    # -- stage 0: the loader chain and everything that streams from it -----------------------
    def _stage0(self, path: str, header: dict[str, Any], frames: Any, singles: Any,
                work: Any) -> None:
        es = self.streaming
        cfg = self.plan.audio
        needed = {key for key in self.plan.recorded if key.startswith(AUDIO + ".")}
        needed |= {k for k in self.descriptors_by_source if k.startswith(AUDIO + ".")}
        try:
            loader = es.AudioLoader(filename=path, computeMD5=f"{AUDIO}.md5" in needed)
        except Exception as exc:
            raise AudioError(path, f"cannot decode: {_reason(exc)}") from None
        trimming = cfg.start_time > 0 or cfg.end_time is not None
        trim_args = {"startTime": cfg.start_time,
                     "endTime": cfg.end_time if cfg.end_time is not None else 1e6}
        mono = es.MonoMixer(type=cfg.downmix)
        loader.audio >> mono.audio
        loader.numberChannels >> mono.numberChannels
        resample = es.Resample(inputSampleRate=header["sample_rate"],
                               outputSampleRate=cfg.sample_rate, quality=cfg.resample_quality)
        mono.audio >> resample.signal
        signal = resample.signal
        keep: list[Any] = [mono, resample]  # Python must hold every algorithm until the run ends
        if trimming:
            trim = es.Trimmer(sampleRate=cfg.sample_rate, **trim_args)
            signal >> trim.signal
            signal >> (work, _UNTRIMMED)  # for the input's full length
            signal = trim.signal
            keep.append(trim)
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
                keep.append(rs)
            stereo_trim = es.StereoTrimmer(sampleRate=cfg.sample_rate, **trim_args)
            mux.audio >> stereo_trim.signal
            outputs[f"{AUDIO}.stereo"] = stereo_trim.signal
            keep += [demux, mux, stereo_trim]
        outputs.update({f"{AUDIO}.{name}": getattr(loader, port)
                        for name, port in _LOADER_PORTS.items()})
        consumed |= {f"{AUDIO}.signal", f"{AUDIO}.channels"}  # the mixer reads the channels
        for key, port in outputs.items():
            self._sink(key, port, frames, singles, work, allow_none=key not in consumed)
        algos = self._build(stage0, outputs, frames, singles, work, values={})
        self.essentia.run(loader)
        self.essentia.reset(loader)
        del algos, keep

    # -- later stages ---------------------------------------------------------------------------
    def _values_stage(self, stage: int, values: dict[str, Any], frames: Any, singles: Any) -> None:
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
                    _store(frames if not single else singles, name, value, single)

    def _stream_group(self, group: list[str], values: dict[str, Any], frames: Any,
                      singles: Any, work: Any) -> None:
        nodes = self.plan.nodes
        sources = replay_sources(nodes, group)
        (key,) = sources
        if key == f"{AUDIO}.signal":
            # Replaying sample by sample through VectorInput costs a scheduler round per sample
            # (minutes per track); a float32 WAV read by Essentia's loader streams in blocks,
            # bit-exact, and keeps the replayed audio out of memory.
            if self._replay_file is None:
                self._replay_file = _write_float_wav(values[key], self.plan.audio.sample_rate)
            replay = self.streaming.MonoLoader(filename=self._replay_file,
                                               sampleRate=self.plan.audio.sample_rate)
            port = replay.audio
        else:
            data = values[key]
            if isinstance(data, np.ndarray):
                data = np.ascontiguousarray(data, dtype=np.float32)
            replay = self.streaming.VectorInput(data)
            port = replay.data
        members = [nodes[n] for n in self.plan.order if n in set(group)]
        algos = self._build(members, {key: port}, frames, singles, work, values)
        self.essentia.run(replay)
        self.essentia.reset(replay)
        del algos

    # -- helpers ----------------------------------------------------------------------------------
    def _params(self, node: Node, values: dict[str, Any]) -> dict[str, Any]:
        params = dict(node.params)
        for pname, ref in node.param_refs.items():
            value = self._take(values, ref)
            kind = registry.info(node.algorithm).params[pname].type
            params[pname] = _as_param(value, kind)
        return params

    def _take(self, values: dict[str, Any], ref: Ref) -> Any:
        if ref.key not in values:
            raise AudioError(
                "<input>", f"'{ref.key}' produced nothing (the audio may be too short or silent)"
            )
        value = values[ref.key]
        take = ref.take or "all"
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

    def _build(self, members: list[Node], sources: dict[str, Any], frames: Any, singles: Any,
               work: Any, values: dict[str, Any]) -> list[Any]:
        """Instantiate and wire the streaming nodes of one network."""
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
                self._sink(key, port, frames, singles, work, allow_none=key not in consumed)
        return list(algos.values())

    def _sink(self, key: str, port: Any, frames: Any, singles: Any, work: Any,
              allow_none: bool) -> None:
        """Send an output to the descriptor pools and/or the work pool; otherwise nowhere."""
        used = False
        for name, single in self.descriptors_by_source.get(key, []):
            port >> ((singles if single else frames), name)
            used = True
        if key in self.plan.recorded:
            port >> (work, key)
            used = True
        if not used and allow_none:
            port >> None

    def _read_recorded(self, work: Any, stage: int) -> dict[str, Any]:
        """Recorded streams as token sequences (Essentia's Pool collapses a single token)."""
        return {name: _tokens(work[name], self._type(name)) for name in work.descriptorNames()}

    def _type(self, key: str) -> str:
        node_id, _, output = key.partition(".")
        if key == _UNTRIMMED:
            return "real"
        if node_id == AUDIO:
            return AUDIO_OUTPUTS[output]
        node = self.plan.nodes[node_id]
        return node.output_types[output]


def _write_float_wav(signal: Any, sample_rate: float) -> str:
    """Write a mono float32 WAV (IEEE float, format 3) to a private temporary file."""
    data = np.ascontiguousarray(signal, dtype="<f4").tobytes()
    rate = int(round(sample_rate))
    header = (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
        + b"data" + struct.pack("<I", len(data))
    )
    handle, path = tempfile.mkstemp(prefix="extractor-replay-", suffix=".wav")
    with os.fdopen(handle, "wb") as out:
        out.write(header)
        out.write(data)
    return path


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
