"""Outputs and gradients on every golden case, eager and compiled, against the float64 oracle."""

from __future__ import annotations

import shutil
import types

import numpy as np
import pytest

from conformance import assertions, backend, expected, runner
from conformance.subjects.hyperzzw import cases, golden, tolerance

COMPILER_NAME, _ = backend.COMPILERS["jit"]


def _check_signed_zeros(actual, arrays, case):
    """Where x is ±0 and its weight finite and non-zero (or x finite non-zero and the weight ±0), IEEE fixes
    the sign of the product; the output's sign bit must match the oracle's."""
    __tracebackhide__ = True
    expected = arrays["output"]
    zero = (expected == 0) & np.isfinite(actual)
    weights_zero = (arrays["x"] != 0) if case.values == "special_context" else (arrays["x"] == 0)
    defined = zero & np.broadcast_to(weights_zero, zero.shape)
    if case.values == "special_x":
        defined &= np.isfinite(arrays["output"])
    mismatched = defined & (np.signbit(actual) != np.signbit(expected))
    if mismatched.any():
        idx = tuple(int(i) for i in np.argwhere(mismatched)[0])
        raise AssertionError(
            f"[case {case.id!r}, backend {backend.NAME}] signed zero at {idx}: expected "
            f"{expected[idx]!r}, got {actual[idx]!r}"
        )


@pytest.mark.observes(lambda case, mode: [expected.golden_output(case, mode)])
@pytest.mark.parametrize("mode", expected.OUTPUT_MODES, ids=["eager", COMPILER_NAME])
@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_output(case, mode, golden_manifest, observer):
    arrays = golden.load_case(case, golden_manifest)
    out = runner.run_case(arrays, case.dtype, mode, case.context_dtype)
    actual = backend.to_numpy(out)
    observer.numeric(expected.golden_output(case, mode), actual, backend.dtype_of(out))
    assertions.assert_dtype(backend.dtype_of(out), case.dtype, case.id)
    atol = tolerance.forward_atol(arrays["x"], arrays["context"], arrays["kernel"], case.dtype, backend.NAME)
    assertions.assert_close(actual, arrays["output"], atol, case.id)
    if case.values in ("special_x", "special_context"):
        _check_signed_zeros(actual, arrays, case)


@pytest.mark.observes(lambda case: expected.golden_gradients(case))
@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_gradients(case, golden_manifest, observer):
    arrays = golden.load_case(case, golden_manifest)
    grads = runner.gradients_case(arrays, case.dtype, case.context_dtype)
    atols = tolerance.gradient_atols(
        arrays["x"], arrays["context"], arrays["kernel"], arrays["cotangent"], case.dtype, backend.NAME
    )
    for name, grad, atol in zip(("dx", "dcontext", "dkernel"), grads, atols):
        if grad is None:  # no gradient w.r.t. an integer context
            assert name not in arrays
            continue
        actual = backend.to_numpy(grad)
        observer.numeric(expected.golden_gradient(case, name), actual, backend.dtype_of(grad))
        assertions.assert_dtype(backend.dtype_of(grad), case.dtype, f"{case.id} {name}")
        assertions.assert_close(actual, arrays[name], atol, case.id, what=name)


@pytest.mark.parametrize("dtype", cases.FLOAT_DTYPES)
def test_subnormal_behaviour(dtype, golden_manifest):
    """The measured underflow behaviour, `tolerance.FLUSHES_SUBNORMALS`, is what this backend does: either
    subnormal results survive (IEEE gradual underflow) or they are flushed to zero. The golden tolerance's
    underflow floor depends on it, so a change must be noticed here, not absorbed there."""
    case = cases.by_id(f"subnormal-{dtype}")
    arrays = golden.load_case(case, golden_manifest)
    actual = backend.to_numpy(runner.run_case(arrays, dtype, "eager"))
    expected = arrays["output"]
    subnormal = (expected != 0) & (np.abs(expected) < tolerance.TINY[dtype])
    assert subnormal.sum() >= 8, "the case must exercise subnormal results"
    flushed = subnormal & (actual == 0)
    if dtype in tolerance.FLUSHES_SUBNORMALS[backend.NAME]:
        assert flushed.all() or flushed.sum() == subnormal.sum(), (
            f"{backend.NAME} {dtype}: expected subnormal results flushed to zero; "
            f"{int(subnormal.sum() - flushed.sum())} of {int(subnormal.sum())} survived"
        )
    else:
        assert not flushed.any(), (
            f"{backend.NAME} {dtype}: expected gradual underflow; {int(flushed.sum())} of "
            f"{int(subnormal.sum())} subnormal results were flushed to zero"
        )


def test_a_broken_manifest_stops_the_session_with_one_message(tmp_path, monkeypatch):
    """Every golden test needs the manifest: when it is unreadable the session stops at its start with one
    message and the fix (`pytest.exit` from `conftest.pytest_sessionstart`), instead of failing each golden
    test with the same message."""
    from conformance import conftest

    broken = tmp_path / "golden"
    shutil.copytree(golden.ROOT, broken)
    (broken / "manifest.json").write_text("{not json")
    monkeypatch.setattr(golden, "ROOT", broken)
    monkeypatch.setattr(golden, "MANIFEST", broken / "manifest.json")
    monkeypatch.delenv("HYPERZZW_OBSERVED", raising=False)
    session = types.SimpleNamespace(config=types.SimpleNamespace())
    with pytest.raises(pytest.exit.Exception) as info:
        conftest.pytest_sessionstart(session)
    assert info.value.returncode == pytest.ExitCode.USAGE_ERROR
    assert str(info.value.msg).startswith(f"golden fixture {broken / 'manifest.json'} is damaged: not valid JSON")
    assert "git checkout -- golden/hyperzzw/" in info.value.msg
