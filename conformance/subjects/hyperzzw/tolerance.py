"""The tolerance policy: how far a backend's result may be from the float64 oracle, and why.

Every entry of the layer's output and gradients is a sum of products: `y = x * sum_k c_k K_k` has `n =
context_dim` products in its sum and one more multiplication. For a sum of `n` products computed in a
floating dtype with unit roundoff `u = eps / 2`, in any order, the classical bound is

    |computed - exact| <= gamma(n) * sum |terms|,     gamma(n) = n u / (1 - n u)

(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1). The final multiply adds
one more `u`, and the stored expected value one more: it is the exact value (`oracle`, rational arithmetic)
rounded once to the dtype, so it is within `u * |exact|` of it, on every machine. So an entry
computed with reduction length `n` whose terms have absolute sum `M` may differ from the stored expected
value by at most

    atol = gamma(n + 2) * M  (+ u * |expected|, folded in as the "+ 2")

`M` is the same formula run on the absolute values of every input: for the output `|x| * (|c| @ |K|)`;
for the gradients the same formulas with `|g|`. It is computed in float64 with every sum in index order
(never BLAS), then raised by a relative 1 + 2 gamma_64(L) that covers its own float64 rounding, so the
tolerance is an upper bound and is the same bytes on every machine (see `magnitude_forward`). `n` for each quantity:

- output and d/dx: `context_dim` (plus the number of positions summed when `x` was broadcast);
- d/dcontext: `input_dim` plus the positions a rank-2 or broadcast context row was applied to;
- d/dkernel: the number of positions, `prod(output.shape[:-1])`.

The bound is a worst case for any summation order, so it holds for XLA, oneDNN and ATen alike; it is not
widened for any backend. Special values (NaN, ±Inf) are not toleranced: they must match exactly. Signed
zeros are compared where IEEE fixes the sign (see `conformance.test_golden`).

Underflow. Below the smallest normal value `tiny` the relative model does not hold: with IEEE gradual
underflow each operation adds an absolute error of at most `u * tiny` (half the subnormal spacing). Some
backends do not implement gradual underflow on the CPU: they flush subnormal results to zero and read
subnormal inputs as zero (FTZ/DAZ), which costs up to `tiny` per operation and `tiny` times the magnitude of
whatever multiplies a flushed input. Both are covered by an absolute floor

    floor = (n + 2) * t * oracle(1 + |x|, 1 + |c|, 1 + |K|)      t = u * tiny (IEEE) or tiny (FTZ/DAZ)

which bounds the sum of those per-operation terms (the magnitudes of every partial product, plus one). It is
invisible above the subnormal range (about 1e-38 in float32). Which backends flush is a measured fact,
`FLUSHES_SUBNORMALS`, and `test_golden.test_subnormal_behaviour` fails if it changes.
"""

from __future__ import annotations

import math

import numpy as np

from conformance.subjects.hyperzzw import oracle

# eps: the distance from 1.0 to the next larger value of each dtype (2 ** -mantissa_bits).
EPS = {name: 2.0**-mantissa for name, (mantissa, _, _) in oracle.FORMATS.items()}
UNIT_ROUNDOFF = {name: eps / 2 for name, eps in EPS.items()}
# The smallest positive normal value of each dtype.
TINY = {name: 2.0**min_exp for name, (_, min_exp, _) in oracle.FORMATS.items()}


# Measured on x86-64 CPUs with keras 3.15.1: XLA (jax, and tensorflow both eagerly and under XLA) runs with
# flush-to-zero and denormals-are-zero in float32, bfloat16 and float64; float16 there is computed in float32,
# where float16's subnormals are normal numbers, so they survive. torch keeps IEEE gradual underflow.
FLUSHES_SUBNORMALS = {
    "jax": ("bfloat16", "float32", "float64"),
    "tensorflow": ("bfloat16", "float32", "float64"),
    "torch": (),
}


