"""basic-pitch's own windowing and note creation on an audio file, run in a process of its own
(python tests/basic_pitch_reference.py IN.wav OUT.npy): prints its note events as JSON and saves
its (T, 176) note and onset activations, for tests/test_basic_pitch.py to compare with ours.

The package's ``__init__`` imports TensorFlow (never beside Essentia) and its modules import
pretty_midi, mir_eval and resampy at the top, none of which the functions called here use:
those imports are stood in for, and the package's own ``inference.py`` and
``note_creation.py`` run unchanged on its ONNX model (onnxruntime) and librosa's decoder.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import types
from pathlib import Path

import numpy as np


def _unused(name: str) -> types.ModuleType:
    """A module whose every public attribute is a placeholder (type hints only)."""
    module = types.ModuleType(name)

    def attribute(attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return object

    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


def _package() -> types.ModuleType:
    """basic_pitch without its ``__init__`` (no TensorFlow, CoreML or TFLite: ONNX only)."""
    for name in ("tensorflow", "coremltools", "tflite_runtime"):
        sys.modules[name] = None  # type: ignore[assignment]
    for name in ("pretty_midi", "mir_eval", "resampy"):
        sys.modules[name] = _unused(name)
    folder = Path(str(importlib.metadata.distribution("basic-pitch").locate_file("basic_pitch")))
    package = types.ModuleType("basic_pitch")
    package.__path__ = [str(folder)]
    package.CT_PRESENT = package.TF_PRESENT = package.TFLITE_PRESENT = False
    package.ONNX_PRESENT = True
    package.ICASSP_2022_MODEL_PATH = folder / "saved_models" / "icassp_2022" / "nmp.onnx"
    sys.modules["basic_pitch"] = package
    return package


def main(audio: str, frames_out: str) -> None:
    package = _package()
    from basic_pitch import inference, note_creation

    output = inference.run_inference(audio, inference.Model(package.ICASSP_2022_MODEL_PATH))
    events = note_creation.output_to_notes_polyphonic(
        output["note"], output["onset"], onset_thresh=0.5, frame_thresh=0.3, min_note_len=11,
        infer_onsets=True, max_freq=None, min_freq=None, melodia_trick=True)
    times = note_creation.model_frames_to_time(output["note"].shape[0])
    np.save(frames_out, np.concatenate([output["note"], output["onset"]], axis=1))
    print(json.dumps([[float(times[s]), float(times[e]), int(p), float(a)]
                      for s, e, p, a in events]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
