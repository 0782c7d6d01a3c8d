"""Zwicker specific loudness (ISO 532 B / DIN 45631, free field) of 4096-sample windows, as
timbral_models 0.4 computes it (timbral_util.specific_loudness, a port of the BASIC program in
J. Acoust. Soc. Jpn (E) 12, 1 (1991)): third-octave levels from Butterworth band filters with
multirate downsampling, then the 240-point specific loudness pattern (sone/Bark, 0.1 Bark steps).

Sharpness, booming, warmth and hardness all read the same patterns, so they are computed once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from runner.conditioning.timbral_dsp import butter, cheby1

PREF_DB = 100.0  # the package's "calibration": full scale reads as 100 dB
BAND_CENTRES = np.array([25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800,
                         1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300, 8000, 10000, 12500])
RAP = np.array([45, 55, 65, 71, 80, 90, 100, 120])
DLL = np.array([
    [-32, -24, -16, -10, -5, 0, -7, -3, 0, -2, 0],
    [-29, -22, -15, -10, -4, 0, -7, -2, 0, -2, 0],
    [-27, -19, -14, -9, -4, 0, -6, -2, 0, -2, 0],
    [-25, -17, -12, -9, -3, 0, -5, -2, 0, -2, 0],
    [-23, -16, -11, -7, -3, 0, -4, -1, 0, -1, 0],
    [-20, -14, -10, -6, -3, 0, -4, -1, 0, -1, 0],
    [-18, -12, -9, -6, -2, 0, -3, -1, 0, -1, 0],
    [-15, -10, -8, -4, -2, 0, -3, -1, 0, -1, 0],
])
LTQ = np.array([30, 18, 12, 8, 7, 6, 5, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3])
A0 = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.5, -1.6, -3.2, -5.4, -5.6, -4, -1.5, 2, 5, 12])
DCB = np.array([-0.25, -0.6, -0.8, -0.8, -0.5, 0, 0.5, 1.1, 1.5, 1.7, 1.8, 1.8, 1.7, 1.6, 1.4,
                1.2, 0.8, 0.5, 0, -0.5])
ZUP = np.array([0.9, 1.8, 2.8, 3.5, 4.4, 5.4, 6.6, 7.9, 9.2, 10.6, 12.3, 13.8, 15.2, 16.7, 18.1,
                19.3, 20.6, 21.8, 22.7, 23.6, 24])
RNS = np.array([21.5, 18, 15.1, 11.5, 9, 6.1, 4.4, 3.1, 2.13, 1.36, 0.82, 0.42, 0.30, 0.22, 0.15,
                0.10, 0.035, 0])
USL = np.array([
    [13.0, 8.2, 6.3, 5.5, 5.5, 5.5, 5.5, 5.5],
    [9.0, 7.5, 6.0, 5.1, 4.5, 4.5, 4.5, 4.5],
    [7.8, 6.7, 5.6, 4.9, 4.4, 3.9, 3.9, 3.9],
    [6.2, 5.4, 4.6, 4.0, 3.5, 3.2, 3.2, 3.2],
    [4.5, 3.8, 3.6, 3.2, 2.9, 2.7, 2.7, 2.7],
    [3.7, 3.0, 2.8, 2.35, 2.2, 2.2, 2.2, 2.2],
    [2.9, 2.3, 2.1, 1.9, 1.8, 1.7, 1.7, 1.7],
    [2.4, 1.7, 1.5, 1.35, 1.3, 1.3, 1.3, 1.3],
    [1.95, 1.45, 1.3, 1.15, 1.1, 1.1, 1.1, 1.1],
    [1.5, 1.2, 0.94, 0.86, 0.82, 0.82, 0.82, 0.82],
    [0.72, 0.67, 0.64, 0.63, 0.62, 0.62, 0.62, 0.62],
    [0.59, 0.53, 0.51, 0.50, 0.42, 0.42, 0.42, 0.42],
    [0.40, 0.33, 0.26, 0.24, 0.24, 0.22, 0.22, 0.22],
    [0.27, 0.21, 0.20, 0.18, 0.17, 0.17, 0.17, 0.17],
    [0.16, 0.15, 0.14, 0.12, 0.11, 0.11, 0.11, 0.11],
    [0.12, 0.11, 0.10, 0.08, 0.08, 0.08, 0.08, 0.08],
    [0.09, 0.08, 0.07, 0.06, 0.06, 0.06, 0.06, 0.05],
    [0.06, 0.05, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02],
])


def impulse_response(b: np.ndarray, a: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples of the filter's impulse response (double precision)."""
    b = np.concatenate([b / a[0], np.zeros(length)])[:length]
    a = a / a[0]
    out = np.zeros(length)
    for n in range(length):
        past = out[max(0, n - len(a) + 1):n][::-1]
        out[n] = b[n] - float(np.dot(a[1:1 + len(past)], past))
    return out


