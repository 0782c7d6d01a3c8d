"""The decoded signal, kept on disk for the passes after the first, so a file is decoded once.

A profile's later passes need the analysed signal again (the tonal pass reads it after the
tuning frequency is known). Holding it in memory costs 635 MB per hour, and decoding the file
again costs a decode and a resampling per pass (a 5-minute MP3: 0.7 s; at 48 kHz: 4.6 s). The
first pass therefore writes the signal, exactly, to a float WAV in a private temporary folder
(``TMPDIR``), and the later passes read that instead (AudioLoader returns the same float32
samples). The folder is made for each file and removed when its analysis ends, so a process
that ends between files (a batch worker, which skips exit handlers) leaves nothing behind. Its
name carries its owner (``extractor-spool-<pid>@<host>.*``): a process killed in the middle of
a file (kill -9, a crash in native code) leaves its folder, and the next run on that machine
removes it (remove_stale), never a folder whose process is alive.

Essentia cannot write it directly: its audio writers quantise to 16 bits, and FileOutput takes
one token per call (per sample, seconds per track), so the signal is written in blocks of
``BLOCK`` samples (the last one padded with zeros), and the header, which needs the exact
length, is put in front afterwards (FrameCutter's default would put noise into a silent block:
it is told to keep them). The exact length comes from Duration when the signal has
fewer than 2**24 samples (Duration counts in float32); longer files also count the samples of
the last block (a stream of ones, cut like the signal). Whatever cannot be made exact (an
unexpected length, a full disk) is never guessed: the later passes then decode the file again.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import tempfile
import time
from functools import lru_cache
from typing import Any

import numpy as np

from runner import procs

BLOCK = 65536  # samples per token written
EXACT = 2**24  # Duration's float32 sample count is exact below this
HEADER = 4096  # bytes: a WAV header padded (JUNK chunk) to one file-system block
_COUNT_FROM = 0.9 * EXACT  # expected samples (from the header) from which the tail is counted
_FALLOC_FL_INSERT_RANGE = 0x20
PREFIX = "extractor-spool-"
_OWNED = re.compile(re.escape(PREFIX) + procs.TAG + r"\.[^.]+$")
# Folders named before their owner was recorded: removed once surely abandoned (a folder
# lives as long as one file's analysis).
UNOWNED_AGE = 24 * 3600.0


def remove_stale(folder: str | None = None) -> list[str]:
    """Remove the spool folders in ``folder`` (default: TMPDIR) whose process is gone;
    returns their paths. Called when a run starts."""
    removed = []
    folder = folder or tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        try:
            last_used = os.stat(path).st_mtime
        except OSError:
            continue
        owner = _OWNED.match(name)
        stale = (procs.gone(int(owner[1]), owner[2], last_used) if owner
                 else time.time() - last_used > UNOWNED_AGE)
        if stale and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_owned(pid: int, folder: str | None = None) -> None:
    """Remove the spool folders of process ``pid`` of this machine: a batch worker that
    died, or this process when it is told to stop in the middle of a file."""
    folder = folder or tempfile.gettempdir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        owner = _OWNED.match(name)
        if owner and int(owner[1]) == pid and owner[2] == procs.host():
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def wav_header(samples: int, sample_rate: int) -> bytes:
    """A mono 32-bit float WAV header of exactly HEADER bytes for ``samples`` samples."""
    fmt = struct.pack("<HHIIHH", 3, 1, sample_rate, sample_rate * 4, 4, 32)
    junk = HEADER - 12 - (8 + len(fmt)) - 8 - 8
    body = (b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
            + b"JUNK" + struct.pack("<I", junk) + bytes(junk)
            + b"data" + struct.pack("<I", samples * 4))
    return b"RIFF" + struct.pack("<I", len(body) + samples * 4) + body


@lru_cache(maxsize=1)
def _fallocate() -> Any:
    try:
        fn = ctypes.CDLL("libc.so.6", use_errno=True).fallocate
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fn


def prepend_header(path: str, header: bytes, data_bytes: int) -> None:
    """Cut ``path`` to ``data_bytes`` and put ``header`` in front of it: in place where the
    file system can insert a block (ext4, XFS), by copying otherwise (tmpfs)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, data_bytes)
        insert = _fallocate()
        if insert is not None and insert(fd, _FALLOC_FL_INSERT_RANGE, 0, len(header)) == 0:
            os.pwrite(fd, header, 0)
            return
    finally:
        os.close(fd)
    copy = f"{path}.copy"
    with open(path, "rb") as src, open(copy, "wb") as dst:
        dst.write(header)
        shutil.copyfileobj(src, dst, 1 << 22)
    os.replace(copy, path)


