"""The cross-backend report says PASS only on complete, passing, agreeing data (no Keras backend needed:
the `golden_check` session runs this file). Each test builds the three backends' observation records from
the oracle itself, breaks one thing the way a real session would, and checks the verdict and its reason."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conformance import cases, golden, observed, report, upstream

LAYER = {"path": "/src/hyperzzw/layer.py", "sha256": "ab" * 32}


def _record(backend: str) -> dict:
    """What a complete, passing session of `backend` records, with every value equal to the oracle's."""
    numeric = {}
    training = golden.load_npz("training.npz")
    want_numeric, want_errors = report.expected_keys()
    for key in want_numeric:
        name, quantity, _ = key.split("/")
        if name == "training":
            values = training[quantity] if quantity == "losses" else training[quantity][1:]
            dtype = cases.TRAINING.dtype
        else:
            saved = name.startswith(("keras-file-", "weights-file-", "saved-"))
            case = cases.by_id(golden.KERAS_CASE if saved else name)
            values, dtype = golden.load_case(case)[quantity], case.dtype
        numeric[key] = {"dtype": dtype, "shape": list(values.shape), "values": values.ravel().tolist()}
    errors = golden.load_errors()
    return {
        "backend": backend,
        "keras": "3.15.1",
        "version_set": "pinned",
        "keras_distributions": ["keras"],
        "versions": {"keras": "3.15.1", backend: "1.0", "numpy": np.__version__, "python": "3.11"},
        "layer": dict(LAYER),
        "session": {
            "exit_status": 0,
            "args": [],
            "keyword": "",
            "markexpr": "",
            "deselected": 0,
            "collected": 409,
            "failed": 0,
            "paths_given": False,
            "maxfail": 0,
            "complete": True,
        },
        "numeric": numeric,
        "errors": {key: errors[key] for key in want_errors},
        "upstream": {
            probe_id: upstream.expected(backend, report.PINNED_KERAS, probe_id)[0] for probe_id in upstream.probe_ids()
        },
    }


@pytest.fixture(scope="module")
def records() -> dict:
    return {b: _record(b) for b in report.BACKENDS}


def _report(tmp_path, records: dict) -> dict:
    for backend, record in records.items():
        (tmp_path / f"observed-{backend}.json").write_text(json.dumps(record, allow_nan=True))
    result = report.build(tmp_path)
    text = report.markdown(result)
    verdict = "PASS" if result["ok"] else "FAIL"
    assert text.splitlines()[2] == f"**Result: {verdict}**" and text.rstrip().endswith(f"**Result: {verdict}**")
    assert report.summary(result).count(f"RESULT: {verdict}") == 1
    return result


def test_complete_agreeing_records_pass(tmp_path, records):
    result = _report(tmp_path, records)
    assert result["ok"], result["problems"]


def _broken(records, backend, edit) -> dict:
    out = copy.deepcopy(records)
    edit(out[backend])
    return out


def test_a_failed_session_fails_the_report(tmp_path, records):
    def failed(r):
        r["session"].update(exit_status=1, failed=3)

    result = _report(tmp_path, _broken(records, "torch", failed))
    assert not result["ok"]
    assert result["problems"] == ["torch: the test session failed (pytest exit status 1, 3 failed)"]


def test_a_missing_backend_fails_the_report(tmp_path, records):
    result = _report(tmp_path, {b: r for b, r in records.items() if b != "tensorflow"})
    assert not result["ok"]
    assert result["problems"][0] == (
        f"tensorflow: no observations ({tmp_path / 'observed-tensorflow.json'} is "
        "missing: its session did not run, or crashed before it ended)"
    )


def test_a_subset_run_fails_the_report(tmp_path, records):
    def subset(r):
        r["session"].update(keyword="golden", deselected=399, complete=False)
        r["numeric"] = dict(list(r["numeric"].items())[:10])

    result = _report(tmp_path, _broken(records, "jax", subset))
    assert not result["ok"]
    assert "jax: the session ran a subset of the suite (-k 'golden', 399 tests deselected)" in result["problems"]
    assert any(p.startswith("jax: ") and "expected observations missing" in p for p in result["problems"])


def test_a_missing_observation_fails_the_report(tmp_path, records):
    result = _report(tmp_path, _broken(records, "jax", lambda r: r["numeric"].pop("rank2-float64/dx/grad")))
    assert result["problems"] == ["jax: 1 expected observations missing (e.g. rank2-float64/dx/grad)"]
    result = _report(tmp_path, _broken(records, "jax", lambda r: r["errors"].popitem()))
    assert not result["ok"] and "expected observations missing" in result["problems"][0]


def test_a_wrong_dtype_fails_the_report(tmp_path, records):
    """A layer that computes in float32 gives float32 outputs for float64 cases, with values that may well
    be within the float64 tolerance of zero-error rows; the recorded dtype must be compared."""

    def float32(r):
        r["numeric"]["rank2-float64/output/eager"]["dtype"] = "float32"

    result = _report(tmp_path, _broken(records, "tensorflow", float32))
    assert result["problems"][0] == (
        "tensorflow: 1 observations came out in the wrong dtype (e.g. rank2-float64/output/eager: float32, "
        "expected float64)"
    )


