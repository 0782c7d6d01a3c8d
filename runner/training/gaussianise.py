"""Gaia's ``gaussianize`` as a scikit-learn transformer that exports to ONNX.

Each descriptor is mapped through its own empirical quantiles onto a standard normal: the
value at quantile p goes to the normal's quantile at p, linearly between knots, clipped at
the ends (QuantileTransformer(output_distribution='normal') does this too, but skl2onnx 1.20
refuses to export it: "Conversion of QuantileTransformer with output_distribution='normal' is
not supported"). The map is a sum of ramps, ``c + sum_k s_k (min(max(x, q_k), q_k+1) - q_k)``
(each term bounded by its own segment, so float32 keeps descriptors of 1e-16 and of 1e14
apart), the same six ONNX operators for any data: the graph computes what
:meth:`Gaussianise.transform` computes, within float32 rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

KNOTS = 32
TAIL = 1e-3  # the extreme knots map to the normal's quantiles at 0.001 and 0.999 (+-3.09)


class Gaussianise(TransformerMixin, BaseEstimator):
    """Per-descriptor empirical quantiles -> standard normal quantiles (piecewise linear)."""

    def __init__(self, knots: int = KNOTS) -> None:
        self.knots = knots

    def fit(self, x: np.ndarray, y: Any = None) -> Gaussianise:
        from scipy.stats import norm

        # knots at values of the data (float32, as the ONNX graph holds them): a knot between
        # two float32 values would move when the graph rounds it, and a steep segment with it
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        count = max(2, min(self.knots, x.shape[0]))
        probs = np.linspace(0.0, 1.0, count)
        self.quantiles_ = np.quantile(x, probs, axis=0, method="nearest")  # (knots, columns)
        targets = norm.ppf(np.clip(probs, TAIL, 1 - TAIL))
        steps = np.diff(self.quantiles_, axis=0)
        rises = np.diff(targets)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.slopes_ = np.where(steps > 0, rises / np.where(steps > 0, steps, 1.0), 0.0)
        self.slopes_ = self.slopes_.astype(np.float32).astype(np.float64)
        varies = (steps > 0).any(axis=0)
        self.offset_ = np.where(varies, targets[0], 0.0)  # a constant descriptor maps to 0
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        out = np.broadcast_to(self.offset_, x.shape).copy()
        for k in range(self.slopes_.shape[0]):
            low, high = self.quantiles_[k], self.quantiles_[k + 1]
            out += self.slopes_[k] * (np.minimum(np.maximum(x, low), high) - low)
        return out


def _shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    width = operator.raw_operator.n_features_in_
    operator.outputs[0].type = FloatTensorType([None, width])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    """The ramps in ONNX: (n, d, 1) against (d, knots-1) lows and highs."""
    from skl2onnx.algebra.onnx_ops import (
        OnnxAdd,
        OnnxMax,
        OnnxMin,
        OnnxMul,
        OnnxReduceSum,
        OnnxSub,
        OnnxUnsqueeze,
    )

    model: Gaussianise = operator.raw_operator
    opv = container.target_opset
    f32 = np.float32
    x = OnnxUnsqueeze(operator.inputs[0], np.array([2], dtype=np.int64), op_version=opv)
    lows = model.quantiles_[:-1].T.astype(f32)
    highs = model.quantiles_[1:].T.astype(f32)
    clipped = OnnxMin(OnnxMax(x, lows, op_version=opv), highs, op_version=opv)
    ramps = OnnxSub(clipped, lows, op_version=opv)
    summed = OnnxReduceSum(OnnxMul(ramps, model.slopes_.T.astype(f32), op_version=opv),
                           np.array([2], dtype=np.int64), keepdims=0, op_version=opv)
    result = OnnxAdd(summed, model.offset_.astype(f32), op_version=opv,
                     output_names=operator.outputs[:1])
    result.add_to(scope, container)


def register() -> None:
    """Teach skl2onnx this transformer (once per process)."""
    from skl2onnx import update_registered_converter

    update_registered_converter(Gaussianise, "ExtractorProfilesGaussianise", _shape, _convert)
