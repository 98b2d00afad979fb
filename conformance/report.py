"""The cross-backend report: what each backend observed, against the oracle and against each other.

Three steps, data flowing one way:

1. `read`: each backend's session record and its parts (`conformance.observed`), checked to be what they
   claim: filed under the backend that made them, from one run each, every part the session started present.
2. `judge_sessions`: how each session went (exit status, the whole suite or a subset), and that the three are
   comparable (one version set, the same keras and numpy, the `keras` module from the distribution that set
   installs, the same layer file).
3. `compare`: a loop over the declared observations (`conformance.expected`): for each observation and
   backend, the recorded value against the oracle under that backend's tolerance, each pair of backends under
   the sum of their two tolerances (each is within its own of the same exact value), or "missing"; each error
   check against the catalogue.

Then the scope: which sessions it covered (the three test sessions always; the traced and distributed sessions
when their records are there and name the layer file the test sessions tested; the exports, `harness-export`,
when the harness's records of hyperzzw's subjects with the export runtimes are there, of that layer file, and
judged by the harness's own report; "not run" otherwise). PASS needs every step clean. Writes Markdown and JSON.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np

from conformance import expected, observed
from conformance.harness import compare as harness_compare
from conformance.subjects.hyperzzw import golden, tolerance

BACKENDS = ("jax", "torch", "tensorflow")
# The sessions beside the test sessions that record how they ended (`reports/session-<kind>-<backend>.json`).
OTHER_SESSIONS = ("traced", "distributed")
# Where `nox -s harness_export` leaves the harness's records of hyperzzw's subjects, exports included.
HARNESS_EXPORT = Path("harness-export") / "hyperzzw"
# A version set's records live in `reports/<set>/`; the pinned set's in `reports/` itself.
NAMED_SETS = ("oldest", "latest", "nightly", "custom")

# The keras release of requirements/constraints.txt, the pinned set's baseline for `upstream_differences`.
PINNED_KERAS = next(
    line.split("==")[1].strip()
    for line in (Path(__file__).resolve().parent.parent / "requirements" / "constraints.txt").read_text().splitlines()
    if line.startswith("keras==")
)


def expected_version_set(reports: Path) -> str:
    return reports.name if reports.name in NAMED_SETS else "pinned"


# --- 1. reading -------------------------------------------------------------------------------------------


def read(reports: Path) -> tuple[dict, list[str]]:
    """{backend: run} for the backends whose session record exists, and the problems found in reading: a run is
    the session record with its parts' observations merged (`parts`, the parts' own headers, kept too)."""
    runs, problems, digests = {}, [], {}
    for backend in BACKENDS:
        path = reports / f"observed-{backend}.json"
        if not path.is_file():
            problems.append(
                f"{backend}: no observations ({path} is missing: its session did not run, or crashed before it ended)"
            )
            continue
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        session = observed.load(path)
        if session.get("kind") != "session":
            problems.append(f"{path} is not a session record (a record of another format, or another file)")
            continue
        if session.get("backend") != backend:
            problems.append(f"{path} holds the record of a {session.get('backend')} session, not of {backend}")
            continue
        parts, run = {}, {"session": session, "numeric": {}, "errors": {}, "upstream": {}, "gaps": {}}
        for worker in session.get("workers", []):
            part_path = observed.parts_dir(path) / f"{worker}.json"
            if not part_path.is_file():
                problems.append(
                    f"{backend}: worker {worker}'s part of the record is missing ({part_path}: the worker "
                    "crashed, or the part was removed)"
                )
                continue
            digests[f"{path.name}/{worker}"] = hashlib.sha256(part_path.read_bytes()).hexdigest()
            part = observed.load(part_path)
            if part.get("backend") != backend or part.get("run") != session.get("run"):
                problems.append(
                    f"{part_path} is not a part of this {backend} session (it says backend "
                    f"{part.get('backend')}, run {part.get('run')})"
                )
                continue
            parts[worker] = part
            for field in ("numeric", "errors", "upstream", "gaps"):
                run[field].update(part.get(field, {}))
        if not parts:
            continue
        first = next(iter(parts.values()))
        run.update(
            parts=parts, **{k: first.get(k) for k in ("version_set", "keras_distributions", "versions", "layer")}
        )
        for worker, part in parts.items():
            for field in ("versions", "layer", "keras_distributions"):
                if part.get(field) != run[field]:
                    problems.append(f"{backend}: its workers imported different {field} ({worker}: {part.get(field)})")
        runs[backend] = run
    by_run = {}
    for backend, run in runs.items():
        by_run.setdefault(run["session"].get("run"), []).append(backend)
    problems += [
        f"the records of {' and '.join(b)} come from one session (run {r})" for r, b in by_run.items() if len(b) > 1
    ]
    by_digest = {}
    for name, digest in digests.items():
        by_digest.setdefault(digest, []).append(name)
    problems += [f"byte-identical records: {', '.join(names)}" for names in by_digest.values() if len(names) > 1]
    return runs, problems


# --- 2. judging the sessions ---------------------------------------------------------------------------------


def _selection(run: dict) -> dict:
    """The session's selection, with the workers' deselections and collections taken in."""
    session = dict(run["session"])
    parts = run.get("parts", {}).values()
    session["deselected"] = max([session.get("deselected", 0), *(p.get("deselected", 0) for p in parts)])
    session["collected"] = max([session.get("collected", 0), *(p.get("collected", 0) for p in parts)])
    session["complete"] = (
        not session.get("paths_given")
        and not session.get("keyword")
        and not session.get("markexpr")
        and session["deselected"] == 0
        and session["collected"] > 0
        and not session.get("stopped_early")
    )
    return session


def _session_problems(backend: str, session: dict) -> list[str]:
    problems = []
    if session["exit_status"] != 0:
        problems.append(
            f"{backend}: the test session failed (pytest exit status {session['exit_status']}, "
            f"{session.get('failed', '?')} failed)"
        )
    if not session["complete"]:
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


def judge_sessions(runs: dict, version_set: str) -> list[str]:
    problems = []
    for backend, run in runs.items():
        run["session"] = _selection(run)
        problems += _session_problems(backend, run["session"])
        for where, found in (("session record", run["session"].get("version_set")), ("parts", run["version_set"])):
            if found != version_set:
                problems.append(f"{backend}: version set {found!r} in its {where}; this report is for {version_set!r}")
        want = ["keras-nightly"] if version_set == "nightly" else ["keras"]
        if run["keras_distributions"] != want:
            problems.append(
                f"{backend}: its keras module came from {run['keras_distributions']}, expected {want} for "
                f"version set {version_set!r}"
            )
    for what, get in (
        ("keras versions", lambda run: run["versions"].get("keras")),
        ("numpy versions", lambda run: run["versions"].get("numpy")),
    ):
        seen = {b: get(run) for b, run in runs.items()}
        if len(set(seen.values())) > 1:
            problems.append(
                f"the records come from different {what}: " + ", ".join(f"{b} {v}" for b, v in seen.items())
            )
    layers = {b: run["layer"].get("sha256") for b, run in runs.items()}
    if len(set(layers.values())) > 1:
        problems.append(
            "the backends tested different layer files: "
            + ", ".join(f"{b} {run['layer']['path']} (sha256 {str(layers[b])[:12]})" for b, run in runs.items())
        )
    return problems


# --- 3. comparing the observations ---------------------------------------------------------------------------


def _broadcasts_to(shape: tuple, *arrays) -> bool:
    try:
        return np.broadcast_shapes(shape, *(np.shape(a) for a in arrays)) == shape
    except ValueError:
        return False


def _agree(a: np.ndarray, b: np.ndarray, atol, underflow: np.ndarray) -> dict:
    """Compares `a` with the reference `b` elementwise: `ok` (within atol where b is finite, non-finite
    values equal), `max_abs` (largest |a - b|), `err_over_tol` (largest |a - b| / atol: at most 1 passes),
    `max_rel` (normwise: max|a - b| / max|b| over the elements outside `underflow`) and `underflow_abs`
    (largest |a - b| inside it: elements whose oracle value is below the smallest normal number or whose
    tolerance the underflow floor dominates, where a flushing backend may differ by 100% by design)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # A value of another shape than the reference (a stale record, a mask not broadcast) disagrees; so does a
    # reference whose tolerance has another shape (a record made against other golden data).
    if a.shape != b.shape or not _broadcasts_to(b.shape, atol, underflow):
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


