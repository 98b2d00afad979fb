"""KerasFactory's layers (`kerasfactory==0.1.1`, the seed's library) as harness subjects: its `HyperZZWOperator`
judged by hyperzzw's contract (hyperzzw's oracle, tolerances and bad-input catalogue, word for word), and four
of its other layers under the generic checks.

KerasFactory's metadata requires pytest<9 and pandas<3 (which the pinned set excludes) and its layers import
plotly (which it does not declare), so its runtime imports go in a folder of their own on PYTHONPATH, installed
with --no-deps from `requirements/kerasfactory.txt`, beside the tests-<backend> venvs:

    nox -s harness_kerasfactory
"""

from __future__ import annotations

import numpy as np

from conformance.harness import BACKENDS, Divergence, Input, Subject, Tolerance
from conformance.subjects.hyperzzw.subjects import contract_subject, hyperzzw_bad_inputs

_MATMUL64 = (
    "keras.ops.matmul on torch computes two float64 tensors in float32: docs/findings.md#float64-matmul-on-torch"
)
_RESULT_TYPE = (
    "keras.ops.mean and var promote float64 with float32, which is float32 on jax and torch: "
    "docs/findings.md#float64-in-float32"
)
_SUBLAYER_POLICY = (
    "GatedLinearUnit makes its two Dense sublayers without the layer's dtype policy, so they compute and return "
    "float32 under every policy: docs/findings.md#kerasfactory-sublayers-ignore-the-dtype-policy"
)
_PYTHON_LOOP = (
    "MovingAverage loops over its time axis in Python (`range(time_steps)`), which a size unknown while tracing "
    "cannot give: docs/findings.md#kerasfactory-movingaverage-with-unknown-sizes"
)
# Reproduced with Keras, KerasFactory and OpenVINO alone (keras 3.15.1, kerasfactory 0.1.1, tensorflow-cpu 2.21.0,
# openvino 2026.4.1): model.export's default signature (the batch unknown) gives a second, scalar output.
_OPENVINO_EXTRA_OUTPUT = (
    "MovingAverage exported to OpenVINO from TensorFlow with the batch size unknown (model.export's default) gives "
    "an artifact with a second, scalar output the model has not: docs/findings.md#openvino-exports-from-tensorflow"
)
_POLICIES = ("float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16")
_ERRORS = (
    "KerasFactory's HyperZZWOperator does not check its arguments and inputs as hyperzzw's contract states: each "
    "backend raises its own exception (TypeError on jax, RuntimeError on torch, InvalidArgumentError on TensorFlow) "
    "inside Keras's wrapper, or accepts the input: docs/findings.md#kerasfactory-hyperzzwoperator-errors"
)
_MASKS = (
    "KerasFactory's HyperZZWOperator returns its two input masks, unchanged, as a list, for its one output: "
    "docs/findings.md#kerasfactory-hyperzzwoperator-masks"
)
# The one catalogue entry it meets: an unknown dtype name is rejected by Keras's base layer, before its own code.
_ERRORS_MET = {"dtype='nope'"}


def _instance_norm(weights, x, eps=1e-5):
    centred = x - x.mean(1, keepdims=True)
    return centred / np.sqrt(centred.var(1, keepdims=True) + eps)


def _moving_average(weights, x, kernel_size=3):
    pad = (kernel_size - 1) // 2
    padded = np.concatenate([np.repeat(x[:, :1], pad, 1), x, np.repeat(x[:, -1:], pad, 1)], axis=1)
    return np.stack([padded[:, t : t + kernel_size].mean(1) for t in range(x.shape[1])], axis=1)


SUBJECTS = [
    # hyperzzw's contract, on KerasFactory's layer: the same inputs, oracles and error catalogue as hyperzzw's subjects
    contract_subject(
        "kerasfactory-HyperZZWOperator",
        "kerasfactory.layers:HyperZZWOperator",
        "rank2-context",
        divergences=[Divergence(check, "torch", _MATMUL64) for check in ("policies/float64", "gradients-float64")]
        + [
            Divergence(f"errors/{bad.id}", backend, _ERRORS)
            for bad in hyperzzw_bad_inputs()
            if bad.id not in _ERRORS_MET
            for backend in BACKENDS
        ],
    ),
    contract_subject(
        "kerasfactory-HyperZZWOperator",
        "kerasfactory.layers:HyperZZWOperator",
        "rank3-masked",
        divergences=[Divergence(check, "torch", _MATMUL64) for check in ("policies/float64", "gradients-float64")]
        + [Divergence("mask", backend, _MASKS) for backend in BACKENDS],
    ),
    Subject(
        "kerasfactory-GatedLinearUnit",
        layer="kerasfactory.layers:GatedLinearUnit",
        args={"units": 4},
        inputs=Input((3, 5)),
        # two Dense of 5 inputs (6 roundings each), a sigmoid (a few ulps), one product
        tolerance=Tolerance(8, "two Dense over 5 features, a sigmoid, a product", ulps=4),
        divergences=[
            Divergence(f"policies/{p}", b, _SUBLAYER_POLICY) for p in _POLICIES for b in ("jax", "torch", "tensorflow")
        ],
    ),
    Subject(
        "kerasfactory-MovingAverage",
        layer="kerasfactory.layers:MovingAverage",
        args={"kernel_size": 3},
        inputs=Input((2, 6, 3)),
        oracle=_moving_average,
        tolerance=Tolerance(4, "a mean of 3"),
        divergences=[Divergence("policies/float64", b, _RESULT_TYPE) for b in ("jax", "torch")]
        + [Divergence("unknown-sizes", b, _PYTHON_LOOP) for b in ("jax", "tensorflow")]
        + [Divergence("exports/openvino/any-batch", "tensorflow", _OPENVINO_EXTRA_OUTPUT)],
    ),
    Subject(
        "kerasfactory-SparseAttentionWeighting",
        layer="kerasfactory.layers:SparseAttentionWeighting",
        args={"num_modules": 3, "temperature": 0.5},
        inputs=[Input((2, 4)), Input((2, 4)), Input((2, 4))],
        # a softmax over 3 weights (exp: a few ulps), a weighted sum of 3
        tolerance=Tolerance(8, "a softmax over 3 modules, a weighted sum of 3", ulps=4),
    ),
    Subject(
        "kerasfactory-ReversibleInstanceNorm",
        layer="kerasfactory.layers:ReversibleInstanceNorm",
        args={"num_features": 3},
        inputs=Input((2, 6, 3)),
        oracle=_instance_norm,
        # mean and variance over 6 steps, a square root and a division
        tolerance=Tolerance(18, "mean and variance over 6 steps, sqrt, division", ulps=4),
        divergences=[Divergence("policies/float64", b, _RESULT_TYPE) for b in ("jax", "torch")],
    ),
]
