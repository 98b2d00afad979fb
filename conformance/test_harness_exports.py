"""The harness's `exports` check (`conformance/harness/checks/exports.py`) as the report judges it, on records made
by hand: an artifact against the model it was exported from and against the other backends, a format that cannot
be checked on a backend SKIP there with its reason, never PASS. No backend needed: run once, in `golden_check`.
The check's record phase runs in `nox -s harness_export` (the export runtimes' venv), whose report must say PASS."""

from __future__ import annotations

import numpy as np

from conformance.harness.declaration import BACKENDS
from conformance.test_harness_report import REFERENCE, _cell, _numeric, _raised, _records, _report

F32 = REFERENCE.astype(np.float32).astype(np.float64)
NOT_HERE = "not applicable: Keras does not export a one-Dense model to litert from jax here (ValueError: ...)"


def _with_exports(records, formats=("onnx", "litert"), off_on=None, off_by=0.0) -> dict:
    """Every backend exported `formats`, each artifact computing what the model did (`off_on`'s `off_by` more)."""
    for backend in BACKENDS:
        checks = records[(backend, "record")]["subjects"]["dense"]["checks"]
        checks["exports/reference"] = _numeric(F32, "float32")
        for fmt in formats:
            values = F32 * (1 + off_by) if backend == off_on else F32
            checks[f"exports/{fmt}"] = _numeric(values.astype(np.float32), "float32")
    return records


def _checks(records, backend):
    return records[(backend, "record")]["subjects"]["dense"]["checks"]


def test_artifacts_that_compute_what_their_model_did_pass_and_one_off_fails_on_its_backend_alone(tmp_path):
    assert _report(tmp_path, _with_exports(_records()))["ok"]
    # 1e-4 relative: float32 roundoff is 6e-8, the tolerance gamma(6) * max|reference| about 4e-7 * 2.5
    result = _report(tmp_path, _with_exports(_records(), off_on="torch", off_by=1e-4))
    assert not result["ok"]
    status, notes = _cell(result, "exports/onnx", "torch")
    assert status == "FAIL" and any("model before export" in n for n in notes), notes
    assert _cell(result, "exports/onnx", "jax")[0] == _cell(result, "exports/onnx", "tensorflow")[0] == "PASS"


def test_a_format_that_cannot_be_checked_on_a_backend_is_skip_there_and_judged_on_the_others(tmp_path):
    records = _with_exports(_records(), off_on="tensorflow", off_by=1e-4)
    _checks(records, "jax")["exports/litert"] = {"kind": "text", "value": NOT_HERE}
    result = _report(tmp_path, records)
    assert _cell(result, "exports/litert", "jax") == ["SKIP", [NOT_HERE]]
    assert _cell(result, "exports/litert", "tensorflow")[0] == "FAIL"  # judged against its model, and torch's
    assert _cell(result, "exports/litert", "torch")[0] == "PASS"
    # skipped on every backend but one: that one is still judged against its own model
    _checks(records, "torch")["exports/litert"] = {"kind": "text", "value": NOT_HERE}
    result = _report(tmp_path, records)
    assert _cell(result, "exports/litert", "tensorflow")[0] == "FAIL"
    records = _with_exports(_records())
    for backend in ("jax", "torch"):
        _checks(records, backend)["exports/litert"] = {"kind": "text", "value": NOT_HERE}
    result = _report(tmp_path, records)
    assert result["ok"] and _cell(result, "exports/litert", "tensorflow")[0] == "PASS"


def test_no_export_runtime_anywhere_is_one_skip_with_the_reason(tmp_path):
    records = _records()
    reason = "not applicable: no export runtime is installed here (onnxruntime, openvino, ai_edge_litert)"
    for backend in BACKENDS:
        _checks(records, backend)["exports"] = {"kind": "text", "value": reason}
    result = _report(tmp_path, records)
    assert result["ok"]
    assert all(_cell(result, "exports", b) == ["SKIP", [reason]] for b in BACKENDS)
    # installed for one backend only: that backend's artifacts are judged, the others SKIP (not missing)
    records = _with_exports(_records(), formats=("onnx",))
    for backend in ("jax", "torch"):
        checks = _checks(records, backend)
        del checks["exports/onnx"], checks["exports/reference"]
        checks["exports"] = {"kind": "text", "value": reason}
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]
    assert _cell(result, "exports/onnx", "jax") == ["SKIP", [reason]]
    assert _cell(result, "exports/onnx", "tensorflow")[0] == "PASS"


def test_an_artifact_that_raised_where_the_format_works_fails_there_alone(tmp_path):
    records = _with_exports(_records())
    _checks(records, "torch")["exports/onnx"] = _raised("RuntimeError", "Failed to export the model to ONNX")
    result = _report(tmp_path, records)
    status, notes = _cell(result, "exports/onnx", "torch")
    assert status == "FAIL" and "Failed to export the model to ONNX" in " ".join(notes)
    assert _cell(result, "exports/onnx", "jax")[0] == "PASS"
    # the model around the layer could not be made: the whole check fails where it raised
    records = _with_exports(_records())
    checks = _checks(records, "jax")
    for row in [r for r in checks if r.startswith("exports/")]:
        del checks[row]
    checks["exports"] = _raised("ValueError", "the model cannot be built")
    result = _report(tmp_path, records)
    assert _cell(result, "exports", "jax")[0] == "FAIL" and not result["ok"]
    for backend in BACKENDS:  # the same on every backend: it fails everywhere (no artifact was checked), not agrees
        checks = _checks(records, backend)
        for row in [r for r in checks if r.startswith("exports/")]:
            del checks[row]
        checks["exports"] = _raised("ValueError", "the model cannot be built")
    result = _report(tmp_path, records)
    assert all(_cell(result, "exports", b)[0] == "FAIL" for b in BACKENDS)