def _compare_numeric(observation: expected.Numeric, runs: dict) -> dict:
    """One row: each backend's recorded value against the oracle, and each pair of backends."""
    values, dtype, atol_for = observation.reference()
    row = {
        "key": observation.key,
        "dtype": dtype,
        "backends": {},
        "pairs": {},
        "missing": [],
        "wrong_dtype": {},
        "ok": True,
    }
    seen = [b for b in BACKENDS if b in runs and observation.key in runs[b]["numeric"]]
    row["missing"] = [b for b in BACKENDS if b in runs and b not in seen]
    # Underflow range: the oracle value is subnormal, or some backend's tolerance is mostly the floor for flushed
    # subnormals (more than twice the IEEE tolerance, which has a negligible floor).
    with np.errstate(invalid="ignore"):
        underflow = (np.abs(values) < tolerance.TINY.get(dtype, 0.0)) | np.any(
            [atol_for(b) > 2 * atol_for(None) for b in runs], axis=0
        )
    for backend in seen:
        entry = runs[backend]["numeric"][observation.key]
        atol = atol_for(backend)
        result = _agree(entry["values"], values, atol, underflow)
        result.update(max_atol=float(np.max(atol, initial=0.0)), dtype=entry["dtype"])
        if entry["dtype"] != dtype:
            result["ok"] = False
            row["wrong_dtype"][backend] = entry["dtype"]
        row["backends"][backend] = result
        row["ok"] &= result["ok"]
    for a, b in itertools.combinations(seen, 2):
        result = _agree(
            runs[a]["numeric"][observation.key]["values"],
            runs[b]["numeric"][observation.key]["values"],
            atol_for(a) + atol_for(b),
            underflow,
        )
        row["pairs"][f"{a}~{b}"] = result
        row["ok"] &= result["ok"]
    row["ok"] &= not row["missing"]
    return row