def _filtered_energy(spectra: np.ndarray, responses: np.ndarray, length: int) -> np.ndarray:
    """Mean square (windows x bands) of each window filtered by each band from a zero state:
    the first ``length`` samples of the linear convolution with the truncated impulse
    response, which equal the recursive filter's output exactly."""
    out = np.fft.irfft(spectra[:, None, :] * responses[None, :, :], 2 * length)[:, :, :length]
    energy = np.sum(out * out, axis=2) / length
    return np.where(np.max(out, axis=2) > 0, energy, 0.0)


class ThirdOctaves:
    """The package's filter_third_octaves_downsample(x, 100, fs, 25, 12500, 4) for one rate and
    window length, for many windows at once: the bands above 5 kHz filtered directly, the lower
    ones by the top three band filters after repeated anti-aliasing (Chebyshev) and halving."""

    def __init__(self, fs: float, length: int = 4096) -> None:
        top = len(BAND_CENTRES) - 1
        while BAND_CENTRES[top] > fs / 2.0:
            top -= 1
        exponents = np.arange(-16, 14)[: top + 1]
        centres = 2.0 ** (exponents / 3.0) * 1000.0
        self.count, self.length = top + 1, length
        self.split = int(np.where(exponents == 7)[0][0])  # 5000 Hz and below: multirate
        self.direct = list(range(top, self.split, -1))
        self.responses = {i: impulse_response(*self._band(centres[i], fs), length)
                          for i in self.direct}
        self.anti_alias = impulse_response(*cheby1(2, 0.1, 0.4), length)

    @staticmethod
    def _band(centre: float, fs: float) -> tuple[np.ndarray, np.ndarray]:
        low, high = 2.0 ** (-1.0 / 6) * centre / (fs / 2.0), 2.0 ** (1.0 / 6) * centre / (fs / 2.0)
        return butter(4, (low, min(high, 0.9999999999)), "bandpass")

    def levels(self, windows: np.ndarray) -> np.ndarray:
        """Band levels in dB (re ``PREF_DB`` at full scale), windows x bands."""
        x = np.asarray(windows, dtype=np.float64).reshape(-1, self.length)
        energy = np.zeros((len(x), self.count))
        length = self.length
        spectra = np.fft.rfft(x, 2 * length)
        responses = np.fft.rfft(np.array([self.responses[i] for i in self.direct]), 2 * length)
        energy[:, self.direct] = _filtered_energy(spectra, responses, length)
        lower_three = [self.responses[self.split + n] for n in (3, 2, 1)]
        for i in range(self.split, 1, -3):
            alias = np.fft.rfft(self.anti_alias[:length], 2 * length)
            x = np.fft.irfft(spectra * alias, 2 * length)[:, :length][:, 1::2]
            length = x.shape[1]
            spectra = np.fft.rfft(x, 2 * length)
            responses = np.fft.rfft(np.array([r[:length] for r in lower_three]), 2 * length)
            energy[:, [i, i - 1, i - 2]] = _filtered_energy(spectra, responses, length)
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(energy) + PREF_DB


