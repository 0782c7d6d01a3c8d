"""Hugging Face audio models (lock-entry kind ``transformers-audio``) as frame-wise models:
HuBERT, AST and EnCodec in transformers' own classes, no remote code (docs/embeddings.md);
MERT, whose hub class is remote code, is runner.models.mert (on HuBERT's frame grid here).

A model is a folder of ``config.json`` and ``model.safetensors`` (and, for AST, its
``preprocessor_config.json``), each pinned by sha256 in the lock file and checked by
runner.models.supply.cache before anything reads it; where no public hash of config.json
exists, the entry holds its values (``config``) and says where they come from
(``config_reconstructed``: a note and public sources). Weights are read only from
safetensors (tensors, never a pickle), only from that local folder (``local_files_only``,
the hub offline), into the class the entry names (``architecture``, else the config's
``architectures``). Each loader gives (audio at ``sample_rate``) -> (T, D) float32 at
``frame_rate`` frames/s:

- ``HubertModel`` (16 kHz): the last hidden state, one frame per 20 ms (50 Hz),
  T = (n - 400) // 320 + 1 for n samples (at least 1), D = hidden size (1024 for
  HuBERT-large). The track is normalised to zero mean, unit variance when the model's
  feature encoder uses layer norm (as HuBERT-large's feature extractor does; the entry's
  ``normalize`` decides otherwise), then run in
  30 s windows on the same 20 ms grid (each window sees 80 samples past its end, so no
  frame is lost or doubled at a seam).
- ``ASTModel`` / ``ASTForAudioClassification`` (16 kHz): the pooled output (the mean of the
  CLS and distillation tokens) of each window of ``max_length`` fbank frames of 10 ms (1024:
  10.24 s, the last window zero-padded), T = ceil(n / window), D = hidden size (768);
  frame rate 100 / max_length (about 0.098 Hz).
- ``EncodecModel`` (24 kHz): the encoder's continuous latent before quantisation, 75 Hz,
  T = ceil(n / 320), D = 128; run in 60 s windows (the encoder's LSTM restarts at each).

torch.set_num_threads is left to the caller (music-embeddings gives each worker its share
of the cores once the models are loaded).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import ModelError
from runner.models.supply import lock

CONFIG, WEIGHTS, PREPROCESSOR = "config.json", "model.safetensors", "preprocessor_config.json"
HUBERT_WINDOW_S = 30.0
ENCODEC_WINDOW_S = 60.0
AST_HOP = 160  # samples per fbank frame at 16 kHz (10 ms)
ARCHITECTURES = ("HubertModel", "ASTModel", "ASTForAudioClassification", "EncodecModel")


@dataclass(frozen=True)
class HubNetwork:
    """A loaded hub model: ``run`` takes mono float32 at ``sample_rate``."""

    run: Callable[[np.ndarray], np.ndarray]
    sample_rate: int
    frame_rate: float

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.run(audio)


def windowed(signal: np.ndarray, window: int, lookahead: int, count: int,
             run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``run`` on windows starting every ``window`` samples (each with ``lookahead`` samples
    past its end), the frames concatenated and cut to ``count``."""
    parts = []
    for start in range(0, max(len(signal), 1), window):
        parts.append(run(signal[start:start + window + lookahead]))
        if start + window + lookahead >= len(signal):
            break
    return np.ascontiguousarray(np.concatenate(parts)[:count], dtype=np.float32)


def _entry_class(model: lock.Model, config: dict[str, Any]) -> str:
    names = [model.extra.get("architecture")] + list(config.get("architectures") or [])
    name = next((str(n) for n in names if n), "")
    if name not in ARCHITECTURES:
        raise ModelError(f"model '{model.id}': architecture '{name or '(none)'}' is not one of "
                         f"{', '.join(ARCHITECTURES)}")
    return name


def _config(model: lock.Model, files: list[tuple[Path, str]]) -> tuple[Path, dict[str, Any],
                                                                      bool]:
    """(the folder of the verified files, the model's config, whether it is the lock entry's
    inline ``config``). The config is the pinned config.json, or, where no public hash of that
    file exists, its values in the entry with ``config_reconstructed`` saying where they come
    from (the lock file itself is then the pin)."""
    names = {path.name for path, _ in files}
    inline = model.extra.get("config")
    rebuilt = isinstance(inline, dict) and bool(model.extra.get("config_reconstructed"))
    if WEIGHTS not in names or (CONFIG not in names and not rebuilt):
        raise ModelError(f"model '{model.id}': the lock file must pin {CONFIG} and {WEIGHTS} "
                         "(weights are read from safetensors only, never from a pickle)")
    folders = {path.parent for path, _ in files}
    if len(folders) != 1:
        raise ModelError(f"model '{model.id}': its files are in several folders")
    folder = folders.pop()
    if CONFIG not in names:
        return folder, dict(inline), True
    try:
        return folder, json.loads((folder / CONFIG).read_text(encoding="utf-8")), False
    except (OSError, ValueError) as exc:
        raise ModelError(f"model '{model.id}': {folder / CONFIG}: not a JSON config "
                         f"({exc})") from None


