"""Dtype policies: output in the compute dtype, hyper_kernel in the variable dtype, inputs cast to it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conformance import assertions, backend, cases, oracle, tolerance
from conformance.target import HyperZZWOperator

POLICIES = cases.POLICIES  # policy -> (compute dtype, variable dtype)
INPUT_DTYPES = ["float16", "bfloat16", "float32", "float64", "int32", "int64", "bool"]


@pytest.mark.parametrize("input_dtype", INPUT_DTYPES)
@pytest.mark.parametrize("policy", POLICIES)
def test_policy_dtypes_and_values(policy, input_dtype):
    compute, variable = POLICIES[policy]
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, (6, 5)).astype(np.float64)
    context = (rng.random((6, 3)) < 0.5).astype(np.float64)  # one-hot-like 0/1: exact in every dtype
    if input_dtype == "bool":
        x = np.abs(x) > 1
    layer = HyperZZWOperator(5, dtype=policy)
    out = layer([backend.tensor(x, input_dtype), backend.tensor(context, input_dtype)])
    case = f"{policy}/{input_dtype}"
    assertions.assert_dtype(backend.dtype_of(out), compute, case)
    assertions.assert_dtype(backend.dtype_of(layer.hyper_kernel), variable, case)
    kernel = oracle.round_to(backend.to_numpy(layer.hyper_kernel), compute)  # read in the compute dtype
    expected = oracle.forward(x, context, kernel, compute)  # exact, rounded once
    atol = tolerance.forward_atol(x.astype(np.float64), context, kernel, compute, backend.NAME)
    assertions.assert_close(backend.to_numpy(out), expected, atol, case)


@pytest.mark.parametrize("policy", POLICIES)
def test_symbolic_output_dtype(policy):
    compute, _ = POLICIES[policy]
    out = HyperZZWOperator(5, dtype=policy)([keras.Input((5,)), keras.Input((3,), dtype="int32")])
    assert backend.dtype_of(out) == compute


def test_float64_numpy_inputs_keep_float64_precision():
    """A float64 layer fed float64 NumPy arrays computes in float64 on every backend (no silent float32)."""
    rng = np.random.default_rng(2)
    x, context = rng.standard_normal((8, 16)), rng.standard_normal((8, 32))
    layer = HyperZZWOperator(16, dtype="float64")
    out = backend.to_numpy(layer([x, context]))
    kernel = backend.to_numpy(layer.hyper_kernel)
    atol = tolerance.forward_atol(x, context, kernel, "float64", backend.NAME)
    assertions.assert_close(out, oracle.forward(x, context, kernel), atol, "float64 numpy")


def test_float64_inputs_do_not_leak_into_a_float32_layer():
    out = HyperZZWOperator(4)([np.ones((2, 4)), np.ones((2, 3))])
    assert backend.dtype_of(out) == "float32"


def test_global_mixed_policy_is_honoured():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = HyperZZWOperator(4)
        out = layer([np.ones((2, 4), "float32"), np.ones((2, 3), "float32")])
    finally:
        keras.config.set_dtype_policy(previous)
    assert (backend.dtype_of(out), backend.dtype_of(layer.hyper_kernel)) == ("float16", "float32")
