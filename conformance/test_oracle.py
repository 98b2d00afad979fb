"""The oracle is right, exact, and the same bytes on every machine (no Keras backend needed).

Run by the `golden_check` nox session (`pytest --noconftest`, NumPy only), not by the backend sessions: none
of this depends on the backend. Checked here: rounding against NumPy's own casts and against an exact
rational reference, the forward and gradient formulas against `fractions.Fraction` arithmetic and central
finite differences, IEEE 754's rules for NaN, Inf and signed zeros, the training step's error bound against
a float32 emulation of the step (it must hold, and a 1e-5 gradient drift must break it), and that the whole
of `golden/`'s oracle data comes out byte-identical under other BLAS kernels and thread counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.subjects.hyperzzw import cases, golden, oracle

ROOT = Path(__file__).resolve().parents[1]


# --- rounding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,numpy_dtype", [("float16", np.float16), ("float32", np.float32)])
def test_round_to_matches_numpy_casts(dtype, numpy_dtype):
    rng = np.random.default_rng(5)
    values = rng.standard_normal(20000) * 10.0 ** rng.integers(-45, 40, 20000)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26]
    values = np.concatenate([values, specials])
    with np.errstate(over="ignore"):
        expected = values.astype(numpy_dtype).astype(np.float64)
    np.testing.assert_array_equal(oracle.round_to(values, dtype), expected)
    exact = oracle.Exact.of(values).round(dtype)  # the exact path rounds float64 values the same way
    np.testing.assert_array_equal(exact, expected)


def test_round_to_bfloat16_keeps_8_significant_bits():
    values = np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-7, 3.0e38 * 1.2, 2.0**-133])
    # Ties go to even; past the largest finite value is inf; 2**-133 is bfloat16's smallest subnormal.
    np.testing.assert_array_equal(
        oracle.round_to(values, "bfloat16"), [1.0, 1.0 + 2.0**-6, 1.0 + 2.0**-7, np.inf, 2.0**-133]
    )


def test_exact_values_are_rounded_once_not_through_float64():
    """1 + 2**-11 + 2**-60 is just above a float16 tie. Through float64 it would first become the tie
    1 + 2**-11 and then round to even, 1.0: double rounding. Rounded once it is 1 + 2**-10."""
    value = Fraction(1) + Fraction(1, 2**11) + Fraction(1, 2**60)
    assert oracle.round_ratio(value.numerator, value.denominator, "float16") == 1 + 2.0**-10
    assert float(np.float16(float(value))) == 1.0  # what double rounding gives
    # and the ties themselves go to even, below and above
    assert oracle.round_ratio(2**11 + 1, 2**11, "float16") == 1.0
    assert oracle.round_ratio(2**11 + 3, 2**11, "float16") == 1 + 2.0**-9
    # subnormal spacing, overflow, and upward rounding of magnitudes
    assert oracle.round_ratio(3, 2**26, "float16") == 2.0**-24  # 1.5 * 2**-25 rounds to the smallest subnormal
    assert oracle.round_ratio(65520, 1, "float16") == np.inf  # the first value that rounds past 65504
    assert oracle.round_ratio(65519, 1, "float16") == 65504.0
    assert oracle.round_ratio(2**53 + 1, 2**53, "float64", upward=True) == 1 + 2.0**-52


# --- the formulas, exactly ----------------------------------------------------------------------------------


def _fraction_forward(x, context, kernel):
    """The definition in Fraction arithmetic, for a rank-2 x and context."""
    batch, input_dim = x.shape
    return [
        [
            Fraction(x[b, i]) * sum(Fraction(context[b, k]) * Fraction(kernel[k, i]) for k in range(kernel.shape[0]))
            for i in range(input_dim)
        ]
        for b in range(batch)
    ]


def _fraction_round(value: Fraction, dtype: str) -> float:
    if value == 0:
        return 0.0
    return oracle.round_ratio(value.numerator, value.denominator, dtype)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    batch=st.integers(1, 4),
    input_dim=st.integers(1, 4),
    context_dim=st.integers(1, 5),
    dtype=st.sampled_from(cases.FLOAT_DTYPES),
    data=st.data(),
)
def test_forward_and_gradients_equal_fraction_arithmetic(batch, input_dim, context_dim, dtype, data):
    draw = lambda shape: np.array(  # noqa: E731
        data.draw(st.lists(finite, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    ).reshape(shape)  # noqa: E731
    x, context, kernel, g = (
        draw((batch, input_dim)),
        draw((batch, context_dim)),
        draw((context_dim, input_dim)),
        draw((batch, input_dim)),
    )
    out = oracle.forward(x, context, kernel, dtype)
    exact = _fraction_forward(x, context, kernel)
    expected = [[_fraction_round(v, dtype) for v in row] for row in exact]
    np.testing.assert_array_equal(np.abs(out), np.abs(expected))
    dx, dc, dk = oracle.gradients(x, context, kernel, g, dtype)
    fx = lambda a: [[Fraction(v) for v in row] for row in a]  # noqa: E731
    X, C, K, G = fx(x), fx(context), fx(kernel), fx(g)
    w = [[sum(C[b][k] * K[k][i] for k in range(context_dim)) for i in range(input_dim)] for b in range(batch)]
    exp_dx = [[_fraction_round(G[b][i] * w[b][i], dtype) for i in range(input_dim)] for b in range(batch)]
    exp_dc = [
        [_fraction_round(sum(G[b][i] * X[b][i] * K[k][i] for i in range(input_dim)), dtype) for k in range(context_dim)]
        for b in range(batch)
    ]
    exp_dk = [
        [_fraction_round(sum(C[b][k] * G[b][i] * X[b][i] for b in range(batch)), dtype) for i in range(input_dim)]
        for k in range(context_dim)
    ]
    for got, want in ((dx, exp_dx), (dc, exp_dc), (dk, exp_dk)):
        np.testing.assert_array_equal(np.abs(got), np.abs(want))


def test_ieee_special_values_and_signed_zeros():
    inf, nan = np.inf, np.nan
    kernel = np.array([[1.0, 0.0, -1.0], [-2.0, -2.0, 1.0]])
    rows = [  # (context row, x row, expected output row), worked by hand from IEEE 754's rules
        ([inf, 1.0], [1.0, 1.0, 1.0], [inf, nan, -inf]),  # inf*1 - 2 = inf; inf*0 = nan; -inf + 1 = -inf
        ([inf, -inf], [1.0, 1.0, 1.0], [inf, nan, -inf]),  # inf + inf; nan; -inf + -inf
        ([0.0, 0.0], [-3.0, 2.0, 5.0], [-0.0, 0.0, 0.0]),  # weights +0 + -0 = +0 (each), times x
        ([-0.0, 1.0], [-0.0, 0.0, 1.0], [0.0, -0.0, 1.0]),  # weights -2, -2, 1
        ([1.0, 1.0], [inf, -inf, 0.0], [-inf, inf, 0.0]),  # weights -1, -2, and -1 + 1 = +0
        ([nan, 0.0], [1.0, 1.0, 1.0], [nan, nan, nan]),
    ]
    context, x, expected = (np.array([r[i] for r in rows]) for i in range(3))
    out = oracle.forward(x, context, kernel)
    np.testing.assert_array_equal(out, expected)
    numbers = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(out[numbers]), np.signbit(expected[numbers]))
    assert not np.signbit(out[~numbers]).any(), "every NaN is the one positive quiet NaN, on every machine"
    # A sum that is exactly zero is -0 only when every term is -0.
    all_negative_zero = oracle.forward(np.ones((1, 1)), np.array([[-0.0, 0.0]]), np.array([[1.0], [-1.0]]))
    assert all_negative_zero[0, 0] == 0 and np.signbit(all_negative_zero[0, 0])
    mixed = oracle.forward(np.ones((1, 1)), np.array([[-0.0, 0.0]]), np.array([[1.0], [1.0]]))
    assert mixed[0, 0] == 0 and not np.signbit(mixed[0, 0])
    cancelled = oracle.forward(np.ones((1, 1)), np.array([[-1.0, 1.0]]), np.array([[1.0], [1.0]]))
    assert cancelled[0, 0] == 0 and not np.signbit(cancelled[0, 0])


@pytest.mark.parametrize(
    "x_shape,context_shape", [((3, 4), (3, 2)), ((3, 5, 4), (3, 2)), ((3, 5, 4), (1, 5, 2)), ((1, 4), (3, 2))]
)
def test_oracle_gradients_match_finite_differences(x_shape, context_shape):
    rng = np.random.default_rng(6)
    x, context = rng.standard_normal(x_shape), rng.standard_normal(context_shape)
    kernel = rng.standard_normal((context_shape[-1], x_shape[-1]))
    g = rng.standard_normal(oracle.forward(x, context, kernel).shape)
    analytic = oracle.gradients(x, context, kernel, g)
    for index, array in enumerate((x, context, kernel)):
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            args = [x, context, kernel]
            plus, minus = array.copy(), array.copy()
            plus[i] += 1e-6
            minus[i] -= 1e-6
            args[index] = plus
            f_plus = np.sum(g * oracle.forward(*args))
            args[index] = minus
            numeric[i] = (f_plus - np.sum(g * oracle.forward(*args))) / 2e-6
        np.testing.assert_allclose(analytic[index], numeric, rtol=1e-6, atol=1e-8)


def test_oracle_forward_matches_an_explicit_loop():
    rng = np.random.default_rng(7)
    x, context, kernel = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5)), rng.standard_normal((5, 4))
    out = oracle.forward(x, context, kernel)
    for b in range(2):
        for t in range(3):
            for i in range(4):
                assert out[b, t, i] == pytest.approx(x[b, t, i] * sum(context[b, k] * kernel[k, i] for k in range(5)))


# --- the training step's bound ------------------------------------------------------------------------------


def _float32_step(x, context, y, kernel, w, lr, drift=1.0):
    """One SGD step computed in float32 by NumPy, in the order Keras's graph computes it."""
    f = np.float32
    x, context, y, kernel, w = (np.asarray(a, dtype=f) for a in (x, context, y, kernel, w))
    hidden = x * (context @ kernel)
    residual = hidden @ w - y
    loss = np.sum(residual * residual, dtype=f) / f(len(x))
    d_residual = f(2) * residual / f(len(x))
    d_kernel = (context.T @ ((d_residual @ w.T) * x)) * f(drift)
    d_w = hidden.T @ d_residual
    return float(loss), kernel - f(lr) * d_kernel, w - f(lr) * d_w