def _from_pretrained(model: lock.Model, cls: Any, folder: Path,
                     config: dict[str, Any] | None) -> Any:
    """``cls`` from the verified local folder: safetensors only, no hub, no remote code;
    ``config``: the entry's inline config (else the folder's config.json)."""
    import torch
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # unused heads are expected (AST read as ASTModel)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars: noise on every worker's stderr
    try:
        given = {} if config is None else {"config": cls.config_class(**config)}
        return cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                   trust_remote_code=False, dtype=torch.float32,
                                   **given).eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model '{model.id}': cannot load {cls.__name__} from {folder}: "
                         f"{first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load(model: lock.Model, files: list[tuple[Path, str]]) -> HubNetwork:
    """The network of a ``transformers-audio`` entry, from files already checked against
    their pins (runner.models.supply.cache.resolved_files)."""
    import os

    # no hub, ever: huggingface_hub reads these when first imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder, config, inline = _config(model, files)
    name = _entry_class(model, config)
    try:
        import transformers
    except ImportError:
        raise ModelError(f"model '{model.id}' needs torch and transformers (pip install "
                         "'extractor-profiles[clap]' installs both)") from None

    values = {k: v for k, v in config.items() if k != "architectures"} if inline else None
    network = _from_pretrained(model, getattr(transformers, name), folder, values)
    if name == "HubertModel":
        return _hubert(network, model)
    if name == "EncodecModel":
        return _encodec(network)
    pinned = {path.name for path, _ in files}
    return _ast(network, folder if PREPROCESSOR in pinned else None)


def _hubert(network: Any, model: lock.Model) -> HubNetwork:
    config = network.config
    normalise = bool(model.extra.get("normalize", config.feat_extract_norm == "layer"))
    return hubert_frames(network, int(model.extra.get("sample_rate", 16000)), normalise)


def hubert_frames(network: Any, sample_rate: int, normalise: bool) -> HubNetwork:
    """A HubertModel's last hidden state for a whole track (HuBERT's, and MERT's through
    runner.models.mert): one frame per hop (the product of the strides) from the first
    full receptive field on, in HUBERT_WINDOW_S windows on that grid (each seeing the rest of
    its last frame's field), the track normalised first where ``normalise``."""
    import torch

    config = network.config
    hop = int(np.prod(config.conv_stride))
    receptive = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride,
                                            strict=True))):
        receptive = (receptive - 1) * stride + kernel
    window = int(HUBERT_WINDOW_S * sample_rate) // hop * hop

    def frames(piece: np.ndarray) -> np.ndarray:
        piece = np.pad(piece, (0, max(0, receptive - len(piece))))
        with torch.inference_mode():
            out = network(torch.from_numpy(np.ascontiguousarray(piece, np.float32))[None])
        return out.last_hidden_state[0].numpy()

    def run(audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if normalise and len(audio):
            audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        count = max(1, (len(audio) - receptive) // hop + 1)
        return windowed(audio, window, receptive - hop, count, frames)

    return HubNetwork(run, sample_rate, sample_rate / hop)


def _encodec(network: Any) -> HubNetwork:
    import torch

    config = network.config
    sample_rate = int(config.sampling_rate)
    hop = int(np.prod(config.upsampling_ratios))
    window = int(ENCODEC_WINDOW_S * sample_rate) // hop * hop

    def frames(piece: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            latent = network.encoder(torch.from_numpy(np.ascontiguousarray(piece))[None, None])
        return latent[0].T.numpy()

    def run(audio: np.ndarray) -> np.ndarray:
        audio = _samples(audio)
        return windowed(audio, window, 0, math.ceil(len(audio) / hop), frames)

    return HubNetwork(run, sample_rate, sample_rate / hop)


def _samples(audio: np.ndarray) -> np.ndarray:
    """Mono float32 samples, one silent sample where there are none (one window of frames)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    return audio if len(audio) else np.zeros(1, dtype=np.float32)


def _ast(network: Any, folder: Path | None) -> HubNetwork:
    import torch
    from transformers import ASTFeatureExtractor

    config = network.config
    with warnings.catch_warnings():  # "a mel filter has all zero values": Kaldi's 128 bins do
        warnings.simplefilter("ignore", UserWarning)
        if folder is not None:
            extractor = ASTFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        else:  # AudioSet's normalisation, the model's mel bins and length
            extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins,
                                            max_length=config.max_length)
    encoder = getattr(network, "audio_spectrogram_transformer", network)
    sample_rate = int(extractor.sampling_rate)
    window = int(config.max_length) * AST_HOP

    def frames(piece: np.ndarray) -> np.ndarray:
        features = extractor(piece, sampling_rate=sample_rate, return_tensors="pt")
        with torch.inference_mode():
            return encoder(features["input_values"]).pooler_output.numpy()

    def run(audio: np.ndarray) -> np.ndarray:
        audio = _samples(audio)
        return windowed(audio, window, 0, math.ceil(len(audio) / window), frames)

    return HubNetwork(run, sample_rate, sample_rate / window)


# -- hub models that music-embeddings names but the packaged lock file does not pin ---------------
@dataclass(frozen=True)
class Unpinned:
    """A hub model no public sha256 of whose weights was found: nothing is pinned, a user may
    add it (docs/embeddings.md)."""

    repository: str
    files: str  # what to download, in words
    license: str  # as the model's page states it (recorded when the user adds it)


UNPINNED = {
    "hubert-large-ll60k": Unpinned("facebook/hubert-large-ll60k",
                                   "config.json and model.safetensors", "Apache-2.0"),
    "mert-v1-330m": Unpinned("m-a-p/MERT-v1-330M", "config.json, preprocessor_config.json "
                             "and pytorch_model.bin", "CC BY-NC 4.0"),
}


def why_not(model_id: str) -> str | None:
    """Why a hub model cannot run here (None: it can, as far as the lock file goes)."""
    if model_id in UNPINNED and model_id not in lock.models():
        hub = UNPINNED[model_id]
        return (f"model '{model_id}' is not pinned yet: add it with `extractor models add "
                f"FOLDER --name {model_id}` (FOLDER: {hub.files} of {hub.repository}; "
                "docs/embeddings.md)")
    return None
