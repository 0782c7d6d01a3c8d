"""MERT (m-a-p/MERT-v1-95M, MERT-v1-330M; lock-entry kind ``mert``) run by our own code: the
hub's ``MERTModel`` needs ``trust_remote_code``, and remote code is never run here.

``MERTModel`` (``modeling_MERT.py`` in the hub repositories) subclasses transformers'
``HubertModel`` and changes three things: its feature projection may concatenate a CQT of the
input to the convolutional features (``feature_extractor_cqt``); with ``deepnorm`` its post-LN
encoder scales each residual branch (DeepNet) and, with ``attention_relax`` > 0, rescales the
attention logits; its projection's layer norm follows ``feat_proj_layer_norm``. Everything
else is HuBERT's own blocks: ``HubertFeatureEncoder`` (group-norm first layer when
``feat_extract_norm`` is "group"), the projection (layer norm, linear), and ``HubertEncoder``
(post-LN) or ``HubertEncoderStableLayerNorm`` (``do_stable_layer_norm``), each with the
positional convolution. ``attention_relax`` is read only by the deepnorm encoder's layers.
So where ``feature_extractor_cqt`` and ``deepnorm`` are false, as in MERT-v1-95M, its
forward pass is ``HubertModel``'s operation by operation: we build ``HubertModel`` from the
config's HuBERT fields and load the checkpoint's tensors under their own names (the
positional convolution's ``weight_g``/``weight_v``, as the hub's files store it, mapped onto
torch's parametrized weight norm); every tensor must match (a strict load). A config with a
CQT branch or DeepNorm is refused in one line: that is not implemented here.

Weights come from ``model.safetensors``, or from ``pytorch_model.bin`` (how the hub ships
MERT-v1) read with ``torch.load(weights_only=True)`` (tensors only, no code) from the very
bytes that were checked against the pin. The track is normalised to zero mean and unit
variance when the pinned ``preprocessor_config.json`` says ``do_normalize`` (MERT's does; true
where the file is absent), then run as HuBERT is (runner.models.hub_audio.hubert_frames):
the last hidden state, (T, hidden size) at sample_rate / 320 frames/s (24 kHz: 75 Hz),
T = (n - 400) // 320 + 1 for n samples (at least 1), in 30 s windows on one grid.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from runner.errors import ModelError
from runner.models.hub_audio import HubNetwork, hubert_frames
from runner.models.supply import cache, lock

ARCHITECTURE = "MERTModel"
CONFIG, PREPROCESSOR = "config.json", "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
# MERTConfig's own fields (checked by unsupported(), or unused at inference) and metadata
_MERT_ONLY = ("feature_extractor_cqt", "feature_extractor_cqt_bins", "deepnorm",
              "attention_relax", "sample_rate")
_DROP = {"architectures", "auto_map", "model_type", "transformers_version", "torch_dtype",
         "_name_or_path", *_MERT_ONLY}


def unsupported(config: dict[str, Any]) -> str | None:
    """What in a MERT config this module does not implement (None: it runs as MERTModel)."""
    if config.get("feature_extractor_cqt"):
        return ("a CQT branch (feature_extractor_cqt: true, MERT's nnAudio CQT concatenated "
                "to the convolutional features)")
    if config.get("deepnorm"):
        return "DeepNorm residual scaling (deepnorm: true)"
    return None


def check_config(config: Any, where: str) -> dict[str, Any]:
    """``config`` if it is a MERT config this module runs; else one line saying why not."""
    if not isinstance(config, dict):
        raise ModelError(f"{where}: not a JSON object")
    names = list(config.get("architectures") or [])
    if ARCHITECTURE not in names:
        raise ModelError(f"{where}: architecture {', '.join(map(str, names)) or '(none)'} is "
                         f"not {ARCHITECTURE}")
    what = unsupported(config)
    if what:
        raise ModelError(f"{where}: {what} is not implemented here (MERT runs here "
                         "without a CQT branch or DeepNorm; MERT-v1-95M's config has neither)")
    return config


def hubert_config(config: dict[str, Any]) -> Any:
    """transformers' HubertConfig with a MERT config's HuBERT fields (MERTConfig's defaults
    for them are HubertConfig's, so a field left out means the same in both)."""
    from transformers import HubertConfig

    return HubertConfig(**{k: v for k, v in config.items() if k not in _DROP})


def read_tensors(path: Path, sha256: str, model_id: str) -> dict[str, Any]:
    """The tensors of a pinned weights file, from the bytes that match the pin: safetensors,
    or a PyTorch checkpoint unpickled with ``weights_only`` (tensors and plain containers)."""
    import torch

    data = cache.verified_bytes(path, sha256)
    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load

            tensors = load(data)
        else:
            tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of a damaged file is one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"model '{model_id}': {path}: not a weights file ({first})") from None
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor)
                                                for t in tensors.values()):
        raise ModelError(f"model '{model_id}': {path}: not a flat dictionary of tensors")
    return tensors


