"""The harness's report (`conformance.harness.compare`) on records made by hand: it says PASS only on complete,
agreeing records, and names the backend, the check and the numbers otherwise. No backend needed: run once, in
`golden_check`."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conformance.harness import compare, declaration, run, selftest
from conformance.harness.declaration import BACKENDS, POLICIES, SAME_ON_EVERY_BACKEND, Divergence, Input, Subject

META = {
    "has_oracle": False,
    "tolerance": {"reduction": 6, "ulps": 0.0, "reason": "Dense over 5 features, plus the bias"},
    "inputs": [{"shape": [3, 5], "dtype": "float32"}],
    "bad_inputs": {"rank-1": {"error": "ValueError", "message": "expected rank 2. Received: (5,)"}},
    "divergences": [],
    "skip": {},
}
REFERENCE = np.random.default_rng(0).standard_normal((3, 4))


def _numeric(values, dtype):
    values = np.asarray(values, np.float64)
    return {"kind": "numeric", "dtype": dtype, "shape": list(values.shape), "values": values.ravel().tolist()}


def _raised(type_: str, message: str, origin: str = "layer", where: str = "layer.py:1") -> dict:
    """A record's entry for a step that raised, with no Keras wrapper around the message."""
    return {
        "kind": "raised",
        "type": type_,
        "message": message,
        "own": message,
        "wrapper": "",
        "origin": origin,
        "where": where,
    }


def _checks(backend: str) -> dict:
    f32 = REFERENCE.astype(np.float32).astype(np.float64)
    checks = {
        "weights": {"kind": "text", "value": '[["kernel", [5, 4], "float32", true]]'},
        "forward": _numeric(f32, "float32"),
        "compiled": _numeric(f32, "float32"),
        "policies/float64": _numeric(REFERENCE, "float64"),
        "errors/rank-1": _raised("ValueError", "expected rank 2. Received: (5,)"),
    }
    for policy in POLICIES:
        if policy != "float64":
            compute = POLICIES[policy][0]
            carrier = {"float16": np.float16, "bfloat16": np.float32, "float32": np.float32}[compute]
            checks[f"policies/{policy}"] = _numeric(REFERENCE.astype(carrier).astype(np.float64), compute)
    return checks


def _records() -> dict:
    out = {}
    for backend in BACKENDS:
        for phase in compare.PHASES:
            checks = (
                _checks(backend)
                if phase == "record"
                else {"saved/jax": _numeric(REFERENCE.astype(np.float32), "float32")}
            )
            out[(backend, phase)] = {
                "format": "conformance.harness/2",
                "process": f"host:{BACKENDS.index(backend)}:{phase}",
                "selection": None,
                "backend": backend,
                "phase": phase,
                "run": "one-run",
                "declaration": {"path": "/x/subjects.py", "sha256": "ab" * 32},
                "versions": {"keras": "3.15.1", "numpy": "2.4.6"},
                "subjects": {"dense": {"checks": checks, "meta": copy.deepcopy(META), "seconds": 1.0}},
                "complete": True,
            }
    return out


def _report(tmp_path, records) -> dict:
    for (backend, phase), made in records.items():
        (tmp_path / f"{phase}-{backend}.json").write_text(json.dumps(made))
    result = compare.build(tmp_path)
    text = compare.render(result)
    assert text.splitlines()[-1] == f"RESULT: {'PASS' if result['ok'] else 'FAIL'}"
    return result


def _cell(result, check, backend):
    return result["subjects"]["dense"]["cells"][check][backend]


def test_complete_agreeing_records_pass(tmp_path):
    result = _report(tmp_path, _records())
    assert result["ok"], (result["problems"], result["failing"])


def test_one_backend_off_fails_that_backend_only_with_the_numbers(tmp_path):
    records = _records()
    drift = REFERENCE * (1 + 1e-9)  # float64 downcast to float32 on one backend looks like this, and worse
    records[("torch", "record")]["subjects"]["dense"]["checks"]["policies/float64"] = _numeric(
        drift.astype(np.float32), "float64"
    )
    result = _report(tmp_path, records)
    assert not result["ok"]
    status, notes = _cell(result, "policies/float64", "torch")
    assert status == "FAIL" and any("max |jax - torch|" in n and "err/tol" in n for n in notes), notes
    assert _cell(result, "policies/float64", "jax")[0] == _cell(result, "policies/float64", "tensorflow")[0] == "PASS"


@pytest.mark.parametrize("phase", compare.PHASES)
def test_a_missing_or_incomplete_record_fails(tmp_path, phase):
    records = _records()
    del records[("tensorflow", phase)]
    assert not _report(tmp_path, records)["ok"]
    records = _records()
    records[("tensorflow", phase)]["complete"] = False
    for stale in tmp_path.glob("*.json"):
        stale.unlink()
    result = _report(tmp_path, records)
    assert not result["ok"] and any("not a complete" in p for p in result["problems"])


def test_a_missing_observation_fails(tmp_path):
    records = _records()
    del records[("jax", "record")]["subjects"]["dense"]["checks"]["compiled"]
    result = _report(tmp_path, records)
    assert not result["ok"] and _cell(result, "compiled", "jax")[0] == "MISSING"


def test_a_check_that_raised_fails_with_the_exception(tmp_path):
    records = _records()
    records[("torch", "record")]["subjects"]["dense"]["checks"]["compiled"] = {
        **_checks("torch")["errors/rank-1"],
        "type": "torch._dynamo.exc.Unsupported",
        "own": "graph break",
        "origin": "backend",
    }
    result = _report(tmp_path, records)
    status, notes = _cell(result, "compiled", "torch")
    assert status == "FAIL" and "torch._dynamo.exc.Unsupported" in notes[0]


def test_a_wrong_dtype_fails(tmp_path):
    records = _records()
    entry = records[("jax", "record")]["subjects"]["dense"]["checks"]["policies/float64"]
    entry["dtype"] = "float32"
    result = _report(tmp_path, records)
    assert _cell(result, "policies/float64", "jax")[0] == "FAIL"


