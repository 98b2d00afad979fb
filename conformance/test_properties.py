"""Hypothesis properties, on every backend: shapes and dtypes, inference, errors, numerics and algebra.

The `ci` profile (nox's default) is derandomized; run `HYPOTHESIS_PROFILE=thorough nox -s tests-jax` for a
long random search. A failure prints the falsifying example and a `@reproduce_failure` blob.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from conformance import assertions, backend, oracle, strategies, tolerance
from conformance.target import HyperZZWOperator


def _layer_and_kernel(x_shape, context_shape, dtype, data):
    layer = HyperZZWOperator(x_shape[-1], dtype=dtype)
    layer.build([x_shape, context_shape])
    kernel = data.draw(strategies.values((context_shape[-1], x_shape[-1]), dtype, 1.0), label="kernel")
    layer.hyper_kernel.assign(backend.tensor(kernel, dtype))
    return layer, kernel


def _call(layer, x, context, dtype):
    return layer([backend.tensor(x, dtype), backend.tensor(context, dtype)])


@given(pair=strategies.shape_pairs(), dtype=strategies.dtypes)
def test_eager_shape_dtype_and_inferred_context_dim(pair, dtype):
    x_shape, context_shape = pair
    layer = HyperZZWOperator(x_shape[-1], dtype=dtype)
    out = layer([backend.tensor(np.ones(x_shape), dtype), backend.tensor(np.ones(context_shape), dtype)])
    assert tuple(out.shape) == strategies.output_shape(x_shape, context_shape)
    assert backend.dtype_of(out) == dtype
    assert layer.context_dim == context_shape[-1]
    assert tuple(layer.hyper_kernel.shape) == (context_shape[-1], x_shape[-1])


@given(pair=strategies.shape_pairs(), dtype=strategies.dtypes)
def test_symbolic_shape_and_dtype(pair, dtype):
    x_shape, context_shape = pair
    layer = HyperZZWOperator(x_shape[-1], dtype=dtype)
    out = layer([keras.Input(batch_shape=(None,) + x_shape[1:]), keras.Input(batch_shape=(None,) + context_shape[1:])])
    assert tuple(out.shape) == (None,) + strategies.output_shape(x_shape, context_shape)[1:]
    assert backend.dtype_of(out) == dtype
    assert layer.context_dim == context_shape[-1]


@given(name=st.sampled_from(["input_dim", "context_dim"]), value=strategies.bad_dims)
def test_invalid_dims_raise_the_documented_error(name, value):
    kwargs = {"input_dim": 3, name: value}
    assume(not (name == "context_dim" and value is None))
    with pytest.raises(ValueError) as info:
        HyperZZWOperator(**kwargs)
    assert type(info.value) is ValueError
    assert str(info.value) == (
        f"Received an invalid value for `{name}`, expected a positive integer. Received: {name}={value!r}"
    )


@given(bad=strategies.bad_shape_pairs(), symbolic=st.booleans())
def test_invalid_shapes_raise_the_documented_error(bad, symbolic):
    x_shape, context_shape, what = bad
    note(f"defect: {what}")
    input_dim = x_shape[-1] - 1 if what == "x last dim" else x_shape[-1]
    layer = HyperZZWOperator(input_dim)
    if symbolic:
        inputs = [keras.Input(batch_shape=x_shape), keras.Input(batch_shape=context_shape)]
    else:
        inputs = [backend.tensor(np.ones(x_shape), "float32"), backend.tensor(np.ones(context_shape), "float32")]
    with pytest.raises(ValueError) as info:
        layer(inputs)
    assert type(info.value) is ValueError
    message = str(info.value)
    assert message.startswith("`HyperZZWOperator` expects ")
    assert message.endswith(f"Received: x.shape={x_shape}, context.shape={context_shape}")


@given(pair=strategies.shape_pairs(max_rank=3), dtype=strategies.dtypes, data=st.data())
def test_numerics_match_the_oracle(pair, dtype, data):
    x_shape, context_shape = pair
    layer, kernel = _layer_and_kernel(x_shape, context_shape, dtype, data)
    x = data.draw(strategies.values(x_shape, dtype), label="x")
    context = data.draw(strategies.values(context_shape, dtype), label="context")
    out = _call(layer, x, context, dtype)
    expected = oracle.forward(x, context, kernel, dtype)  # exact, rounded once
    atol = tolerance.forward_atol(x, context, kernel, dtype, backend.NAME)
    assertions.assert_close(backend.to_numpy(out), expected, atol, f"{x_shape}/{context_shape}/{dtype}")


@given(
    pair=strategies.shape_pairs(max_rank=3),
    dtype=strategies.dtypes,
    exponent=st.integers(-3, 3),
    scale_context=st.booleans(),
    data=st.data(),
)
def test_scaling_by_a_power_of_two_scales_the_output_exactly(pair, dtype, exponent, scale_context, data):
    """Multiplying x or context by 2**k multiplies every intermediate by 2**k, which is exact while nothing
    leaves the normal range: the outputs must then be bitwise equal. (Below the normal range rounding is
    absolute, and XLA flushes to zero; hypothesis found that edge, so such draws are excluded.)"""
    x_shape, context_shape = pair
    layer, kernel = _layer_and_kernel(x_shape, context_shape, dtype, data)
    x = data.draw(strategies.values(x_shape, dtype, smallest=0.125), label="x")
    context = data.draw(strategies.values(context_shape, dtype, smallest=0.125), label="context")
    a = 2.0**exponent
    products = [context[..., :, None] * kernel, oracle.forward(np.ones_like(x), context, kernel), oracle.forward(x, context, kernel)]
    smallest = min((np.min(np.abs(p[p != 0])) for p in products if np.any(p != 0)), default=np.inf)
    assume(smallest * min(a, 1.0) >= 8 * tolerance.TINY[dtype])
    base = backend.to_numpy(_call(layer, x, context, dtype))
    scaled = backend.to_numpy(_call(layer, x, a * context, dtype) if scale_context else _call(layer, a * x, context, dtype))
    np.testing.assert_array_equal(scaled, a * base)


@given(pair=strategies.shape_pairs(max_rank=3), dtype=strategies.dtypes, data=st.data())
def test_additive_in_the_context(pair, dtype, data):
    x_shape, context_shape = pair
    layer, kernel = _layer_and_kernel(x_shape, context_shape, dtype, data)
    x = data.draw(strategies.values(x_shape, dtype), label="x")
    c1 = data.draw(strategies.values(context_shape, dtype, 2.0), label="c1")
    c2 = data.draw(strategies.values(context_shape, dtype, 2.0), label="c2")
    total = oracle.round_to(c1 + c2, dtype)  # the sum as the dtype holds it
    f = lambda c: backend.to_numpy(_call(layer, x, c, dtype))  # noqa: E731
    # Each side is within forward_atol of its exact value, the exact values add up, and rounding the sum of
    # the contexts moves the exact output by at most |x| * (|total - (c1 + c2)| @ |K|).
    atol = (
        tolerance.forward_atol(x, c1, kernel, dtype, backend.NAME)
        + tolerance.forward_atol(x, c2, kernel, dtype, backend.NAME)
        + tolerance.forward_atol(x, total, kernel, dtype, backend.NAME)
        + tolerance.magnitude_forward(x, total - (c1 + c2), kernel)
    )
    assertions.assert_close(f(total), f(c1) + f(c2), atol, f"additivity {dtype}")


@given(pair=strategies.shape_pairs(), dtype=strategies.dtypes, data=st.data())
def test_zero_context_gives_zero_output(pair, dtype, data):
    x_shape, context_shape = pair
    layer, _ = _layer_and_kernel(x_shape, context_shape, dtype, data)
    x = data.draw(strategies.values(x_shape, dtype), label="x")
    out = backend.to_numpy(_call(layer, x, np.zeros(context_shape), dtype))
    assert np.all(out == 0)


@given(
    pair=strategies.shape_pairs(max_rank=3, min_batch=2, broadcast_batch=False), dtype=strategies.dtypes, data=st.data()
)
def test_permuting_batch_rows_permutes_output_rows(pair, dtype, data):
    x_shape, context_shape = pair
    layer, kernel = _layer_and_kernel(x_shape, context_shape, dtype, data)
    x = data.draw(strategies.values(x_shape, dtype), label="x")
    context = data.draw(strategies.values(context_shape, dtype), label="context")
    perm = np.asarray(data.draw(st.permutations(range(x_shape[0])), label="permutation"))
    out = backend.to_numpy(_call(layer, x, context, dtype))
    permuted = backend.to_numpy(_call(layer, x[perm], context[perm], dtype))
    atol = 2 * tolerance.forward_atol(x, context, kernel, dtype, backend.NAME)[perm]
    assertions.assert_close(permuted, out[perm], atol, f"permutation {perm.tolist()}")


@given(pair=strategies.shape_pairs(min_rank=3, max_rank=3), dtype=strategies.dtypes, data=st.data())
def test_rank2_context_equals_the_same_context_tiled(pair, dtype, data):
    x_shape, _ = pair
    batch = max(x_shape[0], 1)
    x_shape = (batch,) + x_shape[1:]
    context_dim = data.draw(strategies.dims, label="context_dim")
    layer, kernel = _layer_and_kernel(x_shape, (batch, context_dim), dtype, data)
    x = data.draw(strategies.values(x_shape, dtype), label="x")
    context = data.draw(strategies.values((batch, context_dim), dtype), label="context")
    tiled = np.repeat(context[:, None, :], x_shape[1], axis=1)
    out2 = backend.to_numpy(_call(layer, x, context, dtype))
    out3 = backend.to_numpy(_call(layer, x, tiled, dtype))
    atol = 2 * tolerance.forward_atol(x, context, kernel, dtype, backend.NAME)
    assertions.assert_close(out3, out2, atol, "tiled context")
