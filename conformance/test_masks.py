"""Masks, as Keras layers carry them: the output keeps x's mask; a context of x's rank has x's time axes and
its mask is combined with x's by logical AND; a rank-2 context has none. Checked against the oracle
(`oracle.output_mask`) through `compute_mask` eagerly and compiled, through a functional model (symbolic),
and end to end: a masked sequence model gives the same output whatever the padded positions hold."""

from __future__ import annotations

import contextlib
import warnings

import keras
import numpy as np
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from keras import ops

from conformance import assertions, backend, expected, upstream
from conformance.subjects.hyperzzw import cases, golden, oracle, strategies, tolerance
from conformance.subjects.hyperzzw.target import HyperZZWOperator

# Known gap, Keras's: from the Keras 3.16 nightly builds on, RNN layers set `supports_masking = False`
# (keras/src/layers/rnn/rnn.py), so Keras warns that an LSTM "does not support masking and will therefore destroy
# the mask information" when a mask reaches it, although its call still reads the mask (the masked LSTM model's
# output ignores the padding). Strict: when Keras stops warning, this turns red.
_RNN_WARNS = upstream.release(keras.__version__) >= (3, 16)
_RNN_WARNING = r"Layer '\w+' \(of type LSTM\) was passed an input with a mask attached to it"


@pytest.mark.xfail(
    _RNN_WARNS, raises=UserWarning, strict=True, reason="Keras 3.16 nightlies: LSTM warns it drops masks"
)
def test_keras_lstm_takes_a_mask_without_warning():
    keras.layers.LSTM(3)(keras.layers.Masking()(keras.Input((6, 4))))


@contextlib.contextmanager
def _rnn_warning_ignored():
    with warnings.catch_warnings():
        if _RNN_WARNS:
            warnings.filterwarnings("ignore", message=_RNN_WARNING, category=UserWarning)
        yield


MASK_CASES = cases.MASK_CASES
IDS = [case.id for case in MASK_CASES]


def _masks(case, golden_manifest):
    """The case's inputs (random values; the mask does not depend on them) and its stored masks: (x, context,
    x_mask or None, context_mask or None, the oracle's output mask or None)."""
    stored = golden.load_npz("masks.npz", golden_manifest)
    mask = lambda name: (  # noqa: E731
        stored[f"{cases.mask_slug(case)}/{name}"].astype(bool) if f"{cases.mask_slug(case)}/{name}" in stored else None
    )
    rng = np.random.default_rng(0)
    x, context = rng.standard_normal(case.x_shape), rng.standard_normal(case.context_shape)
    return x, context, mask("x_mask"), mask("context_mask"), mask("output_mask")


def _assert_mask(got, want, what):
    __tracebackhide__ = True
    if want is None:
        assert got is None, f"{what} on {backend.NAME}: expected no mask, got one of shape {tuple(got.shape)}"
        return
    assert got is not None, f"{what} on {backend.NAME}: expected a mask of shape {want.shape}, got None"
    assertions.assert_dtype(backend.dtype_of(got), "bool", what)
    np.testing.assert_array_equal(backend.to_numpy(got), want, err_msg=f"{what} on {backend.NAME}")


def _tensor_or_none(mask):
    return None if mask is None else backend.tensor(mask, "bool")


def _declared(case, mode):
    observation = expected.output_mask(case, mode)
    return [] if observation is None else [observation]


@pytest.mark.observes(
    lambda case, mode: _declared(case, mode)
)  # (a lambda: a named function would be taken as the test)
@pytest.mark.parametrize("mode", expected.OUTPUT_MODES)
@pytest.mark.parametrize("case", MASK_CASES, ids=IDS)
def test_compute_mask_matches_the_oracle(case, mode, golden_manifest, observer):
    x, context, x_mask, context_mask, want = _masks(case, golden_manifest)
    layer = HyperZZWOperator(x.shape[-1])
    inputs = [backend.tensor(x, "float32"), backend.tensor(context, "float32")]
    layer(inputs)
    got = _compute_mask(layer, inputs, [_tensor_or_none(x_mask), _tensor_or_none(context_mask)], mode, want)
    if got is not None and expected.output_mask(case, mode):
        observer.numeric(expected.output_mask(case, mode), backend.to_numpy(got), backend.dtype_of(got))
    _assert_mask(got, want, f"{case.id} ({mode})")