def test_an_error_raised_in_call_is_judged_by_the_layers_own_message(tmp_path):
    """Keras wraps an error raised inside `call()` (its name, the call's arguments printed as each backend prints
    tensors): the layer's own message is judged, exactly, and Keras's words are a note, never a FAIL."""
    records = _records()
    for backend, printed in (("jax", "jnp.ndarray(shape=(5,))"), ("torch", "torch.Tensor(shape=torch.Size([5]))")):
        error = records[(backend, "record")]["subjects"]["dense"]["checks"]["errors/rank-1"]
        error["wrapper"] = (
            f"Exception encountered when calling Dense.call(); Arguments received by Dense.call(): • inputs={printed}"
        )
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]
    assert result["subjects"]["dense"]["notes"]["errors"]["checks"] == ["errors/rank-1"]
    assert "the layer's own message is what is judged" in compare.render(result)
    same = copy.deepcopy(records)  # declared the same on every backend: the wrappers differ, the layer's text agrees
    for key in same:
        same[key]["subjects"]["dense"]["meta"]["bad_inputs"]["rank-1"]["message"] = SAME_ON_EVERY_BACKEND
    assert _report(tmp_path, same)["ok"]
    records[("torch", "record")]["subjects"]["dense"]["checks"]["errors/rank-1"]["own"] = "expected rank 2"
    result = _report(tmp_path, records)
    assert [b for b in BACKENDS if _cell(result, "errors/rank-1", b)[0] == "FAIL"] == ["torch"]
    same[("torch", "record")]["subjects"]["dense"]["checks"]["errors/rank-1"]["own"] = "expected rank 2"
    result = _report(tmp_path, same)
    assert [b for b in BACKENDS if _cell(result, "errors/rank-1", b)[0] == "FAIL"] == ["torch"]


def test_the_layers_own_exception_is_recorded_without_keras_s_wrapper():
    """`describe_exception` on the exception Keras re-raises from `call()` (its text and its `__context__`, as
    `keras.src.utils.traceback_utils` makes them): the layer's type and message, Keras's words apart."""
    own = "Expected the last axis to be 5. Received: shape=(3, 4)"

    def keras_reraise():
        try:
            raise ValueError(own)
        except ValueError:
            message = (
                f"Exception encountered when calling Checked.call().\n\n\x1b[1m{own}\x1b[0m\n\n"
                "Arguments received by Checked.call():\n  • x=torch.Tensor(shape=torch.Size([3, 4]), dtype=float32)"
            )
            new = RuntimeError(message)  # a layer's own type Keras cannot rebuild: RuntimeError carries it
            new._keras_call_info_injected = True
            raise new from None

    with pytest.raises(RuntimeError) as info:
        keras_reraise()
    described = run.describe_exception(info.value)
    assert (described["type"], described["own"], described["origin"]) == ("ValueError", own, "layer")
    assert described["wrapper"].startswith("Exception encountered when calling Checked.call();")
    assert "x=torch.Tensor" in described["wrapper"]
    try:
        raise ValueError("outer") from KeyError("the root cause")
    except ValueError as exc:
        assert run.describe_exception(exc)["causes"] == ["KeyError: 'the root cause'"]


def test_a_size_the_symbolic_call_loses_fails(tmp_path):
    """Every input size is known to `compute_output_spec`: a `None` where the eager output has a size is a size
    lost (the layer after it cannot build), on every output, not only the first."""
    records = _records()
    for key in records:
        if key[1] == "record":
            records[key]["subjects"]["dense"]["checks"]["symbolic"] = {"kind": "text", "value": '[[[3, 4], "float32"]]'}
    assert _report(tmp_path, records)["ok"]
    lost = copy.deepcopy(records)
    lost[("tensorflow", "record")]["subjects"]["dense"]["checks"]["symbolic"]["value"] = '[[[3, null], "float32"]]'
    result = _report(tmp_path, lost)
    status, notes = _cell(result, "symbolic", "tensorflow")
    assert status == "FAIL" and "size lost on axis 1" in notes[0], notes
    assert [b for b in BACKENDS if _cell(result, "symbolic", b)[0] == "FAIL"] == ["tensorflow"]
    two = copy.deepcopy(records)  # a layer of two outputs whose second spec loses its size
    for key in two:
        if key[1] == "record":
            checks = two[key]["subjects"]["dense"]["checks"]
            checks["forward.0"], checks["forward.1"] = checks.pop("forward"), copy.deepcopy(checks["compiled"])
            checks["compiled.0"], checks["compiled.1"] = checks.pop("compiled"), copy.deepcopy(checks["forward.0"])
            for policy in POLICIES:
                checks[f"policies/{policy}.0"] = checks.pop(f"policies/{policy}")
                checks[f"policies/{policy}.1"] = copy.deepcopy(checks[f"policies/{policy}.0"])
            checks["symbolic"]["value"] = '[[[3, 4], "float32"], [[3, null], "float32"]]'
    result = _report(tmp_path, two)
    assert all(_cell(result, "symbolic", b)[0] == "FAIL" for b in BACKENDS)
    assert "output 1: symbolic shape (3, None)" in _cell(result, "symbolic", "jax")[1][0]


def test_a_check_that_did_not_apply_is_skip_with_its_reason_never_pass(tmp_path):
    """A layer with no single float output is not trained: `training/float32` is SKIP with the reason, and the
    float64 step (never judged) has no row."""
    records = _records()
    reason = "not applicable: the layer has no single float output"
    for key in records:
        if key[1] == "record":
            checks = records[key]["subjects"]["dense"]["checks"]
            checks["training/float32"] = {"kind": "text", "value": reason}
            checks["training/float64"] = {"kind": "text", "value": reason}
    result = _report(tmp_path, records)
    assert result["ok"]
    assert all(_cell(result, "training/float32", b) == ["SKIP", [reason]] for b in BACKENDS)
    assert "training/float64" not in result["subjects"]["dense"]["cells"]
    records[("jax", "record")]["subjects"]["dense"]["checks"]["training/float32"] = _numeric([0.5], "float32")
    assert not _report(tmp_path, records)["ok"]  # trained on one backend only: no agreement
    del records[("jax", "record")]["subjects"]["dense"]["checks"]["training/float32"]
    for key in records:  # no bad inputs declared: the errors row says so
        records[key]["subjects"]["dense"]["meta"]["bad_inputs"] = {}
        records[key]["subjects"]["dense"]["checks"].pop("errors/rank-1", None)
    result = _report(tmp_path, records)
    assert (
        _cell(result, "errors", "torch")[0] == "SKIP"
        and "declares no bad inputs" in _cell(result, "errors", "torch")[1][0]
    )