def _main_loudness(levels: np.ndarray) -> np.ndarray:
    """Core loudness per critical band (Nm, 21 values) from the third-octave levels."""
    ti = np.zeros(11)
    for i in range(11):
        j = 0
        while levels[i] > RAP[j] - DLL[j, i] and j < 7:
            j += 1
        ti[i] = 10.0 ** ((levels[i] + DLL[j, i]) / 10.0)
    gi = np.array([np.sum(ti[0:6]), np.sum(ti[6:9]), np.sum(ti[9:11])])
    with np.errstate(divide="ignore"):
        lcb = np.where(gi > 0, 10 * np.log10(np.maximum(gi, 1e-300)), 0.0)
    le = np.array(levels[8:28], dtype=np.float64)
    le[:3] = lcb
    nm = np.zeros(21)
    above = le > LTQ
    le = np.where(above, le - A0 - DCB, le)
    mp1 = 0.0635 * 10.0 ** (0.025 * LTQ)
    mp2 = (1 - 0.25 + 0.25 * 10 ** (0.1 * (le - LTQ))) ** 0.25 - 1
    nm[:20] = np.where(above, np.maximum(mp1 * mp2, 0.0), 0.0)
    nm[0] *= min(0.4 + 0.32 * nm[0] ** 0.2, 1.0)
    return nm


def _store(pattern: list[float], iz: int, z: float, z2: float, value_at) -> tuple[int, float]:
    """Write the pattern in 0.1-Bark steps from z up to z2 (the original's inner k loop)."""
    k = z
    for k in np.arange(z, z2 + 0.01, 0.1):
        if iz == len(pattern):
            pattern.append(value_at(k))
        elif iz < len(pattern):
            pattern[iz] = value_at(k)
        if k < z2 - 0.05:
            iz += 1
    return iz, round(k * 10) * 0.1


def specific_loudness(levels: np.ndarray) -> tuple[float, np.ndarray]:
    """Total loudness (sone, rounded as the original) and the 240-point specific loudness
    pattern (N_single) from band levels, following the original loop step by step."""
    nm = _main_loudness(levels)
    pattern: list[float] = []
    z1 = n1 = total = 0.0
    j, iz, z = 17, 0, 0.1
    for i in range(21):
        ig = min(i - 1, 7)
        control = 1
        while z1 < ZUP[i] or control == 1:
            if n1 < nm[i]:
                j = 0
                while RNS[j] > nm[i]:
                    j += 1
            if n1 <= nm[i]:
                z2, n2 = ZUP[i], nm[i]
                total += n2 * (z2 - z1)
                iz, z = _store(pattern, iz, z, z2, lambda k, n2=n2: n2)
            else:
                n2 = max(RNS[j], nm[i])
                dz = round((n1 - n2) / USL[j, ig] * 10) * 0.1 or 0.1
                z2 = z1 + dz
                if z2 > ZUP[i]:
                    z2 = ZUP[i]
                    dz = z2 - z1
                    n2 = n1 - dz * USL[j, ig]
                total += dz * (n1 + n2) / 2.0
                iz, z = _store(pattern, iz, z, z2,
                               lambda k, n1=n1, z1=z1, s=USL[j, ig]: n1 - (k - z1) * s)
            if n2 == RNS[j]:
                j += 1
            j = min(j, 17)
            n1, z1 = n2, round(z2 * 10) * 0.1
            control += 1
    total = max(total, 0.0)
    if total <= 16:
        total = np.floor(total * 1000 + 0.5) / 1000.0
    else:
        total = np.floor(total * 100 + 0.05) / 100.0
    return float(total), np.array(pattern[:240])


@lru_cache(maxsize=4)
def third_octaves(fs: float) -> ThirdOctaves:
    """The filter bank of a rate, made once per process: its impulse responses, computed
    sample by sample, cost 0.15 s, as much as filtering a track's windows with them."""
    return ThirdOctaves(fs)


def window_patterns(windows: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Total loudness (windows) and specific loudness patterns (windows x 240) of windows."""
    found = [specific_loudness(levels) for levels in third_octaves(float(fs)).levels(windows)]
    return (np.array([total for total, _ in found]),
            np.array([pattern for _, pattern in found]).reshape(-1, 240))