def _compute_mask(layer, inputs, masks, mode, want):
    """`layer.compute_mask(inputs, masks)`, eagerly or inside the backend's compiler (`want`: the oracle's mask,
    which says whether a compiled placeholder stands for "no mask")."""
    if mode == "eager":
        return layer.compute_mask(inputs, masks)
    present = [i for i, m in enumerate(masks) if m is not None]

    def fn(x, context, *given):
        full = list(masks)
        for i, m in zip(present, given):
            full[i] = m
        out = layer.compute_mask([x, context], full)
        return ops.zeros(()) if out is None else out  # a compiled function must return a tensor

    got = backend.COMPILERS["jit"][1](fn)(*inputs, *(masks[i] for i in present))
    return None if want is None and got.shape == () else got


@settings(max_examples=max(6, settings.default.max_examples // 2))
@given(
    pair=strategies.every_rank_shape_pairs(),
    masked=st.sampled_from(["both", "x", "context"]),  # both first: hypothesis favours the first
    mode=st.sampled_from(expected.OUTPUT_MODES),
    seed=st.integers(0, 2**32 - 1),
)
# rank 7 with 1s alternating: the two masks broadcast in six runs, past TensorFlow's logical_and
@example(pair=((2, 1, 2, 1, 2, 1, 3), (1, 2, 1, 2, 1, 2, 2)), masked="both", mode="eager", seed=0)
def test_compute_mask_at_every_rank_matches_the_oracle(pair, masked, mode, seed):
    """Ranks 2-8 with 1s alternating between x and the context, x's mask, the context's or both: the output
    mask is the oracle's, eagerly and compiled."""
    x_shape, context_shape = pair
    event(f"masked: {masked}")
    rng = np.random.default_rng(seed)
    x_mask = rng.random(x_shape[:-1]) < 0.6 if masked != "context" else None
    context_mask = rng.random(context_shape[:-1]) < 0.6 if masked != "x" else None
    want = oracle.output_mask(x_mask, context_mask, x_shape, context_shape)
    if x_mask is not None and context_mask is not None and x_mask.ndim == context_mask.ndim:
        runs = strategies.broadcast_runs(x_mask.shape + (1,), context_mask.shape + (1,))  # a feature axis of 1
        event(f"the masks broadcast in {'6+' if runs > 5 else '1-5'} runs")
    layer = HyperZZWOperator(x_shape[-1])
    layer.build([x_shape, context_shape])
    inputs = [backend.tensor(np.ones(x_shape), "float32"), backend.tensor(np.ones(context_shape), "float32")]
    got = _compute_mask(layer, inputs, [_tensor_or_none(x_mask), _tensor_or_none(context_mask)], mode, want)
    _assert_mask(got, want, f"{x_shape}/{context_shape}/{masked} masked ({mode})")


def test_compute_mask_without_masks_is_none():
    layer = HyperZZWOperator(4)
    inputs = [backend.tensor(np.ones((2, 3, 4)), "float32"), backend.tensor(np.ones((2, 3, 2)), "float32")]
    assert layer.compute_mask(inputs, None) is None
    assert layer.compute_mask(inputs, [None, None]) is None


class _MaskAsFloat(keras.layers.Layer):
    """Returns the mask its input carries, as 0/1 floats (a model cannot output a mask itself)."""

    def __init__(self):
        super().__init__()
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return ops.cast(mask, "float32")

    def compute_mask(self, inputs, mask=None):
        return None


@pytest.mark.parametrize(
    "case",
    [c for c in MASK_CASES if c.x_mask_shape is not None and len(c.x_mask_shape) == len(c.x_shape) - 1],
    ids=lambda c: c.id,
)
def test_masks_flow_through_a_functional_model(case, golden_manifest):
    """Masks made by `keras.layers.Masking` (a position is masked when all its features are 0) reach the
    layer symbolically, and the model's run-time mask is the oracle's."""
    x, context, x_mask, context_mask, _ = _masks(case, golden_manifest)
    x = np.where(x_mask[..., None], np.where(x == 0, 1.0, x), 0.0)
    if context_mask is not None and len(context_mask.shape) == len(case.context_shape) - 1:
        context = np.where(context_mask[..., None], np.where(context == 0, 1.0, context), 0.0)
    else:
        context_mask = None
    x_in, c_in = keras.Input(batch_shape=(None,) + x.shape[1:]), keras.Input(batch_shape=(None,) + context.shape[1:])
    c_masked = keras.layers.Masking()(c_in) if context_mask is not None else c_in
    y = HyperZZWOperator(x.shape[-1])([keras.layers.Masking()(x_in), c_masked])
    assert y._keras_mask is not None, f"{case.id}: the symbolic output carries no mask"
    model = keras.Model([x_in, c_in], _MaskAsFloat()(y))
    got = backend.to_numpy(model([backend.tensor(x, "float32"), backend.tensor(context, "float32")]))
    want = oracle.output_mask(x_mask, context_mask, x.shape, context.shape)
    np.testing.assert_array_equal(got.astype(bool), want, err_msg=f"{case.id} on {backend.NAME}")


def _sequence_model(head: str, context_sequence: bool):
    """Token ids -> Embedding(mask_zero) -> HyperZZWOperator (context: a vector, or a second masked sequence)
    -> an LSTM or self-attention and a masked average."""
    ids = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True, name="tokens")(ids)
    if context_sequence:
        context_in = keras.Input((6,), dtype="int32")
        context = keras.layers.Embedding(7, 3, mask_zero=True, name="context_tokens")(context_in)
    else:
        context_in = keras.Input((3,))
        context = context_in
    h = HyperZZWOperator(4)([embedded, context])
    if head == "lstm":
        out = keras.layers.LSTM(3)(h)
    else:
        attended = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2)(h, h)
        out = keras.layers.GlobalAveragePooling1D()(attended)
    return keras.Model([ids, context_in], out)


