"""The cross-backend report: what each backend observed, against the oracle and against each other.

Reads the `observed-<backend>.json` files the backend sessions wrote (see `conformance.observed`), compares
every recorded output and gradient with the golden oracle value under that backend's tolerance, and every
pair of backends with each other under the sum of their two tolerances (each is within its own tolerance of
the same exact value, so the two can differ by at most the sum). Error pairs must equal the catalogue's and
each other's exactly. Writes Markdown and JSON and returns whether everything agreed.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np

from conformance import cases, golden, observed, tolerance

BACKENDS = ("jax", "torch", "tensorflow")


@functools.cache
def _case_arrays(case_id: str) -> dict:
    """A golden case's stored arrays, read and verified once per process (a report run changes none)."""
    return golden.load_case(cases.by_id(case_id))


@functools.cache
def _case_atols(case_id: str, backend: str | None) -> dict:
    """A golden case's elementwise tolerances for one backend (they depend on the stored inputs only)."""
    case, arrays = cases.by_id(case_id), _case_arrays(case_id)
    x, context, kernel, g = arrays["x"], arrays["context"], arrays["kernel"], arrays["cotangent"]
    dx, dcontext, dkernel = tolerance.gradient_atols(x, context, kernel, g, case.dtype, backend)
    return {
        "output": tolerance.forward_atol(x, context, kernel, case.dtype, backend),
        "dx": dx,
        "dcontext": dcontext,
        "dkernel": dkernel,
    }


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
    if name.startswith(("keras-file-", "weights-file-", "saved-")):  # all three hold KERAS_CASE's model
        name = golden.KERAS_CASE
    try:
        case = cases.by_id(name)
    except KeyError:
        return None
    return _case_arrays(case.id)[quantity], case.dtype, lambda b: _case_atols(case.id, b)[quantity]


def _agree(a: np.ndarray, b: np.ndarray, atol, underflow: np.ndarray) -> dict:
    """Compares `a` with the reference `b` elementwise: `ok` (within atol where b is finite, non-finite
    values equal), `max_abs` (largest |a - b|), `err_over_tol` (largest |a - b| / atol: at most 1 passes),
    `max_rel` (normwise: max|a - b| / max|b| over the elements outside `underflow`) and `underflow_abs`
    (largest |a - b| inside it: elements whose oracle value is below the smallest normal number or whose
    tolerance the underflow floor dominates, where a flushing backend may differ by 100% by design)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        inf = float("inf")
        return {"ok": False, "max_abs": inf, "err_over_tol": inf, "max_rel": inf, "underflow_abs": 0.0}
    atol = np.broadcast_to(np.asarray(atol, np.float64), b.shape)
    finite = np.isfinite(b)
    same_special = np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[np.isinf(b)], b[np.isinf(b)])
    with np.errstate(all="ignore"):
        diff = np.where(finite, np.abs(a - b), 0.0)
        ratio = np.where(finite & (diff > 0), diff / atol, 0.0)
    underflow = finite & np.broadcast_to(underflow, b.shape)
    normal = finite & ~underflow
    scale = float(np.max(np.abs(b[normal]), initial=0.0))
    normal_diff = float(np.max(diff[normal], initial=0.0))
    return {
        "ok": bool(same_special and np.all(~finite | (diff <= atol))),
        "max_abs": float(diff.max(initial=0.0)),
        "err_over_tol": float(np.nan_to_num(ratio, nan=np.inf).max(initial=0.0)),
        "max_rel": normal_diff / scale if scale > 0 else 0.0,
        "underflow_abs": float(np.max(diff[underflow], initial=0.0)),
    }


def expected_keys() -> tuple[set[str], set[str]]:
    """Every numeric observation and every error check a complete backend session records."""
    numeric = set()
    for case in cases.CASES:
        numeric |= {f"{case.id}/output/eager", f"{case.id}/output/jit", f"{case.id}/dx/grad", f"{case.id}/dkernel/grad"}
        if case.context_dtype is None:
            numeric.add(f"{case.id}/dcontext/grad")
    for quantity in ("losses", "kernels", "ws"):
        numeric |= {f"training/{quantity}/eager", f"training/{quantity}/jit"}
    numeric |= {f"keras-file-{b}/output/eager" for b in golden.KERAS_BACKENDS}
    numeric |= {f"weights-file-{b}/output/eager" for b in golden.KERAS_BACKENDS}
    numeric |= {f"saved-{fmt}/output/eager" for fmt in golden.SAVED_FORMATS}
    return numeric, set(golden.load_errors())


def _session_problems(backend: str, run: dict) -> list[str]:
    session = run.get("session")
    if not session:
        return [f"{backend}: its record says nothing of how the session ended"]
    problems = []
    if session["exit_status"] != 0:
        problems.append(
            f"{backend}: the test session failed (pytest exit status {session['exit_status']}, "
            f"{session.get('failed', '?')} failed)"
        )
    if not session.get("complete"):
        why = []
        if session.get("paths_given"):
            why.append(f"test paths given ({' '.join(session['args'])})")
        if session.get("keyword"):
            why.append(f"-k {session['keyword']!r}")
        if session.get("markexpr"):
            why.append(f"-m {session['markexpr']!r}")
        if session.get("deselected"):
            why.append(f"{session['deselected']} tests deselected")
        problems.append(f"{backend}: the session ran a subset of the suite ({', '.join(why) or 'stopped early'})")
    return problems


def _version_problems(runs: dict) -> list[str]:
    """A report compares one version set: the same set, keras and numpy in every record, and the `keras`
    module from the distribution that set installs (keras-nightly for the nightly set, the release otherwise)."""
    problems = []
    for what, get in (
        ("version sets", lambda run: run.get("version_set")),
        ("keras versions", lambda run: run.get("versions", {}).get("keras")),
        ("numpy versions", lambda run: run.get("versions", {}).get("numpy")),
    ):
        seen = {b: get(run) for b, run in runs.items()}
        if len(set(seen.values())) > 1:
            problems.append(
                f"the records come from different {what}: " + ", ".join(f"{b} {v}" for b, v in seen.items())
            )
    for backend, run in runs.items():
        want = ["keras-nightly"] if run.get("version_set") == "nightly" else ["keras"]
        if run.get("keras_distributions") != want:
            problems.append(
                f"{backend}: its keras module came from {run.get('keras_distributions')}, "
                f"expected {want} for version set {run.get('version_set')!r}"
            )
    return problems


def upstream_differences(runs: dict) -> list[str]:
    """The probed keras.ops behaviours (conformance.upstream) that differ from the pinned set's."""
    from conformance import upstream

    out = []
    for backend, run in runs.items():
        for probe_id, got in sorted((run.get("upstream") or {}).items()):
            pinned, _ = upstream.expected(backend, PINNED_KERAS, probe_id)
            if got != pinned:
                out.append(
                    f"{backend}: keras.ops {probe_id} gives {got} (keras {run['keras']}); "
                    f"{pinned} in the pinned set (keras {PINNED_KERAS})"
                )
    return out


