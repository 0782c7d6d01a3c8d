"""Onsets of the timbral models (hardness, depth, warmth): librosa's onset strength and onset
detection with backtracking, exactly as timbral_models 0.4 calls them (librosa's defaults:
2048-point Hann STFT, hop 512, 128 Slaney mel bands, log power, spectral flux with lag 1), then
the package's own refinement (timbral_util.calculate_onsets: a sample-and-hold envelope, a
look-back to where the envelope stops falling, and pruning of onsets in noise, of onsets closer
than 100 ms and of onsets without strength). numpy only: no librosa, no scipy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

N_FFT, HOP, N_MELS = 2048, 512, 128  # librosa.onset.onset_strength's defaults


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """librosa.hz_to_mel (Slaney: linear below 1 kHz, logarithmic above)."""
    hz = np.asanyarray(hz, dtype=np.float64)
    mels = hz / (200.0 / 3)
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """librosa.mel_to_hz (Slaney)."""
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), mels * (200.0 / 3))


@lru_cache(maxsize=4)
def mel_basis(fs: float) -> np.ndarray:
    """librosa.filters.mel(sr=fs, n_fft=2048, fmax=fs/2): 128 Slaney-normalised triangles, in
    single precision as librosa keeps them."""
    fft_freqs = np.fft.rfftfreq(N_FFT, 1.0 / fs)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(0.5 * fs), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:N_MELS] / fdiff[:N_MELS, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (mel_f[2:N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return weights


def onset_strength(y: np.ndarray, fs: float) -> np.ndarray:
    """librosa.onset.onset_strength(y=y, sr=fs): the mean over mel bands of the rise of the
    log-power mel spectrogram (dB, 80 dB range) from one frame to the next, centred frames."""
    padded = np.pad(np.asarray(y, dtype=np.float64), (N_FFT // 2, N_FFT // 2))
    count = 1 + (len(padded) - N_FFT) // HOP
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2
    mel = power @ mel_basis(fs).T.astype(np.float64)  # frames x bands
    db = 10.0 * np.log10(np.maximum(1e-10, mel))
    db = np.maximum(db, db.max() - 80.0)
    flux = np.maximum(0.0, db[1:] - db[:-1]).mean(axis=1)
    return np.concatenate([np.zeros(1 + N_FFT // (2 * HOP)), flux])[:count]


def _peak_pick(x: np.ndarray, fs: float) -> np.ndarray:
    """librosa.util.peak_pick with onset_detect's defaults: a frame that is the maximum from 30 ms
    before to itself, at least 0.07 above the mean from 100 ms before to 100 ms after, and more
    than 30 ms after the previous pick."""
    pre_max, post_max = int(np.ceil(0.03 * fs // HOP)), int(np.ceil(0.00 * fs // HOP + 1))
    pre_avg, post_avg = int(np.ceil(0.10 * fs // HOP)), int(np.ceil(0.10 * fs // HOP + 1))
    wait, delta = int(np.ceil(0.03 * fs // HOP)), 0.07
    n = np.arange(len(x))
    padded = np.concatenate([np.full(pre_max, -np.inf), x, np.full(post_max - 1, -np.inf)])
    is_max = x == sliding_window_view(padded, pre_max + post_max).max(axis=1)
    lo_avg, hi_avg = np.maximum(0, n - pre_avg), np.minimum(n + post_avg, len(x))
    sums = np.concatenate([[0.0], np.cumsum(x)])
    above = x >= (sums[hi_avg] - sums[lo_avg]) / (hi_avg - lo_avg) + delta
    first = bool(x[0] >= x[:min(post_max, len(x))].max()
                 and x[0] >= x[:min(post_avg, len(x))].mean() + delta)
    peaks, after = ([0], wait + 1) if first else ([], 1)
    for i in np.flatnonzero(is_max & above).tolist():
        if i >= after:
            peaks.append(i)
            after = i + wait + 1
    return np.array(peaks, dtype=int)


def _backtrack(events: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """librosa.onset.onset_backtrack: each event moved back to the nearest preceding local
    minimum of ``energy`` (or frame 0)."""
    minima = np.flatnonzero((energy[1:-1] <= energy[:-2]) & (energy[1:-1] < energy[2:])) + 1
    minima = np.unique(np.concatenate([[0], minima]))
    return minima[np.searchsorted(minima, events, side="right") - 1]


def onset_detect(strength: np.ndarray, fs: float) -> np.ndarray:
    """librosa.onset.onset_detect(y=..., sr=fs, backtrack=True, units='samples') from the
    signal's onset strength: normalised to 0-1, peak-picked, backtracked, in samples."""
    env = strength - strength.min()
    env = env / (env.max() + np.finfo(np.float64).tiny)
    if not env.any() or not np.all(np.isfinite(env)):
        return np.array([], dtype=int)
    return _backtrack(_peak_pick(env, fs), env) * HOP


