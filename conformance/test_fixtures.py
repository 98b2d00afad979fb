"""The golden fixtures are current, intact and small, and the oracle behind them is right.

The oracle is checked independently of any backend: rounding against NumPy's own casts, gradients against
central finite differences, the broadcast rule against an explicit loop.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conformance import cases, golden, oracle


def test_fixtures_are_current(golden_manifest):
    files, manifest = golden.build()
    assert golden.differences(files, manifest) == [], f"golden/ is stale; regenerate with: {golden.REGENERATE}"


def test_every_file_matches_its_checksum(golden_manifest):
    for path in golden_manifest["sha256"]:
        golden.verified_bytes(path, golden_manifest)
    assert set(golden_manifest["cases"]) == {case.id for case in cases.CASES}
    assert {golden.keras_path(b) for b in golden.KERAS_BACKENDS} <= set(golden_manifest["sha256"])


def test_fixtures_are_small():
    size = sum(p.stat().st_size for p in golden.ROOT.rglob("*") if p.is_file())
    assert size < 5 * 2**20, f"golden/ holds {size / 2**20:.1f} MiB; keep it well under 5 MB"


def test_provenance_is_recorded(golden_manifest):
    for key in ("generator", "oracle", "numpy", "seed", "catalogue_sha256"):
        assert golden_manifest[key], key
    for entry in golden_manifest["cases"].values():
        assert entry["tolerance"]["max_atol"]["output"] >= 0 and entry["tolerance"]["n"]["output"] >= 1


@pytest.fixture
def golden_copy(tmp_path, monkeypatch):
    """A private copy of golden/ that a test may damage."""
    root = tmp_path / "golden"
    shutil.copytree(golden.ROOT, root)
    monkeypatch.setattr(golden, "ROOT", root)
    monkeypatch.setattr(golden, "MANIFEST", root / "manifest.json")
    return root


def test_a_corrupted_file_is_named_with_the_fix(golden_copy):
    path = golden_copy / "cases" / "rank2-float32.npz"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(golden.GoldenError, match=r"rank2-float32\.npz: checksum mismatch.*Regenerate with: nox -t golden"):
        golden.load_case(cases.by_id("rank2-float32"))


def test_a_missing_file_is_named_with_the_fix(golden_copy):
    (golden_copy / "errors.json").unlink()
    with pytest.raises(golden.GoldenError, match=r"errors\.json: missing.*Regenerate with"):
        golden.load_errors()


def test_a_changed_catalogue_is_detected(golden_copy, monkeypatch):
    monkeypatch.setattr(cases, "catalogue_hash", lambda: "0" * 64)
    with pytest.raises(golden.GoldenError, match=r"case catalogue .* changed.*Regenerate with"):
        golden.check_catalogue()


def test_regeneration_reports_numeric_drift(golden_copy):
    """What `regenerate_golden.py` prints: per changed case, which arrays and the largest difference."""
    files, manifest = golden.build()
    case = cases.by_id("rank2-float64")
    arrays = golden.compute_case(case)
    arrays["output"] = arrays["output"] + np.where(np.arange(arrays["output"].size).reshape(arrays["output"].shape) == 3, 1e-3, 0)
    (golden_copy / "cases" / f"{case.id}.npz").write_bytes(golden.npz_bytes(golden.carriers(case, arrays)))
    lines = golden.differences(files, manifest)
    assert len(lines) == 1 and lines[0].startswith("changed  cases/rank2-float64.npz: output: 1 values differ")
    assert "largest |diff| 0.001" in lines[0]


@pytest.mark.parametrize("dtype,numpy_dtype", [("float16", np.float16), ("float32", np.float32)])
def test_round_to_matches_numpy_casts(dtype, numpy_dtype):
    rng = np.random.default_rng(5)
    values = rng.standard_normal(20000) * 10.0 ** rng.integers(-45, 40, 20000)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26]
    values = np.concatenate([values, specials])
    with np.errstate(over="ignore"):
        expected = values.astype(numpy_dtype).astype(np.float64)
    np.testing.assert_array_equal(oracle.round_to(values, dtype), expected)


def test_round_to_bfloat16_keeps_8_significant_bits():
    values = np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-7, 3.0e38 * 1.2, 2.0**-133])
    # Ties go to even; past the largest finite value is inf; 2**-133 is bfloat16's smallest subnormal.
    np.testing.assert_array_equal(
        oracle.round_to(values, "bfloat16"), [1.0, 1.0 + 2.0**-6, 1.0 + 2.0**-7, np.inf, 2.0**-133]
    )


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