def test_a_backend_that_matches_the_mask_oracle_is_not_blamed(tmp_path):
    """One backend returns no mask where the mask oracle and the other two have one: that backend alone fails;
    and where the oracle says none, the one backend that returns a mask alone fails."""
    want = np.random.default_rng(7).random((2, 4)) < 0.5
    records = _records()
    for key in records:
        if key[1] == "record":
            checks = records[key]["subjects"]["dense"]["checks"]
            checks["oracle-mask"], checks["mask"] = _numeric(want, "bool"), _numeric(want, "bool")
    records[("torch", "record")]["subjects"]["dense"]["checks"]["mask"] = {"kind": "text", "value": "none"}
    result = _report(tmp_path, records)
    assert [b for b in BACKENDS if _cell(result, "mask", b)[0] == "FAIL"] == ["torch"]
    for key in records:
        if key[1] == "record":
            checks = records[key]["subjects"]["dense"]["checks"]
            checks["oracle-mask"], checks["mask"] = {"kind": "text", "value": "none"}, {"kind": "text", "value": "none"}
    records[("jax", "record")]["subjects"]["dense"]["checks"]["mask"] = _numeric(want, "bool")
    for backend in ("torch", "tensorflow"):  # even when two backends share the wrong answer
        records[(backend, "record")]["subjects"]["dense"]["checks"]["mask"] = _numeric(want, "bool")
    result = _report(tmp_path, records)
    assert all(_cell(result, "mask", b)[0] == "FAIL" for b in BACKENDS)
    records[("jax", "record")]["subjects"]["dense"]["checks"]["mask"] = {"kind": "text", "value": "none"}
    result = _report(tmp_path, records)
    assert [b for b in BACKENDS if _cell(result, "mask", b)[0] == "FAIL"] == ["torch", "tensorflow"]


def test_records_of_another_run_or_another_layer_source_fail(tmp_path):
    """A CI matrix that merges artifacts of two runs, or a layer edited between two backends' runs, never
    passes: every record of one run carries the run's id, and each the layer's source hashes."""
    records = _records()
    records[("torch", "load")]["run"] = "another-run"
    result = _report(tmp_path, records)
    assert not result["ok"] and any("different runs" in p for p in result["problems"])
    records = _records()
    for key in records:
        records[key]["subjects"]["dense"]["sources"] = {"mylayers.Gated": "ab" * 32}
    assert _report(tmp_path, records)["ok"]
    records[("tensorflow", "record")]["subjects"]["dense"]["sources"] = {"mylayers.Gated": "cd" * 32}
    result = _report(tmp_path, records)
    assert not result["ok"] and any("source differs" in p for p in result["problems"])


def test_a_record_that_could_not_load_the_declaration_says_why(tmp_path):
    records = _records()
    records[("torch", "record")] = {
        "backend": "torch",
        "phase": "record",
        "error": "the declaration could not be loaded: ImportError: no module named mylayers",
    }
    result = _report(tmp_path, records)
    assert not result["ok"] and any("no module named mylayers" in p for p in result["problems"])


def test_each_failure_is_printed_whole_and_knock_ons_after_their_cause():
    long = "Einstein sum subscript 'i' does not contain the correct number of indices for operand 0. " * 4
    cells = {
        "forward": {"jax": ["FAIL", [f"raised ValueError: {long}"]]},
        "compiled": {"jax": ["FAIL", [f"raised ValueError: {long}"]]},
        "weights": {"jax": ["FAIL", ["raised TypeError: the root"]]},
    }
    lines = compare._details(cells)
    assert lines[0].startswith("  FAIL weights on jax") and long in lines[1]
    assert lines[2] == "  FAIL compiled on jax: the same error as forward on jax (above)"


def test_a_known_divergence_is_known_while_it_diverges_and_fails_when_it_stops(tmp_path):
    records = _records()
    for backend in BACKENDS:
        for phase in compare.PHASES:
            records[(backend, phase)]["subjects"]["dense"]["meta"]["divergences"] = [
                ["policies/float64", "torch", "keras-team/keras#23704"]
            ]
    agreeing = _report(tmp_path, records)
    assert not agreeing["ok"] and "agrees now" in _cell(agreeing, "policies/float64", "torch")[1][-1]
    records[("torch", "record")]["subjects"]["dense"]["checks"]["policies/float64"] = _numeric(
        (REFERENCE * (1 + 1e-9)).astype(np.float32), "float64"
    )
    diverging = _report(tmp_path, records)
    assert diverging["ok"], diverging["failing"]
    assert _cell(diverging, "policies/float64", "torch")[0] == "KNOWN"


def test_records_of_different_declarations_fail(tmp_path):
    records = _records()
    records[("jax", "load")]["declaration"]["sha256"] = "cd" * 32
    result = _report(tmp_path, records)
    assert not result["ok"] and any("different declaration files" in p for p in result["problems"])


def test_processes_that_drew_different_arguments_fail(tmp_path):
    """Each backend draws a subject's arguments in its own process: draws that differ (another hypothesis version
    in one venv, say) make the comparison meaningless, and the report says so."""
    records = _records()
    for key in records:
        records[key]["subjects"]["dense"]["meta"]["args"] = {"units": "4"}
    assert _report(tmp_path, records)["ok"]
    records[("torch", "record")]["subjects"]["dense"]["meta"]["args"] = {"units": "5"}
    result = _report(tmp_path, records)
    assert not result["ok"]
    assert any(
        "declared it differently (args)" in p and "torch record: {'units': '5'}" in p for p in result["problems"]
    )


