"""The tolerance policy: how far a backend's result may be from the float64 oracle, and why.

Every entry of the layer's output and gradients is a sum of products: `y = x * sum_k c_k K_k` has `n =
context_dim` products in its sum and one more multiplication. For a sum of `n` products computed in a
floating dtype with unit roundoff `u = eps / 2`, in any order, the classical bound is

    |computed - exact| <= gamma(n) * sum |terms|,     gamma(n) = n u / (1 - n u)

(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1). The final multiply adds
one more `u`, and the stored expected value, itself the exact value rounded to the dtype, one more. So an
entry computed with reduction length `n` whose terms have absolute sum `M` may differ from the stored expected
value by at most

    atol = gamma(n + 2) * M  (+ u * |expected|, folded in as the "+ 2")

`M` is computed by the oracle itself, run on the absolute values of every input: for the output it is
`|x| * (|c| @ |K|)`; for the gradients the same formulas with `|g|`. `n` for each quantity:

- output and d/dx: `context_dim` (plus the number of positions summed when `x` was broadcast);
- d/dcontext: `input_dim` plus the positions a rank-2 or broadcast context row was applied to;
- d/dkernel: the number of positions, `prod(output.shape[:-1])`.

The bound is a worst case for any summation order, so it holds for XLA, oneDNN and ATen alike; it is not
widened for any backend. Special values (NaN, ±Inf) are not toleranced: they must match exactly. Signed
zeros are compared where IEEE fixes the sign (see `conformance.assertions`). Subnormal results lie below the
range of relative bounds; `SUBNORMAL_FLOOR` documents how they are handled.
"""

from __future__ import annotations

import math

import numpy as np

from conformance import oracle

# eps: the distance from 1.0 to the next larger value of each dtype (2 ** -mantissa_bits).
EPS = {name: 2.0 ** -mantissa for name, (mantissa, _, _) in oracle.FORMATS.items()}
UNIT_ROUNDOFF = {name: eps / 2 for name, eps in EPS.items()}
# The smallest positive normal value of each dtype.
TINY = {name: 2.0**min_exp for name, (_, min_exp, _) in oracle.FORMATS.items()}


def gamma(n: int, dtype: str) -> float:
    nu = n * UNIT_ROUNDOFF[dtype]
    if nu >= 1:
        return math.inf
    return nu / (1 - nu)


def reduction_lengths(x_shape, context_shape, kernel_shape) -> dict[str, int]:
    """The reduction length `n` of each quantity (see the module docstring)."""
    out_shape = np.broadcast_shapes(
        tuple(x_shape[:-1]),
        tuple(context_shape[:-1]) + (1,) * (len(x_shape) - len(context_shape)),
    )
    positions = int(np.prod(out_shape, dtype=np.int64))
    x_positions = int(np.prod(x_shape[:-1], dtype=np.int64))
    c_positions = int(np.prod(context_shape[:-1], dtype=np.int64))
    context_dim, input_dim = kernel_shape
    return {
        "output": context_dim,
        "dx": context_dim + max(positions // max(x_positions, 1), 1),
        "dcontext": input_dim + max(positions // max(c_positions, 1), 1),
        "dkernel": max(positions, 1),
    }


def forward_atol(x, context, kernel, dtype: str) -> np.ndarray:
    """Elementwise tolerance on the output (see the module docstring)."""
    n = reduction_lengths(np.shape(x), np.shape(context), np.shape(kernel))["output"]
    magnitude = oracle.forward(np.abs(x), np.abs(context), np.abs(kernel))
    return gamma(n + 2, dtype) * magnitude


def gradient_atols(x, context, kernel, cotangent, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elementwise tolerances on (dx, dcontext, dkernel) (see the module docstring)."""
    lengths = reduction_lengths(np.shape(x), np.shape(context), np.shape(kernel))
    magnitudes = oracle.gradients(np.abs(x), np.abs(context), np.abs(kernel), np.abs(cotangent))
    return tuple(
        gamma(lengths[name] + 2, dtype) * m for name, m in zip(("dx", "dcontext", "dkernel"), magnitudes)
    )
