"""OpenL3 (Cramer, Wu, Salamon, Bello 2019) as a frame-wise model (lock-entry kind ``openl3``):
Essentia's frozen graphs of OpenL3's audio networks (essentia.upf.edu/models/feature-extractors/
openl3/, e.g. ``openl3-music-mel256-emb512-3.pb``), run with TensorflowPredict on a mel front end
computed here (docs/embeddings.md).

The graphs take the log-mel patch, not audio (input ``melspectrogram``: (batch, mel bands, 199,
1); output ``embeddings``: (batch, 512)), so the front end is ours, written out to be the one the
weights were trained with: openl3 <= 0.3.1's kapre 0.1.4 ``Melspectrogram`` layer (openl3 0.4's
changelog: "Reverted magnitude scaling method to match kapre<=0.1.4 as that's what the model was
trained on"). Per 1 s window of 48 kHz audio:

- 199 frames of 2048 samples every 242, the window zero-padded by 982 samples at both ends (the
  'same' padding of kapre's strided convolution), each times a periodic Hann window;
- the power spectrum through an HTK-scale mel filterbank of ``n_mels`` bands (0 - 24 kHz, each
  triangle of unit area: librosa's ``mel(htk=True, norm=1)``, what kapre 0.1.4 builds), then the
  square root (``power_melgram=1.0``);
- ``10 log10(max(x, 1e-10))``, minus the window's maximum, floored at -80 dB.

Windows are openl3's own: centred on t = 0, 0.1 s, 0.2 s, ... (the signal is preceded by half a
window of zeros and its end zero-padded), T = 1 + ceil(max(0, n - 24000) / 4800) rows at 10 Hz
for n samples at 48 kHz. The graph's weights are not pinned in the packaged lock file (no public
sha256 of them was found): ``extractor models add FILE.pb`` pins a copy you downloaded.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import ModelError
from runner.models.supply import cache, lock

SAMPLE_RATE = 48000
WINDOW = SAMPLE_RATE  # 1 s windows
HOP_S = 0.1  # seconds between windows (openl3's default): 10 rows per second
HOP = int(HOP_S * SAMPLE_RATE)
N_FFT, STFT_HOP, PAD, FRAMES = 2048, 242, 982, 199
AMIN, DYNAMIC_RANGE = 1e-10, 80.0
INPUT, OUTPUT = "melspectrogram", "embeddings"
CHUNK = 4  # windows per session run: the first block's activations are 13 MB per window
DEFAULT_ID = "openl3-music-mel256-emb512"
ZOO = "https://essentia.upf.edu/models/feature-extractors/openl3/"
LICENSE = "CC BY 4.0"
LICENSE_SOURCE = "https://github.com/marl/openl3#model-weights-license"
_NAME = re.compile(r"openl3-(music|env)-mel(128|256)-emb(512|6144)")


def window_count(samples: int, hop: int = HOP) -> int:
    """Rows for ``samples`` samples at 48 kHz (openl3's centred windows, at least one)."""
    return 1 + math.ceil(max(0, samples - WINDOW // 2) / hop)


def windows(audio: np.ndarray, hop: int = HOP) -> np.ndarray:
    """(T, 48000): 1 s windows every ``hop`` samples, the first centred on the first sample."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    count = window_count(len(audio), hop)
    padded = np.zeros((count - 1) * hop + WINDOW, dtype=np.float32)
    body = audio[:len(padded) - WINDOW // 2]
    padded[WINDOW // 2:WINDOW // 2 + len(body)] = body
    return np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::hop]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)  # HTK


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_mels: int) -> np.ndarray:
    """(n_mels, 1025) triangles on the HTK mel scale from 0 to 24 kHz, each of unit area."""
    bins = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.float64(SAMPLE_RATE / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))


@dataclass(frozen=True)
class MelBands:
    """A mel filterbank cut into blocks of 16 bands and the bins they cover: about a fifteenth
    of the dense product's work (the triangles are narrow), the same sums."""

    count: int
    blocks: tuple[tuple[int, int, int, int, np.ndarray], ...]  # bands, bins, (bins, bands)

    @classmethod
    def of(cls, filterbank: np.ndarray, size: int = 16) -> MelBands:
        blocks = []
        for first in range(0, len(filterbank), size):
            part = filterbank[first:first + size]
            used = np.nonzero(part.any(axis=0))[0]
            if len(used):
                low, high = int(used[0]), int(used[-1]) + 1
                blocks.append((first, first + len(part), low, high,
                               np.ascontiguousarray(part[:, low:high].T, dtype=np.float32)))
        return cls(len(filterbank), tuple(blocks))

    def __call__(self, power: np.ndarray) -> np.ndarray:
        out = np.zeros((*power.shape[:-1], self.count), dtype=np.float32)
        for first, last, low, high, weights in self.blocks:
            out[..., first:last] = power[..., low:high] @ weights
        return out


_HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic


def melspectrogram(chunk: np.ndarray, bands: MelBands) -> np.ndarray:
    """(W, n_mels, 199) log-mel patches of W windows of 48000 samples (see the docstring);
    two windows at a time, so that the frames stay in the CPU's caches."""
    chunk = np.asarray(chunk, dtype=np.float64)
    mel = np.empty((len(chunk), FRAMES, bands.count), dtype=np.float32)
    for start in range(0, len(chunk), 2):
        padded = np.pad(chunk[start:start + 2], ((0, 0), (PAD, PAD)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::STFT_HOP]
        spectrum = np.fft.rfft(frames * _HANN, axis=-1).view(np.float64)
        spectrum *= spectrum
        power = (spectrum[..., 0::2] + spectrum[..., 1::2]).astype(np.float32)
        mel[start:start + 2] = np.sqrt(bands(power))
    db = 10.0 * np.log10(np.maximum(mel, AMIN))
    db -= db.max(axis=(1, 2), keepdims=True)
    db = np.maximum(db, -DYNAMIC_RANGE)
    return np.ascontiguousarray(db.transpose(0, 2, 1), dtype=np.float32)


@dataclass(frozen=True)
class OpenL3:
    """A loaded OpenL3 graph: ``run`` takes mono float32 at 48 kHz and gives (T, D), a row per
    ``hop`` samples (10 Hz by default)."""

    session: Any
    pool_class: Any
    bands: MelBands
    input: str
    output: str
    hop: int = HOP
    sample_rate: int = SAMPLE_RATE

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop

    def run(self, audio: np.ndarray) -> np.ndarray:
        cut = windows(audio, self.hop)
        rows = []
        for start in range(0, len(cut), CHUNK):
            patches = melspectrogram(cut[start:start + CHUNK], self.bands)[..., None]
            pool = self.pool_class()
            pool.set(self.input, patches)
            out = np.asarray(self.session(pool)[self.output], dtype=np.float32)
            rows.append(out.reshape(len(patches), -1))
        return np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.run(audio)


def load(model: lock.Model, files: list[tuple[Path, str]], hop_s: float = HOP_S) -> OpenL3:
    """The graph of an ``openl3`` entry, from files already checked against their pins; a row
    every ``hop_s`` seconds (each row costs one run of the network on a 1 s window)."""
    from runner import registry

    hop = int(hop_s * SAMPLE_RATE)
    if hop < 1:
        raise ModelError(f"model '{model.id}': hop_s {hop_s:g} is not a positive hop")
    graph = next((path for path, _ in files if path.name == model.graph), None)
    if graph is None:
        raise ModelError(f"model '{model.id}': the lock file names no graph among its files")
    n_mels = int(model.extra.get("n_mels", 256))
    node_in = str(model.extra.get("input", INPUT))
    node_out = str(model.extra.get("output", OUTPUT))
    essentia = registry.quiet_essentia()
    try:  # squeeze=False: the trailing channel axis of (batch, bands, 199, 1) is the graph's
        session = essentia.standard.TensorflowPredict(
            graphFilename=str(graph), inputs=[node_in], outputs=[node_out], squeeze=False)
    except Exception as exc:  # EssentiaException: a graph that lacks a node, a bad file
        raise ModelError(f"{graph}: cannot load the model ({str(exc).strip()})") from None
    return OpenL3(session, essentia.Pool, MelBands.of(mel_filterbank(n_mels)), node_in, node_out,
                  hop)


def why_not(model_id: str) -> str | None:
    """Why ``openl3`` cannot run (None: it can, as far as the lock file goes)."""
    if model_id == DEFAULT_ID and model_id not in lock.models():
        return (f"model '{model_id}' is not pinned yet (no public sha256 of Essentia's "
                f"{DEFAULT_ID}-3.pb was found): download it from {ZOO} and add it with "
                f"`extractor models add {DEFAULT_ID}-3.pb` (docs/embeddings.md)")
    return None


def add_graph(path: Path, name: str | None, license_: str | None) -> int:
    """Register one of Essentia's OpenL3 graphs (``openl3-<content>-mel<bands>-emb<size>*.pb``)
    in the user's lock file as an ``openl3`` model pinned by the sha256 computed here, and copy
    it into the model cache. Compare that sha256 with a copy you trust before relying on it."""
    found = _NAME.match(path.name)
    if not found or path.suffix != ".pb" or not path.is_file():
        raise ModelError(f"{path}: not one of Essentia's OpenL3 graphs (a file named "
                         "openl3-<music|env>-mel<128|256>-emb<512|6144>*.pb)")
    content, bands, size = found.groups()
    model_id = name or found.group(0)
    sha = cache.sha256_of(path)
    entry = {
        "description": f"OpenL3 ({content}, mel{bands}, {size}-d) from {path} (extractor "
                       "models add): (T, D) embeddings at 10 Hz of 48 kHz audio, "
                       "runner/models/openl3.py",
        "license": license_ or LICENSE, "license_source": LICENSE_SOURCE, "kind": "openl3",
        "groups": ["embeddings"], "graph": path.name, "n_mels": int(bands),
        "embedding_size": int(size), "content_type": content, "input": INPUT, "output": OUTPUT,
        "files": [{"name": path.name, "url": path.resolve().as_uri(), "sha256": sha,
                   "size": path.stat().st_size}],
    }
    lock_path = lock.add_user_model(model_id, entry)
    target = cache.writable_root() / model_id
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target / path.name)
    state = cache.require(lock.get(model_id))
    print(f"{model_id}: OpenL3 graph registered in {lock_path} (sha256 {sha}: compare it with "
          f"a copy you trust), cached in {state.folder}; use it with: music-embeddings IN "
          f"--output-base DIR --models {'openl3' if model_id == DEFAULT_ID else model_id}")
    return 0