def test_drawn_arguments_expand_into_one_subject_per_draw_the_same_in_every_process():
    """`args` as a hypothesis strategy: `examples` distinct draws, each a subject with its inputs and tolerance
    resolved from its arguments, and the same draws in a fresh process (each backend draws in its own)."""
    code = """
import json
import os
from hypothesis import strategies as st
from conformance.harness import Input, Subject, Tolerance
subject = Subject(
    "dense",
    layer="keras.layers:Dense",
    args=st.fixed_dictionaries({"units": st.integers(1, 8), "use_bias": st.booleans()}),
    examples=4,
    inputs=lambda args: Input((3, args["units"] + 1)),
    tolerance=lambda args: Tolerance(args["units"] + 2, "units + 1 products, plus the bias"),
)
print(json.dumps([[s.name, s.args, list(s.inputs.shape), s.tolerance.reduction] for s in subject.expand()]))
"""
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    names = [name for name, *_ in runs[0]]
    assert names == ["dense.0", "dense.1", "dense.2", "dense.3"]
    assert len({json.dumps(args, sort_keys=True) for _, args, _, _ in runs[0]}) == 4
    for _, args, shape, reduction in runs[0]:
        assert shape == [3, args["units"] + 1] and reduction == args["units"] + 2


def test_a_subject_with_fixed_arguments_is_itself():
    subject = Subject("dense", layer="keras.layers:Dense", args={"units": 2}, inputs=Input((3, 5)))
    assert subject.expand() == [subject]
    with pytest.raises(ValueError, match="examples must be an integer >= 1. Received: 0"):
        Subject("dense", layer="keras.layers:Dense", inputs=Input((3, 5)), examples=0)


def _with_unknown_sizes(records, grown_on_torch=None):
    """Every backend traced with unknown sizes: the declared sizes' run as the eager one, the grown sizes' run
    and its eager reference (`grown_on_torch` replaces torch's grown run)."""
    grown = np.random.default_rng(7).standard_normal((4, 4)).astype(np.float32)
    for backend in BACKENDS:
        checks = records[(backend, "record")]["subjects"]["dense"]["checks"]
        checks["unknown-sizes/declared"] = checks["forward"]
        checks["unknown-sizes/eager-grown"] = _numeric(grown, "float32")
        checks["unknown-sizes/grown"] = _numeric(grown, "float32")
    if grown_on_torch is not None:
        records[("torch", "record")]["subjects"]["dense"]["checks"]["unknown-sizes/grown"] = grown_on_torch
    return records


def test_a_trace_with_unknown_sizes_wrong_at_other_sizes_fails_on_that_backend(tmp_path):
    """Right at the sizes it was traced with, wrong at others (a size taken as a constant while tracing): the
    grown run against its own eager run at those sizes names the backend."""
    assert _report(tmp_path, _with_unknown_sizes(_records()))["ok"]
    stale = np.random.default_rng(7).standard_normal((4, 4)).astype(np.float32)
    stale[3] = 0.0  # a row the program never computed
    result = _report(tmp_path, _with_unknown_sizes(_records(), _numeric(stale, "float32")))
    status, notes = _cell(result, "unknown-sizes/grown", "torch")
    assert status == "FAIL" and any("max |torch - torch's eager call at those sizes|" in n for n in notes), notes
    assert _cell(result, "unknown-sizes/grown", "jax")[0] == _cell(result, "unknown-sizes/grown", "tensorflow")[0]
    assert _cell(result, "unknown-sizes/grown", "jax")[0] == "PASS"


def test_a_step_that_raised_on_one_backend_fails_there_alone_with_its_exception(tmp_path):
    """A backend that cannot trace the layer with unknown sizes: its `unknown-sizes` row fails with the
    exception; the rows that step would have recorded are not reported missing besides; the others pass."""
    records = _with_unknown_sizes(_records())
    checks = records[("tensorflow", "record")]["subjects"]["dense"]["checks"]
    for name in ("unknown-sizes/declared", "unknown-sizes/eager-grown", "unknown-sizes/grown"):
        del checks[name]
    checks["unknown-sizes"] = _raised(
        "UnimplementedError", "Broadcast between [2,1,2] and [1,2,1] is not supported yet.", "backend", "ops.py:1"
    )
    result = _report(tmp_path, records)
    assert not result["ok"]
    status, notes = _cell(result, "unknown-sizes", "tensorflow")
    assert status == "FAIL" and any("UnimplementedError" in n for n in notes), notes
    assert _cell(result, "unknown-sizes", "jax")[0] == _cell(result, "unknown-sizes", "torch")[0] == "PASS"
    assert result["failing"] == ["dense: unknown-sizes on tensorflow"]


def test_an_oracle_that_raised_fails_the_subject(tmp_path):
    """A declared oracle that raises leaves the outputs without their reference: never a pass."""
    records = _records()
    for key in records:
        records[key]["subjects"]["dense"]["meta"]["has_oracle"] = True
        if key[1] == "record":
            records[key]["subjects"]["dense"]["checks"]["oracle"] = _raised(
                "KeyError", "'bias'", where="my_subjects.py:3"
            )
    result = _report(tmp_path, records)
    assert not result["ok"]
    for backend in BACKENDS:
        status, notes = _cell(result, "oracle", backend)
        assert status == "FAIL" and notes == ["the oracle: raised KeyError: 'bias'"], notes


def test_no_record_at_all_fails(tmp_path):
    result = compare.build(tmp_path)
    assert not result["ok"] and compare.render(result).endswith("RESULT: FAIL")


