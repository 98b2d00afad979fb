"""The cross-backend report: what each backend observed, against the oracle and against each other.

Reads the `observed-<backend>.json` files the backend sessions wrote (see `conformance.observed`), compares
every recorded output and gradient with the golden oracle value under that backend's tolerance, and every
pair of backends with each other under the sum of their two tolerances (each is within its own tolerance of
the same exact value, so the two can differ by at most the sum). Error pairs must equal the catalogue's and
each other's exactly. Writes Markdown and JSON and returns whether everything agreed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from conformance import cases, golden, observed, tolerance

BACKENDS = ("jax", "torch", "tensorflow")


def _expected(key: str, manifest: dict, cache: dict):
    """(expected values, dtype, per-backend atol function) for an observation key, or None if unknown."""
    name, quantity, _mode = key.split("/")
    if name == "training":
        data = cache.setdefault("training", golden.load_npz("training.npz", manifest))
        if quantity == "losses":
            return data["losses"], cases.TRAINING.dtype, lambda backend: data["loss_atol"]
        # the state after each step: kernels[1:] / ws[1:], with that step's bound
        atol = data["kernel_atol"] if quantity == "kernels" else data["w_atol"]
        return data[quantity][1:], cases.TRAINING.dtype, lambda backend: atol
    if name.startswith("keras-file-"):
        name = golden.KERAS_CASE
    try:
        case = cases.by_id(name)
    except KeyError:
        return None
    arrays = cache.get(name)
    if arrays is None:
        arrays = golden.load_case(case, manifest)
        cache[name] = arrays
    x, context, kernel, g = arrays["x"], arrays["context"], arrays["kernel"], arrays["cotangent"]
    if quantity == "output":
        return arrays["output"], case.dtype, lambda b: tolerance.forward_atol(x, context, kernel, case.dtype, b)
    index = ("dx", "dcontext", "dkernel").index(quantity)
    return arrays[quantity], case.dtype, lambda b: tolerance.gradient_atols(x, context, kernel, g, case.dtype, b)[index]


def _agree(a: np.ndarray, b: np.ndarray, atol) -> tuple[bool, float, float]:
    """(within atol elementwise with non-finite values equal, max abs diff, normwise relative diff) over
    finite b; the relative figure is max|a - b| / max|b|, which stays meaningful where b is tiny or zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False, float("inf"), float("inf")
    atol = np.broadcast_to(np.asarray(atol, np.float64), b.shape)
    finite = np.isfinite(b)
    same_special = np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[np.isinf(b)], b[np.isinf(b)])
    with np.errstate(all="ignore"):
        diff = np.where(finite, np.abs(a - b), 0.0)
        scale = float(np.max(np.abs(b[finite]), initial=0.0))
    ok = bool(same_special and np.all(~finite | (diff <= atol)))
    max_abs = float(diff.max(initial=0.0))
    return ok, max_abs, (max_abs / scale if scale > 0 else 0.0)


def build(reports: Path) -> dict:
    manifest = golden.read_manifest()
    runs = {}
    for backend in BACKENDS:
        path = reports / f"observed-{backend}.json"
        if path.is_file():
            runs[backend] = observed.load(path)
    rows, cache = [], {}
    keys = sorted(set().union(*(run["numeric"] for run in runs.values()))) if runs else []
    for key in keys:
        expected = _expected(key, manifest, cache)
        if expected is None:
            continue
        values, dtype, atol_for = expected
        row = {"key": key, "dtype": dtype, "backends": {}, "pairs": {}, "ok": True}
        for backend, run in runs.items():
            entry = run["numeric"].get(key)
            if entry is None:
                continue
            atol = atol_for(backend)
            ok, abs_err, rel_err = _agree(entry["values"], values, atol)
            row["backends"][backend] = {"max_abs": abs_err, "max_rel": rel_err, "max_atol": float(np.max(atol, initial=0.0)), "ok": ok}
            row["ok"] &= ok
        for a, b in itertools.combinations([b for b in BACKENDS if b in row["backends"]], 2):
            atol = atol_for(a) + atol_for(b)
            ok, abs_err, rel_err = _agree(runs[a]["numeric"][key]["values"], runs[b]["numeric"][key]["values"], atol)
            row["pairs"][f"{a}~{b}"] = {"max_abs": abs_err, "max_rel": rel_err, "ok": ok}
            row["ok"] &= ok
        rows.append(row)
    expected_errors = golden.load_errors(manifest)
    error_rows = []
    for key in sorted(set().union(*(run["errors"] for run in runs.values()))) if runs else []:
        seen = {b: run["errors"].get(key) for b, run in runs.items() if key in run["errors"]}
        ok = all(v == expected_errors.get(key) for v in seen.values())
        error_rows.append({"key": key, "expected": expected_errors.get(key), "observed": seen, "ok": ok})
    largest, largest_rel = {}, {}
    for row in rows:
        for pair in row["pairs"].values():
            largest[row["dtype"]] = max(largest.get(row["dtype"], 0.0), pair["max_abs"])
            largest_rel[row["dtype"]] = max(largest_rel.get(row["dtype"], 0.0), pair["max_rel"])
    return {
        "backends": {b: {"keras": run["keras"], "numeric": len(run["numeric"]), "errors": len(run["errors"])} for b, run in runs.items()},
        "missing": [b for b in BACKENDS if b not in runs],
        "rows": rows,
        "errors": error_rows,
        "largest_cross_backend_abs_diff_by_dtype": largest,
        "largest_cross_backend_rel_diff_by_dtype": largest_rel,
        "ok": bool(runs) and all(r["ok"] for r in rows) and all(r["ok"] for r in error_rows),
    }


