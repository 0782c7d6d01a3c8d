"""Running one file through a Plan's networks, stage by stage, into an Analysis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner import registry
from runner.analysis import audio_input, multichannel
from runner.analysis.audio_input import ANALYSED, ENERGY, LOADER_PORTS, MEAN, UNTRIMMED
from runner.analysis.long_tracks import LongTracks, PassPart
from runner.analysis.networks import NetworkKey, Networks
from runner.analysis.values import Sinks, run_value_nodes
from runner.compile import AUDIO, Plan, replay_sources, stream_components
from runner.errors import AudioError
from runner.pools import give_back_freed_memory


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
    long_track: bool = False  # analysed as a long track (runner.analysis.long_tracks)


class Executor:
    """Runs one Plan on many files; the Plan is compiled once and reused, and so are its
    networks (runner.analysis.networks)."""

    def __init__(self, plan: Plan, keep_signal: bool = False,
                 long_tracks: LongTracks | None = None, spool_audio: bool = True) -> None:
        """``keep_signal``: also record the whole analysed signal (``audio.signal`` in the
        values), for readers outside the graph (the model stage); 635 MB per hour.
        ``long_tracks``: the policy for long tracks (default: the profile's,
        LongTracks.for_plan). ``spool_audio``: later passes read the analysed signal from
        the spool (False: they decode the file again)."""
        self.plan = plan
        self.essentia = registry.quiet_essentia()
        self.sinks = Sinks(plan, self.essentia)
        self.networks = Networks(plan, self.essentia, self.sinks, keep_signal=keep_signal,
                                 spool_audio=spool_audio)
        self.long_tracks = long_tracks if long_tracks is not None else LongTracks.for_plan(plan)
        # Called after each stage of a long track with (stage, frame pool): a caller may
        # aggregate and remove the descriptors that stage finished (see Extractor).
        self.after_stage: Callable[[int, Any], None] | None = None
        self.spooled: str | None = None  # this file's spooled signal, while it is analysed

    def analyse(self, path: str) -> Analysis:
        """Analyse one file. The returned Analysis is valid until the next call."""
        cfg = self.plan.audio
        audio_input.check_audio_file(path)
        header = audio_input.probe(path, all_tags=cfg.tags == "all")
        audio_input.check_header(path, header, cfg)
        self.sinks.clear()
        values: dict[str, Any] = {}
        promised = audio_input.promised_seconds(path, header)
        if audio_input.trimming(cfg) and promised > 0 and cfg.start_time >= promised + 1:
            raise audio_input.range_error(path, cfg, promised)  # + 1: whole seconds
        # More than two channels: Essentia's loader refuses them; the analysis reads a stereo
        # downmix instead (runner.analysis.multichannel), like any stereo file.
        downmixed = multichannel.downmix(path, header["channels"]) if (
            header["channels"] > 2) else None
        source = downmixed.wav if downmixed is not None else path
        try:
            long_track = self._run_stages(path, source, header, values)
        except AudioError as exc:
            self.networks.discard()
            if exc.audio_path != path:  # the downmix, or "<input>" (values.take)
                raise AudioError(path, str(exc).removeprefix(f"{exc.audio_path}: ")) from None
            raise
        except RuntimeError as exc:
            self.networks.discard()
            raise self._failure(path, source, header, promised, exc) from None
        except BaseException:
            self.networks.discard()
            raise
        finally:
            self.spooled = None
            self.networks.drop_spooled()
            if downmixed is not None:
                downmixed.remove()
        audio = dict(header)
        for name in LOADER_PORTS:
            key = f"{AUDIO}.{name}"
            if key in values and len(values[key]):
                audio[name] = values[key][-1]
        warnings = []
        if downmixed is not None:  # the original's properties, not the downmix's
            audio.update(channels=header["channels"], codec=downmixed.codec)
            audio.pop("md5", None)  # Essentia's md5 of the encoded payload: not computable
            warnings.append(downmixed.warning())
        analysed = float(values[ANALYSED][-1])
        audio["analysis_length"] = analysed
        audio["length"] = float(values[UNTRIMMED][-1]) if UNTRIMMED in values else analysed
        warnings += audio_input.doubts(audio["length"], promised, analysed * cfg.sample_rate,
                                       values.get(ENERGY), values.get(MEAN))
        warnings += self.sinks.warnings
        # Only the signal (for the model stage) is read after this; the recorded streams the
        # stages read (HPCP frames, for one: 40 MB per hour) are let go before aggregation.
        kept = {key: values[key] for key in (f"{AUDIO}.signal",) if key in values}
        del values
        return Analysis(frames=self.sinks.frames, singles=self.sinks.single_values(),
                        values=kept, audio=audio, warnings=warnings, long_track=long_track)

    def _run_stages(self, path: str, source: str, header: dict[str, Any],
                    values: dict[str, Any]) -> bool:
        """Every stage on ``source`` (``path`` or its downmix); returns whether the track
        was analysed as a long one, which the first pass's decoded length decides."""
        self._run_stage0(source, header)
        self._collect(0, values)
        seconds = float(values[ANALYSED][-1])
        long_track = self.long_tracks.is_long(seconds)
        self._stage_done(0, long_track)
        if seconds == 0:
            length = float(values[UNTRIMMED][-1]) if UNTRIMMED in values else 0.0
            raise audio_input.range_error(path, self.plan.audio, length)
        for stage in range(1, self.plan.stages):
            run_value_nodes(self.plan, self.sinks, stage, values)
            for index, group in enumerate(stream_components(self.plan.nodes, stage)):
                self._run_pass(stage, index, group, source, header, values, long_track)
            self._collect(stage, values)
            self._stage_done(stage, long_track)
        return long_track

    def _failure(self, path: str, source: str, header: dict[str, Any], promised: float,
                 exc: RuntimeError) -> AudioError:
        """Essentia's refusal to analyse a file, as one line a person can act on."""
        cfg = self.plan.audio
        if audio_input.trimming(cfg) and promised > 0 and cfg.start_time >= promised - 1:
            return audio_input.range_error(path, cfg, promised)  # nothing left, surely
        samples = audio_input.tiny_samples(source, header)
        if samples is not None:  # Essentia's algorithms refusing a few samples
            return AudioError(path, f"too short to analyse: {samples} sample"
                              f"{'s' if samples != 1 else ''} of audio")
        return AudioError(path, f"analysis failed: {audio_input.essentia_reason(exc)}")

    def _run_stage0(self, path: str, header: dict[str, Any]) -> None:
        net = self.networks.stage0(path, header)
        if net.spool is not None:
            net.spool.begin(audio_input.analysed_seconds(header, self.plan.audio)
                            * self.plan.audio.sample_rate)
        try:
            self.essentia.run(net.source)
            self.essentia.reset(net.source)
        except BaseException:
            if net.spool is not None:
                net.spool.end()
            raise
        if net.spool is not None:
            self.spooled = net.spool.finish()

    def _run_pass(self, stage: int, index: int, group: list[str], path: str,
                  header: dict[str, Any], values: dict[str, Any], long_track: bool) -> None:
        """One network of a later stage (two for some passes of a long track)."""
        (source,) = replay_sources(self.plan.nodes, group)
        from_audio = source == f"{AUDIO}.signal"
        parts = [PassPart(group, set(group))]
        if from_audio and long_track:
            parts = self.long_tracks.parts(stage, index, group)
        spooled = self.spooled if from_audio else None
        for number, part in enumerate(parts):
            key = NetworkKey(stage=stage, group=index, part=number, split=len(parts) > 1,
                             spooled=spooled is not None)
            net = self.networks.later(key, source, part, path, header, values, spooled)
            self.essentia.run(net.source)
            self.essentia.reset(net.source)

    def _collect(self, stage: int, values: dict[str, Any]) -> None:
        """After a pass: its recorded streams become values, and the pool's copy is let go
        before anything else is allocated."""
        values.update(self.sinks.read_recorded(stage))
        self.sinks.work.clear()
        give_back_freed_memory()

    def _stage_done(self, stage: int, long_track: bool) -> None:
        if long_track and self.after_stage is not None:
            self.after_stage(stage, self.sinks.frames)