def hub_names(tensors: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """The checkpoint's tensors under HubertModel's names: a ``mert_model.`` prefix dropped,
    and weight norm's ``weight_g``/``weight_v`` (the hub's layout) as torch's parametrization
    ``parametrizations.weight.original0``/``original1`` where the model uses it."""
    renamed = {}
    for key, value in tensors.items():
        key = key.removeprefix("mert_model.")
        for old, new in ((".weight_g", ".parametrizations.weight.original0"),
                         (".weight_v", ".parametrizations.weight.original1")):
            if key.endswith(old) and key not in wanted:
                key = key[: -len(old)] + new
        renamed[key] = value
    return renamed


def build(config: dict[str, Any], tensors: dict[str, Any], model_id: str) -> Any:
    """HubertModel holding MERT's weights, every tensor in place (or one line naming those
    that are missing or left over); built on the meta device, so the file's tensors are the
    model's (no initialisation, no copy)."""
    import torch
    from transformers import HubertModel

    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        network = HubertModel(hubert_config(config))
    wanted = set(network.state_dict())
    state = hub_names(tensors, wanted)
    missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
    if missing or extra:
        raise ModelError(f"model '{model_id}': the weights do not fit {ARCHITECTURE} "
                         f"({len(missing)} tensors missing: {', '.join(missing[:3]) or '-'}; "
                         f"{len(extra)} unexpected: {', '.join(extra[:3]) or '-'})")
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ModelError(f"model '{model_id}': the weights do not fit {ARCHITECTURE} "
                         f"({first})") from None
    return network.to(torch.float32).eval()


def _json(path: Path, sha256: str, model_id: str) -> dict[str, Any]:
    try:
        data = json.loads(cache.verified_bytes(path, sha256).decode("utf-8"))
    except ValueError as exc:
        raise ModelError(f"model '{model_id}': {path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"model '{model_id}': {path}: not a JSON object")
    return data


def load(model: lock.Model, files: list[tuple[Path, str]]) -> HubNetwork:
    """The network of a ``mert`` entry, from its pinned files (config.json, the weights,
    and preprocessor_config.json where pinned)."""
    by_name = {path.name: (path, sha) for path, sha in files}
    weights = next((n for n in WEIGHT_FILES if n in by_name), None)
    if CONFIG not in by_name or weights is None:
        raise ModelError(f"model '{model.id}': the lock file must pin {CONFIG} and "
                         f"{' or '.join(WEIGHT_FILES)}")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ModelError(f"model '{model.id}' needs torch and transformers (pip install "
                         "'extractor-profiles[clap]' installs both)") from None
    config = check_config(_json(*by_name[CONFIG], model.id), str(by_name[CONFIG][0]))
    processor = _json(*by_name[PREPROCESSOR], model.id) if PREPROCESSOR in by_name else {}
    rate = int(processor.get("sampling_rate") or config.get("sample_rate") or 24000)
    if config.get("sample_rate") not in (None, rate):
        raise ModelError(f"model '{model.id}': {PREPROCESSOR} says {rate} Hz, {CONFIG} "
                         f"{config['sample_rate']} Hz")
    network = build(config, read_tensors(*by_name[weights], model.id), model.id)
    return hubert_frames(network, rate, bool(processor.get("do_normalize", True)))