def _fmt(value: float) -> str:
    return "0" if value == 0 else f"{value:.1e}"


def markdown(report: dict) -> str:
    backends = list(report["backends"])
    pairs = [f"{a}~{b}" for a, b in itertools.combinations(backends, 2)]
    lines = ["# hyperzzw cross-backend conformance report", ""]
    for b, info in report["backends"].items():
        lines.append(f"- {b}: keras {info['keras']}, {info['numeric']} numeric observations, {info['errors']} error checks")
    for b in report["missing"]:
        lines.append(f"- {b}: **no observations** (its session did not run)")
    lines += [
        "",
        "Max abs error against the oracle per backend, and max abs difference per pair of backends; "
        "`tol` is the largest elementwise tolerance of the row.",
        "",
        "| case / quantity / mode | dtype | tol | " + " | ".join(backends + pairs) + " | ok |",
        "|---|---|---|" + "---|" * (len(backends) + len(pairs)) + "---|",
    ]
    for row in report["rows"]:
        tol = max((v["max_atol"] for v in row["backends"].values()), default=0.0)
        cells = [_fmt(row["backends"][b]["max_abs"]) if b in row["backends"] else "-" for b in backends]
        cells += [_fmt(row["pairs"][p]["max_abs"]) if p in row["pairs"] else "-" for p in pairs]
        lines.append(f"| {row['key']} | {row['dtype']} | {_fmt(tol)} | " + " | ".join(cells) + f" | {'yes' if row['ok'] else '**NO**'} |")
    bad_errors = [r for r in report["errors"] if not r["ok"]]
    lines += ["", f"Error checks: {len(report['errors']) - len(bad_errors)} of {len(report['errors'])} identical to the catalogue on every backend."]
    for r in bad_errors:
        lines.append(f"- **{r['key']}**: expected {r['expected']}, observed {r['observed']}")
    lines += ["", "Largest difference between two backends, per dtype:", ""]
    for dtype, value in sorted(report["largest_cross_backend_abs_diff_by_dtype"].items()):
        rel = report["largest_cross_backend_rel_diff_by_dtype"][dtype]
        lines.append(f"- {dtype}: {value:.3g} absolute, {rel:.3g} relative")
    lines += ["", f"**Result: {'PASS' if report['ok'] else 'FAIL'}**", ""]
    return "\n".join(lines)


def summary(report: dict) -> str:
    """A few lines for a terminal: per backend and per pair, rows checked and rows out of tolerance."""
    out = []
    for b, info in report["backends"].items():
        bad = sum(1 for r in report["rows"] if b in r["backends"] and not r["backends"][b]["ok"])
        bad_err = sum(1 for r in report["errors"] if b in r["observed"] and r["observed"][b] != r["expected"])
        out.append(f"  {b:<11} keras {info['keras']}: {info['numeric']:>4} numeric rows, {bad} out of tolerance; "
                   f"{info['errors']:>4} error checks, {bad_err} different")
    for b in report["missing"]:
        out.append(f"  {b:<11} MISSING: no observed-{b}.json (run nox -s tests-{b})")
    pair_names = sorted({p for r in report["rows"] for p in r["pairs"]})
    for p in pair_names:
        rows = [r["pairs"][p] for r in report["rows"] if p in r["pairs"]]
        bad = sum(1 for r in rows if not r["ok"])
        worst = max((r["max_abs"] for r in rows), default=0.0)
        out.append(f"  {p:<22} {len(rows):>4} rows compared, {bad} disagree, largest |diff| {worst:.3g}")
    for dtype, value in sorted(report["largest_cross_backend_abs_diff_by_dtype"].items()):
        rel = report["largest_cross_backend_rel_diff_by_dtype"][dtype]
        out.append(f"  largest cross-backend difference, {dtype:<9} {value:.3g} absolute, {rel:.3g} relative")
    out.append(f"  RESULT: {'PASS' if report['ok'] else 'FAIL'}")
    return "\n".join(out)


def write(report: dict, reports: Path) -> tuple[Path, Path]:
    md, js = reports / "report.md", reports / "report.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=1, default=float, allow_nan=True))
    return md, js
