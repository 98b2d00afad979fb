"""The oracle: what `HyperZZWOperator` computes, exactly, written independently of Keras.

`forward` is the definition, `output = x * (context @ hyper_kernel)`, with the layer's broadcast rule: a
rank-2 context `(batch, context_dim)` applies to every position of a rank-N `x`; a rank-N context broadcasts
against `x` by NumPy rules. `gradients` is the analytic gradient of the scalar loss `sum(cotangent * output)`:
`dx = g * (c @ K)`, `dc = (g * x) @ K.T`, `dK = c.T @ (g * x)`, each summed over the axes it was broadcast on.

What "exact" means here. Every result is the exact mathematical value of that formula on the (floating
point, hence rational) inputs, rounded once to the requested dtype, to nearest with ties to even, with
subnormals and overflow to infinity as IEEE 754 rounds. The arithmetic is done in Python integers: every
finite input is `N * 2**E` with integer `N`, so sums and products of them are exact, and only the final
rounding (`_round_dyadic`, integer shifts) loses anything. No BLAS, LAPACK, SIMD reduction or libm call
touches a value, so the result is the same bytes on any CPU, OpenBLAS kernel, thread count, NumPy 2.x
version and architecture (`test_oracle.py` regenerates it under several kernels and thread counts).

Non-finite values follow IEEE 754: a NaN operand gives NaN, `inf * 0` and `inf - inf` give NaN, otherwise
an infinity wins with its sign. They are tracked per element as a "class" (the sign of a finite value, or
the non-finite value itself), combined by the same rules, and never mixed with the exact part. Zeros carry
their sign: a product's is the exclusive-or of its factors', a sum that is exactly zero is -0 only when every
term is -0 (IEEE 754's rule for `x + y`, whatever the order of the additions), and +0 otherwise.

`round_to` rounds float64 values to a floating dtype (the same rounding, for values already in float64),
including bfloat16, which NumPy does not have.
"""

from __future__ import annotations

import math

import numpy as np

# (mantissa bits, minimum normal exponent, largest finite value) of each floating dtype.
FORMATS = {
    "float16": (10, -14, 65504.0),
    "bfloat16": (7, -126, float.fromhex("0x1.fep127")),
    "float32": (23, -126, float.fromhex("0x1.fffffep127")),
    "float64": (52, -1022, float.fromhex("0x1.fffffffffffffp1023")),
}
# The NumPy dtype that holds each dtype's values exactly (bfloat16 values are all float32 values).
CARRIERS = {"float16": np.float16, "bfloat16": np.float32, "float32": np.float32, "float64": np.float64}


