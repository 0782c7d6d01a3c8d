"""A Stable Audio Tools dataset config for a folder of audio with ``.INFO`` prompts, and its
custom-metadata module (``sat_metadata.py``, copied into the folder), so the folder can be
trained on directly: ``python train.py --dataset-config DIR/stable_audio_dataset.json ...``.

The config follows stable-audio-tools' ``docs/datasets.md`` (``dataset_type: audio_dir``, a
``datasets`` list of ``id``, ``path`` and ``custom_metadata_module``, ``random_crop``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.output import write_atomic

CONFIG_NAME = "stable_audio_dataset.json"
MODULE_NAME = "stable_audio_metadata.py"
MODULE_SOURCE = Path(__file__).with_name("sat_metadata.py")


def dataset_id(folder: Path) -> str:
    """The folder's name as an id (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", folder.resolve().name).strip("_") or "dataset"


def write_dataset(folder: Path, crops: bool) -> tuple[Path, Path]:
    """Write the config and the module into ``folder``; returns their paths.

    ``crops``: the folder holds crops of one exact length (`extractor crops`): each is used
    whole (``random_crop: false``; set the model's ``sample_size`` to the crop length);
    otherwise stable-audio-tools cuts a random window from each track.
    """
    root = folder.resolve()
    module = root / MODULE_NAME
    write_atomic(module, MODULE_SOURCE.read_text(encoding="utf-8"))
    config = {
        "dataset_type": "audio_dir",
        "datasets": [{"id": dataset_id(root), "path": f"{root}/",
                      "custom_metadata_module": str(module)}],
        "random_crop": not crops,
    }
    path = root / CONFIG_NAME
    write_atomic(path, json.dumps(config, indent=4) + "\n")
    return path, module
