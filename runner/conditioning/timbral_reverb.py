"""Reverberation of the timbral models: Löllmann et al.'s blind RT60 estimate (maximum
likelihood on sound decays, a histogram of estimates, recursive smoothing) and the package's
logistic regression (timbral_models 0.4, Timbral_Reverb.py).

The per-frame pre-selection of sound decays (falling variance and envelope over sub-frames) is
computed for all frames at once; the histogram and smoothing, which carry state from frame to
frame, run in order as in the original.
"""

from __future__ import annotations

import numpy as np

T_QUANT = np.arange(0.2, 1.1 + 0.05, 0.1)  # the quantised RTs considered (s)
HIST_LIMITS = np.arange(0.2 - 0.05, 1.1 + 0.1, 0.1)
ALPHA = 0.995  # smoothing of the running estimate
NOS_MIN, NOS_MAX = 3, 7  # sub-frames of a decay: at least, at most


def _parameters(fs: float) -> dict[str, int]:
    scale = fs / 24000.0
    down = 2 if fs > 8e3 else 1
    sub = int(round(scale * 700 / down))
    return {"down": down, "sub": sub, "shift": int(round(scale * 200 / down)),
            "frame": NOS_MAX * sub, "buffer": int(round(scale * 800 / down))}


def _decay_lengths(y: np.ndarray, starts: np.ndarray, sub: int) -> np.ndarray:
    """Sub-frames of steady decay (0 when none) at each frame start of the downsampled signal:
    the count of leading sub-frames whose variance and maximum fall and minimum rises, kept when
    it is 3 or 4 (the original estimates nothing when all five do). The sub-frames are the
    first ``sub`` samples, then ``sub + 1`` samples from every further multiple of ``sub``."""
    begin = starts[:, None] + sub * np.arange(NOS_MAX - 1)[None, :]
    end = begin + sub + 1
    end[:, 0] -= 1
    bounds = np.stack([begin, end], axis=2).reshape(-1)  # reduceat: every other result
    size = (end - begin).reshape(-1)
    total = np.add.reduceat(y, bounds)[::2]
    squares = np.add.reduceat(y * y, bounds)[::2]
    var = (squares / size - (total / size) ** 2).reshape(begin.shape)
    big = np.maximum.reduceat(y, bounds)[::2].reshape(begin.shape)
    small = np.minimum.reduceat(y, bounds)[::2].reshape(begin.shape)
    falling = ((var[:, :-1] > var[:, 1:]) & (big[:, :-1] > big[:, 1:])
               & (small[:, :-1] < small[:, 1:]))
    leading = np.cumprod(falling, axis=1).sum(axis=1)
    return np.where((leading >= NOS_MIN) & (leading < NOS_MAX - 2), leading, 0)


def _max_likelihood(h: np.ndarray, growth: np.ndarray, log_decay: np.ndarray) -> float:
    """The quantised RT whose exponential decay best explains the magnitudes ``h`` (max_loglf;
    ``growth`` and ``log_decay`` hold a^-n and log(a^n) for every RT and n, computed once)."""
    length = len(h)
    sum1 = growth[:, :length] @ np.abs(h)
    sigma = sum1 / length
    log_n = np.sum(log_decay[:, :length], axis=1)
    ll = -length * np.log(2) - length * np.log(sigma) - log_n - sum1 / sigma
    return float(T_QUANT[int(np.argmax(ll))])


def estimate_rt60(parts: list[np.ndarray], fs: float) -> float:
    """Mean smoothed RT60 (s) over the frames with a new estimate, frames taken in order through
    ``parts`` (the whole signal, or excerpts of it); 0.2 s when there is none."""
    par = _parameters(fs)
    decay = np.exp(-3.0 * np.log(10) / (T_QUANT * (fs / par["down"])))[:, None]
    n = np.arange((NOS_MAX - 3) * par["sub"])
    growth, log_decay = decay ** (-1.0 * n), np.log(decay ** n)
    hist, buffer = np.zeros(len(T_QUANT)), np.zeros(par["buffer"])
    counter, last, raw_rt = 0, 0.3, 0.3
    kept = []
    for part in parts:
        span = par["frame"] * par["down"]
        if span >= len(part):
            continue
        y = np.asarray(part[::par["down"]], dtype=np.float64)
        starts = np.arange(0, len(part) - span + 1, par["shift"]) // par["down"]
        lengths = _decay_lengths(y, starts, par["sub"])
        for start, count in zip(starts, lengths, strict=True):
            if count:
                estimate = _max_likelihood(y[start:start + count * par["sub"]], growth, log_decay)
                counter += 1
                inside = (estimate >= HIST_LIMITS[:-1]) & (estimate <= HIST_LIMITS[1:])
                index = int(np.argmax(inside))
                hist[index] += 1
                if counter > par["buffer"] + 1:
                    hist[int(buffer[0])] -= 1
                buffer = np.append(buffer[1:], index)
                raw_rt = T_QUANT[int(np.argmax(hist))]
            last = ALPHA * last + (1 - ALPHA) * raw_rt
            if count:
                kept.append(last)
    return float(np.mean(kept)) if kept else float(T_QUANT[0])


def reverberation(rt60: float) -> float:
    """The package's probability that a listener hears the sound as reverberant, 0-100 (the
    package itself answers 0 or 1: this probability below or above one half)."""
    logit = 2.97126461 * rt60 - 1.45082989
    return float(100.0 * np.exp(logit) / (1.0 + np.exp(logit)))