def round_to(values, dtype: str) -> np.ndarray:
    """Rounds float64 `values` to the nearest `dtype` value (ties to even); returns float64."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return values.copy()
    mantissa, min_exp, largest = FORMATS[dtype]
    out = values.copy()
    finite = np.isfinite(values) & (values != 0)
    v = values[finite]
    # The spacing of dtype values around v: 2**(e - mantissa), where e is v's exponent, but never below the
    # subnormal spacing 2**(min_exp - mantissa). Scaling by a power of two is exact in float64.
    _, e = np.frexp(v)  # v = m * 2**e with 0.5 <= |m| < 1, exactly
    exponent = np.maximum(e - 1, min_exp).astype(np.float64)
    spacing = np.ldexp(1.0, (exponent - mantissa).astype(np.int64))
    q = np.round(v / spacing) * spacing  # np.round rounds half to even
    q[np.abs(q) > largest] = np.copysign(np.inf, q[np.abs(q) > largest])
    out[finite] = q
    return out


def round_ratio(num: int, den: int, dtype: str, upward: bool = False) -> float:
    """The rational `num / den` (Python ints, `den > 0`, `num != 0`) rounded once to `dtype`: to nearest,
    ties to even, or toward +Inf; subnormal results are rounded at the subnormal spacing, and values past
    the largest finite one become infinite, as IEEE 754 rounds."""
    mantissa, min_exp, largest = FORMATS[dtype]
    a = -num if num < 0 else num
    # top = floor(log2(a / den)): the value lies in [2**top, 2**(top + 1)).
    top = a.bit_length() - den.bit_length()
    if (a << max(-top, 0)) < (den << max(top, 0)):
        top -= 1
    q = max(top, min_exp) - mantissa  # the dtype's spacing there is 2**q
    m, rest = divmod(a, den << q) if q >= 0 else divmod(a << -q, den)
    divisor = den << q if q >= 0 else den
    if upward:
        m += num > 0 and rest > 0
    elif 2 * rest > divisor or (2 * rest == divisor and m & 1):
        m += 1
    # m <= 2**(mantissa + 1), so m and m * 2**q are exact in float64 (q >= the float64 subnormal exponent).
    try:
        value = math.ldexp(m, q)
    except OverflowError:
        value = math.inf
    if value > largest:
        value = math.inf
    return -value if num < 0 else value


def _round_dyadic(n: int, e: int, dtype: str, upward: bool = False) -> float:
    """`n * 2**e` (n a non-zero Python int) rounded once to `dtype` (see `round_ratio`)."""
    return round_ratio(n << e, 1, dtype, upward) if e >= 0 else round_ratio(n, 1 << -e, dtype, upward)


def _objects(value) -> np.ndarray:
    """An object array of Python ints (NumPy returns a bare int from 0-d object arithmetic)."""
    if isinstance(value, np.ndarray):
        return value
    out = np.empty((), dtype=object)
    out[()] = value
    return out


class Exact:
    """An array of exact values: `n * 2**e` (n an object array of Python ints, e one int for the array),
    with IEEE 754's non-finite classes and signed zeros tracked beside it (see the module docstring)."""

    __slots__ = ("n", "e", "cls", "negzero")

    def __init__(self, n: np.ndarray, e: int, cls: np.ndarray, negzero: np.ndarray):
        self.n, self.e, self.cls, self.negzero = n, e, cls, negzero

    @classmethod
    def of(cls, values) -> Exact:
        """The exact value of every element of a float array (any float dtype; NaN and ±Inf allowed)."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        nonzero = finite & (values != 0)
        mant, expo = np.frexp(np.where(nonzero, values, 0.0))  # exact: values = mant * 2**expo
        ints = np.ldexp(mant, 53).astype(np.int64)  # exact: |mant| < 1, 53 significant bits at most
        e = int((expo[nonzero] - 53).min()) if nonzero.any() else 0
        shifts = np.where(nonzero, expo - 53, e).astype(np.int64)
        n = np.left_shift(ints.astype(object), (shifts - e).astype(object))
        n[~nonzero] = 0
        return cls(n.astype(object), e, np.where(finite, 0.0, values), finite & (values == 0) & np.signbit(values))

    @classmethod
    def of_ints(cls, ints, e: int = 0) -> Exact:
        """`ints * 2**e` for an integer array."""
        n = np.asarray(ints).astype(object)
        return cls(n, e, np.zeros(n.shape), np.zeros(n.shape, dtype=bool))

    @property
    def shape(self) -> tuple:
        return self.n.shape

    @property
    def finite(self) -> np.ndarray:
        return np.isfinite(self.cls)

    def _sign_class(self) -> np.ndarray:
        """The class used by IEEE's rules: -1, 0 or 1 for finite values, the value itself otherwise."""
        sign = (self.n > 0).astype(np.float64) - (self.n < 0).astype(np.float64)
        return np.where(self.finite, sign, self.cls)

    def _negative(self) -> np.ndarray:
        """The sign bit of each finite value (zeros included)."""
        return (self.n < 0) | ((self.n == 0) & self.negzero)

    def reshape(self, shape) -> Exact:
        return Exact(self.n.reshape(shape), self.e, self.cls.reshape(shape), self.negzero.reshape(shape))

    def transpose(self, *axes) -> Exact:
        return Exact(self.n.transpose(*axes), self.e, self.cls.transpose(*axes), self.negzero.transpose(*axes))

    def __neg__(self) -> Exact:
        return Exact(-self.n, self.e, -self.cls, self.finite & (self.n == 0) & ~self.negzero)

    def abs(self) -> Exact:
        return Exact(np.abs(self.n), self.e, np.abs(self.cls), np.zeros(self.shape, dtype=bool))

    def scale(self, power_of_two: int) -> Exact:
        """Multiplies by 2**power_of_two, exactly."""
        return Exact(self.n, self.e + power_of_two, self.cls, self.negzero)

    def __mul__(self, other: Exact) -> Exact:
        with np.errstate(invalid="ignore"):  # IEEE: nan * any = nan, inf * 0 = nan, inf * -1 = -inf
            cls = self._sign_class() * other._sign_class()
        finite = np.isfinite(cls)
        n = np.where(finite, _objects(self.n * other.n), 0).astype(object)
        negzero = finite & (n == 0) & (self._negative() ^ other._negative())
        return Exact(n, self.e + other.e, np.where(finite, 0.0, cls), negzero)

    def __add__(self, other: Exact) -> Exact:
        e = min(self.e, other.e)
        a = np.left_shift(self.n, self.e - e) if self.e > e else self.n
        b = np.left_shift(other.n, other.e - e) if other.e > e else other.n
        with np.errstate(invalid="ignore"):  # inf - inf = nan; the value of finite classes is unused
            cls = self._sign_class() + other._sign_class()
        finite = np.isfinite(cls)
        n = np.where(finite, _objects(a + b), 0).astype(object)
        negzero = finite & (n == 0) & (self.negzero & (self.n == 0)) & (other.negzero & (other.n == 0))
        return Exact(n, e, np.where(finite, 0.0, cls), negzero)

    def __sub__(self, other: Exact) -> Exact:
        return self + (-other)

    def sum(self, axis, keepdims: bool = False) -> Exact:
        """The exact sum over `axis` (an int or a tuple); an empty sum is +0."""
        axis = axis if isinstance(axis, tuple) else (axis,)
        axis = tuple(a % max(len(self.shape), 1) for a in axis)
        # The class of a sum: finite classes add to a finite number; nan or inf - inf give nan; else the inf.
        with np.errstate(invalid="ignore"):
            cls = np.sum(self._sign_class(), axis=axis, keepdims=keepdims)
        finite = np.isfinite(cls)
        n = np.sum(np.where(self.finite, self.n, 0).astype(object), axis=axis, keepdims=keepdims)
        n = np.where(finite, _objects(n), 0).astype(object)
        count = math.prod(self.shape[a] for a in axis)
        all_negzero = np.all(self.finite & (self.n == 0) & self.negzero, axis=axis, keepdims=keepdims)
        negzero = finite & (n == 0) & all_negzero & (count > 0)
        return Exact(n, self.e, np.where(finite, 0.0, cls), negzero)

    def matmul(self, other: Exact) -> Exact:
        """`self @ other` for `self` of shape (..., m, k) and `other` of shape (k, n)."""
        return (self._expand(-1) * other._expand(-3)).sum(-2)

    def _expand(self, axis: int) -> Exact:
        return Exact(
            np.expand_dims(self.n, axis), self.e, np.expand_dims(self.cls, axis), np.expand_dims(self.negzero, axis)
        )

    def round(self, dtype: str = "float64", upward: bool = False) -> np.ndarray:
        """Every element rounded once to `dtype` (returned as float64, which holds it exactly): to nearest,
        ties to even, or with `upward` toward +Inf (for magnitudes that must bound an error from above)."""
        flat_n, flat_cls, flat_neg = self.n.ravel(), self.cls.ravel(), self.negzero.ravel()
        out = np.empty(flat_n.shape, dtype=np.float64)
        for i, (n, c) in enumerate(zip(flat_n, flat_cls)):
            if math.isnan(c):  # one NaN for all: x86 makes inf * 0 a NaN with the sign bit set, ARM without
                out[i] = math.nan
            elif c != 0:  # an infinity
                out[i] = c
            elif n == 0:
                out[i] = -0.0 if flat_neg[i] else 0.0
            else:
                out[i] = _round_dyadic(int(n), self.e, dtype, upward)
        return out.reshape(self.shape)


