"""More of Keras's layer zoo as harness subjects: activations, merges, reshapes, pooling, normalizations and
inference-time noise, each with an exact float64 NumPy oracle (the math is short), so a cell names the backend that
is wrong. `conformance/subjects/keras_layers.py` holds the first twelve subjects; the other classes of
`keras.layers` are not declared yet.

    nox -s zoo          # or: python -m conformance.harness conformance/subjects/keras_zoo.py
"""

from __future__ import annotations

import numpy as np

from conformance.harness import Divergence, Input, Subject, Tolerance

EXACT = Tolerance(1, "one rounding of an exact function")

# Known divergences, each reproduced with Keras alone in docs/findings.md (keras 3.15.1).
_MEAN = (
    "keras.ops.mean (and var) promote float64 with float32, which is float32 on jax and torch: "
    "docs/findings.md#float64-in-float32"
)
_MATMUL = "keras.ops.matmul on torch computes two float64 tensors in float32: docs/findings.md#float64-matmul-on-torch"
_TANH = "keras.ops.tanh computes float64 in float32 on jax: docs/findings.md#float64-matmul-on-torch"
_MAXIMUM = (
    "keras.ops.maximum and minimum return float32 for float64 on torch (ops.normalize calls minimum): "
    "docs/findings.md#float64-maximum-and-minimum-on-torch"
)
_CROPPING = (
    "Cropping1D cannot be traced by jax.export with its length unknown (InconclusiveDimensionOperation): "
    "docs/findings.md#cropping1d-with-an-unknown-length-on-jax"
)


def _float64(reason: str, *backends: str) -> list[Divergence]:
    return [Divergence("policies/float64", backend, reason) for backend in backends]


def _exp_tolerance(terms: int, what: str) -> Tolerance:
    # exp (and tanh) are not correctly rounded: a few units of roundoff each, beside the sum's roundings
    return Tolerance(terms, what, ulps=4)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _pool(x, size, reduce):
    steps = x.shape[1] // size
    return reduce(x[:, : steps * size].reshape(x.shape[0], steps, size, x.shape[2]), 2)


def _unit_norm(x):
    return x / np.sqrt((x * x).sum(-1, keepdims=True))


def _group_norm(weights, x, groups=2, epsilon=1e-3):
    b, t, c = x.shape
    grouped = x.reshape(b, t, groups, c // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = grouped.var(axis=(1, 3), keepdims=True)
    out = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(b, t, c)
    return out * weights["gamma"] + weights["beta"]


def _rms_norm(weights, x, epsilon=1e-6):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + epsilon) * weights["scale"]


def _attention(weights, query, value):
    scores = np.einsum("btd,bsd->bts", query, value) * weights["scale"]
    return np.einsum("bts,bsd->btd", _softmax(scores), value)