def test_a_declared_divergence_of_an_export_is_known_and_not_judged_where_exports_did_not_run(tmp_path):
    divergence = [["exports/litert", "tensorflow", "LiteRT cannot run this"]]
    records = _with_exports(_records())
    for key in records:
        records[key]["subjects"]["dense"]["meta"]["divergences"] = divergence
    _checks(records, "tensorflow")["exports/litert"] = _raised("RuntimeError", "failed to prepare")
    result = _report(tmp_path, records)
    assert result["ok"] and _cell(result, "exports/litert", "tensorflow")[0] == "KNOWN"
    records = _records()  # no runtime: the divergence's check did not run, and the declaration is not wrong for it
    for key in records:
        records[key]["subjects"]["dense"]["meta"]["divergences"] = divergence
        if key[1] == "record":
            _checks(records, key[0])["exports"] = {"kind": "text", "value": "not applicable: no export runtime"}
    assert _report(tmp_path, records)["ok"]
    for key in records:  # a divergence of a check that ran and matches nothing still fails
        records[key]["subjects"]["dense"]["meta"]["divergences"] = [["compiled/nothing", "torch", "?"]]
    assert not _report(tmp_path, records)["ok"]


def test_a_format_not_applicable_on_a_backend_covers_every_output_of_the_others(tmp_path):
    """A layer with two outputs records `exports/<format>.0` and `.1` where the format ran, and one
    `exports/<format>` text where it did not: SKIP there for both outputs, not missing."""
    records = _records()
    for backend in BACKENDS:
        checks = _checks(records, backend)
        for i in (0, 1):
            checks[f"exports/reference.{i}"] = _numeric(F32 * (i + 1), "float32")
            checks[f"exports/openvino.{i}"] = _numeric(F32 * (i + 1), "float32")
    jax = _checks(records, "jax")
    del jax["exports/openvino.0"], jax["exports/openvino.1"]
    jax["exports/openvino"] = {"kind": "text", "value": NOT_HERE}
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]
    assert _cell(result, "exports/openvino.1", "jax") == ["SKIP", [NOT_HERE]]
    assert _cell(result, "exports/openvino.1", "torch")[0] == "PASS"


def _with_any_batch(records, off_on=None, off_by=0.0) -> dict:
    """Every backend's onnx export with an unknown batch size, run on the inputs stacked twice."""
    stacked = np.concatenate([F32, F32[::-1]])
    for backend in BACKENDS:
        checks = _checks(records, backend)
        checks["exports/reference/any-batch"] = _numeric(stacked, "float32")
        values = stacked * (1 + off_by) if backend == off_on else stacked
        checks["exports/onnx/any-batch"] = _numeric(values.astype(np.float32), "float32")
    return records


def test_an_export_with_an_unknown_batch_is_held_to_its_own_model_run_on_the_stacked_inputs(tmp_path):
    records = _with_any_batch(_with_exports(_records(), formats=("onnx",)))
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]  # against the stacked reference: the declared one has half the rows
    result = _report(tmp_path, _with_any_batch(_with_exports(_records(), formats=("onnx",)), "jax", 1e-4))
    assert _cell(result, "exports/onnx/any-batch", "jax")[0] == "FAIL"
    assert _cell(result, "exports/onnx/any-batch", "torch")[0] == "PASS"
    assert _cell(result, "exports/onnx", "jax")[0] == "PASS"


def test_an_unknown_batch_export_skipped_with_its_format_is_said_once_and_inputs_of_other_batches_skip(tmp_path):
    records = _with_any_batch(_with_exports(_records(), formats=("onnx",)))
    jax = _checks(records, "jax")
    del jax["exports/onnx"], jax["exports/onnx/any-batch"]
    jax["exports/onnx"] = {"kind": "text", "value": NOT_HERE}
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]
    assert _cell(result, "exports/onnx", "jax") == ["SKIP", [NOT_HERE]]
    assert "jax" not in result["subjects"]["dense"]["cells"]["exports/onnx/any-batch"]  # not twice, not missing
    records = _with_exports(_records(), formats=("onnx",))
    reason = "not applicable: the inputs' batch sizes differ (1, 2): one unknown batch size cannot stand for them"
    for backend in BACKENDS:
        _checks(records, backend)["exports/any-batch"] = {"kind": "text", "value": reason}
    result = _report(tmp_path, records)
    assert result["ok"] and all(_cell(result, "exports/any-batch", b) == ["SKIP", [reason]] for b in BACKENDS)
    for backend in BACKENDS:  # a model with an unknown batch size that cannot be made fails, on every backend
        _checks(records, backend)["exports/any-batch"] = _raised("ValueError", "the batch size must be known")
    result = _report(tmp_path, records)
    assert all(_cell(result, "exports/any-batch", b)[0] == "FAIL" for b in BACKENDS)
    records = _with_any_batch(_with_exports(_records(), formats=("onnx",)))  # on one backend: there alone
    torch = _checks(records, "torch")
    del torch["exports/onnx/any-batch"], torch["exports/reference/any-batch"]
    torch["exports/any-batch"] = _raised("ValueError", "the batch size must be known")
    result = _report(tmp_path, records)
    cells = result["subjects"]["dense"]["cells"]["exports/any-batch"]
    assert cells["torch"][0] == "FAIL" and set(cells) == {"torch"}, cells
    assert "torch" not in result["subjects"]["dense"]["cells"]["exports/onnx/any-batch"]  # its cause says it