def compare(runs: dict) -> tuple[list[dict], list[dict], list[str]]:
    """(numeric rows, error rows, problems): one row per declared observation, whoever recorded it."""
    rows = [_compare_numeric(o, runs) for o in expected.NUMERIC.values()]
    catalogue = golden.load_errors()
    error_rows = []
    for check in expected.ERRORS.values():
        seen = {b: run["errors"][check.key] for b, run in runs.items() if check.key in run["errors"]}
        missing = [b for b in runs if b not in seen]
        want = catalogue.get(check.key)
        error_rows.append(
            {
                "key": check.key,
                "expected": want,
                "observed": seen,
                "missing": missing,
                "ok": not missing and all(v == want for v in seen.values()),
            }
        )
    problems = []
    for backend in runs:
        missing = [r["key"] for r in rows if backend in r["missing"]] + [
            r["key"] for r in error_rows if backend in r["missing"]
        ]
        gaps = runs[backend].get("gaps", {})
        for reason in sorted({gaps[k] for k in missing if k in gaps}):
            keys = [k for k in missing if gaps.get(k) == reason]
            problems.append(
                f"{backend}: {len(keys)} expected observations not made, a known gap its session recorded "
                f"({reason}): {', '.join(keys)}"
            )
        missing = [k for k in missing if k not in gaps]
        if missing:
            problems.append(f"{backend}: {len(missing)} expected observations missing (e.g. {', '.join(missing[:3])})")
        declared = set(expected.ALL)
        extra = sorted(set(runs[backend]["numeric"]) - declared) + sorted(set(runs[backend]["errors"]) - declared)
        if extra:
            problems.append(
                f"{backend}: {len(extra)} observations the declaration does not know (e.g. {', '.join(extra[:3])})"
            )
        wrong = [
            f"{r['key']}: {r['wrong_dtype'][backend]}, expected {r['dtype']}"
            for r in rows
            if backend in r["wrong_dtype"]
        ]
        if wrong:
            problems.append(
                f"{backend}: {len(wrong)} observations came out in the wrong dtype (e.g. {'; '.join(wrong[:2])})"
            )
    bad = [r["key"] for r in rows if any(not v["ok"] for v in [*r["backends"].values(), *r["pairs"].values()])]
    if bad:
        problems.append(f"{len(bad)} numeric rows out of tolerance or disagreeing (e.g. {', '.join(bad[:3])})")
    bad_errors = [r["key"] for r in error_rows if any(v != r["expected"] for v in r["observed"].values())]
    if bad_errors:
        problems.append(f"{len(bad_errors)} error checks differ from the catalogue (e.g. {', '.join(bad_errors[:3])})")
    return rows, error_rows, problems


