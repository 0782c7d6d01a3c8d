"""Attack and spectral helpers of the timbral models' hardness (timbral_models 0.4's
timbral_util): librosa's harmonic/percussive separation for the percussive energy ratio, the
bandwidth of 4096-sample spectra every 128 samples, attack times (the CUIDADO "minimum effort"
method and a fixed 20-90 % threshold) and the spectral centroid of an attack. numpy only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runner.conditioning.timbral_onsets import HOP, N_FFT

KERNEL = 31  # librosa.decompose.hpss's median filter length, in frames and in bins


def _hann() -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic


def _stft(y: np.ndarray) -> np.ndarray:
    """librosa.stft(y) with its defaults (2048-point Hann, hop 512, centred, zero padded):
    frames x bins."""
    padded = np.pad(np.asarray(y, dtype=np.float64), (N_FFT // 2, N_FFT // 2))
    count = 1 + (len(padded) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
    return np.fft.rfft(padded[index] * _hann(), axis=1)


def _istft(spectra: np.ndarray) -> np.ndarray:
    """librosa.istft of frames x bins (its defaults): windowed overlap-add over the window's
    summed squares, less the centring padding."""
    count = len(spectra)
    frames = np.fft.irfft(spectra, N_FFT, axis=1) * _hann()
    length = N_FFT + HOP * (count - 1)
    out, norm = np.zeros(length), np.zeros(length)
    for i in range(N_FFT // HOP):  # frames i, i + 4, ... do not overlap one another
        starts = HOP * np.arange(i, count, N_FFT // HOP)
        index = (starts[:, None] + np.arange(N_FFT)[None, :]).reshape(-1)
        out[index] += frames[i::N_FFT // HOP].reshape(-1)
        norm[index] += np.tile(_hann() ** 2, len(starts))
    out, norm = out[N_FFT // 2:length - N_FFT // 2], norm[N_FFT // 2:length - N_FFT // 2]
    nonzero = norm > np.finfo(np.float64).tiny
    out[nonzero] /= norm[nonzero]
    return out


def _median(magnitude: np.ndarray, axis: int) -> np.ndarray:
    """scipy.ndimage.median_filter over ``KERNEL`` values along ``axis``, mode 'reflect'."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (KERNEL // 2, KERNEL // 2)
    windows = sliding_window_view(np.pad(magnitude, pad, mode="symmetric"), KERNEL, axis=axis)
    return np.partition(windows, KERNEL // 2, axis=-1)[..., KERNEL // 2]


def _softmask(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """librosa.util.softmask(x, reference, power=2, split_zeros=True)."""
    scale = np.maximum(x, reference)
    bad = scale < np.finfo(np.float64).tiny
    scale[bad] = 1.0
    mask, other = (x / scale) ** 2, (reference / scale) ** 2
    mask[~bad] /= mask[~bad] + other[~bad]
    mask[bad] = 0.5
    return mask


def rms_envelope(audio: np.ndarray, size: int, step: int, normalise: bool) -> np.ndarray:
    """timbral_util.calculate_rms_enveope: RMS of ``size``-sample frames every ``step``
    samples while a whole frame fits, then of the rest; optionally over its maximum."""
    audio = np.asarray(audio, dtype=np.float64)
    count = max(0, -(-(len(audio) - size) // step))  # frames starting before len - size
    frames = sliding_window_view(audio, size)[::step][:count] if count else np.zeros((0, size))
    last = audio[step * count:]
    envelope = np.append(np.sqrt(np.mean(frames * frames, axis=1)),
                         np.sqrt(np.mean(last * last)) if len(last) else np.nan)
    return envelope / np.max(np.abs(envelope)) if normalise else envelope


def percussive_ratio(audio: np.ndarray) -> float:
    """timbral_util.get_percussive_audio(return_ratio=True): librosa's harmonic/percussive
    separation (median filters over 31 frames and 31 bins, soft masks), then the share of the
    percussive part in the RMS of 1024-sample frames, weighted by their sum; NaN when both
    parts are silent throughout."""
    spectra = _stft(audio)
    magnitude = np.abs(spectra)
    harmonic, percussive = _median(magnitude, 0), _median(magnitude, 1)
    percussive_audio = _istft(spectra * _softmask(percussive, harmonic))
    harmonic_audio = _istft(spectra * _softmask(harmonic, percussive))
    p = rms_envelope(percussive_audio, 1024, 512, normalise=False)
    h = rms_envelope(harmonic_audio, 1024, 512, normalise=False)
    some = (p != 0) | (h != 0)
    if not some.any():
        return float("nan")
    return float(np.average(p[some] / (p[some] + h[some]), weights=p[some] + h[some]))


def bandwidth_array(audio: np.ndarray, fs: float, size: int = 4096, step: int = 128,
                    rolloff: float = 10 ** (-75 / 20.0)) -> np.ndarray:
    """timbral_util.get_bandwidth_array(audio, fs, nperseg=4096, overlap_step=128,
    rolloff_thresh=-75 dB, normalisation_method='none'): per frame (scipy's boxcar magnitude
    spectrogram, density scaling), the frequency of the last bin above ``rolloff`` less the
    5 % roll-on frequency; 0 for frames under a tenth of the level range."""
    audio = np.asarray(audio, dtype=np.float64)
    count = (len(audio) - size) // step + 1
    if count < 1:
        return np.zeros(0)
    frames = sliding_window_view(audio, size)[::step][:count]
    spec = np.abs(np.fft.rfft(frames, axis=1))
    spec[:, 0] = 0.0  # removing each frame's mean (scipy's detrend) changes only 0 Hz, to 0
    spec *= np.sqrt(1.0 / (fs * size))
    freq = np.fft.rfftfreq(size, 1.0 / fs)
    total = spec.sum(axis=1)
    floor = 0.1 * (total.max() - total.min()) + total.min()
    rollon = _rollon(spec, total * 0.05)
    above = spec >= rolloff
    last = spec.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
    width = np.where(above.any(axis=1), freq[last] - freq[rollon], 0.0)
    return np.where(total > floor, width, 0.0)


def _rollon(spec: np.ndarray, threshold: np.ndarray, first: int = 256) -> np.ndarray:
    """Per frame, the first bin where the cumulative sum reaches ``threshold`` (searched in the
    first ``first`` bins, then, for the frames not there yet, in all)."""
    partial = np.cumsum(spec[:, :first], axis=1)
    rollon = np.argmax(partial >= threshold[:, None], axis=1)
    later = np.flatnonzero(partial[:, -1] < threshold)
    if later.size:
        whole = np.cumsum(spec[later], axis=1) >= threshold[later, None]
        rollon[later] = np.argmax(whole, axis=1)
    return rollon


def attack_time(envelope: np.ndarray, fs: float, fixed_threshold: bool = False,
                max_attack_time: float = 0.1) -> tuple[float, int] | None:
    """timbral_util.calculate_attack_time: log10 of the attack time (s) from the envelope's last
    minimum before its peak to the peak, and the attack's start (index into ``envelope``); None
    when the peak comes first (the package's 0)."""
    envelope = np.asarray(envelope, dtype=np.float64)
    peak = int(np.argmax(envelope))
    if peak == 0 or not envelope[peak] > 0:
        return None
    envelope = envelope / float(envelope.max())
    before = envelope[:peak]
    begin = int(np.flatnonzero(before == before.min())[-1])
    rise = envelope[begin:peak + 1]
    low, dynamic_range = rise.min(), rise.max() - rise.min()
    if fixed_threshold:
        start = int(np.argmax(rise >= 20 * dynamic_range * 0.01 + low))
        end = int(np.argmax(rise[start:] >= 90 * dynamic_range * 0.01 + low)) + start
    else:
        start, end = _minimum_effort(rise, low, dynamic_range)
    seconds = 1.0 / fs if start == end else (end - start + 1.0) / fs
    if max_attack_time > 0 and seconds > max_attack_time:
        seconds = (int(fs * max_attack_time) + 1.0) / fs
    return float(np.log10(seconds)), int(start + begin)


def _minimum_effort(rise: np.ndarray, low: float, dynamic_range: float) -> tuple[int, int]:
    """The CUIDADO minimum-effort start and end of an attack: 9 thresholds from 10 to 90 % of
    the rise, the first and last of the efforts (samples between thresholds) under 3 times
    their mean."""
    levels = np.linspace(1.0 / 10, 1 - 1.0 / 10, 9) * dynamic_range + low
    crossings = np.array([np.argmax(rise >= level) for level in levels], dtype=np.float64)
    effort = np.diff(crossings)
    limit = np.mean(effort) * 3
    first = int(np.argmax(effort <= limit))
    last = int(np.argmax(effort[first:] >= limit))
    last = (len(effort[first:]) - 1 if last == 0 else last) + first
    start, end = crossings[first], crossings[last]
    if start == end:
        start, end = crossings[0], crossings[-1]
    return int(start), int(end)


def attack_centroid(segment: np.ndarray, fs: float) -> float | None:
    """timbral_util.get_spectral_features(...)[0]: the spectral centroid (Hz, from 20 Hz) of the
    unwindowed segment zero-padded to a power of two; None for a silent segment."""
    size = int(2 ** np.ceil(np.log2(len(segment))))
    spectrum = np.abs(np.fft.fft(segment, size))[:size // 2 + 1]
    if not spectrum.sum() > 0:
        return None
    freq = np.arange(len(spectrum)) * (fs / (2.0 * (len(spectrum) - 1)))
    lowest = int(np.flatnonzero(freq >= 20)[0])
    return float(np.sum(spectrum[lowest:] * freq[lowest:]) / np.sum(spectrum[lowest:]))