# --- the formulas, once, for any array type ------------------------------------------------------------------
#
# Written against a small interface (`*`, `.shape`, `.reshape`, `.transpose()`, and the two functions passed
# in) so that the exact oracle here (`Exact`) and the tolerance magnitudes (`tolerance`, float64 in a fixed
# summation order) evaluate the very same formula.


def output_shape(x_shape, context_shape) -> tuple:
    """The layer's output shape: x's and the context's leading dims broadcast (a rank-2 context applies at every
    position of x, as `broadcast_weights` lays it out), then input_dim."""
    context_lead = tuple(context_shape[:-1]) + (1,) * (len(x_shape) - len(context_shape))
    lead = np.broadcast_shapes(tuple(x_shape[:-1]), context_lead)
    return tuple(int(n) for n in lead) + (int(x_shape[-1]),)


def symbolic_output_shape(x_shape, context_shape) -> tuple:
    """The output shape the layer must infer from static shapes with unknown (None) dims: a known dim
    against 1 or None is that dim, None against 1 or None is None."""
    n = len(context_shape) - 1
    out = []
    for a, b in zip(x_shape[:n], context_shape[:n]):
        if a == 1:
            out.append(b)
        elif b == 1 or a == b:
            out.append(a)
        else:
            out.append(a if b is None else b)
    return tuple(out) + tuple(x_shape[n:])