def upstream_differences(runs: dict) -> list[str]:
    """The probed keras.ops behaviours (conformance.upstream) that differ from the pinned set's."""
    from conformance import upstream

    out = []
    for backend, run in runs.items():
        for probe_id, got in sorted(run["upstream"].items()):
            pinned, _ = upstream.expected(backend, PINNED_KERAS, probe_id)
            if got != pinned:
                out.append(
                    f"{backend}: keras.ops {probe_id} gives {got} (keras {run['versions'].get('keras')}); "
                    f"{pinned} in the pinned set (keras {PINNED_KERAS})"
                )
    return out


def _tested_layer(path: Path, record: dict) -> str | None:
    """The sha256 of the layer file a session's workers tested, from its parts (None when a part is missing or
    they disagree)."""
    shas = set()
    for worker in record.get("workers", []):
        part = observed.parts_dir(path) / f"{worker}.json"
        if not part.is_file():
            return None
        shas.add((observed.load(part).get("layer") or {}).get("sha256"))
    return shas.pop() if len(shas) == 1 else None


def scope(reports: Path, layer: str | None = None) -> tuple[dict, list[str]]:
    """{session name: "passed" / "FAILED (...)" / "not run" / "not run on this layer"} for the traced and
    distributed sessions and the exports (`harness-export`); `layer` is the sha256 of the layer file the test
    sessions tested (None: not checked). A record left by an earlier run on another layer file says nothing about
    this one."""
    out, problems = {}, []
    for kind, backend in itertools.product(OTHER_SESSIONS, BACKENDS):
        name, path = f"{kind}-{backend}", reports / f"session-{kind}-{backend}.json"
        if not path.is_file():
            out[name] = "not run"
            continue
        record = observed.load(path)
        tested = _tested_layer(path, record)
        if record.get("backend") != backend:
            out[name] = f"FAILED (its record is a {record.get('backend')} session's)"
        elif tested is None:
            out[name] = "FAILED (its record names no one layer file: a worker's part is missing)"
        elif layer is not None and tested != layer:
            out[name] = "not run on this layer"  # its record is of another layer file
            continue
        elif record.get("exit_status") != 0:
            out[name] = f"FAILED (pytest exit status {record.get('exit_status')}, {record.get('failed', '?')} failed)"
        else:
            out[name] = "passed"
        if out[name] != "passed":
            problems.append(f"{name}: {out[name]}")
    out["harness-export"] = exports_scope(reports / HARNESS_EXPORT, layer)
    if out["harness-export"].startswith("FAILED"):
        problems.append(f"harness-export: {out['harness-export']}")
    return out, problems


