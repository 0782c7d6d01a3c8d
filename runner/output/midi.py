"""Standard MIDI files of notes (music-embeddings --midi), written without a MIDI library.

The file basic-pitch's own ``predict_and_save`` makes through pretty_midi, in the form any
sequencer reads: format 1, a tempo track (120 BPM, 4/4) and one track of notes on channel 1
with program 5 (Electric Piano 1, as basic-pitch), 480 ticks per quarter note (960 per
second: times are kept to about 1 ms). Velocity is round(127 x the note's amplitude), at
least 1. A track without notes gives a valid file with an empty note track.

:func:`read_notes` reads the notes back (any format 0 or 1 file with one tempo map), for
tests and for people checking a file without a MIDI library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from runner.models.basic_pitch import Note
from runner.output.files import write_bytes_atomic

TICKS_PER_QUARTER = 480
TEMPO_US = 500_000  # microseconds per quarter note: 120 BPM
PROGRAM = 4  # General MIDI's Electric Piano 1 (zero-based), basic-pitch's instrument
TICKS_PER_SECOND = TICKS_PER_QUARTER * 1_000_000 / TEMPO_US


def _varlen(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits a byte, high bit: more follow)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track(events: Iterable[tuple[int, bytes]]) -> bytes:
    """An MTrk chunk of (absolute tick, event bytes), ended by End of Track."""
    body, now = bytearray(), 0
    for tick, data in events:
        body += _varlen(tick - now) + data
        now = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def midi_bytes(notes: Iterable[Note]) -> bytes:
    """The standard MIDI file of ``notes``."""
    tempo = [(0, b"\xff\x51\x03" + TEMPO_US.to_bytes(3, "big")),
             (0, b"\xff\x58\x04\x04\x02\x18\x08")]  # 4/4
    events: list[tuple[int, int, bytes]] = []  # (tick, 0 off / 1 on, bytes): offs first
    for note in notes:
        start = max(0, round(note.start * TICKS_PER_SECOND))
        end = max(start + 1, round(note.end * TICKS_PER_SECOND))
        events.append((start, 1, bytes((0x90, note.pitch, note.velocity))))
        events.append((end, 0, bytes((0x80, note.pitch, 0))))
    events.sort(key=lambda event: (event[0], event[1], event[2][1]))
    notes_track = [(0, bytes((0xC0, PROGRAM)))] + [(tick, data) for tick, _, data in events]
    header = b"MThd" + struct.pack(">IHHH", 6, 1, 2, TICKS_PER_QUARTER)
    return header + _track(tempo) + _track(notes_track)


def write_midi_atomic(path: Path, notes: Iterable[Note]) -> None:
    """Write the file as every output is: a temporary file renamed into place."""
    write_bytes_atomic(path, midi_bytes(notes))


def read_notes(path: Path) -> list[tuple[float, float, int, int]]:
    """(start s, end s, pitch, velocity) of every note of a format 0 or 1 file with a
    constant tempo, in order of start (then end, pitch)."""
    data = Path(path).read_bytes()
    if data[:4] != b"MThd":
        raise ValueError(f"{path}: not a standard MIDI file")
    division = struct.unpack(">H", data[12:14])[0]
    tempo, pos, found = TEMPO_US, 14, []
    while pos < len(data):
        size = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if data[pos:pos + 4] == b"MTrk":
            tempo, notes = _read_track(data[pos + 8:pos + 8 + size], tempo)
            found += notes
        pos += 8 + size
    seconds = tempo / 1_000_000 / division
    return sorted((a * seconds, b * seconds, p, v) for a, b, p, v in found)


def _read_track(body: bytes, tempo: int) -> tuple[int, list[tuple[int, int, int, int]]]:
    """The tempo (the track's set-tempo, if any) and the (start tick, end tick, pitch,
    velocity) of the notes of one track."""
    pos, tick, status, sounding, notes = 0, 0, 0, {}, []
    while pos < len(body):
        delta = 0
        while True:
            delta = (delta << 7) | (body[pos] & 0x7F)
            pos += 1
            if not body[pos - 1] & 0x80:
                break
        tick += delta
        if body[pos] & 0x80:
            status, pos = body[pos], pos + 1
        if status == 0xFF:  # meta: type, length, data
            kind, length = body[pos], body[pos + 1]
            if kind == 0x51:
                tempo = int.from_bytes(body[pos + 2:pos + 5], "big")
            pos += 2 + length
            continue
        if status in (0xF0, 0xF7):  # sysex: a varlen length (short ones only)
            pos += 1 + body[pos]
            continue
        kind, width = status & 0xF0, 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        args = body[pos:pos + width]
        pos += width
        if kind == 0x90 and args[1] > 0:
            sounding[args[0]] = (tick, args[1])
        elif kind in (0x80, 0x90) and args[0] in sounding:
            start, velocity = sounding.pop(args[0])
            notes.append((start, tick, args[0], velocity))
    return tempo, notes