def broadcast_weights(weights, x_ndim: int):
    """`context @ kernel` in x's layout: a rank-2 context's row applies at every position of x."""
    if len(weights.shape) == 2 and x_ndim > 2:
        return weights.reshape(tuple(weights.shape[:1]) + (1,) * (x_ndim - 2) + tuple(weights.shape[1:]))
    return weights


def sum_to(array, shape: tuple, sum_axes):
    """Sums `array` over the axes along which `shape` was broadcast to `array.shape`; `sum_axes(array, axes)`
    sums over `axes` keeping them."""
    lead = len(array.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and array.shape[lead + i] != 1)
    return sum_axes(array, axes).reshape(tuple(shape)) if axes else array


def forward_formula(x, context, kernel, matmul):
    return x * broadcast_weights(matmul(context, kernel), len(x.shape))


def gradient_formulas(x, context, kernel, g, matmul, sum_axes):
    """(dx, dcontext, dkernel) of `sum(g * x * (context @ kernel))`, each summed over its broadcast axes."""
    weights = broadcast_weights(matmul(context, kernel), len(x.shape))
    dx = sum_to(g * weights, x.shape, sum_axes)
    d_weights = sum_to(g * x, weights.shape, sum_axes)  # the gradient w.r.t. (c @ K), in c's layout
    if len(context.shape) == 2 and len(x.shape) > 2:
        d_weights = d_weights.reshape((d_weights.shape[0], d_weights.shape[-1]))
    dc = matmul(d_weights, kernel.transpose())
    flat_c = context.reshape((-1, context.shape[-1])).transpose()
    dk = matmul(flat_c, d_weights.reshape((-1, kernel.shape[1])))
    return dx, dc, dk


def _exact_sum_axes(array: Exact, axes: tuple) -> Exact:
    return array.sum(axes, keepdims=True)


def exact_forward(x, context, kernel) -> Exact:
    return forward_formula(Exact.of(x), Exact.of(context), Exact.of(kernel), Exact.matmul)


def exact_gradients(x, context, kernel, cotangent) -> tuple[Exact, Exact, Exact]:
    args = (Exact.of(a) for a in (x, context, kernel, cotangent))
    return gradient_formulas(*args, matmul=Exact.matmul, sum_axes=_exact_sum_axes)


def forward(x, context, kernel, dtype: str = "float64") -> np.ndarray:
    """`x * (context @ kernel)`, exact, rounded once to `dtype` (returned as float64)."""
    return exact_forward(x, context, kernel).round(dtype)