# The keras release of requirements/constraints.txt, the pinned set's baseline for `upstream_differences`.
PINNED_KERAS = next(
    line.split("==")[1].strip()
    for line in (Path(__file__).resolve().parent.parent / "requirements" / "constraints.txt").read_text().splitlines()
    if line.startswith("keras==")
)


def build(reports: Path) -> dict:
    manifest = golden.read_manifest()
    runs = {}
    for backend in BACKENDS:
        path = reports / f"observed-{backend}.json"
        if path.is_file():
            runs[backend] = observed.load(path)
    problems = [
        f"{b}: no observations ({reports / f'observed-{b}.json'} is missing: its session did not run, or "
        f"crashed before it ended)"
        for b in BACKENDS
        if b not in runs
    ]
    for backend, run in runs.items():
        if run.get("backend") != backend:
            problems.append(
                f"{reports / f'observed-{backend}.json'} holds the record of a {run.get('backend')} "
                f"session, not of {backend}"
            )
        problems += _session_problems(backend, run)
    problems += _version_problems(runs)
    layers = {b: (run.get("layer") or {}).get("sha256") for b, run in runs.items()}
    if len(set(layers.values())) > 1:
        problems.append(
            "the backends tested different layer files: "
            + ", ".join(f"{b} {run['layer']['path']} (sha256 {str(layers[b])[:12]})" for b, run in runs.items())
        )
    want_numeric, want_errors = expected_keys()
    for backend, run in runs.items():
        missing = sorted(want_numeric - set(run["numeric"])) + sorted(want_errors - set(run["errors"]))
        if missing:
            problems.append(f"{backend}: {len(missing)} expected observations missing (e.g. {', '.join(missing[:3])})")

    rows, cache, wrong_dtypes = [], {}, {}
    keys = sorted(set().union(*(run["numeric"] for run in runs.values()))) if runs else []
    for key in keys:
        expected = _expected(key, manifest, cache)
        if expected is None:
            problems.append(f"an observation the report does not know: {key}")
            continue
        values, dtype, atol_for = expected
        # Underflow range: the oracle value is subnormal, or some backend's tolerance is mostly the floor
        # for flushed subnormals (more than twice the IEEE tolerance, which has a negligible floor).
        with np.errstate(invalid="ignore"):
            underflow = (np.abs(values) < tolerance.TINY[dtype]) | np.any(
                [atol_for(b) > 2 * atol_for(None) for b in runs], axis=0
            )
        row = {"key": key, "dtype": dtype, "backends": {}, "pairs": {}, "ok": True}
        for backend, run in runs.items():
            entry = run["numeric"].get(key)
            if entry is None:
                continue
            atol = atol_for(backend)
            result = _agree(entry["values"], values, atol, underflow)
            result["max_atol"] = float(np.max(atol, initial=0.0))
            result["dtype"] = entry["dtype"]
            if entry["dtype"] != dtype:
                result["ok"] = False
                wrong_dtypes.setdefault(backend, []).append(f"{key}: {entry['dtype']}, expected {dtype}")
            row["backends"][backend] = result
            row["ok"] &= result["ok"]
        for a, b in itertools.combinations([b for b in BACKENDS if b in row["backends"]], 2):
            atol = atol_for(a) + atol_for(b)
            result = _agree(runs[a]["numeric"][key]["values"], runs[b]["numeric"][key]["values"], atol, underflow)
            row["pairs"][f"{a}~{b}"] = result
            row["ok"] &= result["ok"]
        rows.append(row)
    for backend, wrong in wrong_dtypes.items():
        problems.append(
            f"{backend}: {len(wrong)} observations came out in the wrong dtype (e.g. {'; '.join(wrong[:2])})"
        )
    bad_rows = [r["key"] for r in rows if not r["ok"]]
    if bad_rows:
        problems.append(
            f"{len(bad_rows)} numeric rows out of tolerance or disagreeing (e.g. {', '.join(bad_rows[:3])})"
        )
    expected_errors = golden.load_errors(manifest)
    error_rows = []
    for key in sorted(set().union(*(run["errors"] for run in runs.values()))) if runs else []:
        seen = {b: run["errors"].get(key) for b, run in runs.items() if key in run["errors"]}
        ok = all(v == expected_errors.get(key) for v in seen.values())
        error_rows.append({"key": key, "expected": expected_errors.get(key), "observed": seen, "ok": ok})
    bad_errors = [r["key"] for r in error_rows if not r["ok"]]
    if bad_errors:
        problems.append(f"{len(bad_errors)} error checks differ from the catalogue (e.g. {', '.join(bad_errors[:3])})")

    summary_by_dtype = {}
    for row in rows:
        s = summary_by_dtype.setdefault(
            row["dtype"], {"rows": 0, "err_over_tol": {}, "max_rel": 0.0, "max_abs": 0.0, "underflow_abs": 0.0}
        )
        s["rows"] += 1
        for b, r in row["backends"].items():
            s["err_over_tol"][b] = max(s["err_over_tol"].get(b, 0.0), r["err_over_tol"])
        for r in row["pairs"].values():
            s["max_rel"] = max(s["max_rel"], r["max_rel"])
            s["max_abs"] = max(s["max_abs"], r["max_abs"])
            s["underflow_abs"] = max(s["underflow_abs"], r["underflow_abs"])
    return {
        "ok": not problems,
        "problems": problems,
        "layer": {b: run.get("layer") for b, run in runs.items()},
        "backends": {
            b: {
                "keras": run["keras"],
                "versions": run.get("versions", {}),
                "session": run.get("session"),
                "numeric": len(run["numeric"]),
                "errors": len(run["errors"]),
            }
            for b, run in runs.items()
        },
        "missing": [b for b in BACKENDS if b not in runs],
        "version_set": sorted({str(run.get("version_set")) for run in runs.values()}),
        "upstream_differences": upstream_differences(runs),
        "summary_by_dtype": summary_by_dtype,
        "rows": rows,
        "errors": error_rows,
    }