def test_a_backend_within_tolerance_of_the_oracle_is_not_blamed_by_the_others(tmp_path):
    """jax and torch off the oracle (and off each other), tensorflow on it: jax and torch fail, tensorflow passes,
    although it disagrees with both (without the oracle, nobody could be blamed but all three)."""
    records = _records()
    for backend, factor in (("jax", 1 + 1e-9), ("torch", 1 - 1e-9)):
        checks = records[(backend, "record")]["subjects"]["dense"]["checks"]
        checks["policies/float64"] = _numeric((REFERENCE * factor).astype(np.float32), "float64")
    for key in records:
        records[key]["subjects"]["dense"]["meta"]["has_oracle"] = True
        records[key]["subjects"]["dense"]["checks"]["oracle"] = _numeric(REFERENCE, "float64")
    result = _report(tmp_path, records)
    assert _cell(result, "policies/float64", "tensorflow")[0] == "PASS"
    assert _cell(result, "policies/float64", "jax")[0] == _cell(result, "policies/float64", "torch")[0] == "FAIL"
    assert any("the oracle" in n for n in _cell(result, "policies/float64", "jax")[1])


def test_a_gradient_zero_by_symmetry_is_scaled_by_the_subjects_gradients(tmp_path):
    """A gradient that is 0 in exact arithmetic comes out as roundoff noise, different on each backend; its
    tolerance is scaled by the subject's largest gradient, not by its own noise."""
    records = _records()
    rng = np.random.default_rng(5)
    big = rng.standard_normal((5, 4))
    for i, backend in enumerate(BACKENDS):
        checks = records[(backend, "record")]["subjects"]["dense"]["checks"]
        noise = rng.standard_normal(4) * 1e-9  # float32 roundoff of a cancelling sum of terms of size ~1
        checks["gradients/kernel"] = _numeric(big.astype(np.float32), "float32")
        checks["gradients-float64/kernel"] = _numeric(big, "float64")
        checks["gradients/bias"] = _numeric((noise * (i + 1)).astype(np.float32), "float32")
        checks["gradients-float64/bias"] = _numeric(noise * 1e-8, "float64")
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]
    # and a real error in it is still caught: 1e-3 of the subject's gradients
    torch_checks = records[("torch", "record")]["subjects"]["dense"]["checks"]
    torch_checks["gradients/bias"] = _numeric(np.full(4, 1e-3), "float32")
    broken = _report(tmp_path, records)
    assert _cell(broken, "gradients/bias", "torch")[0] == "FAIL"


def test_gradients_are_judged_against_the_gradient_oracle_in_float32_and_float64(tmp_path):
    """With a gradient oracle the float64 gradients are judged too: a float64 gradient computed in float32 on
    one backend (which its own float64 run could never show) fails there, with the oracle's numbers; a gradient
    the oracle lacks, or one it gives that the layer has no such, fails on every backend."""
    exact = np.random.default_rng(6).standard_normal((5, 4))
    records = _records()
    for key in records:
        subject = records[key]["subjects"]["dense"]
        subject["meta"]["has_gradient_oracle"] = True
        if key[1] == "record":
            subject["checks"]["oracle-gradients/kernel"] = _numeric(exact, "float64")
            subject["checks"]["gradients/kernel"] = _numeric(exact.astype(np.float32), "float32")
            subject["checks"]["gradients-float64/kernel"] = _numeric(exact, "float64")
    result = _report(tmp_path, records)
    assert result["ok"], result["failing"]
    assert _cell(result, "gradients-float64/kernel", "jax")[0] == "PASS"

    downcast = copy.deepcopy(records)
    torch_checks = downcast[("torch", "record")]["subjects"]["dense"]["checks"]
    torch_checks["gradients-float64/kernel"] = _numeric(exact.astype(np.float32), "float64")
    result = _report(tmp_path, downcast)
    status, notes = _cell(result, "gradients-float64/kernel", "torch")
    assert status == "FAIL" and any("the oracle" in n and "float64" in n for n in notes), notes
    assert _cell(result, "gradients-float64/kernel", "jax")[0] == "PASS"
    assert _cell(result, "gradients-float64/kernel", "tensorflow")[0] == "PASS"

    lacking = copy.deepcopy(records)
    for backend in BACKENDS:
        checks = lacking[(backend, "record")]["subjects"]["dense"]["checks"]
        checks["gradients/bias"] = _numeric(np.ones(4), "float32")
        checks["gradients-float64/bias"] = _numeric(np.ones(4), "float64")
        checks["oracle-gradients/beta"] = _numeric(np.ones(4), "float64")
    result = _report(tmp_path, lacking)
    for backend in BACKENDS:
        assert any("no gradient for 'bias'" in n for n in _cell(result, "gradients/bias", backend)[1])
        assert any("the layer has no such gradient" in n for n in _cell(result, "gradients/beta", backend)[1])
    assert not result["ok"]


def test_the_mask_is_judged_against_the_mask_oracle(tmp_path):
    """The output mask must be the mask oracle's, shape included: an unbroadcast mask, no mask, or the input
    masks handed back as a list fail; a mask the same on every backend is not enough."""
    want = np.random.default_rng(7).random((2, 4)) < 0.5
    records = _records()
    for key in records:
        if key[1] == "record":
            checks = records[key]["subjects"]["dense"]["checks"]
            checks["oracle-mask"] = _numeric(want, "bool")
            checks["mask"] = _numeric(want, "bool")
    assert _report(tmp_path, records)["ok"]
    for broken_entry in (
        {"mask": _numeric(want[:, :1], "bool")},  # x's own one-step mask, not broadcast
        {"mask": {"kind": "text", "value": "none"}},
    ):
        broken = copy.deepcopy(records)
        for backend in BACKENDS:  # the same on every backend: only the oracle can tell
            broken[(backend, "record")]["subjects"]["dense"]["checks"].update(copy.deepcopy(broken_entry))
        result = _report(tmp_path, broken)
        assert all(_cell(result, "mask", b)[0] == "FAIL" for b in BACKENDS), broken_entry
    listed = copy.deepcopy(records)
    checks = listed[("jax", "record")]["subjects"]["dense"]["checks"]
    del checks["mask"]
    checks["mask.0"], checks["mask.1"] = _numeric(want[:, :1], "bool"), _numeric(want, "bool")
    result = _report(tmp_path, listed)
    assert _cell(result, "mask.0", "jax")[0] == "FAIL" and "a list of masks" in _cell(result, "mask.0", "jax")[1][0]


