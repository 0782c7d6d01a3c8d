"""Hugging Face audio models' speed (HuBERT-large, AST, EnCodec 24 kHz, MERT): x realtime per core.

The released weights cannot be fetched here, so each model is built with random weights in
its released shape (same layers and operations: speed does not depend on the values), saved
as config.json + model.safetensors (MERT: in its hub format, config.json with MERTConfig's
fields, preprocessor_config.json and pytorch_model.bin), and loaded by
``runner.models.hub_audio.load`` (MERT: ``runner.models.mert.load``) as a pinned model
would be; then its frames are timed on a ``--seconds`` signal (our windowing
included). Reported per model: load and run seconds (median of ``--rounds``), x realtime, the
array's shape and frame rate. Usage:

    python bench/bench_hub_audio.py [--models encodec ast hubert-large mert mert-330m]
                                    [--seconds 30]
                                    [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# MERT's config.json fields (MERTConfig's; the HuBERT ones are HubertConfig's defaults):
# m-a-p/MERT-v1-95M's shape; MERT-v1-330M: 24 layers of 1024 with a pre-LN encoder
MERT = {"architectures": ["MERTModel"], "model_type": "mert_model", "sample_rate": 24000,
        "feature_extractor_cqt": False, "deepnorm": False, "attention_relax": -1.0}
MERT_330M = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
             "intermediate_size": 4096, "do_stable_layer_norm": True}


def released(name: str) -> tuple[Any, Any, str]:
    """(model class, config, architecture) of the released model ``name``."""
    from transformers import (
        ASTConfig,
        ASTForAudioClassification,
        EncodecConfig,
        EncodecModel,
        HubertConfig,
        HubertModel,
    )

    if name == "hubert-large":  # facebook/hubert-large-ll60k's shape
        return HubertModel, HubertConfig(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
            intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
            conv_bias=True), "HubertModel"
    if name == "ast":  # MIT/ast-finetuned-audioset-10-10-0.4593's shape
        return ASTForAudioClassification, ASTConfig(num_labels=527), "ASTForAudioClassification"
    if name == "encodec":  # facebook/encodec_24khz: EncodecConfig's defaults
        return EncodecModel, EncodecConfig(), "EncodecModel"
    if name in ("mert", "mert-330m"):
        from runner.models.mert import hubert_config

        values = {**MERT, **(MERT_330M if name == "mert-330m" else {})}
        return HubertModel, (values, hubert_config(values)), "MERTModel"
    raise SystemExit(f"unknown model {name!r} (encodec, ast, hubert-large, mert, mert-330m)")


def save_mert(net: Any, values: dict[str, Any], folder: Path) -> None:
    """A MERT checkpoint as the hub ships it: MERTConfig's config.json, the processor's
    config, pytorch_model.bin with the positional convolution as weight_g / weight_v."""
    import torch

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(values))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor",
         "sampling_rate": 24000}))
    torch.save({k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v
                for k, v in net.state_dict().items()}, folder / "pytorch_model.bin")


def measure(name: str, root: Path, seconds: float, rounds: int) -> dict[str, Any]:
    from transformers import ASTFeatureExtractor

    from runner.models import hub_audio, mert
    from runner.models.supply import lock

    cls, config, architecture = released(name)
    if architecture == "MERTModel":
        values, config = config
        net = cls(config)
        save_mert(net, values, root / name)
    else:
        net = cls(config)
        net.save_pretrained(root / name)
    if name == "ast":
        ASTFeatureExtractor().save_pretrained(root / name)
    names = (hub_audio.CONFIG, hub_audio.WEIGHTS, hub_audio.PREPROCESSOR, "pytorch_model.bin")
    files = [(p, hashlib.sha256(p.read_bytes()).hexdigest())
             for p in sorted((root / name).iterdir()) if p.name in names]
    kind, load = (("mert", mert.load) if architecture == "MERTModel" else
                  ("transformers-audio", hub_audio.load))
    model = lock.Model(name, "", "", kind, None, (), (), extra={"architecture": architecture})
    loads, runs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        network = load(model, files)
        loads.append(time.perf_counter() - start)
        signal = (0.1 * np.random.default_rng(0).standard_normal(
            int(seconds * network.sample_rate))).astype(np.float32)
        network(signal[:network.sample_rate])  # warm-up
        start = time.perf_counter()
        frames = network(signal)
        runs.append(time.perf_counter() - start)
    run_s = statistics.median(runs)
    return {"model": name, "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 1),
            "load_s": round(statistics.median(loads), 2), "run_s": round(run_s, 2),
            "x_realtime": round(seconds / run_s, 1), "shape": list(frames.shape),
            "frame_rate": network.frame_rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["encodec", "ast", "hubert-large"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            print(json.dumps(measure(name, Path(folder), args.seconds, args.rounds)),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