def exports_scope(folder: Path, layer: str | None = None) -> str:
    """How the harness's run of hyperzzw's subjects with the export runtimes went (`nox -s harness_export`), judged
    by the harness's own report from its records in `folder`: "passed", "FAILED (...)", "not run" (no record) or
    "not run on this layer" (its records are of another layer file than `layer`'s sha256)."""
    if not any((folder / f"{phase}-{b}.json").is_file() for phase in harness_compare.PHASES for b in BACKENDS):
        return "not run"
    records, problems = harness_compare.read(folder)
    tested = {
        sha
        for made in records.values()
        for record in made.values()
        for subject in record.get("subjects", {}).values()
        for sha in (subject.get("sources") or {}).values()
    }
    if len(tested) != 1:
        return f"FAILED (its records name {len(tested)} layer files, not one)"
    if layer is not None and tested != {layer}:
        return "not run on this layer"
    result = harness_compare.build(folder, (records, problems))
    if result["ok"]:
        return "passed"
    return f"FAILED (the harness's report: {harness_compare.why_not(result)})"


def build(reports: Path, version_set: str | None = None) -> dict:
    version_set = version_set or expected_version_set(reports)
    runs, problems = read(reports)
    problems += judge_sessions(runs, version_set)
    rows, error_rows, compare_problems = compare(runs)
    problems += compare_problems
    layers = {(run.get("layer") or {}).get("sha256") for run in runs.values()}
    others, other_problems = scope(reports, layers.pop() if len(layers) == 1 else None)
    problems += other_problems

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
        "version_set": version_set,
        "scope": {**{f"tests-{b}": "recorded" if b in runs else "not run" for b in BACKENDS}, **others},
        "layer": {b: run["layer"] for b, run in runs.items()},
        "backends": {
            b: {
                "keras": run["versions"].get("keras"),
                "versions": run["versions"],
                "session": run["session"],
                "numeric": len(run["numeric"]),
                "errors": len(run["errors"]),
            }
            for b, run in runs.items()
        },
        "missing": [b for b in BACKENDS if b not in runs],
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
            f"All three backends ran the whole suite (version set {report['version_set']!r}) and passed; every "
            "declared observation is within tolerance of the oracle and of the other backends; every error text is "
            "identical to the catalogue."
        )
    else:
        lines += ["", "Why:"] + [f"- {p}" for p in report["problems"]]
    lines += ["", "Scope: " + _scope_line(report)]
    return lines


def _scope_line(report: dict) -> str:
    """Which sessions the verdict covers; a session that did not record is "not run", never a PASS."""
    by_state = {}
    for name, state in report["scope"].items():
        by_state.setdefault(state, []).append(name)
    return "; ".join(f"{state}: {', '.join(names)}" for state, names in by_state.items())


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
        f"## Upstream behaviour (version set {report['version_set']})",
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
        out.append(f"  {b:<11} MISSING: no usable observed-{b}.json (run nox -s tests-{b}; the reasons below)")
    for dtype, s in sorted(report["summary_by_dtype"].items()):
        worst = max(s["err_over_tol"].values(), default=0.0)
        out.append(
            f"  {dtype:<9} {s['rows']:>4} rows: worst err/tol {worst:.2g}; between backends {s['max_rel']:.2g} "
            f"relative, {s['underflow_abs']:.2g} absolute in the underflow range"
        )
    for d in report["upstream_differences"]:
        out.append(f"  upstream: {d}")
    out.append(f"  scope: {_scope_line(report)}")
    out.append(f"  RESULT: {'PASS' if report['ok'] else 'FAIL'}")
    out += [f"    - {p}" for p in report["problems"]]
    return "\n".join(out)


def write(report: dict, reports: Path) -> tuple[Path, Path]:
    md, js = reports / "report.md", reports / "report.json"
    md.write_text(markdown(report))
    js.write_text(json.dumps(report, indent=1, default=float, allow_nan=True))
    return md, js
