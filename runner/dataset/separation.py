"""Demucs source separation (htdemucs) as a model stage that writes a track's stems once.

The model is a lock-file entry of kind ``demucs`` (``htdemucs``: Meta's
``955717e8-8726e21a.th``, pinned by sha256 like every model; fetched into the model cache by
``extractor models fetch htdemucs``, never at run time). Its file is a pickle
(``{"klass", "args", "kwargs", "state"}``, Demucs' own ``serialize_model``), so it is
verified against its pin before anything loads it, and the bytes verified are the bytes
unpickled. Demucs' model code comes from the ``demucs`` package (the ``demucs`` extra); its
model code needs neither torchaudio nor its other audio helpers, only torch, einops and
julius.

Separation follows Demucs' own ``separate``: the mix at the model's rate and channels,
normalised by the mean and standard deviation of its mono sum, ``apply_model`` (one shift,
overlapping segments), then scaled back. The stems are brought back to the mix's sample
rate, channels and exact length, so they pass the same checks as stems a user supplies
(runner.dataset.stems), and written atomically as 32-bit float WAV (no clipping).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import AudioError, ModelError, OutputError
from runner.models.supply import cache, lock
from runner.output import write_bytes_atomic

KIND = "demucs"
DEFAULT_MODEL = "htdemucs"
INSTALL = "pip install 'extractor-profiles[demucs]'"


def demucs_missing() -> str | None:
    """Why Demucs' model code cannot be imported here (None: it can)."""
    try:
        import demucs.apply  # noqa: F401
        import demucs.states  # noqa: F401
    except ImportError as exc:
        return f"the demucs package cannot be imported ({exc}); install it: {INSTALL}"
    return None


def demucs_model(model_id: str) -> tuple[lock.Model, Path]:
    """The lock entry ``model_id`` (kind demucs) and its verified file in the model cache;
    one line naming what is missing, damaged or not a Demucs model."""
    model = lock.get(model_id)
    if model.kind != KIND:
        raise ModelError(f"model '{model_id}' is a {model.kind!r} model, not a Demucs one "
                         f"(kind '{KIND}')", model_id)
    if len(model.files) != 1:
        raise ModelError(f"model '{model_id}': a Demucs entry pins exactly one .th file",
                         model_id)
    state = cache.require(model)
    reason = demucs_missing()
    if reason is not None:
        raise ModelError(f"model '{model_id}': {reason}", model_id)
    return model, state.path(model.files[0].name)


def read_mix(path: Path) -> tuple[np.ndarray, float]:
    """(frames x channels float32, sample rate) at the file's own rate: libsndfile first
    (sample-exact), Essentia's decoder for what it cannot read."""
    try:
        import soundfile

        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return audio, float(rate)
    except Exception:  # noqa: BLE001 - any libsndfile refusal: Essentia's decoder
        pass
    from runner.registry import quiet_essentia

    try:
        audio, rate, *_ = quiet_essentia().standard.AudioLoader(filename=str(path))()
    except Exception as exc:  # noqa: BLE001 - one line naming the file
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise AudioError(str(path), f"cannot read audio for separation ({reason})") from None
    return np.asarray(audio, dtype=np.float32), float(rate)


class Separator:
    """One Demucs model, verified and loaded once (per worker), separating any number of
    tracks."""

    def __init__(self, model_id: str = DEFAULT_MODEL) -> None:
        self.entry, self.path = demucs_model(model_id)
        self.model: Any = None

    def load(self) -> None:
        import torch
        from demucs.states import load_model

        # A batch worker gets its share of the cores (LocalWorkers sets it for TensorFlow):
        # torch's default, every core in every worker, is several times slower when loaded.
        share = os.environ.get("TF_NUM_INTRAOP_THREADS")
        if share and share.isdigit():
            torch.set_num_threads(int(share))

        data = cache.verified_bytes(self.path, self.entry.files[0].sha256)
        try:
            with warnings.catch_warnings():  # Demucs' and torch's notes on the model's shape
                warnings.simplefilter("ignore")
                package = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
                self.model = load_model(package).eval()
        except Exception as exc:  # noqa: BLE001 - a verified file that is not a Demucs model
            raise ModelError(f"model '{self.entry.id}': {self.path} is not a Demucs model "
                             f"({type(exc).__name__}: {exc})", self.entry.id) from None

    @property
    def sources(self) -> list[str]:
        return list(self.model.sources)

    def separate(self, mix: np.ndarray, rate: float) -> dict[str, np.ndarray]:
        """Stem name -> (frames x channels) float32, at ``rate``, shaped like ``mix``."""
        import julius
        import torch
        from demucs.apply import apply_model

        if self.model is None:
            self.load()
        model_rate = int(self.model.samplerate)
        wav = torch.from_numpy(np.ascontiguousarray(mix.T, dtype=np.float32))
        wav = _channels(wav, int(self.model.audio_channels))
        if int(round(rate)) != model_rate:
            wav = julius.resample_frac(wav, int(round(rate)), model_rate)
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std() + 1e-8
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = apply_model(self.model, ((wav - mean) / std)[None], shifts=1, split=True,
                              overlap=0.25, progress=False, device="cpu")[0]
        out = out * std + mean
        if int(round(rate)) != model_rate:
            out = julius.resample_frac(out, model_rate, int(round(rate)))
        frames, channels = mix.shape
        stems = {}
        for index, name in enumerate(self.model.sources):
            stem = out[index]
            stem = stem.mean(0, keepdim=True).expand(channels, -1) if channels != \
                stem.shape[0] else stem
            array = stem.numpy().T[:frames]
            if len(array) < frames:
                array = np.pad(array, ((0, frames - len(array)), (0, 0)))
            stems[name] = np.ascontiguousarray(array, dtype=np.float32)
        return stems


def _channels(wav: Any, wanted: int) -> Any:
    """Demucs' convert_audio_channels: a mono mix is repeated, more channels are averaged."""
    if wav.shape[0] == wanted:
        return wav
    if wav.shape[0] == 1:
        return wav.expand(wanted, -1)
    return wav.mean(0, keepdim=True).expand(wanted, -1) if wanted != 1 else wav.mean(
        0, keepdim=True)


def write_stem(path: Path, audio: np.ndarray, rate: float) -> None:
    """One stem, written atomically: 32-bit float WAV for ``.wav``, else the format its
    extension names (as libsndfile writes it)."""
    import soundfile

    fmt = "WAV" if path.suffix.lower() in (".wav", ".wave") else path.suffix.lstrip(".").upper()
    subtype = "FLOAT" if fmt == "WAV" else None
    buffer = io.BytesIO()
    try:
        soundfile.write(buffer, audio, int(round(rate)), format=fmt, subtype=subtype)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise OutputError(f"{path}: cannot write the stem ({exc})") from None
    write_bytes_atomic(path, buffer.getvalue())
