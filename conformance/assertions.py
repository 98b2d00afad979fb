"""Assertion helpers: each says which case, which backend, what was expected and what was got."""

from __future__ import annotations

import numpy as np

from conformance import backend


def _where(case: str) -> str:
    return f"[case {case!r}, backend {backend.NAME}]"


def assert_shape(actual, expected, case: str) -> None:
    __tracebackhide__ = True
    actual = tuple(actual)
    expected = tuple(expected)
    if actual != expected:
        raise AssertionError(f"{_where(case)} shape: expected {expected}, got {actual}")


def assert_dtype(actual: str, expected: str, case: str) -> None:
    __tracebackhide__ = True
    if actual != expected:
        raise AssertionError(f"{_where(case)} dtype: expected {expected}, got {actual}")


def assert_close(actual: np.ndarray, expected: np.ndarray, atol, case: str, what: str = "output") -> None:
    """Elementwise `|actual - expected| <= atol` for finite expected values (atol may be an array).

    Non-finite expected values must be matched exactly: NaN where NaN is expected, an infinity of the same
    sign where one is expected. Where `expected` is finite, `actual` must be finite too.
    """
    __tracebackhide__ = True
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{_where(case)} {what} shape: expected {expected.shape}, got {actual.shape}")
    atol = np.broadcast_to(np.asarray(atol, dtype=np.float64), expected.shape)
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf: masked out below
        err = np.where(finite, np.abs(actual - expected), 0.0)
    nan_bad = np.isnan(expected) != np.isnan(actual)
    inf_bad = np.isinf(expected) & (actual != expected)
    num_bad = finite & ~(err <= atol)  # also catches NaN/inf in actual where expected is finite
    bad = nan_bad | inf_bad | num_bad
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        worst = float(np.max(np.where(finite, err - atol, -np.inf))) if finite.any() else float("nan")
        raise AssertionError(
            f"{_where(case)} {what}: {int(bad.sum())} of {bad.size} elements out of tolerance "
            f"(NaN mismatches {int(nan_bad.sum())}, inf mismatches {int(inf_bad.sum())}); "
            f"first at {idx}: expected {expected[idx]!r}, got {actual[idx]!r}, atol {atol[idx]!r}; "
            f"largest excess over atol {worst!r}"
        )


def assert_error(exc: BaseException | None, expected_type: type, expected_message: str, case: str) -> None:
    """`exc` is exactly `expected_type` (not a subclass) with exactly `expected_message`."""
    __tracebackhide__ = True
    if exc is None:
        raise AssertionError(f"{_where(case)} raised nothing; expected {expected_type.__name__}({expected_message!r})")
    got = (type(exc), str(exc))
    if got != (expected_type, expected_message):
        raise AssertionError(
            f"{_where(case)} error: expected {expected_type.__name__}({expected_message!r}), "
            f"got {got[0].__name__}({got[1]!r})"
        )
