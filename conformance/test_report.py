"""The cross-backend report says PASS only on complete, passing, agreeing data (no Keras backend needed:
the `golden_check` session runs this file). Each test builds the three backends' records (a session record and
two workers' parts each) from the declared observations and the oracle itself, breaks one thing the way a
real session (or a careless hand) would, and checks the verdict and its reason."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest

from conformance import expected, observed, report, test_harness_report, upstream
from conformance.subjects.hyperzzw import cases, golden

LAYER = {"path": "/src/hyperzzw/layer.py", "sha256": "ab" * 32}
WORKERS = ("gw0", "gw1")


def _record(backend: str) -> dict:
    """What a complete, passing session of `backend` records, with every value equal to the oracle's: the
    session record and two parts, the declared observations split between them."""
    run = f"host:{1000 + report.BACKENDS.index(backend)}:1"
    errors = golden.load_errors()
    header = {
        "kind": "part",
        "backend": backend,
        "version_set": "pinned",
        "run": run,
        "keras_distributions": ["keras"],
        "versions": {"keras": "3.15.1", backend: "1.0", "numpy": np.__version__, "python": "3.11"},
        "layer": dict(LAYER),
        "collected": 636,
        "deselected": 0,
    }
    parts = {w: {**copy.deepcopy(header), "worker": w, "numeric": {}, "errors": {}, "upstream": {}} for w in WORKERS}
    for i, observation in enumerate(expected.NUMERIC.values()):
        values, dtype, _ = observation.reference()
        entry = {"dtype": dtype, "shape": list(values.shape), "values": values.ravel().tolist()}
        parts[WORKERS[i % 2]]["numeric"][observation.key] = entry
    for i, check in enumerate(expected.ERRORS.values()):
        parts[WORKERS[i % 2]]["errors"][check.key] = errors[check.key]
    parts["gw0"]["upstream"] = {
        probe_id: upstream.expected(backend, report.PINNED_KERAS, probe_id)[0] for probe_id in upstream.probe_ids()
    }
    session = {
        "kind": "session",
        "backend": backend,
        "version_set": "pinned",
        "run": run,
        "workers": list(WORKERS),
        "exit_status": 0,
        "args": [],
        "keyword": "",
        "markexpr": "",
        "deselected": 0,
        "collected": 636,
        "failed": 0,
        "paths_given": False,
        "maxfail": 0,
        "stopped_early": False,
    }
    return {"session": session, "parts": parts}


@pytest.fixture(scope="module")
def records() -> dict:
    return {b: _record(b) for b in report.BACKENDS}


def _write(folder, records: dict) -> None:
    for backend, record in records.items():
        path = folder / f"observed-{backend}.json"
        path.write_text(json.dumps(record["session"], allow_nan=True))
        parts = observed.parts_dir(path)
        parts.mkdir(exist_ok=True)
        for worker, part in record["parts"].items():
            (parts / f"{worker}.json").write_text(json.dumps(part, allow_nan=True))


def _report(folder, records: dict, **kwargs) -> dict:
    _write(folder, records)
    result = report.build(folder, **kwargs)
    text = report.markdown(result)
    verdict = "PASS" if result["ok"] else "FAIL"
    assert text.splitlines()[2] == f"**Result: {verdict}**" and text.rstrip().endswith(f"**Result: {verdict}**")
    assert report.summary(result).count(f"RESULT: {verdict}") == 1
    return result


def _broken(records, backend, edit) -> dict:
    out = copy.deepcopy(records)
    edit(out[backend])
    return out


def _each_part(edit):
    def apply(record):
        for part in record["parts"].values():
            edit(part)

    return apply


def test_complete_agreeing_records_pass(tmp_path, records):
    result = _report(tmp_path, records)
    assert result["ok"], result["problems"]
    assert result["scope"]["tests-jax"] == "recorded" and result["scope"]["traced-jax"] == "not run"
    assert result["scope"]["harness-export"] == "not run"


def test_every_declared_observation_has_its_reference():
    """A declaration without reference data (a case or file the golden data lacks) fails here, in
    golden_check; and every key is unique, built by the declaration alone."""
    for observation in expected.NUMERIC.values():
        values, dtype, atol = observation.reference()
        assert np.shape(atol(None)) in ((), np.shape(values)) and dtype in (*golden.cases.FLOAT_DTYPES, "bool"), (
            observation
        )
    errors = golden.load_errors()
    assert set(expected.ERRORS) == set(errors)
    assert len(expected.ALL) == len(expected.NUMERIC) + len(expected.ERRORS)


def test_recording_an_undeclared_observation_fails():
    with pytest.raises(KeyError, match="not a declared observation"):
        expected.golden_output(golden.cases.CASES[0], "traced")
    with pytest.raises(KeyError, match="not a declared observation"):
        expected.saved_format("onnx")


def test_a_declared_observation_without_a_test_is_named():
    everything = set(expected.ALL.values())
    assert expected.check_producers(everything) == []
    one = expected.training("losses", "jit")
    assert expected.check_producers(everything - {one}) == [one.key]


def test_a_failed_session_fails_the_report(tmp_path, records):
    def failed(r):
        r["session"].update(exit_status=1, failed=3)

    result = _report(tmp_path, _broken(records, "torch", failed))
    assert result["problems"] == ["torch: the test session failed (pytest exit status 1, 3 failed)"]


def test_a_missing_backend_fails_the_report(tmp_path, records):
    result = _report(tmp_path, {b: r for b, r in records.items() if b != "tensorflow"})
    assert result["problems"][0] == (
        f"tensorflow: no observations ({tmp_path / 'observed-tensorflow.json'} is "
        "missing: its session did not run, or crashed before it ended)"
    )
    assert result["scope"]["tests-tensorflow"] == "not run"


def test_a_crashed_worker_fails_the_report(tmp_path, records):
    """A worker that crashed wrote no part: the report names it, and the observations it held are missing."""
    _write(tmp_path, records)
    (observed.parts_dir(tmp_path / "observed-jax.json") / "gw1.json").unlink()
    result = report.build(tmp_path)
    assert not result["ok"]
    assert result["problems"][0].startswith("jax: worker gw1's part of the record is missing")
    assert any(p.startswith("jax: ") and "expected observations missing" in p for p in result["problems"])


def test_a_subset_run_fails_the_report(tmp_path, records):
    def subset(r):
        r["session"].update(keyword="golden")
        for part in r["parts"].values():
            part.update(deselected=399, numeric=dict(list(part["numeric"].items())[:5]))

    result = _report(tmp_path, _broken(records, "jax", subset))
    assert "jax: the session ran a subset of the suite (-k 'golden', 399 tests deselected)" in result["problems"]
    assert any(p.startswith("jax: ") and "expected observations missing" in p for p in result["problems"])


def test_a_missing_observation_fails_the_report(tmp_path, records):
    key = expected.golden_gradient(golden.cases.by_id("rank2-float64"), "dx").key
    result = _report(tmp_path, _broken(records, "jax", _each_part(lambda p: p["numeric"].pop(key, None))))
    assert result["problems"] == [f"jax: 1 expected observations missing (e.g. {key})"]
    result = _report(tmp_path, _broken(records, "jax", lambda r: r["parts"]["gw0"]["errors"].popitem()))
    assert not result["ok"] and "expected observations missing" in result["problems"][0]


def test_a_known_gap_is_named_and_still_fails_the_report(tmp_path, records):
    """The oldest set's Keras cannot read the golden .keras files: its session records why those observations
    are not made. The report names the reason, counts them apart from the unexplained missing ones, and still
    cannot say PASS."""
    gap = expected.keras_file("torch").key
    lost = expected.golden_gradient(golden.cases.by_id("rank2-float64"), "dx").key
    reason = "Keras 3.13.1 cannot read a .keras file written by Keras 3.15.1"

    def known_gap(r):
        for part in r["parts"].values():
            part["numeric"].pop(gap, None)
            part["numeric"].pop(lost, None)
        r["parts"]["gw1"]["gaps"] = {gap: reason}

    result = _report(tmp_path, _broken(records, "jax", known_gap))
    assert not result["ok"]
    assert result["problems"] == [
        f"jax: 1 expected observations not made, a known gap its session recorded ({reason}): {gap}",
        f"jax: 1 expected observations missing (e.g. {lost})",
    ]


def test_an_undeclared_observation_fails_the_report(tmp_path, records):
    declared = expected.golden_output(golden.cases.by_id("rank2-float32"), "eager")
    undeclared = dataclasses.replace(declared, mode="traced")

    def extra(r):
        numeric = r["parts"]["gw0"]["numeric"]
        numeric[undeclared.key] = numeric.get(declared.key) or r["parts"]["gw1"]["numeric"][declared.key]

    result = _report(tmp_path, _broken(records, "torch", extra))
    assert result["problems"] == [f"torch: 1 observations the declaration does not know (e.g. {undeclared.key})"]


def test_a_wrong_dtype_fails_the_report(tmp_path, records):
    """A layer that computes in float32 gives float32 outputs for float64 cases, with values that may well
    be within the float64 tolerance of zero-error rows; the recorded dtype must be compared."""
    key = expected.golden_output(golden.cases.by_id("rank2-float64"), "eager").key

    def float32(part):
        if key in part["numeric"]:
            part["numeric"][key]["dtype"] = "float32"

    result = _report(tmp_path, _broken(records, "tensorflow", _each_part(float32)))
    assert result["problems"][0] == (
        f"tensorflow: 1 observations came out in the wrong dtype (e.g. {key}: float32, expected float64)"
    )


def test_different_layer_files_fail_the_report(tmp_path, records):
    def other(part):
        part["layer"] = {"path": "/elsewhere/hyperzzw.py", "sha256": "cd" * 32}

    result = _report(tmp_path, _broken(records, "torch", _each_part(other)))
    assert len(result["problems"]) == 1 and result["problems"][0].startswith("the backends tested different layer")


def test_a_value_out_of_tolerance_fails_the_report(tmp_path, records):
    key = expected.golden_output(golden.cases.by_id("rank2-float32"), "jit").key

    def drift(part):
        if key in part["numeric"]:
            entry = part["numeric"][key]
            entry["values"] = (np.asarray(entry["values"]) * (1 + 1e-5)).tolist()

    result = _report(tmp_path, _broken(records, "jax", _each_part(drift)))
    assert not result["ok"] and result["problems"][0].startswith("1 numeric rows out of tolerance")
    row = next(r for r in result["rows"] if r["key"] == key)
    assert row["backends"]["jax"]["err_over_tol"] > 1 >= row["backends"]["torch"]["err_over_tol"]


@pytest.mark.parametrize("shape", ["smaller", "broadcast-incompatible"])
def test_a_value_of_another_shape_fails_the_report(tmp_path, records, shape):
    """A mask recorded unbroadcast (or any value whose shape is not the reference's, on one backend or all)
    is a disagreement named in the verdict, never a traceback of the report."""
    case = next(c for c in cases.MASK_CASES if c.id == "x masked, one step, against a five-step context")
    keys = [expected.output_mask(case, mode).key for mode in expected.OUTPUT_MODES]

    def unbroadcast(part):
        for key in keys:
            if key in part["numeric"]:
                entry = part["numeric"][key]
                values = np.asarray(entry["values"]).reshape(entry["shape"])  # (2, 5): the output's steps
                values = values[:, :1] if shape == "smaller" else values[:, :3]  # x's one step; (2, 3)
                entry.update(shape=list(values.shape), values=values.ravel().tolist())

    for backends in (["torch"], list(records)):
        broken = copy.deepcopy(records)
        for backend_name in backends:
            broken = _broken(broken, backend_name, _each_part(unbroadcast))
        result = _report(tmp_path, broken)
        assert not result["ok"] and result["problems"][0].startswith("2 numeric rows out of tolerance"), backends


def test_a_differing_error_text_fails_the_report(tmp_path, records):
    def reworded(r):
        errors = r["parts"]["gw1"]["errors"]
        key = sorted(errors)[0]
        errors[key] = [errors[key][0], errors[key][1] + "!"]

    result = _report(tmp_path, _broken(records, "jax", reworded))
    assert len(result["problems"]) == 1 and "error checks differ" in result["problems"][0]


def test_no_record_at_all_fails(tmp_path):
    result = _report(tmp_path, {})
    assert not result["ok"] and len(result["problems"]) == 3


def test_underflow_rows_do_not_set_the_relative_headline(tmp_path, records):
    """A flushing backend returns 0 where the oracle has a subnormal result: that is reported in the
    `underflow` column, and the dtype's relative figure stays the normal-range one."""
    key = expected.golden_output(golden.cases.by_id("subnormal-float32"), "eager").key

    def flush(part):
        if key in part["numeric"]:
            values = np.asarray(part["numeric"][key]["values"])
            values[np.abs(values) < 2.0**-126] = 0.0
            part["numeric"][key]["values"] = values.tolist()

    result = _report(tmp_path, _broken(records, "jax", _each_part(flush)))
    s = result["summary_by_dtype"]["float32"]
    assert s["underflow_abs"] > 0 and s["max_rel"] < 1e-6


# --- who made a record ---------------------------------------------------------------------------------------


def test_a_record_filed_under_another_backend_fails_the_report(tmp_path, records):
    """observed-torch.json (and its parts) copied over observed-tensorflow.json: torch compared with itself
    must not pass."""
    misfiled = dict(records, tensorflow=copy.deepcopy(records["torch"]))
    result = _report(tmp_path, misfiled)
    assert result["problems"][0] == (
        f"{tmp_path / 'observed-tensorflow.json'} holds the record of a torch session, not of tensorflow"
    )


def test_parts_of_another_session_fail_the_report(tmp_path, records):
    """A part left from another run (or copied in) is not this session's."""

    def stale(part):
        part["run"] = "host:1:0"

    result = _report(tmp_path, _broken(records, "jax", lambda r: stale(r["parts"]["gw1"])))
    assert result["problems"][0].startswith(f"{observed.parts_dir(tmp_path / 'observed-jax.json') / 'gw1.json'} is not")


def test_records_of_one_session_under_two_backends_fail_the_report(tmp_path, records):
    """A torch record relabelled as tensorflow (backend fields edited to match): one run id, two backends."""
    relabelled = copy.deepcopy(records["torch"])
    relabelled["session"]["backend"] = "tensorflow"
    for part in relabelled["parts"].values():
        part["backend"] = "tensorflow"
        part["versions"] = {**part["versions"], "tensorflow": part["versions"].pop("torch")}
    result = _report(tmp_path, dict(records, tensorflow=relabelled))
    assert "the records of torch and tensorflow come from one session (run host:1001:1)" in result["problems"]


def test_byte_identical_records_fail_the_report(tmp_path, records):
    _write(tmp_path, records)
    parts = observed.parts_dir(tmp_path / "observed-torch.json")
    (parts / "gw1.json").write_bytes((parts / "gw0.json").read_bytes())
    result = report.build(tmp_path)
    assert any(
        p.startswith("byte-identical records: observed-torch.json/gw0, observed-torch.json/gw1")
        for p in result["problems"]
    )


# --- one version set at a time -------------------------------------------------------------------------------


def test_records_of_different_version_sets_fail_the_report(tmp_path, records):
    """One report covers one version set: an oldest-set jax record beside pinned torch and tensorflow records
    must not pass, even with every observation present and agreeing."""

    def oldest(r):
        r["session"]["version_set"] = "oldest"
        for part in r["parts"].values():
            part.update(version_set="oldest", versions={**part["versions"], "keras": "3.13.1"})

    result = _report(tmp_path, _broken(records, "jax", oldest))
    assert result["problems"] == [
        "jax: version set 'oldest' in its session record; this report is for 'pinned'",
        "jax: version set 'oldest' in its parts; this report is for 'pinned'",
        "the records come from different keras versions: jax 3.13.1, torch 3.15.1, tensorflow 3.15.1",
    ]


def test_a_record_with_another_numpy_fails_the_report(tmp_path, records):
    def numpy(part):
        part["versions"] = {**part["versions"], "numpy": "2.3.0"}

    result = _report(tmp_path, _broken(records, "torch", _each_part(numpy)))
    assert result["problems"] == [
        f"the records come from different numpy versions: jax {np.__version__}, torch 2.3.0, "
        f"tensorflow {np.__version__}"
    ]


def test_the_version_set_is_the_folders(tmp_path, records):
    """reports/nightly holds the nightly set: pinned records filed there are refused."""
    folder = tmp_path / "nightly"
    folder.mkdir()
    result = _report(folder, records)
    assert "jax: version set 'pinned' in its session record; this report is for 'nightly'" in result["problems"]


def test_a_nightly_record_whose_keras_is_the_release_fails_the_report(tmp_path, records):
    """In a venv holding keras-nightly, installing tensorflow-cpu pulls the `keras` release in beside it; a
    session that then imports the release is not a nightly session, whatever its set is called."""
    nightly = copy.deepcopy(records)
    for r in nightly.values():
        r["session"]["version_set"] = "nightly"
        for part in r["parts"].values():
            part.update(version_set="nightly", keras_distributions=["keras-nightly"])
    assert _report(tmp_path, nightly, version_set="nightly")["ok"]

    def both(part):
        part["keras_distributions"] = ["keras", "keras-nightly"]

    result = _report(tmp_path, _broken(nightly, "tensorflow", _each_part(both)), version_set="nightly")
    assert result["problems"] == [
        "tensorflow: its keras module came from ['keras', 'keras-nightly'], expected ['keras-nightly'] for version "
        "set 'nightly'"
    ]


def test_upstream_differences_are_listed(tmp_path, records):
    def downcast(r):
        r["parts"]["gw0"]["upstream"]["multiply/float64"] = "float32"

    result = _report(tmp_path, _broken(records, "torch", downcast))
    assert result["ok"]  # the canary test fails the session itself; the report lists what differs
    assert result["upstream_differences"] == [
        f"torch: keras.ops multiply/float64 gives float32 (keras 3.15.1); float64 in the pinned set (keras "
        f"{report.PINNED_KERAS})"
    ]
    assert "multiply/float64 gives float32" in report.markdown(result)


# --- scope ---------------------------------------------------------------------------------------------------


def _write_other_session(folder, name: str, backend: str, layer: dict | None = LAYER, **fields) -> None:
    """A traced or distributed session's record (`name`: "traced" or "distributed"): one worker, whose part
    names the layer file it tested (none written when `layer` is None)."""
    path = folder / f"session-{name}-{backend}.json"
    session = {"kind": "session", "backend": backend, "run": f"host:9:{name}", "workers": ["main"], "exit_status": 0}
    path.write_text(json.dumps({**session, **fields}))
    if layer is not None:
        observed.parts_dir(path).mkdir(exist_ok=True)
        part = {"kind": "part", "backend": backend, "run": session["run"], "worker": "main", "layer": dict(layer)}
        (observed.parts_dir(path) / "main.json").write_text(json.dumps(part))


def test_the_verdict_names_its_scope(tmp_path, records):
    """Traced and distributed sessions that recorded are in the scope with how they ended; the others are
    "not run", never a PASS; a failed one fails the report."""
    _write(tmp_path, records)
    _write_other_session(tmp_path, "traced", "jax")
    result = report.build(tmp_path)
    assert result["ok"] and result["scope"]["traced-jax"] == "passed"
    assert result["scope"]["distributed-torch"] == "not run"
    line = report.summary(result).splitlines()[-2]
    assert line.startswith("  scope: recorded: tests-jax, tests-torch, tests-tensorflow; passed: traced-jax; not run:")
    _write_other_session(tmp_path, "distributed", "torch", exit_status=1, failed=2)
    result = report.build(tmp_path)
    assert result["problems"] == ["distributed-torch: FAILED (pytest exit status 1, 2 failed)"]


def test_a_session_record_of_another_layer_file_is_not_in_the_scope(tmp_path, records):
    """A traced record left by an earlier run on another layer file (the layer changed, `nox` ran only the
    test sessions) says nothing about this layer: "not run on this layer", never passed; a record whose part
    is missing names no layer and fails the report."""
    _write(tmp_path, records)
    _write_other_session(tmp_path, "traced", "jax", layer=dict(LAYER, sha256="0" * 64))
    result = report.build(tmp_path)
    assert result["ok"] and result["scope"]["traced-jax"] == "not run on this layer"
    assert "passed:" not in report.summary(result)
    _write_other_session(tmp_path, "traced", "torch", layer=None)
    result = report.build(tmp_path)
    assert not result["ok"] and result["scope"]["traced-torch"].startswith("FAILED (its record names no one layer")


def _harness_records(layer_sha: str = LAYER["sha256"]) -> dict:
    """A complete, agreeing harness run (test_harness_report's records, made by hand), its subject's layer source
    the file of `layer_sha`, as `nox -s harness_export` leaves it."""
    records = test_harness_report._records()
    for record in records.values():
        for subject in record["subjects"].values():
            subject["sources"] = {"hyperzzw.layer.HyperZZWOperator": layer_sha}
    return records


def _write_harness_export(folder, harness_records: dict) -> None:
    target = folder / report.HARNESS_EXPORT
    target.mkdir(parents=True, exist_ok=True)
    for (backend, phase), made in harness_records.items():
        (target / f"{phase}-{backend}.json").write_text(json.dumps(made))


def test_the_exports_are_in_the_scope_as_the_harness_judges_them(tmp_path, records):
    """The exports (`nox -s harness_export`, the harness's records of hyperzzw's subjects): passed when the
    harness's own report passes on records of the layer file the test sessions tested; "not run on this layer"
    for records of another file; FAILED, and the report too, when the harness's report fails (a backend's
    record missing, a failing cell) or its records name more than one layer file."""
    _write(tmp_path, records)
    _write_harness_export(tmp_path, _harness_records())
    result = report.build(tmp_path)
    assert result["ok"] and result["scope"]["harness-export"] == "passed", result["problems"]
    assert "passed: harness-export" in report.summary(result)

    _write_harness_export(tmp_path, _harness_records("0" * 64))
    result = report.build(tmp_path)
    assert result["ok"] and result["scope"]["harness-export"] == "not run on this layer"

    harness_records = _harness_records()
    (tmp_path / report.HARNESS_EXPORT / "load-torch.json").unlink()
    del harness_records[("torch", "load")]
    _write_harness_export(tmp_path, harness_records)
    result = report.build(tmp_path)
    assert not result["ok"] and result["scope"]["harness-export"].startswith("FAILED (the harness's report: torch: no")
    assert result["problems"] == [f"harness-export: {result['scope']['harness-export']}"]

    harness_records = _harness_records()
    checks = harness_records[("jax", "record")]["subjects"]["dense"]["checks"]
    checks["forward"] = test_harness_report._numeric(test_harness_report.REFERENCE * 1.01, "float32")
    _write_harness_export(tmp_path, harness_records)
    result = report.build(tmp_path)
    assert not result["ok"] and "dense: forward on jax" in result["scope"]["harness-export"]

    harness_records = _harness_records()
    harness_records[("tensorflow", "load")]["subjects"]["dense"]["sources"] = {"hyperzzw.layer.X": "cd" * 32}
    _write_harness_export(tmp_path, harness_records)
    result = report.build(tmp_path)
    assert not result["ok"] and result["scope"]["harness-export"] == "FAILED (its records name 2 layer files, not one)"


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