def _floor(n: int, dtype: str, backend_name: str | None) -> float:
    """`(n + 2) * t` of the module docstring, multiplied in an order that cannot underflow in float64."""
    ratio = 1.0 if dtype in FLUSHES_SUBNORMALS.get(backend_name, ()) else UNIT_ROUNDOFF[dtype]
    return ((n + 2) * ratio) * TINY[dtype]


def gamma(n: int, dtype: str) -> float:
    nu = n * UNIT_ROUNDOFF[dtype]
    if nu >= 1:
        return math.inf
    return nu / (1 - nu)


def reduction_lengths(x_shape, context_shape, kernel_shape) -> dict[str, int]:
    """The reduction length `n` of each quantity (see the module docstring)."""
    positions = math.prod(oracle.output_shape(x_shape, context_shape)[:-1])
    x_positions = math.prod(x_shape[:-1])
    c_positions = math.prod(context_shape[:-1])
    context_dim, input_dim = kernel_shape
    return {
        "output": context_dim,
        "dx": context_dim + max(positions // max(x_positions, 1), 1),
        "dcontext": input_dim + max(positions // max(c_positions, 1), 1),
        "dkernel": max(positions, 1),
    }


# --- magnitudes: the formulas on non-negative inputs, in float64, in one fixed order -------------------------
#
# `M` is a sum of non-negative terms. It is computed in float64 with every sum taken in index order
# (`np.add.accumulate`, which is sequential by definition), never by BLAS or a SIMD reduction, so its bytes
# do not depend on the machine. Its own rounding error is at most gamma_64(L) * M for a chain of L float64
# operations; `_INFLATE` multiplies the result by 1 + 2 gamma_64(L + 2), which makes the computed value an
# upper bound of the exact M (a relative loosening of about 1e-15 of the tolerance).


def _seq_sum(a: np.ndarray, axes: tuple) -> np.ndarray:
    """`a.sum(axes, keepdims=True)` for a non-negative array, summed in index order."""
    if not axes:
        return a
    moved = np.moveaxis(a, axes, tuple(range(len(axes))))
    flat = moved.reshape((math.prod(moved.shape[: len(axes)]),) + moved.shape[len(axes) :])
    total = np.add.accumulate(flat, axis=0)[-1] if flat.shape[0] else np.zeros(flat.shape[1:])
    keep = [1 if i in axes else n for i, n in enumerate(a.shape)]
    return total.reshape(keep)


def _seq_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`a @ b` for non-negative `a` (..., m, k) and `b` (k, n), each dot product summed in order of k."""
    return _seq_sum(a[..., :, :, None] * b[:, :], (a.ndim - 1,)).squeeze(a.ndim - 1)


def _inflate(lengths: dict[str, int]) -> float:
    chain = sum(lengths.values()) + 8  # at least every float64 operation on any path to one result
    return 1 + 2 * gamma(chain + 2, "float64")


def _blas_sum(a: np.ndarray, axes: tuple) -> np.ndarray:
    return a.sum(axes, keepdims=True)


# Fixed-order sums (the default: machine-independent bytes, for everything the suite stores or compares), or
# NumPy's BLAS (fast, for shapes too large to sum in order, e.g. the benchmark's result check; its value
# depends on the machine in the last bits, and the bound stays an upper bound, `_inflate` holding for any
# order).
FIXED_ORDER = (_seq_matmul, _seq_sum)
BLAS = (np.matmul, _blas_sum)


def magnitude_forward(x, context, kernel, sums=FIXED_ORDER) -> np.ndarray:
    """An upper bound of `|x| * (|context| @ |kernel|)`, elementwise (see above)."""
    x, context, kernel = (np.abs(np.asarray(a, dtype=np.float64)) for a in (x, context, kernel))
    lengths = reduction_lengths(x.shape, context.shape, kernel.shape)
    with np.errstate(all="ignore"):  # non-finite magnitudes belong to non-finite expected values
        return oracle.forward_formula(x, context, kernel, sums[0]) * _inflate(lengths)


def magnitude_gradients(x, context, kernel, cotangent, sums=FIXED_ORDER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bounds of the gradient formulas (`oracle.gradient_formulas`) on absolute values."""
    x, context, kernel, g = (np.abs(np.asarray(a, dtype=np.float64)) for a in (x, context, kernel, cotangent))
    inflate = _inflate(reduction_lengths(x.shape, context.shape, kernel.shape))
    with np.errstate(all="ignore"):
        grads = oracle.gradient_formulas(x, context, kernel, g, matmul=sums[0], sum_axes=sums[1])
        return tuple(q * inflate for q in grads)


def forward_atol(x, context, kernel, dtype: str, backend_name: str | None = None, sums=FIXED_ORDER) -> np.ndarray:
    """Elementwise tolerance on the output (see the module docstring); `backend_name` picks the underflow
    floor (None: IEEE gradual underflow); `sums`: FIXED_ORDER or BLAS (see above)."""
    n = reduction_lengths(np.shape(x), np.shape(context), np.shape(kernel))["output"]
    x, context, kernel = np.abs(x), np.abs(context), np.abs(kernel)
    with np.errstate(all="ignore"):
        return gamma(n + 2, dtype) * magnitude_forward(x, context, kernel, sums) + _floor(
            n, dtype, backend_name
        ) * magnitude_forward(1 + x, 1 + context, 1 + kernel, sums)


def gradient_atols(
    x, context, kernel, cotangent, dtype: str, backend_name: str | None = None, sums=FIXED_ORDER
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise tolerances on (dx, dcontext, dkernel) (see the module docstring)."""
    lengths = reduction_lengths(np.shape(x), np.shape(context), np.shape(kernel))
    args = [np.abs(a) for a in (x, context, kernel, cotangent)]
    magnitudes = magnitude_gradients(*args, sums=sums)
    floors = magnitude_gradients(*(1 + a for a in args), sums=sums)
    with np.errstate(all="ignore"):
        return tuple(
            gamma(lengths[name] + 2, dtype) * m + _floor(lengths[name], dtype, backend_name) * f
            for name, m, f in zip(("dx", "dcontext", "dkernel"), magnitudes, floors)
        )


def sgd_step_atols(step: dict, learning_rate: float, dtype: str) -> dict[str, np.ndarray]:
    """The bounds on how far a correct implementation in `dtype` may land from one exact SGD step
    (`oracle.sgd_step`): `loss_atol`, `kernel_atol`, `w_atol`, elementwise, in float64.

    Each computed gradient is within gamma(D) times the same polynomial evaluated on absolute values (the
    step's "magnitudes"), Higham's bound for sums of products (2nd ed., 3.1 and 3.5), D the step's "depths".
    The update `v - lr * g` (lr a power of two, so `lr * g` is exact) adds one rounding of the result, and the
    stored value its own rounding:

        |computed v' - stored v'| <= lr * gamma(D) * G_abs * (1 + u) + 2 u |v'|

    and `|computed loss - stored loss| <= gamma(D_loss) * L_abs + u |loss|`. Fused multiply-adds and any
    summation order only remove roundings, so the bound holds for every backend and compiler. The bounds are
    evaluated in float64 from magnitudes rounded upward; the factor (1 + 2**-50) covers the few float64
    roundings of these formulas themselves.
    """
    u, m, d = UNIT_ROUNDOFF[dtype], step["magnitudes"], step["depths"]
    safety = 1 + 2.0**-50
    return {
        "loss_atol": safety * (gamma(d["loss"], dtype) * m["loss"] + u * np.abs(step["loss"])),
        "kernel_atol": safety
        * (learning_rate * gamma(d["d_kernel"], dtype) * (1 + u) * m["d_kernel"] + 2 * u * m["new_kernel"]),
        "w_atol": safety * (learning_rate * gamma(d["d_w"], dtype) * (1 + u) * m["d_w"] + 2 * u * m["new_w"]),
    }
