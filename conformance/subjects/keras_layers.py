"""Keras's own layers as harness subjects, chosen for the ways backends differ: dense contractions, merges,
normalization, embeddings with masks, a convolution, attention with a mask that broadcasts, a masked recurrent
layer. Each has a float64 NumPy oracle (the math is short), so a backend that disagrees is named even when the
three disagree with each other; the tolerances say what each layer sums.

    python -m conformance.harness conformance/subjects/keras_layers.py      # or: nox -s harness
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import strategies as st

from conformance import upstream
from conformance.harness import BACKENDS, BadInput, Divergence, Input, Subject, Tolerance

# Known divergences, each a finding with its reproduction in docs/findings.md (strict: when a backend stops
# diverging, the report fails and the entry goes).
_RESULT_TYPE = (
    "keras.backend.result_type('float64', 'float32') is float32 on jax and torch (float64 on TensorFlow), so ops "
    "that promote with float32 compute a float64 layer in float32 there: docs/findings.md#float64-in-float32"
)
_TORCH_MATMUL = (
    "keras.ops.matmul on torch computes two float64 tensors in float32 (keras-team/keras#23704): "
    "docs/findings.md#float64-matmul-on-torch"
)
_ATTENTION = (
    "keras.ops.dot_product_attention, which MultiHeadAttention calls, computes float64 in float32 on every "
    "backend (and returns float32 on jax and torch): docs/findings.md#float64-attention"
)
# From the Keras 3.16 nightly builds on (keras-team/keras#23225), every binary op on torch promotes float64 with
# float32 the same way: a float64 Multiply, Average, Conv1D or EinsumDense returns float32 there. The pinned Keras
# does not, so these entries are declared for the nightly set only (`nox -t nightly`).
_TORCH_BINARY_OPS = (
    "keras.ops.add and multiply of two float64 tensors return float32 on torch in the Keras 3.16 nightlies "
    "(keras-team/keras#23225, reported as #23704): docs/findings.md#float64-binary-ops-on-torch-in-the-nightlies"
)
_NIGHTLY = upstream.release(keras.__version__) >= (3, 16)


def _torch_binary_ops() -> list[Divergence]:
    return [Divergence("policies/float64", "torch", _TORCH_BINARY_OPS)] if _NIGHTLY else []


_EINSUM_SIZE = (
    "EinsumDense's compute_output_shape keeps the None of `output_shape` on an axis the input's size fixes (the "
    "symbolic output is (2, None, 4) for an input (2, 3, 5), eagerly (2, 3, 4)): "
    "docs/findings.md#einsumdense-keeps-none"
)
_HALF_ORTHOGONAL = (
    "the Orthogonal initializer (LSTM's recurrent kernel) cannot draw float16 or bfloat16 on jax and torch, nor "
    "bfloat16 on TensorFlow: docs/findings.md#orthogonal-in-half-precision"
)

# Keras exports OpenVINO from TensorFlow through TensorFlow's graph (from torch through torch's, and from jax not at
# all here), and that path differs: docs/findings.md#openvino-exports-from-tensorflow
_OPENVINO_EXTRA_OUTPUT = (
    "Keras's OpenVINO export from TensorFlow gives the artifact an output the model has not (Embedding: its mask; "
    "MultiHeadAttention: a scalar strided_slice): docs/findings.md#openvino-exports-from-tensorflow"
)
_LITERT_TENSORLIST = (
    "an LSTM exported to LiteRT from TensorFlow with the batch size unknown needs TensorFlow's TensorList ops "
    "(Flex), which the LiteRT interpreter does not run: docs/findings.md#exports-with-an-unknown-batch-size"
)
_ONNX_LAYER_NORM = (
    "LayerNormalization exported to ONNX from torch with the batch size unknown fails in torch.onnx "
    "(SymbolicValueError on a Gather of the shape): docs/findings.md#exports-with-an-unknown-batch-size"
)
_OPENVINO_TENSORLIST = (
    "an LSTM exported to OpenVINO from TensorFlow does not convert (no conversion rule for TensorList): "
    "docs/findings.md#openvino-exports-from-tensorflow"
)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _dense(weights, x):
    return x @ weights["kernel"] + weights["bias"]


def _dense_gradients(weights, cotangent, x):
    """Of `sum(cotangent * (x @ kernel + bias))`: float64 NumPy (its rounding is far inside the tolerance)."""
    return {"kernel": x.T @ cotangent, "bias": cotangent.sum(axis=0), "input0": cotangent @ weights["kernel"].T}


def _dense_divergences(args=None) -> list[Divergence]:
    """Dense's float64 forward pass and its kernel's and input's float64 gradients on torch; its bias's gradient
    (a sum, no matmul) too in the nightlies, where the add before it returns float32."""
    checks = ("policies/float64", "gradients-float64/kernel", "gradients-float64/input0")
    bias = args is None or args["use_bias"]
    nightly = [Divergence("gradients-float64/bias", "torch", _TORCH_BINARY_OPS)] if _NIGHTLY and bias else []
    return [Divergence(check, "torch", _TORCH_MATMUL) for check in checks] + nightly


def _dense_drawn(weights, x, args):
    out = x @ weights["kernel"] + (weights["bias"] if args["use_bias"] else 0.0)
    return np.maximum(out, 0.0) if args["activation"] == "relu" else out


def _dense_drawn_gradients(weights, cotangent, x, args):
    pre = x @ weights["kernel"] + (weights["bias"] if args["use_bias"] else 0.0)
    g = cotangent * (pre > 0) if args["activation"] == "relu" else cotangent
    grads = {"kernel": x.T @ g, "input0": g @ weights["kernel"].T}
    return {**grads, "bias": g.sum(axis=0)} if args["use_bias"] else grads


def _einsum_dense(weights, x):
    return np.einsum("abc,cd->abd", x, weights["kernel"]) + weights["bias"]


def _layer_norm(weights, x, epsilon=1e-3):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * weights["gamma"] + weights["beta"]


def _conv1d(weights, x):
    kernel, steps = weights["kernel"], x.shape[1] - weights["kernel"].shape[0] + 1
    return (
        np.stack([np.einsum("bkc,kcf->bf", x[:, t : t + kernel.shape[0]], kernel) for t in range(steps)], 1)
        + weights["bias"]
    )


def _attention(weights, query, value, attention_mask):
    def project(x, name):
        return np.einsum("abc,cde->abde", x, weights[f"{name}/kernel"]) + weights[f"{name}/bias"]

    q, k, v = project(query, "query") / np.sqrt(3.0), project(value, "key"), project(value, "value")
    scores = np.einsum("aecd,abcd->acbe", k, q)  # (batch, heads, target, source)
    scores = np.where(attention_mask[:, None, :, :], scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs = probs / probs.sum(-1, keepdims=True)
    context = np.einsum("acbe,aecd->abcd", probs, v)
    return np.einsum("abcd,cde->abe", context, weights["attention_output/kernel"]) + weights["attention_output/bias"]


def _lstm(weights, x, mask):
    kernel, recurrent, bias = (weights[f"lstm_cell/{n}"] for n in ("kernel", "recurrent_kernel", "bias"))
    h = c = np.zeros((x.shape[0], recurrent.shape[0]))
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
        new_c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        new_h = _sigmoid(o) * np.tanh(new_c)
        keep = mask[:, t, None]  # a masked step carries the state over
        h, c = np.where(keep, new_h, h), np.where(keep, new_c, c)
    return h


SUBJECTS = [
    Subject(
        "Dense",
        layer="keras.layers:Dense",
        args={"units": 4},
        inputs=Input((3, 5)),
        oracle=_dense,
        gradient_oracle=_dense_gradients,
        tolerance=Tolerance(6, "5 products summed, plus the bias"),
        bad_inputs=[BadInput("units=0", args={"units": 0})],
        divergences=_dense_divergences(),
    ),
    Subject(
        "Dense-drawn",
        layer="keras.layers:Dense",
        args=st.fixed_dictionaries(
            {"units": st.integers(1, 6), "use_bias": st.booleans(), "activation": st.sampled_from([None, "relu"])}
        ),
        examples=3,
        inputs=Input((3, 5)),
        oracle=_dense_drawn,
        gradient_oracle=_dense_drawn_gradients,
        tolerance=Tolerance(6, "5 products summed, plus the bias"),
        divergences=_dense_divergences,
    ),
    Subject(
        "EinsumDense",
        layer="keras.layers:EinsumDense",
        args={"equation": "abc,cd->abd", "output_shape": (None, 4), "bias_axes": "d"},
        inputs=Input((2, 3, 5)),
        oracle=_einsum_dense,
        tolerance=Tolerance(6, "5 products summed, plus the bias"),
        divergences=_torch_binary_ops() + [Divergence("symbolic", backend, _EINSUM_SIZE) for backend in BACKENDS],
    ),
    Subject(
        "Multiply",
        layer="keras.layers:Multiply",
        inputs=[Input((3, 4, 2), mask=0.6), Input((3, 4, 2), mask=0.6)],
        oracle=lambda weights, a, b: a * b,
        tolerance=Tolerance(1, "one product"),
        bad_inputs=[BadInput("shapes-that-do-not-broadcast", inputs=[Input((3, 4, 2)), Input((3, 5, 2))])],
        divergences=_torch_binary_ops(),
    ),
    Subject(
        "Average",
        layer="keras.layers:Average",
        inputs=[Input((3, 4, 2), mask=0.6), Input((3, 4, 2), mask=0.6)],
        oracle=lambda weights, a, b: (a + b) / 2,
        tolerance=Tolerance(2, "a sum of two, halved"),
        divergences=_torch_binary_ops(),
    ),
    Subject(
        "LayerNormalization",
        layer="keras.layers:LayerNormalization",
        inputs=Input((3, 6)),
        oracle=_layer_norm,
        # mean and variance over 6 features, a reciprocal square root (not correctly rounded: a few ulps), scale
        tolerance=Tolerance(16, "mean and variance over 6 features, rsqrt, scale and shift", ulps=4),
        divergences=[Divergence("policies/float64", b, _RESULT_TYPE) for b in ("jax", "torch")]
        + [Divergence("exports/onnx/any-batch", "torch", _ONNX_LAYER_NORM)],
    ),
    Subject(
        "Embedding-mask_zero",
        layer="keras.layers:Embedding",
        args={"input_dim": 10, "output_dim": 4, "mask_zero": True},
        inputs=Input((3, 5), dtype="int32", values="integers", low=0, high=10),
        oracle=lambda weights, ids: weights["embeddings"][ids],
        tolerance=Tolerance(1, "a lookup: exact"),
        divergences=[Divergence("exports/openvino", "tensorflow", _OPENVINO_EXTRA_OUTPUT)],
    ),
    Subject(
        "Conv1D",
        layer="keras.layers:Conv1D",
        args={"filters": 4, "kernel_size": 3},
        inputs=Input((2, 8, 3)),
        oracle=_conv1d,
        tolerance=Tolerance(10, "3 taps x 3 channels summed, plus the bias"),
        divergences=_torch_binary_ops(),
    ),
    Subject(
        "MultiHeadAttention-broadcast-mask",
        layer="keras.layers:MultiHeadAttention",
        args={"num_heads": 2, "key_dim": 3},
        inputs={
            "query": Input((2, 4, 6)),
            "value": Input((2, 5, 6)),
            # (batch, 1, source): one mask row for every query position, broadcast; every row keeps a key
            "attention_mask": Input(
                (2, 1, 5), dtype="bool", values=lambda rng, shape: rng.random(shape) < 0.7, feature_axes=0
            ),
        },
        oracle=_attention,
        # projections (6 terms), scores (3), softmax over 5 (exp: a few ulps), weighted sum (5), output (6)
        tolerance=Tolerance(24, "projections, scores, softmax over 5 keys, weighted sum, output projection", ulps=8),
        divergences=[Divergence("policies/float64", b, _ATTENTION) for b in ("jax", "torch", "tensorflow")]
        + [Divergence("exports/openvino", "tensorflow", _OPENVINO_EXTRA_OUTPUT)],
    ),
    Subject(
        "LSTM-masked",
        layer="keras.layers:LSTM",
        args={"units": 3},
        inputs=Input((2, 5, 4), mask=0.7),
        oracle=_lstm,
        # 5 steps of 4 + 3 + 1 terms per gate, sigmoid and tanh (a few ulps each)
        tolerance=Tolerance(5 * 10, "5 steps, each 8 terms per gate and the state update", ulps=5 * 12),
        divergences=[Divergence("policies/float64", b, _RESULT_TYPE) for b in ("jax", "torch")]
        + [Divergence("policies/float16", b, _HALF_ORTHOGONAL) for b in ("jax", "torch")]
        + [Divergence("policies/bfloat16", b, _HALF_ORTHOGONAL) for b in ("jax", "torch", "tensorflow")]
        + [Divergence("exports/openvino", "tensorflow", _OPENVINO_TENSORLIST)]
        + [Divergence("exports/litert/any-batch", "tensorflow", _LITERT_TENSORLIST)],
    ),
]