def gradients(x, context, kernel, cotangent, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `sum(cotangent * forward(x, context, kernel))` w.r.t. x, context and kernel, exact,
    each rounded once to `dtype`."""
    return tuple(q.round(dtype) for q in exact_gradients(x, context, kernel, cotangent))


def _log2_exact(value: float, what: str) -> int:
    mantissa, exponent = math.frexp(value)
    if mantissa != 0.5:
        raise ValueError(f"{what} must be a power of two so that scaling by it is exact. Received: {value}")
    return exponent - 1


def sgd_step(x, context, y, kernel, w, learning_rate: float, dtype: str = "float32") -> dict:
    """One full-batch SGD step of `loss = mean((HyperZZW(x, context) @ w - y) ** 2)`, exact.

    The model is the layer, then `Dense(1, use_bias=False)` with kernel `w`, then Keras's mean squared error;
    the step is `v <- v - learning_rate * dloss/dv` for `v in (kernel, w)`. Returned, each rounded once to
    `dtype`: the loss at `(kernel, w)` and the new `kernel` and `w`. And what the step's bound needs
    (`tolerance.sgd_step_atols`): under `"magnitudes"` the same polynomials evaluated exactly on absolute
    values (the loss's, the two gradients', and the new values' own), rounded upward to float64; under
    `"depths"` the most roundings any evaluation order puts on one term of each, with B = batch,
    I = input_dim, C = context_dim (a k-term sum as k - 1 roundings, each product as one):
    D = C + I + B + 4 for d/dkernel (`c.T @ ((dR @ w.T) * x)`, with `dR = 2 (pred - y) / B` exact in a
    power-of-two batch), D = 2C + I + B + 3 for d/dw (`hidden.T @ dR`), D = 2C + 2I + B + 4 for the loss
    (`sum(R**2) / B`). Raises if a gradient comes near the underflow range, which the bound assumes it does not.
    """
    batch, input_dim = np.shape(x)
    context_dim = np.shape(context)[-1]
    batch_log2 = _log2_exact(float(batch), "the training batch size")
    lr_log2 = _log2_exact(learning_rate, "the learning rate")

    def program(x, context, y, kernel, w, absolute: bool):
        hidden = x * context.matmul(kernel)
        pred = hidden.matmul(w)
        residual = pred + y if absolute else pred - y
        loss = (residual * residual).sum((0, 1)).scale(-batch_log2)
        d_residual = residual.scale(1 - batch_log2)
        d_w = hidden.transpose().matmul(d_residual)
        d_kernel = context.transpose().matmul(d_residual.matmul(w.transpose()) * x)
        return loss, d_kernel, d_w

    exact = [Exact.of(a) for a in (x, context, y, kernel, w)]
    loss, d_kernel, d_w = program(*exact, absolute=False)
    loss_abs, d_kernel_abs, d_w_abs = program(*(a.abs() for a in exact), absolute=True)
    new_kernel = exact[3] - d_kernel.scale(lr_log2)
    new_w = exact[4] - d_w.scale(lr_log2)

    tiny = 2.0 ** FORMATS[dtype][1]
    for name, magnitude in (("d/dkernel", d_kernel_abs), ("d/dw", d_w_abs)):
        if np.min(magnitude.round("float64")) < 2**20 * tiny:
            raise ValueError(f"the training case's {name} comes near the underflow range; the bound assumes not")
    up = dict(dtype="float64", upward=True)
    return {
        "loss": loss.round(dtype),
        "kernel": new_kernel.round(dtype),
        "w": new_w.round(dtype),
        "magnitudes": {
            "loss": loss_abs.round(**up),
            "d_kernel": d_kernel_abs.round(**up),
            "d_w": d_w_abs.round(**up),
            "new_kernel": new_kernel.abs().round(**up),
            "new_w": new_w.abs().round(**up),
        },
        "depths": {
            "loss": 2 * context_dim + 2 * input_dim + batch + 4,
            "d_kernel": context_dim + input_dim + batch + 4,
            "d_w": 2 * context_dim + input_dim + batch + 3,
        },
    }


def output_mask(x_mask, context_mask, x_shape, context_shape):
    """The mask of the layer's output, as for an elementwise product (`keras.layers.Multiply` keeps its
    inputs' masks): x's mask, combined by logical AND with the context's when the context has x's rank; a
    rank-2 context has no time axis, and its mask (if any) does not reach the output. The mask describes the
    output, so it has the output's leading shape (`output_shape` without its last axis): a mask whose axis is
    1 where the other input's is not is broadcast (NumPy rules), and a mask over x's first axes only covers
    the axes after them (trailing axes of 1, then broadcast). None when neither input carries a mask that
    reaches the output."""
    if len(context_shape) != len(x_shape):
        context_mask = None
    if x_mask is None and context_mask is None:
        return None
    lead = output_shape(x_shape, context_shape)[:-1]
    out = np.ones(lead, bool)
    for mask in (x_mask, context_mask):
        if mask is not None:
            mask = np.asarray(mask, bool)
            out = out & mask.reshape(mask.shape + (1,) * (len(lead) - mask.ndim))
    assert out.shape == lead, f"the masks broadcast to {out.shape}, not to the output's leading shape {lead}"
    return out
