"""Hypothesis properties, on every backend: shapes and dtypes, inference, errors, numerics and algebra.

The `ci` profile (nox's default) is derandomized; run `HYPOTHESIS_PROFILE=thorough nox -s tests-jax` for a
long random search. A failure prints the falsifying example and a `@reproduce_failure` blob.
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np
import pytest
from hypothesis import assume, event, example, given, note, settings
from hypothesis import strategies as st

from conformance import assertions, backend, runner
from conformance.subjects.hyperzzw import oracle, strategies, tolerance
from conformance.subjects.hyperzzw.target import HyperZZWOperator


def test_the_hypothesis_profile_is_the_one_asked_for():
    """`HYPOTHESIS_PROFILE=thorough nox -s tests-jax` must run the thorough profile (nox passes the user's
    choice through, `ci` only when none is set); this is what the run is using."""
    asked = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    assert settings.default == settings.get_profile(asked), f"HYPOTHESIS_PROFILE={asked} but another profile is loaded"


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
    assert tuple(out.shape) == oracle.output_shape(x_shape, context_shape)
    assert backend.dtype_of(out) == dtype
    assert layer.context_dim == context_shape[-1]
    assert tuple(layer.hyper_kernel.shape) == (context_shape[-1], x_shape[-1])


@given(pair=strategies.shape_pairs(), dtype=strategies.dtypes)
def test_symbolic_shape_and_dtype(pair, dtype):
    x_shape, context_shape = pair
    layer = HyperZZWOperator(x_shape[-1], dtype=dtype)
    out = layer([keras.Input(batch_shape=(None,) + x_shape[1:]), keras.Input(batch_shape=(None,) + context_shape[1:])])
    assert tuple(out.shape) == (None,) + oracle.output_shape(x_shape, context_shape)[1:]
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
    received = f"Received: x.shape={x_shape}, context.shape={context_shape}"
    expected = {
        "x last dim": f"`HyperZZWOperator` expects the last dimension of `x` to be input_dim={input_dim}. {received}",
        "x rank": f"`HyperZZWOperator` expects `x` to have rank >= 2, (batch_size, ..., input_dim). {received}",
        "context rank": "`HyperZZWOperator` expects `context` to have rank 2 or the rank of `x` "
        f"({len(x_shape)}). {received}",
        "leading dims": "`HyperZZWOperator` expects the leading dimensions of `x` and `context` to be "
        f"broadcast-compatible. {received}",
    }[what]
    assert str(info.value) == expected


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
    products = [
        context[..., :, None] * kernel,
        oracle.forward(np.ones_like(x), context, kernel),
        oracle.forward(x, context, kernel),
    ]
    smallest = min((np.min(np.abs(p[p != 0])) for p in products if np.any(p != 0)), default=np.inf)
    assume(smallest * min(a, 1.0) >= 8 * tolerance.TINY[dtype])
    base = backend.to_numpy(_call(layer, x, context, dtype))
    scaled = backend.to_numpy(
        _call(layer, x, a * context, dtype) if scale_context else _call(layer, a * x, context, dtype)
    )
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


CONTEXT_KINDS = ("float", "int32 one-hot", "bool")


@pytest.mark.parametrize("policy", sorted(strategies.POLICIES))
@settings(max_examples=max(3, settings.default.max_examples // 8))  # 6 policies share the profile's budget
@given(
    pair=strategies.user_shape_pairs(),
    kind=st.sampled_from(CONTEXT_KINDS),
    mode=st.sampled_from(["jit", "eager"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_outputs_and_gradients_match_the_exact_oracle(policy, pair, kind, mode, seed):
    """Shapes users have (ranks 2-5, both context forms, broadcasts, batch 0 to 40, dims up to 320), every
    dtype policy, float, integer and boolean contexts: the output and the gradients w.r.t. x, context and
    hyper_kernel, eager or compiled, are within the derived tolerance of the exact oracle, in the right
    dtypes."""
    assume(_outputs_and_gradients_match(pair, policy, kind, mode, seed))


@settings(max_examples=max(6, settings.default.max_examples // 2))
@given(
    pair=strategies.every_rank_shape_pairs(),
    policy=st.sampled_from(["float32", "float64"]),
    mode=st.sampled_from(["jit", "eager"]),
    seed=st.integers(0, 2**32 - 1),
)
# The pair TensorFlow's `multiply` rejects ("Broadcast between [2,1,3,1,2,4] and [2,5,1,2,1,4] is not supported
# yet"), and rank 8 with every leading dim broadcast, alternately in x and in the context.
@example(pair=((2, 1, 3, 1, 2, 4), (2, 5, 1, 2, 1, 3)), policy="float32", mode="eager", seed=0)
@example(pair=((2, 1, 2, 1, 2, 1, 2, 3), (1, 2, 1, 2, 1, 2, 1, 2)), policy="float64", mode="jit", seed=1)
def test_every_rank_broadcasts_like_numpy(pair, policy, mode, seed):
    """Ranks 2-8 with 1s alternating between x and the context (more runs of broadcast dimensions than
    TensorFlow's broadcasting kernels take): the output and gradients are the oracle's on every backend."""
    assume(_outputs_and_gradients_match(pair, policy, "float", mode, seed))


def _outputs_and_gradients_match(pair, policy, kind, mode, seed) -> bool:
    """Checks the layer's output and gradients against the exact oracle; False when the draw is outside what a
    worst-case bound can check (the check is then not made)."""
    x_shape, context_shape = pair
    compute, variable = strategies.POLICIES[policy]
    # The worst-case bound gamma(n) = n u / (1 - n u) says nothing once n u nears 1 (bfloat16: u = 2**-8, so
    # a reduction of 128 terms may in the worst case lose every bit); such draws are outside what a
    # worst-case tolerance can check, and are left out here (they still run in float32/float64).
    longest = max(tolerance.reduction_lengths(x_shape, context_shape, (context_shape[-1], x_shape[-1])).values())
    if tolerance.gamma(longest + 2, compute) > 0.5:
        return False
    event(f"policy {policy}")
    event(f"context {kind}")
    event(f"mode {mode}")
    rng = np.random.default_rng(seed)
    x = strategies.random_values(seed, x_shape, compute)
    kernel = strategies.random_values(seed + 1, (context_shape[-1], x_shape[-1]), compute, zeros=0.02)
    if kind == "float":
        context, context_dtype = strategies.random_values(seed + 2, context_shape, compute), compute
    else:
        context = np.eye(context_shape[-1])[rng.integers(0, context_shape[-1], context_shape[:-1])]
        context_dtype = "int32" if kind == "int32 one-hot" else "bool"
    g = strategies.random_values(seed + 3, oracle.output_shape(x_shape, context_shape), compute, zeros=0.0)
    layer = HyperZZWOperator(x_shape[-1], dtype=policy)
    layer.build([x_shape, context_shape])
    args = [backend.tensor(x, compute), backend.tensor(context, context_dtype), backend.tensor(kernel, variable)]
    what = f"{x_shape}/{context_shape}/{policy}/{kind}/{mode}"

    g_tensor = backend.tensor(g, compute)
    differentiable = [0, 2] if kind != "float" else [0, 1, 2]
    loss_and_output = runner.sum_loss_and_output(runner.stateless_forward(layer), args, differentiable, g_tensor)

    # One evaluation gives the output and the gradients (compiled: one trace of forward and backward).
    out, grads = backend.output_and_gradients(
        loss_and_output, [args[i] for i in differentiable], compiled=mode == "jit"
    )
    grads = dict(zip(differentiable, grads))
    assertions.assert_dtype(backend.dtype_of(out), compute, what)
    assertions.assert_close(
        backend.to_numpy(out),
        oracle.forward(x, context, kernel, compute),
        tolerance.forward_atol(x, context, kernel, compute, backend.NAME),
        what,
    )
    expected = oracle.gradients(x, context, kernel, g, compute)
    atols = tolerance.gradient_atols(x, context, kernel, g, compute, backend.NAME)
    for i, name in enumerate(("dx", "dcontext", "dkernel")):
        if i not in grads:
            continue
        assertions.assert_dtype(backend.dtype_of(grads[i]), variable if i == 2 else compute, f"{what} {name}")
        assertions.assert_close(backend.to_numpy(grads[i]), expected[i], atols[i], what, what=name)
    return True


@given(
    pair=strategies.user_shape_pairs(max_rank=6),
    policy=strategies.policies,
    context_dtype=st.sampled_from(["float", "int32", "bool"]),
    data=st.data(),
)
def test_symbolic_shapes_with_unknown_dims(pair, policy, context_dtype, data):
    """Any leading dim of x or context may be unknown (None) when a functional model is built: the layer
    must accept every valid pair and infer the output shape (a known dim wins over None and 1), dtype and
    context_dim."""
    x_shape, context_shape = pair
    x_mask = data.draw(st.lists(st.booleans(), min_size=len(x_shape) - 1, max_size=len(x_shape) - 1), label="x unknown")
    c_mask = data.draw(
        st.lists(st.booleans(), min_size=len(context_shape) - 1, max_size=len(context_shape) - 1),
        label="context unknown",
    )
    xs, cs = strategies.symbolic(x_shape, x_mask), strategies.symbolic(context_shape, c_mask)
    event(f"unknown dims: {sum(x_mask) + sum(c_mask)}")
    # Rare in small `ci` runs; test_shapes.py's PARTLY_UNKNOWN table always holds both.
    for a, b in zip(xs[: len(cs) - 1], cs[:-1]):
        if a is None and b == 1:
            event("an unknown dim of x against the context's 1")
        elif a == 1 and b is None:
            event("an unknown dim of the context against x's 1")
    compute, _ = strategies.POLICIES[policy]
    dtype = compute if context_dtype == "float" else context_dtype
    layer = HyperZZWOperator(x_shape[-1], dtype=policy)
    out = layer([keras.Input(batch_shape=xs, dtype=compute), keras.Input(batch_shape=cs, dtype=dtype)])
    assert tuple(out.shape) == oracle.symbolic_output_shape(xs, cs), (xs, cs)
    assert backend.dtype_of(out) == compute
    assert layer.context_dim == context_shape[-1]
    assert layer.compute_output_shape([xs, cs]) == oracle.symbolic_output_shape(xs, cs)


def _keras_object(module, spec):
    return None if spec is None else module.get({"class_name": spec[0], "config": dict(spec[1])})


def _constraint_oracle(name: str, config: dict, u: np.ndarray) -> np.ndarray:
    """What Keras's constraint `name` does to a kernel, in float64 (its documented formula)."""
    if name == "NonNeg":
        return u * (u >= 0)
    eps = keras.backend.epsilon()
    norms = np.sqrt(np.sum(u * u, axis=config["axis"], keepdims=True))
    if name == "UnitNorm":
        return u / (eps + norms)
    if name == "MaxNorm":
        desired = np.clip(norms, 0, config["max_value"])
    else:  # MinMaxNorm
        desired = (
            config["rate"] * np.clip(norms, config["min_value"], config["max_value"]) + (1 - config["rate"]) * norms
        )
    return u * desired / (eps + norms)


@pytest.mark.parametrize("family", sorted(strategies.INITIALIZERS))
@settings(max_examples=max(4, settings.default.max_examples // 6))  # 15 families share the profile's budget
@given(data=st.data(), pair=strategies.shape_pairs(max_rank=3, min_batch=1), seed=st.integers(0, 2**16))
def test_constructor_arguments_reach_the_kernel_the_loss_and_the_update(family, data, pair, seed):
    """Every initializer family Keras ships (the kernel is what it draws for shape (context_dim, input_dim):
    seeded, bit for bit; unseeded, a fresh draw per layer that keras.utils.set_random_seed reproduces), an
    explicit or inferred context_dim, a regularizer (its loss) and a constraint (applied by the optimizer), and
    the output with that kernel against the oracle."""
    args = data.draw(strategies.constructor_arguments(family), label="arguments")
    x_shape, context_shape = pair
    shape = (context_shape[-1], x_shape[-1])
    name, config = args["initializer"]

    def make():
        return HyperZZWOperator(
            x_shape[-1],
            context_dim=shape[0] if args["explicit_context_dim"] else None,
            kernel_initializer=_keras_object(keras.initializers, args["initializer"]),
            kernel_regularizer=_keras_object(keras.regularizers, args["regularizer"]),
            kernel_constraint=_keras_object(keras.constraints, args["constraint"]),
        )

    def kernel_of(layer):
        layer.build([x_shape, context_shape])
        return backend.to_numpy(layer.hyper_kernel)

    keras.utils.set_random_seed(seed)
    layer = make()
    kernel = kernel_of(layer)
    what = f"{name}{config} {shape}"
    if not args["random"] or args["seeded"]:
        # The same initializer, made afresh from the drawn spec, draws the same values for that shape.
        want = backend.to_numpy(_keras_object(keras.initializers, args["initializer"])(shape, dtype="float32"))
        np.testing.assert_array_equal(kernel, want, err_msg=what)
    else:
        assert kernel.size < 2 or not np.array_equal(kernel_of(make()), kernel), (
            f"{what}: two fresh layers drew the same kernel"
        )
        keras.utils.set_random_seed(seed)
        np.testing.assert_array_equal(
            kernel_of(make()), kernel, err_msg=f"{what}: set_random_seed does not reproduce it"
        )
    # The configuration round-trips.
    assert HyperZZWOperator.from_config(layer.get_config()).get_config() == layer.get_config()

    rng = np.random.default_rng(seed)
    x = strategies.random_values(seed, x_shape, "float32")
    context = strategies.random_values(seed + 1, context_shape, "float32")
    out = _call(layer, x, context, "float32")
    assertions.assert_close(
        backend.to_numpy(out),
        oracle.forward(x, context, kernel, "float32"),
        tolerance.forward_atol(x, context, kernel, "float32", backend.NAME),
        what,
    )

    if args["regularizer"]:
        factors = args["regularizer"][1]
        l1, l2 = factors.get("l1", 0.0), factors.get("l2", 0.0)
        exact = l1 * np.sum(np.abs(kernel)) + l2 * np.sum(kernel * kernel)
        # float32: n = kernel.size terms summed, each product and the factor rounded once: gamma(n + 2).
        bound = tolerance.gamma(kernel.size + 2, "float32") * exact
        got = sum(float(backend.to_numpy(loss)) for loss in layer.losses)
        assert abs(got - exact) <= bound, f"{what}: regularization loss {got}, oracle {exact} (bound {bound:.2g})"
    else:
        assert not layer.losses

    if args["constraint"]:
        # One SGD step (learning rate 1) by a gradient of 4s from a kernel of multiples of 2**-9 in [-1, 1]: the
        # update k - 4 is exact in float32, so the constraint is all that shapes the result.
        start = rng.integers(-512, 513, shape) / 512.0
        layer.hyper_kernel.assign(backend.tensor(start, "float32"))
        keras.optimizers.SGD(learning_rate=1.0).apply(
            [backend.tensor(np.full(shape, 4.0), "float32")], [layer.hyper_kernel]
        )
        want = _constraint_oracle(*args["constraint"], start - 4.0)
        # A norm over context_dim terms and one scaling: gamma(context_dim + 4) relative, per element.
        atol = tolerance.gamma(shape[0] + 4, "float32") * np.abs(want) + tolerance.TINY["float32"]
        assertions.assert_close(backend.to_numpy(layer.hyper_kernel), want, atol, f"{what} {args['constraint']}")


@pytest.mark.parametrize("dtype", strategies.cases.FLOAT_DTYPES)
@settings(max_examples=max(4, settings.default.max_examples // 4))  # 4 dtypes share the profile's budget
@given(
    pair=strategies.shape_pairs(max_rank=3),
    where=st.sampled_from(["top", "bottom", "anywhere"]),
    offsets=st.tuples(st.integers(-2, 2), st.integers(-2, 2), st.integers(-2, 2)),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_values_across_the_dtype_range(dtype, pair, where, offsets, seed, data):
    """Inputs scaled by powers of two across the dtype's whole exponent range, up to just below overflow of
    the output and down to where it underflows: the output is the oracle's within the derived tolerance
    (whose floor covers the flush-to-zero backends near the bottom). The scale is split between x, the
    context and the kernel so that `context @ kernel` never overflows where the exact output does not."""
    x_shape, context_shape = pair
    _, min_exp, largest = oracle.FORMATS[dtype]
    # Values below are at most 2**-1 in magnitude (random_values / 2**5), so |output| <= n * 2**(e_x + e_c + e_k).
    n = context_shape[-1]
    top = math.floor(math.log2(largest)) - math.ceil(math.log2(n)) - 8
    bottom = min_exp + 6
    total = {"top": top, "bottom": bottom}.get(where) or data.draw(st.integers(bottom, top), label="exponent")
    event(f"{dtype} values at the {where} of the range")
    ex, ec, ek = (total // 3 + o for o in offsets)
    ek = total - ex - ec  # the three add up to `total`
    scale = lambda v, e: oracle.round_to(v / 2.0**5 * 2.0**e, dtype)  # noqa: E731
    x = scale(strategies.random_values(seed, x_shape, dtype), ex)
    context = scale(strategies.random_values(seed + 1, context_shape, dtype), ec)
    kernel = scale(strategies.random_values(seed + 2, (n, x_shape[-1]), dtype), ek)
    layer = HyperZZWOperator(x_shape[-1], dtype=dtype)
    layer.build([x_shape, context_shape])
    layer.hyper_kernel.assign(backend.tensor(kernel, dtype))
    out = backend.to_numpy(_call(layer, x, context, dtype))
    assertions.assert_close(
        out,
        oracle.forward(x, context, kernel, dtype),
        tolerance.forward_atol(x, context, kernel, dtype, backend.NAME),
        f"{x_shape}/{context_shape}/{dtype} 2**({ex}, {ec}, {ek})",
    )
