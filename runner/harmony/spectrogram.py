"""madmom's log-filtered spectrogram, the front end of its key and chord networks, in numpy.

madmom builds it from processors (madmom.audio.signal.FramedSignalProcessor,
stft.ShortTimeFourierTransformProcessor, spectrogram.LogarithmicFilteredSpectrogramProcessor);
this is the same arithmetic without the madmom package, so that the networks run from their
pinned files with onnxruntime alone (tests/test_harmony.py compares both):

- frames of ``frame_size`` samples centred on sample ``int(i * 44100 / fps)``, zero-padded at
  both ends, ``ceil(len / hop)`` of them (madmom's ``origin='center'``, ``end='normal'``);
- a Hann window (float64), the FFT's first ``frame_size / 2`` bins (no Nyquist bin) stored as
  complex64, their magnitudes (float32);
- madmom's LogarithmicFilterbank: triangular filters on the FFT bins nearest to the
  frequencies ``440 * 2 ** (k / bands)`` within [fmin, fmax], duplicates dropped
  (``unique_filters``), each normalised to area 1, float32;
- ``log10(1 + magnitudes @ filterbank)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from runner.errors import ModelError

MODEL_SR = 44100  # madmom's networks were trained on 44.1 kHz mono
A4 = 440.0
# filterbank products of at least this many frames: numpy's BLAS gives other last bits for
# smaller ones than madmom's single product over the whole track (see runner.tempo.neural)
BATCH = 256
SILENT_DBFS = -90.0  # as the runner's silence warning (runner.analysis.audio_input)


def as_mono_44k(signal: np.ndarray, sample_rate: float, who: str = "madmom's networks"
                ) -> np.ndarray:
    """Mono float32 at 44.1 kHz (polyphase resampling where the rate differs): the input of
    every madmom network here (key, chords, and runner.tempo's beats and downbeats); ``who``
    names them in the error for a signal of another shape."""
    audio = np.asarray(signal, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    if audio.ndim != 1:
        raise ModelError(f"{who}: expected a mono or (samples, channels) signal, "
                         f"got shape {audio.shape}")
    rate = int(round(sample_rate))
    if rate != MODEL_SR and len(audio):
        from math import gcd

        from scipy.signal import resample_poly

        common = gcd(rate, MODEL_SR)
        audio = resample_poly(audio, MODEL_SR // common, rate // common).astype(np.float32)
    return audio


def undefined(samples: np.ndarray, frame_size: int) -> str | None:
    """Why a network's answer on ``samples`` (mono, 44.1 kHz) would mean nothing: shorter
    than one of its frames, or silent (RMS without DC offset below -90 dBFS); None: neither."""
    if len(samples) < frame_size:
        return (f"too short: {len(samples)} samples at 44.1 kHz, less than one "
                f"{frame_size}-sample frame ({frame_size / MODEL_SR:.2f} s)")
    level = float(np.var(samples, dtype=np.float64))
    if level < 10 ** (SILENT_DBFS / 10):
        dbfs = f"{10 * np.log10(level):.1f} dBFS" if level > 0 else "-inf dBFS"
        return f"silent: the level is {dbfs}, below {SILENT_DBFS:g} dBFS"
    return None


def _log_frequencies(bands: int, fmin: float, fmax: float) -> np.ndarray:
    """madmom.audio.filters.log_frequencies."""
    left = np.floor(np.log2(float(fmin) / A4) * bands)
    right = np.ceil(np.log2(float(fmax) / A4) * bands)
    frequencies = A4 * 2. ** (np.arange(left, right) / float(bands))
    frequencies = frequencies[np.searchsorted(frequencies, fmin):]
    return frequencies[:np.searchsorted(frequencies, fmax, "right")]


def _nearest_bins(frequencies: np.ndarray, bin_frequencies: np.ndarray) -> np.ndarray:
    """madmom.audio.filters.frequencies2bins with unique bins."""
    indices = bin_frequencies.searchsorted(frequencies)
    indices = np.clip(indices, 1, len(bin_frequencies) - 1)
    left, right = bin_frequencies[indices - 1], bin_frequencies[indices]
    indices -= frequencies - left < right - frequencies
    return np.unique(indices)


@lru_cache(maxsize=8)
def log_filterbank(frame_size: int, bands: int, fmin: float, fmax: float) -> np.ndarray:
    """madmom's LogarithmicFilterbank (overlapping triangles of area 1, unique filters) on
    the FFT bins of ``frame_size``-sample frames at 44.1 kHz: (frame_size / 2, num_bands)."""
    num_bins = frame_size >> 1
    bin_frequencies = np.fft.fftfreq(num_bins * 2, 1. / MODEL_SR)[:num_bins]
    bins = _nearest_bins(_log_frequencies(bands, fmin, fmax), bin_frequencies)
    bank = np.zeros((num_bins, len(bins) - 2))
    for band in range(len(bins) - 2):
        start, center, stop = (int(b) for b in bins[band:band + 3])
        if stop - start < 2:  # madmom's handling of too-small filters
            center, stop = start, start + 1
        shape = np.zeros(stop - start)
        shape[:center - start] = np.linspace(0, 1, center - start, endpoint=False)
        shape[center - start:] = np.linspace(1, 0, stop - center, endpoint=False)
        triangle = shape.astype(np.float32)
        triangle /= np.sum(triangle)
        stop = min(stop, num_bins)
        np.maximum(triangle[:stop - start], bank[start:stop, band],
                   out=bank[start:stop, band])
    bank = bank.astype(np.float32)
    bank.flags.writeable = False
    return bank


def frame_starts(num_samples: int, fps: float, frame_size: int) -> np.ndarray:
    """First sample of each of madmom's frames (FramedSignal: ``ceil(len / hop)`` frames
    centred on sample ``int(i * hop)``; negative or past the end: zeros there)."""
    hop = MODEL_SR / float(fps)
    count = int(np.ceil(num_samples / hop))
    return np.array([int(i * hop) for i in range(count)], dtype=np.int64) - frame_size // 2


def log_filtered(samples: np.ndarray, frame_size: int, fps: float, bands: int, fmin: float,
                 fmax: float) -> np.ndarray:
    """madmom's LogarithmicFilteredSpectrogram of mono 44.1 kHz ``samples``: (frames, bands),
    float32, computed BATCH frames at a time (never all frames or the whole STFT at once)."""
    from scipy.fft import rfft

    starts = frame_starts(len(samples), fps, frame_size)
    padded = np.zeros(len(samples) + 2 * frame_size, dtype=np.float32)
    padded[frame_size:frame_size + len(samples)] = samples
    offsets = np.arange(frame_size) + frame_size
    bank = log_filterbank(frame_size, bands, fmin, fmax)
    window = np.hanning(frame_size)
    count, bins = len(starts), frame_size >> 1
    values = np.empty((count, bank.shape[1]), np.float32)
    for start in range(0, count, BATCH):
        first = max(0, min(start, count - BATCH))
        block = padded[starts[first:first + BATCH, None] + offsets]
        spectra = rfft(block * window, axis=1)[:, :bins].astype(np.complex64)
        filtered = np.dot(np.abs(spectra), bank)
        np.log10(filtered + np.float32(1), out=filtered)
        values[first:first + len(block)] = filtered
    return values
