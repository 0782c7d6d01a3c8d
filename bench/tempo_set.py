"""A tempo-annotated evaluation set, synthesised deterministically from a seed.

Each piece is rendered from a drum/bass/harmony pattern at a constant tempo, so the tempo it
was written at is the truth. Twelve styles cover what trips beat trackers: eighth and
sixteenth hats, four-on-the-floor, jazz swing, funk syncopation with ghost notes, a 3/4 waltz,
half-time and one-drop (snare once a bar), sustained chords with slow attacks and no drums,
arpeggios without drums, a bossa clave and a 12/8 shuffle. Tempi are spread log-uniformly over
60-200 BPM (one stratum per piece, shuffled over the styles); the sounds (kick pitch, hat
brightness, key, chord voicings), the humanised timing (a few ms) and the velocities all come
from the seed. Nothing is stored in git: ``python bench/tempo_set.py --seed 1 --out DIR``
writes WAV files and a ``truth.csv``; ``pieces(seed)`` gives the same audio in memory.

The truth is the notated beat (quarter note; the dotted quarter in 12/8 is *not* used: the
shuffle's beat is the quarter whose triplets the hats play). Half-time and one-drop pieces are
annotated at the notated tempo; listeners may tap half of it, which Acc2 forgives.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 44100
MIN_BPM, MAX_BPM = 60.0, 200.0


@dataclass(frozen=True)
class Piece:
    name: str
    style: str
    bpm: float
    audio: np.ndarray  # mono float32 at SR


# ----------------------------------------------------------------------------- sounds


def _env(n: int, decay_s: float, attack_s: float = 0.001) -> np.ndarray:
    t = np.arange(n) / SR
    attack = np.minimum(1.0, t / max(attack_s, 1e-6))
    return attack * np.exp(-t / decay_s)


def _highpass(x: np.ndarray, times: int) -> np.ndarray:
    for _ in range(times):
        x = np.diff(x, prepend=0.0)
    return x / (np.max(np.abs(x)) + 1e-12)


class Kit:
    """One drum kit per piece (pitches and brightness drawn from the piece's generator)."""

    def __init__(self, rng: np.random.Generator) -> None:
        n = int(0.5 * SR)
        t = np.arange(n) / SR
        f_end = rng.uniform(45, 70)
        freq = f_end + (160 - f_end) * np.exp(-t / 0.03)
        self.kick = np.sin(2 * np.pi * np.cumsum(freq) / SR) * _env(n, rng.uniform(0.15, 0.3))
        noise = rng.standard_normal(n)
        snare_tone = np.sin(2 * np.pi * rng.uniform(170, 220) * t) * _env(n, 0.06)
        self.snare = 0.6 * _highpass(noise, 1) * _env(n, rng.uniform(0.08, 0.18)) + 0.5 * snare_tone
        bright = int(rng.integers(2, 4))
        hat_noise = _highpass(rng.standard_normal(n), bright)
        self.hat = 0.35 * hat_noise * _env(n, rng.uniform(0.02, 0.05))
        self.open_hat = 0.3 * _highpass(rng.standard_normal(n), bright) * _env(n, 0.25)
        self.ride = 0.25 * (_highpass(rng.standard_normal(n), 2) * _env(n, 0.35)
                            + 0.5 * np.sin(2 * np.pi * rng.uniform(3000, 4500) * t) * _env(n, 0.4))
        self.rim = 0.5 * np.sin(2 * np.pi * rng.uniform(1800, 2600) * t) * _env(n, 0.015)
        self.shaker = 0.2 * _highpass(rng.standard_normal(n), 3) * _env(n, 0.04, attack_s=0.012)
        self.clap = 0.5 * _highpass(rng.standard_normal(n), 1) * (
            _env(n, 0.01) + np.roll(_env(n, 0.01), int(0.012 * SR)) + np.roll(_env(n, 0.08),
                                                                           int(0.024 * SR)))


def tone(freq: float, seconds: float, attack: float = 0.005, decay: float = 0.5,
         harmonics: int = 4) -> np.ndarray:
    """Additive tone with 1/k harmonics: piano-ish (short attack) or pad (long attack)."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    env = np.minimum(1.0, t / attack) * np.exp(-t / decay)
    release = np.minimum(1.0, (seconds - t) / 0.02)  # no click at the note's end
    return wave * env * release


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


# ----------------------------------------------------------------------------- patterns

Event = tuple[float, str, float]  # (time in beats within the bar, instrument, velocity)
CHORDS = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16)]  # I IV V vi in semitones


def _grid(step: float, beats: float, inst: str, vel: float, accent: float = 1.0
          ) -> list[Event]:
    """Evenly spaced hits; those on the beat get ``accent`` times the velocity."""
    count = int(round(beats / step))
    return [(i * step, inst, vel * (accent if abs(i * step - round(i * step)) < 1e-9 else 1.0))
            for i in range(count)]


def pattern(style: str) -> tuple[int, list[Event]]:
    """(beats per bar, drum events of one bar) for a style; pitched parts come from ``parts``."""
    if style == "rock8":
        return 4, [(0, "kick", 1), (2, "kick", .9), (1, "snare", 1), (3, "snare", 1)] + _grid(
            .5, 4, "hat", .6, 1.3)
    if style == "rock16":
        return 4, [(0, "kick", 1), (1.5, "kick", .8), (2, "kick", .9), (1, "snare", 1),
                   (3, "snare", 1)] + _grid(.25, 4, "hat", .45, 1.5)
    if style == "four_floor":
        return 4, _grid(1, 4, "kick", 1) + [(b + .5, "open_hat", .6) for b in range(4)] + [
            (1, "clap", .8), (3, "clap", .8)]
    if style == "swing":
        return 4, [(b, "ride", .7) for b in range(4)] + [(1 + 2 / 3, "ride", .45),
                                                         (3 + 2 / 3, "ride", .45),
                                                         (1, "hat", .5), (3, "hat", .5),
                                                         (0, "kick", .25)]
    if style == "funk":
        return 4, [(0, "kick", 1), (.75, "kick", .8), (2.5, "kick", .9), (1, "snare", 1),
                   (3, "snare", 1), (1.75, "snare", .2), (2.25, "snare", .2),
                   (3.5, "snare", .25)] + _grid(.25, 4, "hat", .4, 1.4)
    if style == "waltz":
        return 3, [(0, "kick", .5)]
    if style == "half_time":
        return 4, [(0, "kick", 1), (1.5, "kick", .6), (2, "snare", 1)] + _grid(.5, 4, "hat",
                                                                                .5, 1.2)
    if style == "one_drop":
        return 4, [(2, "kick", 1), (2, "rim", .9)] + _grid(.5, 4, "hat", .4, 1.2)
    if style in ("pads", "arpeggio"):
        return 4, []
    if style == "bossa":
        clave = [0, 0.75, 1.5, 2.5, 3]  # 3-2 son clave compressed into one 4/4 bar
        return 4, [(c, "rim", .8) for c in clave] + [(0, "kick", .8), (1.5, "kick", .5),
                                                     (2, "kick", .8), (3.5, "kick", .5)] + \
            _grid(.25, 4, "shaker", .5, 1.4)
    if style == "shuffle":
        return 4, [(0, "kick", 1), (2, "kick", .9), (1, "snare", 1), (3, "snare", 1)] + [
            (b + s, "hat", .55 if s == 0 else .35) for b in range(4) for s in (0, 2 / 3)]
    raise ValueError(f"unknown style '{style}'")


STYLES = ["rock8", "rock16", "four_floor", "swing", "funk", "waltz", "half_time", "one_drop",
          "pads", "arpeggio", "bossa", "shuffle"]


def parts(style: str, beats_per_bar: int, rng: np.random.Generator) -> list[
        tuple[float, float, float, float, str]]:
    """Pitched notes of one bar: (time in beats, duration in beats, midi note, velocity, voice)."""
    root = 40 + int(rng.integers(0, 12))
    chord = CHORDS[int(rng.integers(0, len(CHORDS)))]
    notes: list[tuple[float, float, float, float, str]] = []
    if style == "swing":
        walk = [0, 4, 7, 9]
        notes += [(b, 1, root + walk[b], .8, "bass") for b in range(4)]
        notes += [(1 + 2 / 3, .5, root + 12 + c, .35, "piano") for c in chord]
    elif style == "waltz":
        notes += [(0, 1, root + chord[0], 1, "bass")]
        notes += [(b, .8, root + 24 + c, .45, "piano") for b in (1, 2) for c in chord]
    elif style == "pads":
        notes += [(0, 4, root + 12 + c, .5, "pad") for c in chord]
        notes += [(b, 1, root + chord[0], .25 if b else .4, "soft_bass") for b in range(4)]
    elif style == "arpeggio":
        seq = [chord[0], chord[1], chord[2], 12 + chord[0]] * 2
        notes += [(i * .5, .5, root + 24 + seq[i], .7 if i % 2 == 0 else .4, "piano")
                  for i in range(8)]
        notes += [(0, 2, root + chord[0], .8, "bass")]
    elif style == "one_drop":
        notes += [(b + .5, .25, root + 24 + c, .5, "piano") for b in (1, 3) for c in chord]
        notes += [(0, 1.5, root + chord[0], .8, "bass"), (2.5, 1, root + 7, .6, "bass")]
    elif style == "four_floor":
        notes += [(b + .5, .4, root + chord[0] + 12, .6, "bass") for b in range(4)]
    else:
        notes += [(0, 1.5, root + chord[0], .8, "bass"), (2, 1.5, root + chord[0] + 7, .7,
                                                          "bass")][: 1 if beats_per_bar < 4
                                                                     else 2]
        if rng.random() < .5:
            notes += [(0, beats_per_bar, root + 12 + c, .25, "pad") for c in chord]
    return notes


VOICES: dict[str, Callable[[float, float], np.ndarray]] = {
    "bass": lambda f, s: 0.6 * tone(f, s, attack=.004, decay=.4, harmonics=2),
    "soft_bass": lambda f, s: 0.5 * tone(f, s, attack=.08, decay=.6, harmonics=2),
    "piano": lambda f, s: 0.3 * tone(f, s, attack=.003, decay=.35, harmonics=5),
    "pad": lambda f, s: 0.18 * tone(f, s, attack=.35, decay=4.0, harmonics=3),
}


# ----------------------------------------------------------------------------- rendering


def render(style: str, bpm: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """The style's bar repeated at ``bpm`` for ``seconds`` (chords change every bar)."""
    beat = 60.0 / bpm
    kit = Kit(rng)
    out = np.zeros(int(seconds * SR) + SR, dtype=np.float64)
    beats_per_bar, drums = pattern(style)
    jitter = rng.uniform(0.002, 0.008)

    def place(sound: np.ndarray, at: float, gain: float) -> None:
        start = int(round((at + rng.normal(0, jitter)) * SR))
        if start < 0 or start >= len(out):
            return
        piece = sound[: len(out) - start]
        out[start:start + len(piece)] += gain * piece

    bar = 0
    while bar * beats_per_bar * beat < seconds:
        t0 = bar * beats_per_bar * beat
        for at, inst, vel in drums:
            place(getattr(kit, inst), t0 + at * beat, vel * rng.uniform(.85, 1.0))
        for at, dur, note, vel, voice in parts(style, beats_per_bar, rng):
            sound = VOICES[voice](midi_hz(note), max(dur * beat, .05))
            place(sound, t0 + at * beat, vel * rng.uniform(.85, 1.0))
        bar += 1
    out = out[: int(seconds * SR)]
    out += 1e-4 * rng.standard_normal(len(out))
    return (0.9 * out / np.max(np.abs(out))).astype(np.float32)


def tempi(count: int, rng: np.random.Generator) -> np.ndarray:
    """One tempo per log-uniform stratum of 60-200 BPM, in a shuffled order."""
    u = (np.arange(count) + rng.uniform(0, 1, count)) / count
    values = MIN_BPM * (MAX_BPM / MIN_BPM) ** u
    return np.round(rng.permutation(values), 2)


def pieces(seed: int, count: int = 48) -> Iterator[Piece]:
    """``count`` pieces (styles in turn), 20-30 s each; the same seed gives the same audio."""
    rng = np.random.default_rng(seed)
    bpms = tempi(count, rng)
    seconds = rng.uniform(20, 30, count)
    for index in range(count):
        style = STYLES[index % len(STYLES)]
        piece_rng = np.random.default_rng([seed, index])
        audio = render(style, float(bpms[index]), float(seconds[index]), piece_rng)
        yield Piece(f"s{seed}_{index:02d}_{style}", style, float(bpms[index]), audio)


def write(seed: int, out: Path, count: int = 48) -> list[tuple[Path, Piece]]:
    """WAV files (16 bit) plus ``truth.csv`` in ``out``; files already there are kept."""
    import soundfile

    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = []
    for piece in pieces(seed, count):
        path = out / f"{piece.name}.wav"
        if not path.exists():
            tmp = path.with_suffix(".tmp.wav")
            soundfile.write(tmp, piece.audio, SR, subtype="PCM_16")
            tmp.rename(path)
        written.append((path, piece))
        rows.append((path.name, piece.style, piece.bpm))
    with open(out / "truth.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "style", "bpm"), *rows])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for path, piece in write(args.seed, args.out, args.count):
        print(f"{path.name}\t{piece.bpm:.2f}")


if __name__ == "__main__":
    main()
