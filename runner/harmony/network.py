"""One ONNX network of madmom's, run with onnxruntime from bytes already checked against their
pin (runner.models.madmom_harmony_family): the bytes checked are the bytes loaded."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.errors import ModelError

INSTALL_HINT = "pip install 'onnxruntime>=1.19' (docs/harmony.md)"


def missing() -> str | None:
    """Why madmom's key and chord networks cannot run here (None when they can): they need
    onnxruntime, not the madmom package (its files may come from the model cache)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return f"onnxruntime is not installed ({INSTALL_HINT})"
    return None


class Network:
    """An ONNX graph with one float32 input and one output, on the CPU."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        reason = missing()
        if reason is not None:
            raise ModelError(f"madmom's networks: {reason}")
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # "squeezed shape" warnings on every call
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session: Any = onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """The network's output for ``data`` (float32), as madmom's runtime returns it
        (squeezed)."""
        feed = {self.input: np.ascontiguousarray(data, dtype=np.float32)}
        return np.asarray(self.session.run([self.output], feed)[0]).squeeze()
