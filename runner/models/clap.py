"""CLAP text/audio embeddings (laion-clap checkpoints, or transformers' ClapModel), offline.

Both backends take their files only from the model cache, verified by sha256 before anything
is unpickled (laion-clap's checkpoints are pickles), and never contact a hub: laion-clap's
package import loads three tokenizers from the hub and its ``CLAP_Module`` downloads
roberta-base, so we import only its model code (``clap_module``) and build roberta from a
config; the tokenizer comes from the pinned ``roberta-base`` files.

The same signal always gives the same vector. laion-clap crops audio longer than 10 s at a
random offset; we instead cut the whole track into 10 s windows (:func:`windows`), embed
each, and return the L2-normalised mean. torch, laion-clap and transformers are imported
inside functions: the runner pays for them only when a CLAP model is used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import AudioError, ModelError
from runner.models.supply import cache, lock
from runner.models.supply.lock import Model

SAMPLE_RATE = 48000
WINDOW = 480000  # 10 s at 48 kHz: the length every CLAP checkpoint was trained on
BATCH = 4  # windows per forward pass: bounds memory on long tracks
DIM = 512
# Names this windowing, so stored vectors made another way are not reused (music-clap).
WINDOWING = "mean-of-10s-windows-v1"
KINDS = ("laion-clap", "transformers-clap")


def windows(signal: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """Cut a signal into ``size``-sample windows covering all of it: ``(n, size)``.

    Windows start every ``size`` samples; when the length is not a multiple, one more
    window ends exactly at the last sample (overlapping its neighbour), so every sample is
    seen and nothing is padded. A signal of at most ``size`` samples is one window,
    filled as laion-clap fills short clips ("repeatpad": whole repeats, then zeros).
    """
    n = len(signal)
    if n == 0:
        raise AudioError("<signal>", "no samples to embed")
    if n <= size:
        repeated = np.tile(signal, size // n)
        return np.pad(repeated, (0, size - len(repeated)))[None, :]
    starts = list(range(0, n - size + 1, size))
    if starts[-1] != n - size:
        starts.append(n - size)
    return np.stack([signal[s:s + size] for s in starts])


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _offline() -> None:
    """No hub, ever: everything comes from verified local folders. huggingface_hub reads
    this when first imported, so it is set before any transformers import of ours."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _set_threads(threads: int | None, inter_op_threads: int | None) -> None:
    """torch's intra-op and inter-op thread counts (the latter only before any parallel work)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if inter_op_threads:
        try:
            torch.set_num_interop_threads(int(inter_op_threads))
        except RuntimeError:  # already set, or parallel work already ran in this process
            if torch.get_num_interop_threads() != int(inter_op_threads):
                raise ModelError("--torch-inter-op-threads must be set before torch does any "
                                 "work in this process") from None


class ClapBackend:
    """One CLAP model: audio and text to L2-normalised 512-d vectors in a shared space."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, model: Model, threads: int | None = None,
                 inter_op_threads: int | None = None) -> None:
        self.model = model
        _offline()
        _set_threads(threads, inter_op_threads)
        self.state = require_files(model)[0]  # verified before anything below reads it

    def embed_audio(self, signal: np.ndarray) -> np.ndarray:
        """Mono float32 at 48 kHz -> (512,) float32: the normalised mean of its windows."""
        signal = np.ascontiguousarray(signal, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(signal)):
            raise AudioError("<signal>", "samples are not finite (NaN or inf)")
        parts = windows(signal)
        vectors = np.concatenate([self._embed_windows(parts[i:i + BATCH])
                                  for i in range(0, len(parts), BATCH)])
        return _normalise(_normalise(vectors).mean(axis=0))

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Texts -> (n, 512) float32, L2-normalised."""
        if not texts:
            return np.zeros((0, DIM), np.float32)
        return _normalise(self._embed_texts(list(texts)))

    # backends implement these two: (n, WINDOW) windows and texts -> unnormalised vectors
    def _embed_windows(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def require_files(model: Model) -> list[cache.State]:
    """Verified copies of a CLAP model and of its tokenizer, found before torch loads
    anything. Where some are missing: one line naming every file the model needs and the
    command that fetches what is missing (a file that does not match its pin: its own line).
    """
    needed = [model] + ([lock.get(model.tokenizer)] if model.tokenizer else [])
    states = [cache.locate(m) for m in needed]
    for state in states:
        if state.state == cache.MISMATCH:
            raise cache.mismatch_error(state)
    absent = [state.model.id for state in states if not state.ok]
    if absent:
        files = [f"{', '.join(p.name for p in m.files)} ({m.id})" for m in needed]
        raise cache.MissingModel(
            f"model '{model.id}' needs {' and '.join(files)}; not in the model cache "
            f"({cache.user_cache()}): {', '.join(absent)}; {lock.fetch_hint(absent)}", model.id)
    return states


def _tokenizer_folder(model: Model) -> Path:
    """The verified folder of the tokenizer model the CLAP model names (``tokenizer``)."""
    if not model.tokenizer:
        raise ModelError(f"model '{model.id}': the lock file names no 'tokenizer'")
    state = require_files(model)[-1]
    assert state.folder is not None
    return state.folder


def _load_clap_module() -> Any:
    """laion-clap's model code (``clap_module``) without running ``laion_clap/__init__``.

    The package's ``__init__`` imports ``training/data.py``, which fetches three tokenizers
    from the hub at import time; ``clap_module`` itself only defines the model.
    """
    if "clap_module" in sys.modules:
        return sys.modules["clap_module"]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("laion-clap is not installed (pip install 'extractor-profiles[clap]')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "clap_module"
    module_spec = importlib.util.spec_from_file_location(
        "clap_module", folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["clap_module"] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["clap_module"]
        raise
    return module


def roberta_config() -> Any:
    """roberta-base's architecture (what laion-clap's text branch and projection expect)."""
    from transformers import RobertaConfig

    return RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2)


def build_laion_clap(amodel: str, text_config: Any = None) -> Any:
    """laion-clap's ``CLAP`` model with random weights, built offline.

    laion-clap's constructor calls ``RobertaModel.from_pretrained('roberta-base')`` (a hub
    download); while it runs, that name gives a randomly initialised roberta of the same
    shape instead, which the checkpoint then overwrites. ``text_config`` (tests) may shrink
    roberta; its hidden size must stay 768.
    """
    import torch

    _offline()
    # HTSAT calls torch.meshgrid without indexing=; users cannot act on torch's warning
    warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
    clap_module = _load_clap_module()
    model_module = sys.modules["clap_module.model"]
    real = model_module.RobertaModel
    config = text_config or roberta_config()

    class _Offline:
        @staticmethod
        def from_pretrained(*_args: Any, **_kwargs: Any) -> Any:
            return real(config, add_pooling_layer=True)

    model_module.RobertaModel = _Offline
    try:
        model, _ = clap_module.create_model(amodel, "roberta", precision="fp32",
                                            device=torch.device("cpu"), enable_fusion=False)
    finally:
        model_module.RobertaModel = real
    return model.eval()


def fast_spectrogram(net: Any) -> None:
    """Swap HTSAT's power spectrogram (torchlibrosa: an STFT as two 1024-tap Conv1d) for the
    same STFT through an FFT, after the checkpoint is loaded.

    Same window (taken from the loaded conv weights: their DC row is the window), centring,
    reflect padding and hop; log-mel values agree within 1e-4 dB. It saves about 20 ms per
    10 s window on one core: the difference between 38x and 48x realtime for HTSAT-tiny.
    """
    import torch

    old = net.audio_branch.spectrogram_extractor
    stft = old.stft
    window = stft.conv_real.weight[0, 0, :].detach().clone()

    class _FFTSpectrogram(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("window", window)

        def forward(self, x: Any) -> Any:
            spec = torch.stft(x, stft.n_fft, stft.hop_length, window=self.window,
                              center=stft.center, pad_mode=stft.pad_mode, return_complex=True)
            power = spec.real ** 2 + spec.imag ** 2
            if old.power != 2.0:
                power = power ** (old.power / 2.0)
            return power.transpose(1, 2)[:, None]  # (batch, 1, frames, bins) as torchlibrosa

    net.audio_branch.spectrogram_extractor = _FFTSpectrogram()


class LaionClapBackend(ClapBackend):
    """A laion-clap checkpoint (``.pt``) with its audio model (``amodel``: HTSAT-tiny/base)."""

    def __init__(self, model: Model, threads: int | None = None,
                 inter_op_threads: int | None = None) -> None:
        super().__init__(model, threads, inter_op_threads)
        import torch
        from transformers import RobertaTokenizer

        if model.extra.get("enable_fusion"):
            raise ModelError(f"model '{model.id}': fusion checkpoints are not supported "
                             "(they need torchaudio)")
        checkpoint = model.extra.get("checkpoint") or model.files[0].name
        amodel = str(model.extra.get("amodel", "HTSAT-tiny"))
        text_config = None
        if model.extra.get("text_config"):  # a slimmer roberta (tests); hidden size stays 768
            text_config = roberta_config()
            for key, value in dict(model.extra["text_config"]).items():
                setattr(text_config, key, value)
        try:
            self.net = build_laion_clap(amodel, text_config)
            # Safe to unpickle: cache.require verified this file's sha256 against the pin.
            data = torch.load(self.state.path(checkpoint), map_location="cpu",
                              weights_only=False)
            state = data.get("state_dict", data) if isinstance(data, dict) else data
            state = {k.removeprefix("module."): v for k, v in state.items()}
            expected = self.net.state_dict()
            state = {k: v for k, v in state.items()
                     if k in expected or not k.endswith("position_ids")}
            self.net.load_state_dict(state, strict=True)
            fast_spectrogram(self.net)
        except (RuntimeError, KeyError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model '{model.id}': checkpoint does not fit {amodel}: "
                             f"{first}") from None
        folder = _tokenizer_folder(model)
        self.tokenizer = RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)
        with open(folder / "vocab.json", encoding="utf-8") as handle:
            size = len(json.load(handle))
        if len(self.tokenizer) < size:  # transformers 5 can silently build an empty one
            raise ModelError(f"model '{model.id}': the roberta tokenizer in {folder} did not "
                             "load")

    def _embed_windows(self, batch: np.ndarray) -> np.ndarray:
        import torch

        # laion-clap quantises to 16 bits before embedding (as in training); so do we
        batch = (np.clip(batch, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32)
        batch /= 32767.0
        with torch.inference_mode():
            waveform = torch.from_numpy(batch)
            longer = torch.zeros((len(batch), 1), dtype=torch.bool)
            out = self.net.encode_audio({"waveform": waveform, "longer": longer},
                                        device=torch.device("cpu"))["embedding"]
            return self.net.audio_projection(out).numpy()

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=77,
                                return_tensors="pt")
        with torch.inference_mode():
            return self.net.encode_text({"input_ids": tokens["input_ids"],
                                         "attention_mask": tokens["attention_mask"]},
                                        device=torch.device("cpu")).numpy()


class TransformersClapBackend(ClapBackend):
    """A transformers ``ClapModel`` folder (config, weights, processor and tokenizer files).

    The weights are ``model.safetensors`` or, where a repository has none (laion's
    larger_clap_* at their pinned revisions), ``pytorch_model.bin``: whichever the lock file
    pins, never an unpinned file beside it. A ``.bin`` is a pickle: it is read only after
    cache.require verified its sha256, and with ``weights_only`` (tensors, never objects).
    """

    def __init__(self, model: Model, threads: int | None = None,
                 inter_op_threads: int | None = None) -> None:
        super().__init__(model, threads, inter_op_threads)
        from transformers import ClapModel, ClapProcessor

        assert self.state.folder is not None
        folder = str(self.state.folder)
        pinned = {pin.name for pin in model.files}
        if "model.safetensors" in pinned:
            weights: dict[str, Any] = {"use_safetensors": True}
        elif "pytorch_model.bin" in pinned:
            weights = {"use_safetensors": False, "weights_only": True}
        else:
            raise ModelError(f"model '{model.id}': the lock file pins no weights file "
                             "(model.safetensors or pytorch_model.bin)")
        try:
            self.net = ClapModel.from_pretrained(folder, local_files_only=True, **weights).eval()
            self.processor = ClapProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model '{model.id}': cannot load the ClapModel: {first}") from None

    def _embed_windows(self, batch: np.ndarray) -> np.ndarray:
        import torch

        # A model without fusion takes one mel channel ("rand_trunc"; the extractor's default,
        # "fusion", stacks four). No randomness either way: every window is exactly 10 s.
        fusion = bool(getattr(self.net.config.audio_config, "enable_fusion", False))
        features = self.processor.feature_extractor(
            list(batch), sampling_rate=SAMPLE_RATE, return_tensors="pt",
            truncation="fusion" if fusion else "rand_trunc")
        # Fusion mode marks a random window as "longer" when none is; none is: undo that.
        features["is_longer"] = torch.zeros_like(features["is_longer"])
        with torch.inference_mode():
            out = self.net.get_audio_features(input_features=features["input_features"],
                                              is_longer=features["is_longer"])
        return _tensor(out).numpy()

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.processor.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.net.get_text_features(input_ids=tokens["input_ids"],
                                             attention_mask=tokens["attention_mask"])
        return _tensor(out).numpy()


def _tensor(out: Any) -> Any:
    """transformers 4 returns the embedding; 5 an output object whose pooler_output it is."""
    return out if hasattr(out, "numpy") else out.pooler_output


def backend(model: Model, **kw: Any) -> ClapBackend:
    """The backend for ``model.kind``: "laion-clap" or "transformers-clap"."""
    if model.kind == "laion-clap":
        return LaionClapBackend(model, **kw)
    if model.kind == "transformers-clap":
        return TransformersClapBackend(model, **kw)
    raise ModelError(f"model '{model.id}' is a {model.kind!r} model, not a CLAP model "
                     f"(kinds: {', '.join(KINDS)})")