@pytest.mark.parametrize("context_sequence", [False, True], ids=["vector context", "masked sequence context"])
@pytest.mark.parametrize("head", ["lstm", "attention"])
def test_a_masked_sequence_model_ignores_what_the_padding_holds(head, context_sequence):
    with _rnn_warning_ignored():
        _check_padding_ignored(head, context_sequence)


def _check_padding_ignored(head, context_sequence):
    keras.utils.set_random_seed(3)
    model = _sequence_model(head, context_sequence)
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 0], [9, 1, 0, 0, 0, 0]], dtype="int32")
    if context_sequence:  # the context's padding ends earlier in one row: the AND of the two masks counts
        context = np.array([[1, 2, 3, 4, 0, 0], [5, 6, 1, 2, 3, 4], [6, 0, 0, 0, 0, 0]], dtype="int32")
    else:
        context = np.random.default_rng(0).standard_normal((3, 3)).astype("float32")
    inputs = [backend.tensor(ids, "int32"), backend.tensor(context, "int32" if context_sequence else "float32")]
    before = backend.to_numpy(model(inputs))
    # What the padding embeds: a row 0 of the embeddings far from every real token.
    for name in ("tokens", "context_tokens") if context_sequence else ("tokens",):
        table = model.get_layer(name).get_weights()[0]
        table[0] = 100.0
        model.get_layer(name).set_weights([table])
    after = backend.to_numpy(model(inputs))
    np.testing.assert_array_equal(after, before, err_msg=f"{head}: the output depends on the padded positions")
    # and the model is not insensitive to everything: a real token's embedding moves the output
    table = model.get_layer("tokens").get_weights()[0]
    table[1] += 1.0
    model.get_layer("tokens").set_weights([table])
    assert not np.array_equal(backend.to_numpy(model(inputs)), before)


# --- a model a user would write: a one-step x, a five-step context, an LSTM after the layer --------------------

# Transcendental functions are not correctly rounded: the bound allows each sigmoid or tanh evaluation an error
# of _TRANSCENDENTAL_ULPS float32 units in the last place of its result, beyond its input's error (XLA's, ATen's
# and Eigen's float32 tanh and logistic are within a few ulps); the arithmetic is bounded by gamma(n).
_TRANSCENDENTAL_ULPS = 4


