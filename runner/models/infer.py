"""TensorFlow inference driven by MTG's metadata JSON: one embedding run feeds every head.

Essentia's TensorflowPredictMusiCNN/EffnetDiscogs/VGGish wrappers return one output node per
run, so a model's tags and its embeddings would cost two runs. Here the same pipeline is
written out (FrameCutter -> TensorflowInput* -> patches -> TensorflowPredict) with all the
outputs a track needs fetched from one session run; tests check the results equal the
wrappers' (run with the wrappers' batch size; the stage runs smaller batches, see
PATCH_CHUNK). Classifier heads (TensorflowPredict2D models) then run on the embeddings. The
front-end settings per algorithm are those hard-coded in Essentia's wrappers
(src/algorithms/machinelearning/tensorflowpredict*.cpp); everything model-specific (node
names, classes, sample rate, the embedding model a head needs) comes from the metadata JSON
(runner.models.supply.metadata: a pinned file, or its content inline in the lock file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner import registry
from runner.errors import ModelError
from runner.models.supply.metadata import Metadata


@dataclass(frozen=True)
class Frontend:
    features: str  # the Essentia algorithm that turns one frame into model input bands
    frame_size: int
    hop_size: int
    patch_size: int  # frames per patch
    patch_hop: int  # Essentia's default hop between patches (overlapping)
    batch: int | None  # a graph built for a fixed batch size (discogs-effnet-bs64)


FRONTENDS = {
    "TensorflowPredictMusiCNN": Frontend("TensorflowInputMusiCNN", 512, 256, 187, 93, None),
    "TensorflowPredictEffnetDiscogs": Frontend("TensorflowInputMusiCNN", 512, 256, 128, 62, 64),
    "TensorflowPredictVGGish": Frontend("TensorflowInputVGGish", 400, 160, 96, 93, None),
}
HEADS = ("TensorflowPredict2D",)
_CHUNK = 64  # rows per session run by default: bounds memory on long tracks
# Patches per session run for an embedding model (when its graph takes any batch size). A
# convolutional front end's intermediate tensors for a couple of patches stay in the CPU
# caches; for 64 they go to memory and back: musicnn takes 37 instead of 54 ms CPU per patch
# (one thread; also faster with two). Results differ from a 64-patch run only by float
# rounding (the order of additions inside TensorFlow's kernels depends on the batch size).
PATCH_CHUNK = 2


class Predictor:
    """One TensorFlow graph, loaded once, asked for several output nodes per run."""

    def __init__(self, graph: Path, meta: Metadata, outputs: list[str]) -> None:
        std = registry.quiet_essentia().standard
        self.meta = meta
        self.outputs = outputs
        params: dict[str, Any] = {"graphFilename": str(graph), "inputs": [meta.input],
                                  "outputs": outputs}
        if meta.is_training:
            params["isTrainingName"] = meta.is_training
        try:
            self.session = std.TensorflowPredict(**params)
        except Exception as exc:  # EssentiaException: a graph that lacks a node, a bad file
            raise ModelError(f"{graph}: cannot load the model ({str(exc).strip()})") from None
        self.pool_class = registry.quiet_essentia().Pool

    def run(self, batch: np.ndarray, fixed: int | None = None,
            chunk: int = _CHUNK) -> dict[str, np.ndarray]:
        """Rows of ``batch`` through the graph, ``chunk`` rows per session run (``fixed``
        where the graph takes only that batch size); each output as (rows, width)."""
        rows = len(batch)
        results: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        step = fixed or chunk
        for start in range(0, rows, step):
            chunk = batch[start:start + step]
            count = len(chunk)
            if fixed and count < fixed:  # the graph only takes full batches: pad, then drop
                pad = np.zeros((fixed - count, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            if chunk.ndim == 2:  # embeddings for a head: Essentia's Pool takes tensors, not
                chunk = chunk[:, None, None, :]  # matrices; TensorflowPredict squeezes them
            pool = self.pool_class()
            pool.set(self.meta.input, np.ascontiguousarray(chunk, dtype=np.float32))
            out = self.session(pool)
            for name in self.outputs:
                results[name].append(np.asarray(out[name]).reshape(len(chunk), -1)[:count])
        return {name: (np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))
                for name, parts in results.items()}


def features(signal: np.ndarray, frontend: Frontend) -> np.ndarray:
    """Model input bands per frame, as Essentia's wrappers compute them (frames x bands)."""
    std = registry.quiet_essentia().standard
    bands = getattr(std, frontend.features)()
    frames = std.FrameGenerator(np.ascontiguousarray(signal, dtype=np.float32),
                                frameSize=frontend.frame_size, hopSize=frontend.hop_size)
    rows = [bands(frame) for frame in frames]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(rows, dtype=np.float32)


def patches(frames: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(patches, 1, size, bands) windows over the frames, the last incomplete one discarded
    (Essentia's lastPatchMode 'discard'). A track shorter than one patch is padded with
    zero bands (silence after the log compression) so that it still gets a prediction."""
    if len(frames) < size:
        width = frames.shape[1] if frames.ndim == 2 and frames.shape[1] else 0
        if width == 0:
            return np.zeros((0, 1, size, 0), dtype=np.float32)
        frames = np.concatenate([frames, np.zeros((size - len(frames), width), np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(frames, (size, frames.shape[1]))
    return windows[::hop, 0][:, None]  # a view: copied chunk by chunk when run
