"""The float64 NumPy oracle: what `HyperZZWOperator` computes, written independently of Keras.

`forward` is the definition, `output = x * (context @ hyper_kernel)`, with the layer's broadcast rule: a
rank-2 context `(batch, context_dim)` applies to every position of a rank-N `x`; a rank-N context broadcasts
against `x` by NumPy rules. `gradients` is the analytic gradient of the scalar loss
`sum(cotangent * output)`. `round_to` rounds float64 values to a floating dtype (round to nearest even,
with subnormals and overflow to infinity), including bfloat16, which NumPy does not have.
"""

from __future__ import annotations

import numpy as np

# (mantissa bits, minimum normal exponent, largest finite value) of each floating dtype.
FORMATS = {
    "float16": (10, -14, 65504.0),
    "bfloat16": (7, -126, float.fromhex("0x1.fep127")),
    "float32": (23, -126, float.fromhex("0x1.fffffep127")),
    "float64": (52, -1022, np.finfo(np.float64).max),
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


def _context_weights(context: np.ndarray, kernel: np.ndarray, x_ndim: int) -> np.ndarray:
    weights = context @ kernel
    if context.ndim == 2 and x_ndim > 2:
        weights = weights.reshape(weights.shape[:1] + (1,) * (x_ndim - 2) + weights.shape[1:])
    return weights


def forward(x, context, kernel) -> np.ndarray:
    """`x * (context @ kernel)` in float64, with the layer's broadcast rule."""
    x, context, kernel = (np.asarray(a, dtype=np.float64) for a in (x, context, kernel))
    with np.errstate(all="ignore"):  # IEEE semantics are the point: inf * 0 is NaN, and so on
        return x * _context_weights(context, kernel, x.ndim)


def _sum_to(array: np.ndarray, shape: tuple) -> np.ndarray:
    """Sums `array` over the axes along which `shape` was broadcast to `array.shape`."""
    lead = array.ndim - len(shape)
    array = array.sum(axis=tuple(range(lead))) if lead else array
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and array.shape[i] != 1)
    return array.sum(axis=axes, keepdims=True) if axes else array


def gradients(x, context, kernel, cotangent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `sum(cotangent * forward(x, context, kernel))` w.r.t. x, context and kernel.

    dx = g * (c @ K); dc = (g * x) @ K.T; dK = c.T @ (g * x); each summed over the axes it was broadcast on.
    """
    x, context, kernel, g = (np.asarray(a, dtype=np.float64) for a in (x, context, kernel, cotangent))
    with np.errstate(all="ignore"):
        weights = _context_weights(context, kernel, x.ndim)
        dx = _sum_to(g * weights, x.shape)
        d_weights = _sum_to(g * x, weights.shape)  # the gradient w.r.t. (c @ K), in c's layout
        if context.ndim == 2 and x.ndim > 2:
            d_weights = d_weights.reshape(d_weights.shape[0], d_weights.shape[-1])
        dc = d_weights @ kernel.T
        flat_c = context.reshape(-1, context.shape[-1])
        flat_dw = d_weights.reshape(-1, kernel.shape[1])
        dk = flat_c.T @ flat_dw
    return dx, dc, dk


def _training_grads(x, context, y, kernel, w):
    """(loss, d_kernel, d_w, hidden) of `mean((x * (context @ kernel)) @ w - y) ** 2)`."""
    hidden = x * (context @ kernel)
    residual = hidden @ w - y
    d_pred = 2.0 * residual / residual.size
    return float(np.mean(residual**2)), context.T @ ((d_pred @ w.T) * x), hidden.T @ d_pred, hidden


def train_sgd(x, context, y, kernel, w, learning_rate: float, steps: int):
    """Full-batch SGD on `loss = mean((HyperZZW(x, context) @ w - y) ** 2)`, in float64.

    `pred = (x * (context @ kernel)) @ w` (the layer, then `Dense(1, use_bias=False)`), Keras's mean squared
    error for one output, and each step `v -= learning_rate * grad(v)` for `v in (kernel, w)`. Returns the
    loss before each step and the final (kernel, w).
    """
    x, context, y, kernel, w = (np.asarray(a, dtype=np.float64).copy() for a in (x, context, y, kernel, w))
    losses = []
    for _ in range(steps):
        loss, d_kernel, d_w, _ = _training_grads(x, context, y, kernel, w)
        losses.append(loss)
        kernel -= learning_rate * d_kernel
        w -= learning_rate * d_w
    return np.asarray(losses), kernel, w


def train_sgd_error_bounds(x, context, y, kernel, w, learning_rate: float, steps: int, unit_roundoff: float):
    """Forward error bounds for `train_sgd` run in a dtype with unit roundoff `u`: (loss bounds per step,
    bound on every final weight).

    Step k computes `theta_{k+1} = theta_k - lr * grad(theta_k)` with a rounding error delta_k bounded, entry
    by entry, by gamma(n) * (|theta_k| + lr * G_k): n is the longest chain of sums in one step (batch +
    input_dim + context_dim + 4) and G_k the gradient evaluated on absolute values (the sum of |terms|). An
    error present before step j is carried through by the SGD map's Jacobian `I - lr * H_j`, whose 2-norm the
    oracle computes from the exact Hessian (central differences of the analytic gradient, 24 parameters).
    So ||error after step k||_2 <= sum_i (prod_{i<j<=k} ||I - lr H_j||_2) ||delta_i||_2, which bounds every
    weight's error. The loss before step k adds ||grad_k||_2 times that plus gamma(n) times its own
    magnitude; the input data rounding is part of the stored inputs, not an error.
    """
    x, context, y, kernel, w = (np.asarray(a, dtype=np.float64).copy() for a in (x, context, y, kernel, w))
    n = x.shape[0] + x.shape[1] + context.shape[1] + 4
    nu = (n + 2) * unit_roundoff
    g = nu / (1 - nu)
    shapes = (kernel.shape, w.shape)
    sizes = (kernel.size, w.size)

    def flat_grad(theta):
        k, v = theta[: sizes[0]].reshape(shapes[0]), theta[sizes[0]:].reshape(shapes[1])
        _, dk, dv, _ = _training_grads(x, context, y, k, v)
        return np.concatenate([dk.ravel(), dv.ravel()])

    error = 0.0
    loss_bounds = []
    for _ in range(steps):
        theta = np.concatenate([kernel.ravel(), w.ravel()])
        loss, d_kernel, d_w, _ = _training_grads(x, context, y, kernel, w)
        grad = np.concatenate([d_kernel.ravel(), d_w.ravel()])
        abs_loss, abs_dk, abs_dw, _ = _training_grads(np.abs(x), np.abs(context), -np.abs(y), np.abs(kernel), np.abs(w))
        loss_bounds.append(float(np.linalg.norm(grad) * error + g * (abs_loss + loss)))
        # The Jacobian of this step's map, from the Hessian by central differences (h relative to theta).
        h = 1e-6 * max(1.0, float(np.max(np.abs(theta))))
        hessian = np.stack([(flat_grad(theta + h * e) - flat_grad(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])
        jacobian_norm = float(np.linalg.norm(np.eye(theta.size) - learning_rate * hessian, 2))
        step_error = g * np.linalg.norm(np.abs(theta) + learning_rate * np.concatenate([abs_dk.ravel(), abs_dw.ravel()]))
        error = jacobian_norm * error + float(step_error)
        kernel -= learning_rate * d_kernel
        w -= learning_rate * d_w
    return np.asarray(loss_bounds), error
