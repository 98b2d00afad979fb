"""fixtures: the layer's forward call with the inputs, masks and weights stored for the subject
(`<fixtures folder>/<subject>.json`, written by `python -m conformance.harness fixtures FILE`), against the outputs
stored with them: the oracle's, or, for a subject without one, the elementwise median of the backends' float64
runs, rounded to float32. Within the subject's tolerance in the coarser of the output's dtype and float32, plus
one rounding (the stored float32), and the same on every backend.

The stored numbers are those of the day they were written: when a new Keras, backend or NumPy changes what the
layer computes (or, without an oracle, what its float64 run computes), this row fails on the backends where it
changed, and `python -m conformance.harness fixtures FILE` says what changed and rewrites it, on purpose. A
fixture whose arguments, inputs, masks or weight names and shapes are no longer the declaration's is stale: FAIL,
with what differs. No fixture stored for the subject: SKIP with that reason.

The bytes written depend on the numbers alone, never on the machine: inputs and weights are float32-exact
NumPy draws, outputs rounded to float32 (a float64 oracle's last bits, which a machine's BLAS moves, do not
survive the rounding but at the rare element that sits on a float32 rounding boundary), and rewriting keeps a
stored file whose numbers are within tolerance of the new ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from conformance.harness.run import numeric_entry
from conformance.harness.terms import Tolerance, declared_tolerance

NAME = "fixtures"
ROWS = (NAME, "fixtures-stored")
UNJUDGED = ("fixtures-stored",)
FORMAT = "conformance.harness.fixture/1"
CANDIDATE = f"{NAME}/candidate"  # the row the `fixtures` phase records: what this backend would store


def path_of(run) -> Path | None:
    return None if run.fixtures is None else Path(run.fixtures) / f"{run.subject.name}.json"


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: _observe(run, layer, tensors))


def _observe(run, layer, tensors) -> None:
    """On the layer the other checks use (its weights' paths are the weights row's: a second layer built in this
    process would name its sublayers from Keras's counter), the stored weights assigned for the call, then its
    own put back."""
    path = path_of(run)
    if path is None or not path.is_file():
        where = "no fixtures folder given (--fixtures)" if path is None else f"no {path}"
        run.text(
            NAME, f"not applicable: no fixture stored ({where}; `python -m conformance.harness fixtures` writes it)"
        )
        return
    stored = json.loads(path.read_text())
    differs = _differences(run, layer, stored)
    if differs:
        run.text(
            NAME, f"stale: {path}: " + "; ".join(differs) + " (`python -m conformance.harness fixtures` rewrites it)"
        )
        return
    backend = run.backend
    own = [(backend.to_numpy(v.value), backend.dtype_of(v)) for v in layer.weights]  # a copy: assign may be in place
    try:
        for variable in layer.weights:
            entry = stored["weights"][variable.path.split("/", 1)[-1]]
            variable.assign(backend.tensor(_array(entry), backend.dtype_of(variable)))
        outs = run.outputs(run.call(layer, tensors))  # the drawn inputs and masks: the stored ones (above)
    finally:
        for variable, (value, dtype) in zip(layer.weights, own):
            variable.assign(backend.tensor(value, dtype))
    if len(outs) != len(stored["outputs"]):
        run.text(
            NAME, f"stale: {path}: the layer returns {len(outs)} outputs, the fixture holds {len(stored['outputs'])}"
        )
        return
    run.record_outputs(NAME, outs if len(outs) > 1 else outs[0])
    for i, entry in enumerate(stored["outputs"]):
        run.checks["fixtures-stored" + (f".{i}" if len(outs) > 1 else "")] = numeric_entry(_array(entry), "float32")


def _differences(run, layer, stored: dict) -> list[str]:
    """What in the declaration is not what the fixture was written for (each a short sentence)."""
    out = []
    args = {k: repr(v) for k, v in sorted(run.subject.args.items())}
    if stored["args"] != args:
        out.append(f"the arguments are {args}, the fixture's {stored['args']}")
    if len(stored["inputs"]) != len(run.arrays):
        return [*out, f"{len(run.arrays)} inputs, the fixture holds {len(stored['inputs'])}"]
    for i, (entry, spec, array, mask, stored_mask) in enumerate(
        zip(stored["inputs"], run.specs, run.arrays, run.masks, stored["masks"])
    ):
        if [list(spec.shape), spec.dtype] != [entry["shape"], entry["dtype"]]:
            out.append(
                f"input {i} is {spec.dtype} {tuple(spec.shape)}, the fixture's {entry['dtype']} {tuple(entry['shape'])}"
            )
        elif not np.array_equal(array, _array(entry)):
            out.append(f"input {i}'s drawn values differ from the fixture's (another seed, or NumPy draws otherwise)")
        if (mask is None) != (stored_mask is None) or (
            mask is not None and not np.array_equal(mask, _array(stored_mask))
        ):
            out.append(f"input {i}'s mask differs from the fixture's")
    weights = {v.path.split("/", 1)[-1]: list(v.shape) for v in layer.weights}
    stored_weights = {name: entry["shape"] for name, entry in stored["weights"].items()}
    if weights != stored_weights:
        out.append(f"the weights are {weights}, the fixture's {stored_weights}")
    return out


def judge(judge, row: str) -> None:
    stale = {b: e["value"] for b in judge.backends if (e := judge.obs[b].get(row)) and e["kind"] == "text"}
    stale = {b: text for b, text in stale.items() if text.startswith("stale")}
    for backend, text in stale.items():
        judge.set(row, backend, judge.FAIL, text)
    row_of_stored = "fixtures-stored" + judge.suffix(row)
    read = {json.dumps(e, sort_keys=True) for b in judge.backends if (e := judge.obs[b].get(row_of_stored))}
    if len(read) > 1:  # each backend read the file: one of them read another one
        for backend in judge.backends:
            judge.set(row, backend, judge.FAIL, "the backends read different stored fixtures (edited while they ran?)")
        return
    stored = judge.first(row_of_stored)
    reference = None if stored is None else {**stored, "oracle": True, "label": "the stored fixture"}
    judge.numeric(row, lambda b: reference, tolerance(judge.tolerance))


def tolerance(t: Tolerance) -> Tolerance:
    return t.plus(1, "+1: the stored numbers rounded to float32")


# --- writing: the `fixtures` phase on each backend, then `write` in the harness's own process ---------------------


def record_candidate(run) -> None:
    """What this backend would store for the subject, as one text row: inputs, masks and weights as drawn, and
    the outputs: the oracle's (float64), else this backend's float64 run."""
    run.attempt(CANDIDATE, lambda: _candidate(run))


def _candidate(run) -> None:
    layer = run.built_layer()
    if run.subject.oracle is not None:
        outs, source = run.oracle_outputs(layer), "oracle"
    else:
        layer64 = run.built_layer(dtype="float64")
        outs = [run.backend.to_numpy(o) for o in run.outputs(run.call(layer64, run.policy_tensors("float64")))]
        source = "float64 run"
    weights = {v.path.split("/", 1)[-1]: _entry(run.backend.to_numpy(v.value)) for v in layer.weights}
    candidate = {
        "source": source,
        "args": {k: repr(v) for k, v in sorted(run.subject.args.items())},
        "inputs": [{**_entry(a), "dtype": s.dtype} for a, s in zip(run.arrays, run.specs)],
        "masks": [None if m is None else _entry(m) for m in run.masks],
        "weights": weights,
        "outputs": [_entry(np.asarray(o, np.float64)) for o in outs],
    }
    run.text(CANDIDATE, json.dumps(candidate))


def write(records: dict, folder: Path) -> tuple[list[str], bool]:
    """Each subject's fixture from the backends' candidates (`records`: backend -> the `fixtures` phase's record),
    written to `folder` where there is none or its numbers moved beyond tolerance. Returns a line per subject
    (new, unchanged, changed: rewritten, or why none could be written) and whether every subject got one."""
    lines, ok = [], True
    names = sorted({n for r in records.values() for n in r["subjects"]})
    for name in names:
        found = {b: r["subjects"][name] for b, r in records.items() if name in r["subjects"]}
        candidates, failed = {}, []
        for backend, subject in found.items():
            entry = subject["checks"].get(CANDIDATE)
            if entry is None or entry["kind"] != "text":
                failed.append(f"{backend}: " + (_raised(entry) if entry else "nothing recorded"))
            else:
                candidates[backend] = json.loads(entry["value"])
        try:
            fixture = _merged(name, candidates, failed) if not failed else None
        except ValueError as exc:
            failed.append(str(exc))
        if failed:
            ok = False
            lines.append(f"  FAILED     {name}: no fixture written: " + "; ".join(failed))
            continue
        subject_tolerance = declared_tolerance(next(iter(found.values()))["meta"])
        lines.append(_store(folder / f"{name}.json", fixture, tolerance(subject_tolerance)))
    if not names:
        ok = False
        lines.append("  FAILED     no subject was recorded")
    return lines, ok


def _merged(name: str, candidates: dict, failed: list) -> dict:
    """One fixture from every backend's candidate: the inputs, masks and weights they agree on, and the oracle's
    outputs (the same NumPy on every backend), else the elementwise median of their float64 runs."""
    first = next(iter(candidates.values()))
    for backend, c in candidates.items():
        for part in ("args", "inputs", "masks", "weights"):
            if c[part] != first[part]:
                raise ValueError(f"the backends drew different {part} ({backend} against {next(iter(candidates))})")
        if len(c["outputs"]) != len(first["outputs"]) or any(
            o["shape"] != f["shape"] for o, f in zip(c["outputs"], first["outputs"])
        ):
            raise ValueError(f"the backends' outputs differ in number or shape ({backend})")
    if first["source"] == "oracle":
        outputs, source = first["outputs"], "the oracle"
    else:
        outputs = [
            _entry(np.median(np.stack([_array(c["outputs"][i]) for c in candidates.values()]), axis=0))
            for i in range(len(first["outputs"]))
        ]
        source = "the elementwise median of the float64 runs of " + ", ".join(candidates)
    return {
        "format": FORMAT,
        "subject": name,
        "source": f"{source}, rounded to float32",
        "args": first["args"],
        "inputs": first["inputs"],
        "masks": first["masks"],
        "weights": first["weights"],
        "outputs": [_entry(_array(o).astype(np.float32).astype(np.float64)) for o in outputs],
    }


def _store(path: Path, fixture: dict, tol: Tolerance) -> str:
    name = fixture["subject"]
    try:
        stored = json.loads(path.read_text()) if path.is_file() else None
    except ValueError as exc:
        _dump(path, fixture)
        return f"  CHANGED    {name}: the stored file was unreadable ({exc}): rewritten {path}"
    if stored is not None:
        same_structure = all(stored.get(k) == fixture[k] for k in ("format", "args", "inputs", "masks", "weights"))
        if same_structure and len(stored["outputs"]) == len(fixture["outputs"]):
            moved = []
            for i, (old, new) in enumerate(zip(stored["outputs"], fixture["outputs"])):
                a, b = _array(old), _array(new)
                if a.shape != b.shape:
                    moved.append(f"output {i}: shape {a.shape} -> {b.shape}")
                    continue
                atol = tol.atol("float32", float(np.max(np.abs(b), initial=0.0)))
                worst = float(np.max(np.abs(a - b), initial=0.0))
                if not worst <= atol:
                    moved.append(f"output {i}: max |new - stored| = {worst:.3g}, atol {atol:.3g}")
            if not moved:
                return f"  unchanged  {name}: within tolerance of {path}"
            _dump(path, fixture)
            return f"  CHANGED    {name}: " + "; ".join(moved) + f": rewritten {path}"
        _dump(path, fixture)
        what = [k for k in ("args", "inputs", "masks", "weights") if stored.get(k) != fixture[k]] or ["outputs"]
        return f"  CHANGED    {name}: its {', '.join(what)} differ from the stored ones: rewritten {path}"
    _dump(path, fixture)
    return f"  new        {name}: {fixture['source']}: {path}"


def _dump(path: Path, fixture: dict) -> None:
    """JSON, a line per input, mask, weight and output (a change shows as the lines it touches)."""

    def compact(value) -> str:
        return json.dumps(value, sort_keys=True)

    lines = []
    for key, value in sorted(fixture.items()):
        if isinstance(value, list) and value:
            inner = ",\n".join(f"  {compact(v)}" for v in value)
            lines.append(f" {compact(key)}: [\n{inner}\n ]")
        elif isinstance(value, dict) and key == "weights" and value:
            inner = ",\n".join(f"  {compact(k)}: {compact(v)}" for k, v in sorted(value.items()))
            lines.append(f" {compact(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {compact(key)}: {compact(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def _entry(array) -> dict:
    array = np.asarray(array)
    values = array.astype(np.float64) if array.dtype != bool else array
    return {"shape": list(array.shape), "values": values.ravel().tolist()}


def _array(entry: dict) -> np.ndarray:
    return np.asarray(entry["values"]).reshape(entry["shape"])


def _raised(entry: dict) -> str:
    return f"raised {entry.get('type')}: {entry.get('own', entry.get('value'))}"