def _lstm_oracle(y, kernel, recurrent, bias, y_error):
    """Keras's LSTM (gates i, f, g, o; sigmoid and tanh; zero initial state) in float64 over every step of
    `y`, and a first-order running bound on a float32 evaluation's error: each rounding of the arithmetic
    (gamma of the reduction length, times the magnitudes), each activation's own error, and every error
    before it carried through the Lipschitz constants (1/4 for sigmoid, 1 for tanh) and magnitudes."""
    u = tolerance.UNIT_ROUNDOFF["float32"]
    eps = _TRANSCENDENTAL_ULPS * 2 * u
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    units = recurrent.shape[0]
    h, c = np.zeros((y.shape[0], units)), np.zeros((y.shape[0], units))
    eh, ec = np.zeros_like(h), np.zeros_like(c)
    n = y.shape[-1] + units + 1  # the terms of one pre-activation
    for t in range(y.shape[1]):
        z = y[:, t] @ kernel + h @ recurrent + bias
        magnitude = np.abs(y[:, t]) @ np.abs(kernel) + np.abs(h) @ np.abs(recurrent) + np.abs(bias)
        ez = tolerance.gamma(n, "float32") * magnitude + y_error[:, t] @ np.abs(kernel) + eh @ np.abs(recurrent)
        zi, zf, zg, zo = np.split(z, 4, axis=-1)
        ei, ef, eg, eo = np.split(ez, 4, axis=-1)
        i, f, g, o = sigmoid(zi), sigmoid(zf), np.tanh(zg), sigmoid(zo)
        ei, ef, eo = ei / 4 + eps * i, ef / 4 + eps * f, eo / 4 + eps * o
        eg = eg + eps * np.abs(g)
        new_c = f * c + i * g
        ec = np.abs(f) * ec + np.abs(c) * ef + np.abs(i) * eg + np.abs(g) * ei
        ec += tolerance.gamma(2, "float32") * (np.abs(f * c) + np.abs(i * g))
        c = new_c
        tc = np.tanh(c)
        etc = ec + eps * np.abs(tc)
        h = o * tc
        eh = np.abs(o) * etc + np.abs(tc) * eo + u * np.abs(h)
    return h, eh


def test_a_one_step_x_against_a_five_step_context_feeds_an_lstm():
    """`Masking` on a one-step x, a five-step context, an LSTM after the layer: the output mask has the
    output's five steps (an LSTM fed x's one-step mask fails on every backend, each with its own error), the
    LSTM's output is the float64 oracle's within its derived bound, and a fully masked sample leaves the LSTM
    in its initial state (exactly 0)."""
    rng = np.random.default_rng(29)
    x = rng.choice([-1, 1], (3, 1, 3)) * rng.integers(1, 9, (3, 1, 3)) / 8
    x[1] = 0.0  # sample 1: all features 0, so Masking masks its one step, and with it all five output steps
    context = rng.integers(-8, 9, (3, 5, 4)) / 8
    kernel = rng.integers(-8, 9, (4, 3)) / 16
    lstm_kernel, lstm_recurrent = rng.integers(-8, 9, (3, 8)) / 16, rng.integers(-8, 9, (2, 8)) / 16
    lstm_bias = rng.integers(-8, 9, (8,)) / 16

    x_in, c_in = keras.Input((1, 3)), keras.Input((5, 4))
    layer = HyperZZWOperator(3)
    y = layer([keras.layers.Masking()(x_in), c_in])
    assert tuple(y._keras_mask.shape) == (None, 5), f"symbolic output mask {tuple(y._keras_mask.shape)}"
    lstm = keras.layers.LSTM(2)
    with _rnn_warning_ignored():
        model = keras.Model([x_in, c_in], lstm(y))
        layer.set_weights([kernel])
        lstm.set_weights([lstm_kernel, lstm_recurrent, lstm_bias])
        got = backend.to_numpy(model([backend.tensor(x, "float32"), backend.tensor(context, "float32")]))

    y_exact = x * (context @ kernel)  # exact in float64: few bits
    y_error = tolerance.gamma(kernel.shape[0] + 1, "float32") * np.abs(x) * (np.abs(context) @ np.abs(kernel))
    want, bound = _lstm_oracle(y_exact, lstm_kernel, lstm_recurrent, lstm_bias, y_error)
    np.testing.assert_array_equal(got[1], np.zeros(2), err_msg=f"the fully masked sample on {backend.NAME}")
    for i in (0, 2):
        assertions.assert_close(got[i], want[i], bound[i], f"sample {i}: LSTM after the layer", what="LSTM output")
