"""Dtype policies: output in the compute dtype, hyper_kernel in the variable dtype, inputs cast to it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conformance import assertions, backend
from conformance.subjects.hyperzzw import cases, oracle, tolerance
from conformance.subjects.hyperzzw.target import HyperZZWOperator

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


# --- integer and boolean inputs over their whole range -----------------------------------------------------

# The integer dtypes every backend has (jax has no 64-bit integers without x64, which the suite enables).
INTEGER_DTYPES = ["bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64"]
_PRECISIONS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}


def integers_over_the_range(dtype: str) -> np.ndarray:
    """Integers of `dtype` where a cast goes wrong if it goes wrong anywhere: both ends of the range, 2**24 + 1
    (the first integer float32 cannot hold), and for each float precision p and bit length b the points
    midway between two neighbouring p-bit floats, and their neighbours +-1 (rounding to nearest must go to
    the nearer side, a tie to the even side; a cast through a narrower float lands on the midpoint and
    rounds to even). Drawn from a fixed NumPy seed; the expected values come from `oracle.Exact`."""
    if dtype == "bool":
        return np.array([False, True])
    info = np.iinfo(dtype)
    bits = info.bits - (info.min < 0)
    rng = np.random.default_rng(list(dtype.encode()))
    picks = {0, 1, int(info.max), int(info.min), 2**24 + 1, -(2**24) - 1, 2**53 + 1}
    for p in _PRECISIONS.values():
        for b in range(p + 1, bits + 1):
            midway = (int(rng.integers(2**p, 2 ** (p + 1))) | 1) << (b - p - 1)
            picks |= {sign * (midway + d) for sign in (1, -1) for d in (-1, 0, 1)}
    return np.array(sorted(v for v in picks if info.min <= v <= info.max), dtype=dtype)


@pytest.mark.parametrize("where", ["x", "context"])
@pytest.mark.parametrize("input_dtype", INTEGER_DTYPES)
@pytest.mark.parametrize("policy", POLICIES)
def test_integer_inputs_round_once_to_the_compute_dtype(policy, input_dtype, where):
    """An integer or boolean input is converted to the compute dtype by one rounding to nearest (ties to even;
    past the largest finite value, infinity): exact in float64 up to 2**53 (2**24 + 1 stays 2**24 + 1), and
    never through a narrower float first. With a kernel of ones and the other input all 1s, the output is
    the converted input itself, so it is compared exactly."""
    compute, _ = POLICIES[policy]
    ints = integers_over_the_range(input_dtype).reshape(-1, 1)
    ones = np.ones(ints.shape, dtype="int32")
    layer = HyperZZWOperator(1, kernel_initializer="ones", dtype=policy)
    x, context = (ints, ones) if where == "x" else (ones, ints)
    out = (
        layer([backend.tensor(x, input_dtype), backend.tensor(context, "int32")])
        if where == "x"
        else layer([backend.tensor(x, "int32"), backend.tensor(context, input_dtype)])
    )
    expected = oracle.Exact.of_ints(ints.astype(object)).round(compute)
    case = f"{policy}/{input_dtype} {where}"
    assertions.assert_dtype(backend.dtype_of(out), compute, case)
    got = backend.to_numpy(out)
    wrong = np.flatnonzero(got.ravel() != expected.ravel())
    assert not wrong.size, (
        f"{case} on {backend.NAME}: {wrong.size} of {ints.size} integers not rounded once to {compute}, e.g. "
        + ", ".join(
            f"{int(ints.ravel()[i])} -> {got.ravel()[i]!r} (expected {expected.ravel()[i]!r})" for i in wrong[:3]
        )
    )