def test_training_bound_holds_for_float32_and_catches_a_1e_5_gradient_drift():
    t = cases.TRAINING
    data = golden.compute_training()
    args = lambda k: (data["x"], data["context"], data["y"], data["kernels"][k], data["ws"][k], t.learning_rate)  # noqa: E731
    caught = []
    for k in range(t.steps):
        loss, kernel, w = _float32_step(*args(k))
        assert abs(loss - data["losses"][k]) <= data["loss_atol"][k]
        assert np.all(np.abs(kernel - data["kernels"][k + 1]) <= data["kernel_atol"][k]), k
        assert np.all(np.abs(w - data["ws"][k + 1]) <= data["w_atol"][k]), k
        _, drifted, _ = _float32_step(*args(k), drift=1 + 1e-5)
        caught.append(bool(np.any(np.abs(drifted - data["kernels"][k + 1]) > data["kernel_atol"][k])))
    assert any(caught), "a kernel-gradient drift of 1e-5 went unnoticed at every step"


# --- the same bytes on every machine ------------------------------------------------------------------------

_DIGEST = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {root!r})
from conformance.subjects.hyperzzw import golden
files, manifest = golden.build()
h = hashlib.sha256()
for path in sorted(files):
    h.update(path.encode()); h.update(files[path])
h.update(json.dumps(manifest, sort_keys=True).encode())
rng = np.random.default_rng(0)
a, b = rng.standard_normal((200, 300)), rng.standard_normal((300, 100))
print(h.hexdigest(), hashlib.sha256((a @ b).tobytes()).hexdigest())
"""


def _digest_in_subprocess(coretype: str | None, threads: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen(
        [sys.executable, "-c", _DIGEST.format(root=str(ROOT))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize("coretype", [None, "Prescott", "Haswell", "SkylakeX"], ids=lambda c: c or "default")
def test_oracle_data_is_identical_under_other_blas_kernels_and_thread_counts(coretype):
    """`golden.build()` (every stored file and the manifest) hashes the same in a fresh process whatever
    OpenBLAS kernel (`OPENBLAS_CORETYPE`) and thread count NumPy runs with. Beside it each process hashes a
    plain BLAS matmul, which may differ between kernels: that is what the oracle must not depend on."""
    if coretype and not X86:
        pytest.skip(f"OPENBLAS_CORETYPE={coretype} names an x86-64 kernel; this machine is {platform.machine()}")
    if coretype == "SkylakeX" and not _has_avx512():
        pytest.skip("this CPU has no AVX-512, so OpenBLAS cannot run its SkylakeX kernel here")
    files, manifest = golden.build()
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode())
        h.update(files[path])
    h.update(json.dumps(manifest, sort_keys=True).encode())
    here = h.hexdigest()
    runs = {threads: _digest_in_subprocess(coretype, threads) for threads in (1, 2)}
    for threads, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"OPENBLAS_CORETYPE={coretype} threads={threads}: {err[-2000:]}"
        digest, blas = out.split()
        assert digest == here, (
            f"the oracle data differ under OPENBLAS_CORETYPE={coretype}, {threads} thread(s): sha256 {digest[:16]} "
            f"vs {here[:16]} in this process (a BLAS matmul there hashed {blas[:16]})"
        )