def _fmt(value: float) -> str:
    return "0" if value == 0 else f"{value:.1e}"


def _verdict(report: dict) -> list[str]:
    lines = [f"**Result: {'PASS' if report['ok'] else 'FAIL'}**"]
    if report["ok"]:
        lines.append(
            "All three backends ran the whole suite and passed; every observation is within tolerance of "
            "the oracle and of the other backends; every error text is identical to the catalogue."
        )
    else:
        lines += ["", "Why:"] + [f"- {p}" for p in report["problems"]]
    return lines


def markdown(report: dict) -> str:
    backends = list(report["backends"])
    pairs = [f"{a}~{b}" for a, b in itertools.combinations(backends, 2)]
    lines = ["# hyperzzw cross-backend conformance report", ""] + _verdict(report) + [""]
    shas = {(layer or {}).get("sha256") for layer in report["layer"].values()}
    for b, layer in report["layer"].items():
        layer = layer or {}
        lines.append(f"- layer under test on {b}: `{layer.get('path')}` (sha256 {str(layer.get('sha256'))[:16]})")
        if len(shas) == 1:
            lines[-1] = (
                f"Layer under test: `{layer.get('path')}` (sha256 {str(layer.get('sha256'))[:16]}), on every backend"
            )
            break
    lines += [
        "",
        "| backend | keras | library | numpy | python | pytest exit | whole suite | numeric | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b, info in report["backends"].items():
        v, session = info["versions"], info["session"] or {}
        lines.append(
            f"| {b} | {v.get('keras', info['keras'])} | {v.get(b, '?')} | {v.get('numpy', '?')} | "
            f"{v.get('python', '?')} | {session.get('exit_status', '?')} | "
            f"{'yes' if session.get('complete') else '**no**'} | {info['numeric']} | {info['errors']} |"
        )
    for b in report["missing"]:
        lines.append(f"| {b} | **no observations** | | | | | | | |")
    lines += [
        "",
        "## Summary per dtype",
        "",
        "`err/tol` is the largest ratio of a backend's error against the oracle to that element's tolerance "
        "(at most 1 passes). `relative` is the largest normwise difference between two backends, "
        "max|a - b| / max|b| per row, over elements in the dtype's normal range. `underflow` is the largest "
        "absolute difference between two backends where the oracle value is below the smallest normal "
        "number: XLA flushes those to zero and torch keeps them, so they differ by 100% by design and are "
        "bounded by the tolerance's underflow floor instead.",
        "",
        "| dtype | rows | " + " | ".join(f"err/tol {b}" for b in backends) + " | relative | absolute | underflow |",
        "|---|---|" + "---|" * len(backends) + "---|---|---|",
    ]
    for dtype, s in sorted(report["summary_by_dtype"].items()):
        lines.append(
            f"| {dtype} | {s['rows']} | "
            + " | ".join(f"{s['err_over_tol'].get(b, 0):.2g}" for b in backends)
            + f" | {_fmt(s['max_rel'])} | {_fmt(s['max_abs'])} | {_fmt(s['underflow_abs'])} |"
        )
    lines += [
        "",
        "## Details",
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
        lines.append(
            f"| {row['key']} | {row['dtype']} | {_fmt(tol)} | "
            + " | ".join(cells)
            + f" | {'yes' if row['ok'] else '**NO**'} |"
        )
    lines += [
        "",
        f"## Upstream behaviour (version set {', '.join(report['version_set'])})",
        "",
        "The keras.ops dtypes the layer relies on (conformance/upstream.py) that differ from the pinned set's:",
        "",
    ]
    lines += [f"- {d}" for d in report["upstream_differences"]] or ["- none"]
    bad_errors = [r for r in report["errors"] if not r["ok"]]
    lines += [
        "",
        f"Error checks: {len(report['errors']) - len(bad_errors)} of {len(report['errors'])} identical to the "
        "catalogue on every backend observed.",
    ]
    for r in bad_errors:
        lines.append(f"- **{r['key']}**: expected {r['expected']}, observed {r['observed']}")
    lines += ["", f"**Result: {'PASS' if report['ok'] else 'FAIL'}**", ""]
    return "\n".join(lines)


def summary(report: dict) -> str:
    """A few lines for a terminal: per backend how its session went, per dtype the agreement, the verdict."""
    out = []
    for b, info in report["backends"].items():
        session = info["session"] or {}
        bad = sum(1 for r in report["rows"] if b in r["backends"] and not r["backends"][b]["ok"])
        out.append(
            f"  {b:<11} keras {info['keras']}: pytest exit {session.get('exit_status', '?')}, "
            f"{'whole suite' if session.get('complete') else 'SUBSET of the suite'}; {info['numeric']:>4} "
            f"numeric rows, {bad} out of tolerance; {info['errors']:>4} error checks"
        )
    for b in report["missing"]:
        out.append(f"  {b:<11} MISSING: no observed-{b}.json (run nox -s tests-{b})")
    for dtype, s in sorted(report["summary_by_dtype"].items()):
        worst = max(s["err_over_tol"].values(), default=0.0)
        out.append(
            f"  {dtype:<9} {s['rows']:>4} rows: worst err/tol {worst:.2g}; between backends {s['max_rel']:.2g} "
            f"relative, {s['underflow_abs']:.2g} absolute in the underflow range"
        )
    for d in report["upstream_differences"]:
        out.append(f"  upstream: {d}")
    out.append(f"  RESULT: {'PASS' if report['ok'] else 'FAIL'}")
    out += [f"    - {p}" for p in report["problems"]]
    return "\n".join(out)


def write(report: dict, reports: Path) -> tuple[Path, Path]:
    md, js = reports / "report.md", reports / "report.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=1, default=float, allow_nan=True))
    return md, js