def test_different_layer_files_fail_the_report(tmp_path, records):
    def other(r):
        r["layer"] = {"path": "/elsewhere/hyperzzw.py", "sha256": "cd" * 32}

    result = _report(tmp_path, _broken(records, "torch", other))
    assert len(result["problems"]) == 1 and result["problems"][0].startswith(
        "the backends tested different layer files"
    )


def test_a_value_out_of_tolerance_fails_the_report(tmp_path, records):
    def drift(r):
        entry = r["numeric"]["rank2-float32/output/jit"]
        entry["values"] = (np.asarray(entry["values"]) * (1 + 1e-5)).tolist()

    result = _report(tmp_path, _broken(records, "jax", drift))
    assert not result["ok"] and result["problems"][0].startswith("1 numeric rows out of tolerance")
    row = next(r for r in result["rows"] if r["key"] == "rank2-float32/output/jit")
    assert row["backends"]["jax"]["err_over_tol"] > 1 >= row["backends"]["torch"]["err_over_tol"]


def test_a_differing_error_text_fails_the_report(tmp_path, records):
    def reworded(r):
        key = sorted(r["errors"])[0]
        r["errors"][key] = [r["errors"][key][0], r["errors"][key][1] + "!"]

    result = _report(tmp_path, _broken(records, "jax", reworded))
    assert result["problems"] == [result["problems"][0]] and "error checks differ" in result["problems"][0]


def test_no_record_at_all_fails(tmp_path):
    result = _report(tmp_path, {})
    assert not result["ok"] and len(result["problems"]) == 3


def test_underflow_rows_do_not_set_the_relative_headline(tmp_path, records):
    """A flushing backend returns 0 where the oracle has a subnormal result: that is reported in the
    `underflow` column, and the dtype's relative figure stays the normal-range one."""

    def flush(r):
        entry = r["numeric"]["subnormal-float32/output/eager"]
        values = np.asarray(entry["values"])
        values[np.abs(values) < 2.0**-126] = 0.0
        entry["values"] = values.tolist()

    result = _report(tmp_path, _broken(records, "jax", flush))
    s = result["summary_by_dtype"]["float32"]
    assert s["underflow_abs"] > 0 and s["max_rel"] < 1e-6


def test_observations_round_trip(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(
        json.dumps(
            {
                "numeric": {"a/output/eager": {"dtype": "float32", "shape": [2], "values": [1.0, float("nan")]}},
                "errors": {},
            }
        )
    )
    data = observed.load(path)
    assert data["numeric"]["a/output/eager"]["values"].shape == (2,)


def test_records_of_different_version_sets_fail_the_report(tmp_path, records):
    """One report covers one version set: an oldest-set jax record beside pinned torch and tensorflow records
    must not pass, even with every observation present and agreeing."""

    def oldest(r):
        r["version_set"] = "oldest"
        r["keras"] = r["versions"]["keras"] = "3.13.1"

    result = _report(tmp_path, _broken(records, "jax", oldest))
    assert result["problems"] == [
        "the records come from different version sets: jax oldest, torch pinned, tensorflow pinned",
        "the records come from different keras versions: jax 3.13.1, torch 3.15.1, tensorflow 3.15.1",
    ]


def test_a_record_with_another_numpy_fails_the_report(tmp_path, records):
    def numpy(r):
        r["versions"]["numpy"] = "2.3.0"

    result = _report(tmp_path, _broken(records, "torch", numpy))
    assert result["problems"] == [
        f"the records come from different numpy versions: jax {np.__version__}, torch 2.3.0, "
        f"tensorflow {np.__version__}"
    ]


def test_a_nightly_record_whose_keras_is_the_release_fails_the_report(tmp_path, records):
    """In a venv holding keras-nightly, installing tensorflow-cpu pulls the `keras` release in beside it; a
    session that then imports the release is not a nightly session, whatever its set is called."""
    nightly = copy.deepcopy(records)
    for r in nightly.values():
        r["version_set"] = "nightly"
        r["keras_distributions"] = ["keras-nightly"]
    assert _report(tmp_path, nightly)["ok"]

    def both(r):
        r["keras_distributions"] = ["keras", "keras-nightly"]

    result = _report(tmp_path, _broken(nightly, "tensorflow", both))
    assert result["problems"] == [
        "tensorflow: its keras module came from ['keras', 'keras-nightly'], expected "
        "['keras-nightly'] for version set 'nightly'"
    ]


def test_a_record_filed_under_another_backend_fails_the_report(tmp_path, records):
    """observed-torch.json copied over observed-tensorflow.json: torch compared with itself must not pass."""
    misfiled = dict(records, tensorflow=copy.deepcopy(records["torch"]))
    result = _report(tmp_path, misfiled)
    assert "observed-tensorflow.json holds the record of a torch session" in result["problems"][0]


def test_upstream_differences_are_listed(tmp_path, records):
    def downcast(r):
        r["upstream"]["multiply/float64"] = "float32"

    result = _report(tmp_path, _broken(records, "torch", downcast))
    assert result["ok"]  # the canary test fails the session itself; the report lists what differs
    assert result["upstream_differences"] == [
        f"torch: keras.ops multiply/float64 gives float32 (keras 3.15.1); float64 in the pinned set (keras "
        f"{report.PINNED_KERAS})"
    ]
    assert "multiply/float64 gives float32" in report.markdown(result)