def hold_envelope(audio: np.ndarray, fs: float, decay_time: float = 0.2,
                  hold_time: float = 0.01) -> np.ndarray:
    """timbral_util.sample_and_hold_envelope_calculation: the rectified signal, each new peak
    held for ``hold_time``, then falling linearly (the signal's peak in ``decay_time``) until
    the signal rises above it. Sample by sample as the original (a few ms per second of audio)."""
    rectified = np.abs(np.asarray(audio, dtype=np.float64))
    decay = float(rectified.max()) / (decay_time * fs)
    hold = hold_time * fs
    out = [0.0] * len(rectified)
    held, counter = 0.0, 0
    for i, sample in enumerate(rectified.tolist()):
        if sample >= held:
            held, counter = sample, 0
        elif counter < hold:
            counter += 1
        else:
            fallen = held - decay
            held = fallen if fallen > sample else sample
        out[i] = held
    return np.array(out)


def _look_back(onset: int, envelope: np.ndarray, fs: float, hysteresis: float,
               nperseg: int) -> int:
    """timbral_util.return_loop: from a detected onset, step back to the envelope's minimum over
    the previous 20 ms while it keeps falling, then over 300 ms while the rise since that
    minimum stays under ``hysteresis``; 0 when this runs into the first ``nperseg`` samples."""
    look, span = int(20 * 0.001 * fs), int(300 * fs * 0.001)
    while True:
        current = envelope[onset]
        before = envelope[onset - look - 1:onset] if onset - look > 0 else envelope[:onset - 1]
        if before.min() - current <= 0:
            moved = int(np.argmin(before)) + onset - look - 1
            if moved <= nperseg:
                return 0
            onset = moved
            continue
        longer = envelope[onset - span - 1:onset] if onset - span - 1 > 0 else envelope[:onset]
        lower = np.flatnonzero(longer < envelope[onset])
        if lower.size == 0:
            return onset
        last = int(lower[-1])
        rise = longer[last:]
        if rise.max() - rise.min() >= hysteresis:
            return onset
        moved = int(onset - len(longer) + last)
        if moved < nperseg:
            return 0
        onset = moved


def _drop_onsets_in_noise(onsets: list[int], envelope: np.ndarray, threshold: float) -> list[int]:
    """Remove, from the last onset back, those whose segment (to the next remaining onset) has
    its peak first or rises less than ``threshold`` before it (calculate_onsets' pruning)."""
    onsets = list(onsets)
    for i in reversed(range(len(onsets))):
        segment = envelope[onsets[i]:] if onsets[i] == onsets[-1] else \
            envelope[onsets[i]:onsets[i + 1]]
        peak = int(np.argmax(segment)) if len(segment) > 1 else 0
        if peak == 0 or segment.max() - segment[:peak].min() < threshold:
            del onsets[i]
    return onsets


def _drop_close_onsets(onsets: list[int], fs: float) -> list[int]:
    """Remove the later of every two onsets under 100 ms apart, repeatedly."""
    separation = fs * 0.001 * 100
    while len(onsets) > 1 and np.min(np.diff(onsets)) < separation:
        close = {i + 1 for i in range(len(onsets) - 1)
                 if abs(onsets[i + 1] - onsets[i]) < separation}
        onsets = [x for i, x in enumerate(onsets) if i not in close]
    return onsets


def _keep_strong_onsets(onsets: list[int], strength: np.ndarray) -> list[int]:
    """Keep the onsets whose onset strength reaches 3 before the next kept onset."""
    frames = [int(x / HOP) for x in onsets]
    kept = []
    for i in reversed(range(len(onsets))):
        frame = frames[i]
        segment = strength[frame:] if frame == frames[-1] else strength[frame:frames[i + 1]]
        if segment.max() < 3:
            del frames[i]
        else:
            kept.append(onsets[i])
    return sorted(kept)


def calculate_onsets(audio: np.ndarray, envelope: np.ndarray, fs: float, nperseg: int = 512,
                     strength: np.ndarray | None = None) -> list[int]:
    """timbral_util.calculate_onsets: librosa's backtracked onsets, each moved back to where the
    envelope stops falling, then pruned; ``[0]`` when none is left (as the package answers)."""
    if strength is None:
        strength = onset_strength(audio, fs)
    detected = onset_detect(strength, fs)
    if detected.size == 0:
        return [0]
    dynamic_range = float(envelope.max() - envelope.min())
    corrected: list[int] = []
    for onset in detected.tolist():
        if onset >= len(envelope):  # the last frame, at the very end (the package fails there)
            continue
        if onset <= 0:
            corrected.append(0)
        elif not corrected or onset + 511 < len(envelope):
            corrected.append(_look_back(onset, envelope, fs, dynamic_range * 0.1, nperseg))
    corrected = [x for i, x in enumerate(corrected) if x != 0 or i == 0]  # zeros: none found
    corrected = list(dict.fromkeys(corrected))
    if len(corrected) > 1:
        corrected = _drop_onsets_in_noise(corrected, envelope, 0.1 * dynamic_range)
    corrected = _drop_close_onsets(corrected, fs)
    return _keep_strong_onsets(corrected, strength) or [0]