SUBJECTS = [
    # activations
    Subject(
        "ReLU",
        layer="keras.layers:ReLU",
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: np.maximum(x, 0.0),
        tolerance=EXACT,
    ),
    Subject(
        "LeakyReLU",
        layer="keras.layers:LeakyReLU",
        args={"negative_slope": 0.25},
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: np.where(x > 0, x, 0.25 * x),
        tolerance=EXACT,
    ),
    Subject(
        "ELU",
        layer="keras.layers:ELU",
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: np.where(x > 0, x, np.expm1(x)),
        tolerance=_exp_tolerance(2, "exp(x) - 1"),
    ),
    # PReLU's alpha has the shape of every axis but the batch: those sizes are features
    Subject(
        "PReLU",
        layer="keras.layers:PReLU",
        inputs=Input((3, 4, 5), feature_axes=2),
        oracle=lambda w, x: np.where(x > 0, x, w["alpha"] * x),
        tolerance=EXACT,
    ),
    Subject(
        "Softmax",
        layer="keras.layers:Softmax",
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: _softmax(x),
        tolerance=_exp_tolerance(7, "exp of 5 terms, their sum, a division"),
    ),
    Subject(
        "Activation-tanh",
        layer="keras.layers:Activation",
        args={"activation": "tanh"},
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: np.tanh(x),
        tolerance=_exp_tolerance(1, "tanh"),
        divergences=_float64(_TANH, "jax"),
    ),
    # merges
    Subject(
        "Add",
        layer="keras.layers:Add",
        inputs=[Input((3, 4)), Input((3, 4))],
        oracle=lambda w, a, b: a + b,
        tolerance=EXACT,
    ),
    Subject(
        "Subtract",
        layer="keras.layers:Subtract",
        inputs=[Input((3, 4)), Input((3, 4))],
        oracle=lambda w, a, b: a - b,
        tolerance=EXACT,
    ),
    Subject(
        "Maximum",
        layer="keras.layers:Maximum",
        inputs=[Input((3, 4)), Input((3, 4))],
        oracle=lambda w, a, b: np.maximum(a, b),
        tolerance=EXACT,
        divergences=_float64(_MAXIMUM, "torch"),
    ),
    Subject(
        "Minimum",
        layer="keras.layers:Minimum",
        inputs=[Input((3, 4)), Input((3, 4))],
        oracle=lambda w, a, b: np.minimum(a, b),
        tolerance=EXACT,
        divergences=_float64(_MAXIMUM, "torch"),
    ),
    Subject(
        "Concatenate",
        layer="keras.layers:Concatenate",
        inputs=[Input((3, 4, 2)), Input((3, 4, 5))],
        oracle=lambda w, a, b: np.concatenate([a, b], -1),
        tolerance=EXACT,
    ),
    Subject(
        "Dot",
        layer="keras.layers:Dot",
        args={"axes": -1},
        inputs=[Input((3, 5)), Input((3, 5))],
        oracle=lambda w, a, b: (a * b).sum(-1, keepdims=True),
        tolerance=Tolerance(5, "5 products summed"),
        divergences=_float64(_MATMUL, "torch"),
    ),
    # reshapes
    Subject(
        "Flatten",
        layer="keras.layers:Flatten",
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: x.reshape(x.shape[0], -1),
        tolerance=EXACT,
    ),
    # the target shape fixes the size of every axis but the batch
    Subject(
        "Reshape",
        layer="keras.layers:Reshape",
        args={"target_shape": (10, 2)},
        inputs=Input((3, 4, 5), feature_axes=2),
        oracle=lambda w, x: x.reshape(x.shape[0], 10, 2),
        tolerance=EXACT,
    ),
    Subject(
        "Permute",
        layer="keras.layers:Permute",
        args={"dims": (2, 1)},
        inputs=Input((3, 4, 5)),
        oracle=lambda w, x: x.transpose(0, 2, 1),
        tolerance=EXACT,
    ),
    Subject(
        "RepeatVector",
        layer="keras.layers:RepeatVector",
        args={"n": 3},
        inputs=Input((2, 4)),
        oracle=lambda w, x: np.repeat(x[:, None], 3, 1),
        tolerance=EXACT,
    ),
    Subject(
        "Cropping1D",
        layer="keras.layers:Cropping1D",
        args={"cropping": (1, 2)},
        inputs=Input((2, 6, 3)),
        oracle=lambda w, x: x[:, 1:-2],
        tolerance=EXACT,
        divergences=[Divergence("unknown-sizes", "jax", _CROPPING)],
    ),
    Subject(
        "ZeroPadding1D",
        layer="keras.layers:ZeroPadding1D",
        args={"padding": 2},
        inputs=Input((2, 4, 3)),
        oracle=lambda w, x: np.pad(x, ((0, 0), (2, 2), (0, 0))),
        tolerance=EXACT,
    ),
    Subject(
        "UpSampling1D",
        layer="keras.layers:UpSampling1D",
        args={"size": 2},
        inputs=Input((2, 4, 3)),
        oracle=lambda w, x: np.repeat(x, 2, 1),
        tolerance=EXACT,
    ),
    # pooling
    Subject(
        "MaxPooling1D",
        layer="keras.layers:MaxPooling1D",
        args={"pool_size": 2},
        inputs=Input((2, 7, 3)),
        oracle=lambda w, x: _pool(x, 2, np.max),
        tolerance=EXACT,
    ),
    Subject(
        "AveragePooling1D",
        layer="keras.layers:AveragePooling1D",
        args={"pool_size": 2},
        inputs=Input((2, 7, 3)),
        oracle=lambda w, x: _pool(x, 2, np.mean),
        tolerance=Tolerance(2, "a mean of 2"),
    ),
    Subject(
        "GlobalAveragePooling1D",
        layer="keras.layers:GlobalAveragePooling1D",
        inputs=Input((2, 6, 3)),
        oracle=lambda w, x: x.mean(1),
        tolerance=Tolerance(7, "a mean of 6"),
        divergences=_float64(_MEAN, "jax", "torch"),
    ),
    Subject(
        "GlobalMaxPooling1D",
        layer="keras.layers:GlobalMaxPooling1D",
        inputs=Input((2, 6, 3)),
        oracle=lambda w, x: x.max(1),
        tolerance=EXACT,
    ),
    # normalizations
    Subject(
        "UnitNormalization",
        layer="keras.layers:UnitNormalization",
        inputs=Input((3, 5)),
        oracle=lambda w, x: _unit_norm(x),
        tolerance=Tolerance(8, "5 squares summed, a square root, a division"),
        divergences=_float64(_MAXIMUM, "torch"),
    ),
    Subject(
        "GroupNormalization",
        layer="keras.layers:GroupNormalization",
        args={"groups": 2},
        inputs=Input((2, 3, 4)),
        oracle=_group_norm,
        tolerance=Tolerance(14, "means and variances over 6 values, a square root, a division, scale and shift"),
        divergences=_float64(_MEAN, "jax", "torch"),
    ),
    Subject(
        "RMSNormalization",
        layer="keras.layers:RMSNormalization",
        inputs=Input((3, 5)),
        oracle=_rms_norm,
        tolerance=Tolerance(9, "a mean of 5 squares, a square root, a division, a scale"),
        divergences=_float64(_MEAN, "jax", "torch"),
    ),
    # inference-time identities
    Subject("Identity", layer="keras.layers:Identity", inputs=Input((3, 4)), oracle=lambda w, x: x, tolerance=EXACT),
    Subject(
        "Rescaling",
        layer="keras.layers:Rescaling",
        args={"scale": 0.5, "offset": 1.0},
        inputs=Input((3, 4)),
        oracle=lambda w, x: x * 0.5 + 1.0,
        tolerance=Tolerance(2, "a product and a sum"),
    ),
    Subject(
        "Dropout",
        layer="keras.layers:Dropout",
        args={"rate": 0.5},
        inputs=Input((3, 4)),
        oracle=lambda w, x: x,
        tolerance=EXACT,
    ),
    Subject(
        "GaussianNoise",
        layer="keras.layers:GaussianNoise",
        args={"stddev": 0.5},
        inputs=Input((3, 4)),
        oracle=lambda w, x: x,
        tolerance=EXACT,
    ),
    # attention
    Subject(
        "Attention-scaled",
        layer="keras.layers:Attention",
        args={"use_scale": True},
        inputs=[Input((2, 3, 4)), Input((2, 5, 4))],
        oracle=_attention,
        tolerance=_exp_tolerance(14, "4 products summed, a scale, a softmax over 5, 5 products summed"),
        divergences=_float64(_MATMUL, "torch"),
    ),
]
