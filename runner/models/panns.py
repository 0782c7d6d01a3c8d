"""PANNs CNN14 (Kong, Cao, Iqbal, Wang, Wang, Plumbley 2020), an AudioSet tagger, in our own
torch definition (lock-entry kind ``panns``; docs/embeddings.md).

The checkpoint is the authors' ``Cnn14_mAP=0.431.pth`` (zenodo record 3987831): a torch
pickle holding the network's state (``model``) beside its training sampler's state (numpy
arrays). The model stage checks its sha256 and hands the bytes here, where they are read with
``torch.load(weights_only=True)``, allowing numpy's array reconstruction and nothing else:
tensors, numbers and arrays, never code. The authors' code and torchlibrosa are not imported.

Front end, as PANNs trained with torchlibrosa's Spectrogram + LogmelFilterBank: 32 kHz mono,
a 1024-point Hann STFT every 320 samples (10 ms), centred with reflect padding, power, 64 mel
bands of 50-14000 Hz (librosa's Slaney mel), ``10 log10(max(x, 1e-10))``. Here one
``torch.stft`` replaces torchlibrosa's two 1024-tap convolutions; the window and the mel matrix
are the checkpoint's own (the DC row of its ``conv_real``, its ``melW``).

Network: batch norm over the mel bands; six blocks of two 3x3 convolutions (batch norm, ReLU)
and 2x2 average pooling (none after the sixth); mean over frequency, then max + mean over
time; ``fc1`` + ReLU is the 2048-d embedding, ``fc_audioset`` + sigmoid the 527 AudioSet
probabilities (``head``). One row per track: (1, 2048) and (1, 527).

Long tracks run through the convolutions in pieces of ``CHUNK_FRAMES`` frames with
``CONTEXT_FRAMES`` on each side (beyond the stack's reach, and multiples of 32 so the pooling
grids line up): the time map, so the embedding, is the whole track's up to float rounding,
and memory stays bounded. Audio shorter than ``MIN_SAMPLES`` (0.31 s: 32 frames, one step of
the time map) is zero-padded to it.

The 527 class names (``audioset_labels.csv`` beside this module) are AudioSet's
``class_labels_indices.csv`` (Google, CC BY 4.0), in the order of the network's outputs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import ModelError

SAMPLE_RATE = 32000
N_FFT = 1024
HOP = 320
MEL_BINS = 64
FMIN, FMAX = 50.0, 14000.0
AMIN = 1e-10
WIDTHS = (64, 128, 256, 512, 1024, 2048)  # the released CNN14's channels per block
POOLED = 32  # frames per step of the time map: five 2x2 poolings
MIN_SAMPLES = (POOLED - 1) * HOP  # 9920: the fewest samples that give one step
CHUNK_FRAMES = 3008  # about 30 s per piece (a multiple of POOLED)
CONTEXT_FRAMES = 256  # each side; the six blocks see about 160 frames each way
LABELS_FILE = Path(__file__).with_name("audioset_labels.csv")
# the checkpoint's torchlibrosa front end, replaced by torch.stft with its window and mel
CONV_REAL = "spectrogram_extractor.stft.conv_real.weight"
CONV_IMAG = "spectrogram_extractor.stft.conv_imag.weight"
MEL = "logmel_extractor.melW"


def labels() -> tuple[str, ...]:
    """AudioSet's 527 class names, in the order of CNN14's outputs."""
    with open(LABELS_FILE, encoding="utf-8", newline="") as handle:
        return tuple(row["display_name"] for row in csv.DictReader(handle))


def hann_window() -> np.ndarray:
    """The periodic Hann window torchlibrosa takes from librosa (``fftbins=True``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def mel_matrix() -> np.ndarray:
    """(513, 64) librosa's Slaney mel filters, as torchlibrosa's LogmelFilterBank builds them."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=MEL_BINS, fmin=FMIN,
                               fmax=FMAX).T.astype(np.float32)


def build(widths: tuple[int, ...] = WIDTHS, classes: int = 527) -> Any:
    """CNN14 with untrained weights; ``widths``: channels of the six blocks (tests build
    narrow ones; the released model's are the default). Its mel matrix is zeros until
    load() sets the checkpoint's (mel_matrix() would cost librosa's import and JIT)."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self, inputs: int, outputs: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, outputs, 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
            self.bn1, self.bn2 = nn.BatchNorm2d(outputs), nn.BatchNorm2d(outputs)

        def forward(self, x: torch.Tensor, pool: bool) -> torch.Tensor:
            x = functional.relu(self.bn2(self.conv2(functional.relu(self.bn1(self.conv1(x))))))
            return functional.avg_pool2d(x, 2) if pool else x

    class Cnn14(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("window", torch.from_numpy(hann_window()))
            self.register_buffer("mel", torch.zeros(N_FFT // 2 + 1, MEL_BINS))
            self.bn0 = nn.BatchNorm2d(MEL_BINS)
            inputs = (1, *widths[:-1])
            for index, (into, out) in enumerate(zip(inputs, widths, strict=True), start=1):
                setattr(self, f"conv_block{index}", Block(into, out))
            self.fc1 = nn.Linear(widths[-1], widths[-1])
            self.fc_audioset = nn.Linear(widths[-1], classes)

        def logmel(self, padded: torch.Tensor) -> torch.Tensor:
            """(1, 1, frames, 64) from samples already reflect-padded by half a window."""
            spectrum = torch.stft(padded, N_FFT, HOP, window=self.window, center=False,
                                  return_complex=True)
            power = spectrum.real ** 2 + spectrum.imag ** 2  # (513, frames)
            mel = torch.matmul(power.T, self.mel)
            return (10.0 * torch.log10(torch.clamp(mel, min=AMIN)))[None, None]

        def time_map(self, logmel: torch.Tensor) -> torch.Tensor:
            """(channels, steps): the sixth block's output averaged over frequency."""
            x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
            for index in range(1, 7):
                x = getattr(self, f"conv_block{index}")(x, pool=index < 6)
            return x.mean(dim=3)[0]

        def embed(self, time_map: torch.Tensor) -> torch.Tensor:
            """(1, width): max + mean over time, fc1, ReLU."""
            pooled = time_map.max(dim=1).values + time_map.mean(dim=1)
            return functional.relu(self.fc1(pooled))[None]

        def tags(self, embedding: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc_audioset(embedding))

    return Cnn14()


def _checkpoint(weights: bytes) -> dict[str, Any]:
    """The network's state from the checkpoint's bytes (already checked against their pin)."""
    import torch

    multiarray = np.core.multiarray  # where numpy 1.x pickles arrays from
    allowed = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    allowed += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFD"}, key=str)
    try:
        with torch.serialization.safe_globals(allowed):
            data = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"panns: cannot read the checkpoint ({first})") from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or CONV_REAL not in state or MEL not in state:
        raise ModelError("panns: the checkpoint holds no CNN14 state ('model' with "
                         f"{CONV_REAL} and {MEL})")
    return dict(state)


def load(weights: bytes) -> Any:
    """CNN14 with the checkpoint's weights; its widths and classes are read from their
    shapes, its front end must be the 32 kHz model's (1024-point window, 64 mel bands)."""
    state = _checkpoint(weights)
    window, mel = state.pop(CONV_REAL)[0, 0, :], state.pop(MEL)
    state.pop(CONV_IMAG, None)
    if tuple(window.shape) != (N_FFT,) or tuple(mel.shape) != (N_FFT // 2 + 1, MEL_BINS):
        raise ModelError(f"panns: not the 32 kHz CNN14 (window of {window.shape[0]} samples, "
                         f"mel matrix {tuple(mel.shape)}; expected {N_FFT} and "
                         f"{(N_FFT // 2 + 1, MEL_BINS)})")
    try:
        widths = tuple(int(state[f"conv_block{i}.conv1.weight"].shape[0]) for i in range(1, 7))
        network = build(widths, int(state["fc_audioset.weight"].shape[0]))
        network.load_state_dict({**state, "window": window, "mel": mel})
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ModelError(f"panns: the checkpoint is not a CNN14 ({reason})") from None
    return network.eval()


@dataclass(frozen=True)
class Panns:
    """A loaded CNN14: ``run`` gives the (1, width) embedding of a 32 kHz track, ``head`` its
    (1, classes) AudioSet probabilities."""

    network: Any
    sample_rate: int = SAMPLE_RATE
    frame_rate: float = 0.0  # one row per track

    def time_map(self, audio: np.ndarray) -> Any:
        """(channels, steps) for the whole track, computed piece by piece."""
        import torch

        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        audio = np.pad(audio, (0, max(0, MIN_SAMPLES - len(audio))))
        padded = torch.from_numpy(np.pad(audio, N_FFT // 2, mode="reflect"))
        total = 1 + len(audio) // HOP
        pieces = []
        with torch.inference_mode():
            for start in range(0, total, CHUNK_FRAMES):
                stop = min(start + CHUNK_FRAMES, total)
                low, high = max(0, start - CONTEXT_FRAMES), min(total, stop + CONTEXT_FRAMES)
                samples = padded[low * HOP:(high - 1) * HOP + N_FFT]
                steps = self.network.time_map(self.network.logmel(samples))
                first = (start - low) // POOLED
                last = steps.shape[1] if stop == total else first + (stop - start) // POOLED
                pieces.append(steps[:, first:last])
        return torch.cat(pieces, dim=1)

    def run(self, audio: np.ndarray) -> np.ndarray:
        import torch

        time_map = self.time_map(audio)
        with torch.inference_mode():
            return self.network.embed(time_map).numpy().astype(np.float32)

    def head(self, embedding: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            rows = torch.from_numpy(np.ascontiguousarray(embedding, dtype=np.float32))
            return self.network.tags(rows).numpy().astype(np.float32)