class Spool:
    """Writes the signal streaming through a first pass to a float WAV, one file at a time.

    ``attach`` wires it to the signal of a network that is built once; ``begin`` and
    ``finish`` bracket each run of that network; ``discard`` removes the file.
    """

    def __init__(self, essentia: Any, sample_rate: float) -> None:
        self.essentia = essentia
        self.streaming = essentia.streaming
        self.sample_rate = sample_rate
        self.folder: str | None = None  # while a file is analysed
        self.raw = self.wav = ""
        self.pool = essentia.Pool()
        self._cutter: Any = None
        self._signal: Any = None
        self._ones: Any = None
        self._writer: Any = None
        self._counting = False

    def attach(self, signal: Any) -> list[Any]:
        """Wire the blocks writer and the counters to ``signal``; returns the algorithms
        Python must keep alive."""
        es = self.streaming
        self._signal = signal
        self._cutter = es.FrameCutter(frameSize=BLOCK, hopSize=BLOCK, startFromZero=True,
                                      validFrameThresholdRatio=0, lastFrameToEndOfFile=False,
                                      silentFrames="keep")
        signal >> self._cutter.signal
        duration = es.Duration(sampleRate=1.0)
        signal >> duration.signal
        duration.duration >> (self.pool, "samples")
        # The tail counter: ones, cut into blocks like the signal; connected only for files
        # long enough to need it (it costs 0.1 s per 5 minutes).
        self._ones = es.UnaryOperatorStream(type="identity", scale=0.0, shift=1.0)
        cutter = es.FrameCutter(frameSize=BLOCK, hopSize=BLOCK, startFromZero=True,
                                validFrameThresholdRatio=0, lastFrameToEndOfFile=False,
                                silentFrames="keep")
        energy = es.Energy()
        self._ones.array >> cutter.signal
        cutter.frame >> energy.array
        energy.energy >> (self.pool, "block_samples")
        return [self._cutter, duration, self._ones, cutter, energy]

    def begin(self, expected_samples: float) -> None:
        """Before a run: a fresh writer (FileOutput opens its file once and never closes it),
        and the tail counter when the signal may reach 2**24 samples."""
        self.discard()
        self.folder = tempfile.mkdtemp(prefix=f"{PREFIX}{procs.tag()}.")
        self.raw = os.path.join(self.folder, "signal.f32")
        self.wav = os.path.join(self.folder, "signal.wav")
        self.pool.clear()
        self._writer = self.streaming.FileOutput(filename=self.raw, mode="binary")
        self._cutter.frame >> self._writer
        self._counting = expected_samples >= _COUNT_FROM
        if self._counting:
            self._signal >> self._ones.array

    def end(self) -> None:
        """After a run (or a failed one): unwire the writer, which closes its file."""
        if self._writer is not None:
            self.essentia._essentia.fileOutputDisconnect(self._cutter, "frame", self._writer)
            self._cutter.connections[self._cutter.frame].remove(self._writer)
            self._writer = None
        if self._counting:
            self._signal.disconnect(self._ones.array)
            self._counting = False

    def finish(self) -> str | None:
        """After a run: the WAV holding exactly the signal, or None where the length cannot
        be known exactly (the later passes then decode the file again)."""
        counting = self._counting
        self.end()
        samples = self.samples(counting)
        rate = self.sample_rate
        if (not samples or rate != int(rate) or samples * 4 + HEADER >= 2**32
                or self.folder is None or not os.path.exists(self.raw)
                or os.path.getsize(self.raw) != -(-samples // BLOCK) * BLOCK * 4):
            self.discard()
            return None
        prepend_header(self.raw, wav_header(samples, int(rate)), samples * 4)
        os.replace(self.raw, self.wav)
        return self.wav

    def samples(self, counted: bool) -> int | None:
        """The exact number of samples written, or None."""
        names = set(self.pool.descriptorNames())
        if "samples" not in names:
            return None
        approx = float(np.atleast_1d(self.pool["samples"])[-1])
        if counted and "block_samples" in names:
            blocks = np.atleast_1d(self.pool["block_samples"])
            exact = (len(blocks) - 1) * BLOCK + int(blocks[-1])
            # a cross-check: float32(n) is within half a unit in the last place of n
            unit = float(np.spacing(np.float32(approx)))
            return exact if abs(exact - approx) <= max(1.0, unit) else None
        return int(approx) if approx < EXACT else None

    def discard(self) -> None:
        """Remove this file's folder, and what it holds."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def close(self) -> None:
        self.end()
        self.discard()