def test_a_value_on_one_backend_and_none_on_another_fails(tmp_path):
    """A mask on one backend where the others return none, or a saved file another backend never wrote, is no
    agreement: text where a value is expected never passes by itself."""
    records = _records()
    for backend in BACKENDS:
        records[(backend, "record")]["subjects"]["dense"]["checks"]["mask"] = {"kind": "text", "value": "none"}
    assert _report(tmp_path, records)["ok"]
    records[("torch", "record")]["subjects"]["dense"]["checks"]["mask"] = _numeric(np.ones((3,), bool), "bool")
    result = _report(tmp_path, records)
    assert not result["ok"] and _cell(result, "mask", "torch")[0] == "FAIL"
    records = _records()
    records[("jax", "load")]["subjects"]["dense"]["checks"]["saved/jax"] = {
        "kind": "text",
        "value": "missing: jax saved no file",
    }
    assert _cell(_report(tmp_path, records), "saved/jax", "jax")[0] == "FAIL"


def test_a_declaration_that_cannot_run_is_told_before_any_backend_starts(tmp_path):
    """A missing file, a file with no subject, a layer instance for a class, a factory that cannot take `dtype=`:
    each told in one sentence that says what to write, and the harness exits 2 before starting a backend."""
    with pytest.raises(declaration.DeclarationError, match="no declaration file at"):
        declaration.load(tmp_path / "missing.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(declaration.DeclarationError, match="defines no Subject: add `SUBJECTS = "):
        declaration.load(empty)

    class Instance:  # what `keras.layers.Dense(3)` looks like to the declaration
        built = False

        def get_config(self):
            return {}

        def __call__(self, *args):
            return args

    with pytest.raises(ValueError, match="not a layer instance.*Write layer=Instance, args="):
        Subject("s", layer=Instance(), inputs=Input((2, 3)))

    class Made:  # a stand-in for a layer: what check_constructible asks of one
        weights = []

        def compute_output_spec(self, *args):
            return args

    with pytest.raises(ValueError, match=r"does not take `dtype=`.*lambda \*\*kwargs"):
        declaration.check_constructible(Subject("s", layer=lambda: Made(), inputs=Input((2, 3))))
    declaration.check_constructible(Subject("s", layer=lambda **kwargs: Made(), inputs=Input((2, 3))))
    with pytest.raises(ValueError, match="unknown check 'polices/float64'"):
        Subject("s", layer=Made, inputs=Input((2, 3)), divergences=[Divergence("polices/float64", "torch", "typo")])
    started = subprocess.run(
        [sys.executable, "-m", "conformance.harness", str(tmp_path / "missing.py"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert started.returncode == 2 and "no declaration file at" in started.stderr
    assert not (tmp_path / "out").exists()


def test_a_backend_without_a_mask_where_the_others_agree_on_one_is_blamed_alone(tmp_path):
    """No mask oracle: one backend returns none, the other two the same mask: that backend, by majority."""
    want = np.random.default_rng(7).random((2, 4)) < 0.5
    records = _records()
    for key in records:
        if key[1] == "record":
            records[key]["subjects"]["dense"]["checks"]["mask"] = _numeric(want, "bool")
    records[("tensorflow", "record")]["subjects"]["dense"]["checks"]["mask"] = {"kind": "text", "value": "none"}
    result = _report(tmp_path, records)
    assert [b for b in BACKENDS if _cell(result, "mask", b)[0] == "FAIL"] == ["tensorflow"]
    assert "by majority" in _cell(result, "mask", "tensorflow")[1][0]


def test_the_self_test_plants_one_subject_per_defect_and_judges_where_the_report_failed():
    """`selftest.planted` makes a baseline and one subject per defect, each on one backend and running only the
    checks it shows in; `selftest.evaluate` calls a defect caught only when its check fails on that backend and
    nowhere else, and says why when it is not."""

    class Layer:  # a stand-in: planting wraps the class, it never calls it here
        pass

    subject = Subject("s", layer=Layer, inputs=Input((2, 3)), skip={"saved": "not saved"})
    planted = selftest.planted([subject])
    names = [s.name for s in planted]
    assert names[0] == "s--baseline" and len(names) == 1 + len(selftest.DEFECTS)
    assert {name.split("--")[2] for name in names[1:]} == set(BACKENDS)  # planted on every backend in turn
    mask = next(s for s in planted if s.name.startswith("s--mask-dropped--"))
    assert (
        "mask" not in mask.skip and mask.skip["policies"].startswith("self-test") and mask.skip["saved"] == "not saved"
    )

    def cells(**failing):
        return {
            check: {b: ["FAIL" if b in failing.get(check, ()) else "PASS", []] for b in BACKENDS}
            for check in ("forward", "mask")
        }

    meta = {"skip": {}, "bad_inputs": {}}
    result = {
        "subjects": {
            "s--baseline": {"cells": cells(), "meta": meta},
            "s--output-off--torch": {"cells": cells(forward=["torch"]), "meta": meta},
            "s--mask-dropped--jax": {"cells": cells(mask=["jax", "torch"]), "meta": meta},
            "s--error-text--jax": {"cells": cells(), "meta": meta},
            "s--lost-size--tensorflow": {"cells": cells(), "meta": meta},
        }
    }
    records = {"tensorflow": {"record": {"subjects": {"s--lost-size--tensorflow": {"planted_fired": ["lost-size"]}}}}}
    verdicts = selftest.evaluate(result, records)["s"]
    assert verdicts["output-off"]["verdict"] == "caught"
    assert verdicts["mask-dropped"]["verdict"] == "MISFILED" and "mask on torch" in verdicts["mask-dropped"]["why"]
    assert verdicts["error-text"] == {
        **verdicts["error-text"],
        "verdict": "not caught",
        "why": "the subject declares no bad inputs",
    }
    assert verdicts["lost-size"]["verdict"] == "MISSED"  # it took effect, and the report saw nothing
    assert selftest.render({"s": verdicts}).endswith("SELF-TEST: FAIL")


def test_an_output_in_the_wrong_dtype_blames_that_backend_alone(tmp_path):
    """torch returns float32 under the float16 policy (its values float16's): torch fails on its dtype, and the
    backends that agree with it to float16's precision are not blamed for the rounding its dtype lacks."""
    records = _records()
    entry = records[("torch", "record")]["subjects"]["dense"]["checks"]["policies/float16"]
    entry["dtype"] = "float32"
    tensorflow = records[("tensorflow", "record")]["subjects"]["dense"]["checks"]["policies/float16"]
    tensorflow["values"] = [v * (1 + 2.0**-11) for v in tensorflow["values"]]  # a rounding apart
    result = _report(tmp_path, records)
    assert [b for b in BACKENDS if _cell(result, "policies/float16", b)[0] == "FAIL"] == ["torch"]


def test_a_layer_declared_in_the_declaration_file_has_one_name_in_every_process(tmp_path):
    """The records name a layer's classes by module: the declaration file's module must not be named from
    Python's per-process salted hash, or every backend's process names the same class differently."""
    path = tmp_path / "my_subjects.py"
    path.write_text(
        "from conformance.harness import Input, Subject\n"
        "class Mine:\n    pass\n"
        "SUBJECTS = [Subject('mine', layer=Mine, inputs=Input((2, 3)))]\n"
    )
    script = f"from conformance.harness import declaration; print(declaration.load({str(path)!r})[0].layer.__module__)"
    names = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2")
    }
    assert len(names) == 1 and names.pop().startswith("_conformance_subjects_")


def test_every_check_is_one_unit_that_owns_its_rows():
    """Each check module observes and judges its own rows: a row head claimed by two checks would be judged by
    whichever registered last; a check without `observe` or `judge` would record or judge nothing of its own."""
    from conformance.harness import checks

    heads = [row for check in checks.CHECKS for row in check.ROWS]
    assert len(heads) == len(set(heads)), heads
    for check in checks.CHECKS:
        assert check.ROWS[0] == check.NAME, check.__name__
        assert callable(check.observe) and callable(check.judge), check.__name__
        assert (check.__doc__ or "").startswith(f"{check.NAME}: "), f"{check.__name__}: its docstring is its rule"
        for row in (check.NAME, f"{check.NAME}/x", f"{check.NAME}.1"):
            assert checks.owner(row) is check, row
    assert declaration.CHECKS == checks.NAMES
    # a name the declaration accepts in skip= is one the record phase skips, and the report lists it in order
    Subject("s", layer=lambda **kw: None, inputs=Input((2, 3)), skip=dict.fromkeys(checks.NAMES, "reason"))
    assert sorted(checks.NAMES, key=checks.order) == list(checks.NAMES)


def _with_fixture(records, off_on=None, off_by=0.0):
    """The records with a stored fixture's rows: every backend's `fixtures` output the stored one (float32), but
    `off_on`'s, `off_by` away."""
    stored = _numeric(REFERENCE.astype(np.float32), "float32")
    for backend in BACKENDS:
        checks = records[(backend, "record")]["subjects"]["dense"]["checks"]
        checks["fixtures-stored"] = stored
        checks["fixtures"] = _numeric(REFERENCE.astype(np.float32) + (off_by if backend == off_on else 0.0), "float32")
    return records


def test_the_stored_fixture_passes_and_a_backend_off_it_fails_there_alone(tmp_path):
    result = _report(tmp_path, _with_fixture(_records()))
    assert result["ok"], result["failing"]
    assert "fixtures-stored" not in result["subjects"]["dense"]["cells"]  # a reference, never a row of its own
    off = _report(tmp_path, _with_fixture(_records(), off_on="torch", off_by=1e-3))
    assert _cell(off, "fixtures", "torch")[0] == "FAIL"
    assert "the stored fixture" in _cell(off, "fixtures", "torch")[1][0]
    assert [_cell(off, "fixtures", b)[0] for b in ("jax", "tensorflow")] == ["PASS", "PASS"]


def test_a_stale_fixture_fails_and_a_missing_one_is_skip(tmp_path):
    records = _records()
    for backend in BACKENDS:
        records[(backend, "record")]["subjects"]["dense"]["checks"]["fixtures"] = {
            "kind": "text",
            "value": "stale: f.json: the arguments are {'units': '4'}, the fixture's {'units': '3'}",
        }
    result = _report(tmp_path, records)
    assert [_cell(result, "fixtures", b)[0] for b in BACKENDS] == ["FAIL"] * 3
    assert "the arguments are" in _cell(result, "fixtures", "jax")[1][0]
    for backend in BACKENDS:
        records[(backend, "record")]["subjects"]["dense"]["checks"]["fixtures"]["value"] = "not applicable: no f.json"
    result = _report(tmp_path, records)
    assert result["ok"] and [_cell(result, "fixtures", b)[0] for b in BACKENDS] == ["SKIP"] * 3


def _candidates(outputs: dict, source: str = "float64 run") -> dict:
    """The `fixtures` phase's records: per backend, a candidate with these float64 outputs."""
    records = {}
    for backend in BACKENDS:
        value = outputs[backend]
        candidate = {
            "source": source,
            "args": {"units": "4"},
            "inputs": [{"dtype": "float32", "shape": [3, 5], "values": [0.5] * 15}],
            "masks": [None],
            "weights": {"kernel": {"shape": [5, 4], "values": [0.25] * 20}},
            "outputs": [{"shape": list(np.shape(value)), "values": np.ravel(value).tolist()}],
        }
        entry = value if isinstance(value, dict) else {"kind": "text", "value": json.dumps(candidate)}
        records[backend] = {
            "subjects": {"dense": {"checks": {"fixtures/candidate": entry}, "meta": copy.deepcopy(META)}}
        }
    return records


def test_fixtures_are_written_once_and_rewritten_only_when_the_numbers_move(tmp_path):
    from conformance.harness.checks import fixtures

    path = tmp_path / "dense.json"
    agreed = dict.fromkeys(BACKENDS, REFERENCE)
    lines, ok = fixtures.write(_candidates(agreed), tmp_path)
    assert ok and lines[0].split()[0] == "new", lines
    written = path.read_bytes()
    assert (
        json.loads(written)["outputs"][0]["values"] == REFERENCE.astype(np.float32).astype(np.float64).ravel().tolist()
    )
    # the last bits of a float64 run (another machine's BLAS): nothing rewritten, the same bytes
    lines, ok = fixtures.write(_candidates(dict.fromkeys(BACKENDS, REFERENCE * (1 + 1e-15))), tmp_path)
    assert ok and lines[0].split()[0] == "unchanged" and path.read_bytes() == written, lines
    # one backend's float64 run off: the median is the other two's, nothing rewritten
    lines, ok = fixtures.write(_candidates({**agreed, "torch": REFERENCE + 1.0}), tmp_path)
    assert ok and lines[0].split()[0] == "unchanged" and path.read_bytes() == written, lines
    # the numbers moved (a new Keras, say): said, with the numbers, and rewritten
    lines, ok = fixtures.write(_candidates(dict.fromkeys(BACKENDS, REFERENCE + 1e-3)), tmp_path)
    assert ok and lines[0].split()[0] == "CHANGED" and "max |new - stored| = 0.001" in lines[0], lines
    assert path.read_bytes() != written


def test_no_fixture_is_written_from_a_backend_that_raised(tmp_path):
    from conformance.harness.checks import fixtures

    outputs = {**dict.fromkeys(BACKENDS, REFERENCE), "tensorflow": _raised("ValueError", "no float64 here")}
    lines, ok = fixtures.write(_candidates(outputs), tmp_path)
    assert not ok and "FAILED" in lines[0] and "no float64 here" in lines[0], lines
    assert not (tmp_path / "dense.json").exists()


def test_backends_that_read_different_fixtures_fail_and_an_unreadable_one_is_rewritten(tmp_path):
    """Each backend reads the stored file: a file edited while they ran cannot pass; a file that is not JSON is
    rewritten, saying so."""
    from conformance.harness.checks import fixtures

    records = _with_fixture(_records())
    edited = _numeric(REFERENCE.astype(np.float32) + 1.0, "float32")
    records[("torch", "record")]["subjects"]["dense"]["checks"]["fixtures-stored"] = edited
    result = _report(tmp_path, records)
    assert [_cell(result, "fixtures", b)[0] for b in BACKENDS] == ["FAIL"] * 3
    assert "different stored fixtures" in _cell(result, "fixtures", "jax")[1][0]
    folder = tmp_path / "fixtures"
    folder.mkdir()
    (folder / "dense.json").write_text("{not json")
    lines, ok = fixtures.write(_candidates(dict.fromkeys(BACKENDS, REFERENCE)), folder)
    assert ok and "unreadable" in lines[0] and json.loads((folder / "dense.json").read_text())["subject"] == "dense"


def test_every_harness_package_is_installed():
    """A plain `pip install` (not editable) installs the packages pyproject.toml lists, no others: every folder
    of the harness must be there, or an installed harness cannot import its checks."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    inits = (root / "conformance" / "harness").rglob("__init__.py")
    folders = {".".join(init.parent.relative_to(root).parts) for init in inits}
    assert folders <= listed, f"not in pyproject.toml's packages: {sorted(folders - listed)}"


def test_a_record_copied_under_another_backend_fails(tmp_path):
    """torch's record copied over tensorflow's, its backend and versions edited to match: one process, two names."""
    records = _records()
    relabelled = copy.deepcopy(records[("torch", "record")])
    relabelled["backend"] = "tensorflow"
    records[("tensorflow", "record")] = relabelled
    result = _report(tmp_path, records)
    assert not result["ok"]
    assert "the records record-torch.json, record-tensorflow.json come from one process" in " ".join(
        result["problems"]
    ), result["problems"]


def test_a_record_of_another_format_fails(tmp_path):
    records = _records()
    records[("jax", "load")]["format"] = "conformance.harness/1"
    result = _report(tmp_path, records)
    assert not result["ok"] and any("load-jax.json is a record of format" in p for p in result["problems"])


def test_a_run_of_some_subjects_is_never_a_pass(tmp_path):
    """`--only dense` (pytest -k) where the declaration holds three subjects: every cell passes, and the report
    says what ran, not PASS."""
    records = _records()
    for made in records.values():
        made["selection"] = {"only": ["dense"], "ran": ["dense"], "declared": 3}
    result = _report_of_some(tmp_path, records)
    assert not result["ok"] and not result["failing"] and not result["problems"]
    last = compare.render(result).splitlines()[-1]
    assert last == (
        "RESULT: 1 of the declaration's 3 subjects (--only dense): no cell of those fails; not a PASS, which needs "
        "every subject on every backend"
    ), last


def _report_of_some(tmp_path, records) -> dict:
    for (backend, phase), made in records.items():
        (tmp_path / f"{phase}-{backend}.json").write_text(json.dumps(made))
    return compare.build(tmp_path)


def test_no_planted_subject_runs_a_check_with_a_load_phase():
    """The self-test runs the record phase alone (`__main__.selftest_phases`): that holds while no defect's checks
    (nor the checks every subject runs) include one with a load phase, such as `saved`."""
    from conformance.harness import checks

    class Layer:  # a stand-in: planting wraps the class, it never calls it here
        pass

    for planted in selftest.planted([Subject("s", layer=Layer, inputs=Input((2, 3)))]):
        loading = [c.NAME for c in checks.CHECKS if c.NAME not in planted.skip and hasattr(c, "load")]
        assert not loading, (planted.name, loading)
