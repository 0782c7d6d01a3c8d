"""Make tests/data/demo.mp3: 20 s of synthetic music at 100 BPM, free of any licence.

Drums (kick, snare, hi-hat), a bass line and sustained chords (Am Dm E Am), so tempo,
beats and onsets have a known right answer. Run: python tests/data/make_demo.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SR = 44100
BPM = 100.0


def note(freq: float, seconds: float, amp: float, decay: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-t / decay) * np.minimum(1.0, t / 0.005)
    wave = sum((0.25 ** k) * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(4))
    return amp * env * wave


def demo(seconds: float = 20.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n + 4 * SR)
    beat = 60.0 / BPM
    chords = [(220.0, 261.63, 329.63), (293.66, 349.23, 440.0),
              (329.63, 415.30, 493.88), (220.0, 261.63, 329.63)]  # Am Dm E Am
    bass = [110.0, 73.42, 82.41, 110.0]
    t_kick = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t_kick / 0.03)) * t_kick) * np.exp(-t_kick / 0.12)
    snare = rng.standard_normal(int(0.2 * SR)) * np.exp(-np.arange(int(0.2 * SR)) / (0.05 * SR))
    hat = rng.standard_normal(int(0.05 * SR)) * np.exp(-np.arange(int(0.05 * SR)) / (0.01 * SR))
    hat = np.diff(hat, prepend=0.0)
    for i in range(int(seconds / beat)):
        start = int(i * beat * SR)
        bar = (i // 4) % 4
        out[start:start + kick.size] += 0.9 * kick if i % 2 == 0 else 0.0
        if i % 2 == 1:
            out[start:start + snare.size] += 0.35 * snare
        for half in (0, 1):
            s = start + int(half * beat / 2 * SR)
            out[s:s + hat.size] += 0.15 * hat
        b = note(bass[bar], beat, 0.35, 0.4)
        out[start:start + b.size] += b
        if i % 4 == 0:
            for f in chords[bar]:
                c = note(f, 4 * beat, 0.12, 1.5)
                out[start:start + c.size] += c
    out = out[:n]
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def main(path: str) -> None:
    import essentia
    import essentia.standard as std

    essentia.log.infoActive = False
    mono = demo()
    stereo = np.ascontiguousarray(np.stack([mono, mono], axis=1))
    std.AudioWriter(filename=path, sampleRate=SR, format=Path(path).suffix[1:],
                    bitrate=128)(stereo)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("demo.mp3")))
