"""The cross-backend report: reads the records the backends wrote, compares each observation with its reference
and between every pair of backends, and prints a check x backend matrix per subject, and the verdict.

NumPy only: this process imports neither keras nor a backend nor the declaration file; what it needs of the
declaration (tolerances and their reasons, bad inputs, known divergences, skipped checks) is in the records.

PASS means: a complete record of both phases from each of the three backends, made from the same declaration
file with the same keras and numpy, and every cell of every subject passes: each value within its stated
tolerance of its reference (the oracle when the subject has one, else the same backend's float64 run) and of
every other backend, each dtype the policy's, each text (weights, configs, symbolic shapes) the same on every
backend, each declared error raised with its type and text, each known divergence still diverging. A missing
record, phase, subject or observation is a FAIL, never a pass.

Who is blamed: a backend outside tolerance of the oracle; without one, a backend that disagrees with both
others while they agree (the report says "by majority": two backends can share an error); with no majority,
every backend of a disagreeing pair. The float64 training step is the float32 one's reference on each backend
and is not judged itself, nor are the float64 gradients when the subject declares no gradient oracle: without
an exact reference a disagreement among three float64 results cannot be attributed (the float64 forward pass is
judged, against the oracle when there is one; with a gradient oracle, both gradients are judged against it).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from conformance.harness.declaration import (
    BACKENDS,
    POLICIES,
    SAME_ON_EVERY_BACKEND,
    UNIT_ROUNDOFF,
    Tolerance,
    default_tolerance,
)

PHASES = ("record", "load")
# What a backend records as the reference of its own other rows, never judged itself.
REFERENCES = ("saved/reference", "unknown-sizes/eager-grown")
PASS, FAIL, KNOWN, SKIP, MISSING = "PASS", "FAIL", "KNOWN", "SKIP", "MISSING"


def read(folder: str | Path) -> tuple[dict, list[str]]:
    """{backend: {phase: record}} and the problems with the records themselves."""
    folder, records, problems = Path(folder), {}, []
    for backend in BACKENDS:
        for phase in PHASES:
            path = folder / f"{phase}-{backend}.json"
            if not path.is_file():
                problems.append(
                    f"{backend}: no {path.name}: its {phase} phase did not run or died before writing it "
                    "(its output is above)"
                )
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{backend}: {path.name} is unreadable ({exc})")
                continue
            if record.get("error"):
                problems.append(f"{backend}: {phase} phase: {record['error']}")
                continue
            if record.get("backend") != backend or record.get("phase") != phase or not record.get("complete"):
                problems.append(f"{backend}: {path.name} is not a complete {phase} record of {backend}")
                continue
            records.setdefault(backend, {})[phase] = record
    present = [r for phases in records.values() for r in phases.values()]
    runs = {f"{r['phase']}-{r['backend']}.json": r.get("run") for r in present}
    if len(set(runs.values())) > 1:  # merged artifacts of several runs: the layer may have changed in between
        problems.append(
            "the records come from different runs (one run gives every backend and phase the same --run id): "
            + ", ".join(f"{name}: {run}" for name, run in sorted(runs.items()))
        )
    for field in ("declaration", "versions"):
        keys = {json.dumps(r[field]["sha256"] if field == "declaration" else _versions_key(r[field])) for r in present}
        if len(keys) > 1:
            what = "different declaration files" if field == "declaration" else "different keras or numpy versions"
            problems.append(f"the records come from {what}: " + ", ".join(sorted(keys)))
    return records, problems


def _versions_key(versions: dict) -> list:
    return [versions.get("keras"), versions.get("numpy")]


def _values(entry: dict) -> np.ndarray:
    return np.asarray(entry["values"], np.float64).reshape(entry["shape"])


def _summary(exc: dict) -> str:
    """The exception as the report prints it, whole: its type and message (for TensorFlow's graph errors, `in
    user code:` then a traceback, the line that says what went wrong: the last), then what it was raised from."""
    lines = [line.strip() for line in exc["own"].strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":") and lines[0].startswith(("in user code", "Graph execution error")):
        exc = {**exc, "own": lines[-1]}
    return "raised " + _raised_text(exc)


class Judge:
    """Compares one subject's observations across backends and fills its matrix."""

    def __init__(self, name: str, observations: dict, meta: dict):
        self.name, self.obs, self.meta = name, observations, meta  # obs: {backend: {check: entry}}
        self.backends = [b for b in BACKENDS if b in observations]
        tolerance = meta.get("tolerance")
        if tolerance:
            self.tolerance = Tolerance(tolerance["reduction"], f"declared: {tolerance['reason']}", tolerance["ulps"])
        else:
            self.tolerance = default_tolerance([s["shape"] for s in meta["inputs"]])
        self.positions = _positions([s["shape"] for s in meta["inputs"]])
        self.cells: dict[str, dict[str, list]] = {}  # check -> backend -> [status, detail]
        self.notes: dict[str, dict] = {}  # what a reader should know that is not a verdict
        self.tolerances: dict[str, str] = {}

    def set(self, check: str, backend: str, status: str, detail: str = "") -> None:
        cell = self.cells.setdefault(check, {}).setdefault(backend, [PASS, []])
        if status == FAIL:
            cell[0] = FAIL
        elif status != PASS and cell[0] == PASS:
            cell[0] = status
        if detail:
            cell[1].append(detail)

    # --- numeric --------------------------------------------------------------------------------------------

    def numeric(self, check: str, reference_of, tolerance: Tolerance, expected_dtype=None, floor: float = 0.0) -> None:
        """`check` on every backend: against `reference_of(backend)` (an entry, or None), and between backends."""
        entries = {b: self.obs[b].get(check) for b in self.backends}
        usable, exempt, texts = {}, set(), {}
        for backend, entry in entries.items():
            if entry is None:
                # else that check's failure says it, or the backend returned several (`mask.0`, judged apart)
                if not self._raised_above(backend, check) and not self._outputs_of(check, backend):
                    self.set(check, backend, MISSING, "not observed")
            elif entry["kind"] == "raised":
                self.set(check, backend, FAIL, _summary(entry))
            elif entry["kind"] != "numeric":
                texts[backend] = entry["value"]  # "none" (no mask), "not applicable: ...", "missing: ..."
            else:
                usable[backend] = entry
        oracle = next((r for b in self.backends if (r := reference_of(b)) is not None and r.get("oracle")), None)
        for backend, text in texts.items():
            if oracle is not None:  # the oracle has a value: a backend without one is wrong, whatever the others do
                self.set(check, backend, FAIL, f"{text!r} where the oracle has a value")
            elif text.startswith("missing"):
                self.set(check, backend, FAIL, text)
        if oracle is None:  # a text ("none": no mask) agrees only with the same text: blamed as any disagreement
            for a, b in itertools.combinations([x for x in self.backends if x in texts or x in usable], 2):
                if a in texts or b in texts:
                    ok = texts.get(a, a) == texts.get(b, b) and a in texts and b in texts
                    shown = {x: repr(texts[x]) if x in texts else "a value" for x in (a, b)}
                    self._record(check, "pair", {a: None, b: None}, ok, f"{a}: {shown[a]}; {b}: {shown[b]}")
        for backend, entry in usable.items():
            if expected_dtype and entry["dtype"] != expected_dtype and entry["dtype"] != "bool":
                self.set(check, backend, FAIL, f"dtype {entry['dtype']}, expected {expected_dtype}")
            reference = reference_of(backend)
            if reference is None or reference.get("kind") != "numeric":
                continue
            self._close(check, {backend: entry}, reference, tolerance, "reference", floor)
            if reference.get("oracle") and self.cells[check][backend][0] == PASS:
                exempt.add(backend)  # within tol of the oracle: a pair it disagrees with is the other's error
        for a, b in itertools.combinations(usable, 2):
            self._close(check, {a: usable[a], b: usable[b]}, None, tolerance, "pair", floor)
        self._attribute_pairs(check, exempt)
        for backend in [*usable, *texts]:
            self.set(check, backend, PASS)

    def _close(self, check, entries: dict, reference, tolerance: Tolerance, against: str, floor: float = 0.0) -> None:
        (a_name, a), *rest = entries.items()
        got = _values(a)
        if against == "reference":
            want, dtype = _values(reference), a["dtype"]
            what = "the oracle" if reference.get("oracle") else reference.get("label", f"{a_name}'s float64 run")
        else:
            ((b_name, b),) = rest
            # two dtypes (one backend's output in the wrong dtype, which its own row says): at the coarser's
            # precision, so the other backend is not blamed for the rounding the wrong dtype lacks
            want, dtype = _values(b), max((a["dtype"], b["dtype"]), key=lambda d: UNIT_ROUNDOFF.get(d, 0.0))
            what = b_name
        if got.shape != tuple(want.shape):
            detail = f"shape {tuple(got.shape)} against {what}'s {tuple(want.shape)}"
            self._record(check, against, entries, False, detail)
            return
        if dtype == "bool" or a["dtype"].startswith(("int", "uint", "bool")):
            ok = np.array_equal(got, want, equal_nan=True)
            self._record(check, against, entries, ok, f"{int(np.sum(got != want))} elements differ from {what}")
            return
        scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0))
        family = _scale_family(check)
        if family in self.family_scale:  # a gradient's cancellations are as large as the subject's gradients
            scale = max(scale, self.family_scale[family])
        atol = (tolerance.atol(dtype, scale) + floor * UNIT_ROUNDOFF.get(dtype, 0.0)) * (2 if against == "pair" else 1)
        self.tolerances[check] = tolerance.describe() + (
            " (scale: the largest magnitude among the subject's gradients or updates)"
            if family in self.family_scale
            else ""
        )
        finite = np.isfinite(want)
        same_special = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(
            got[np.isinf(want)], want[np.isinf(want)]
        )
        diff = np.abs(got[finite] - want[finite]) if finite.any() else np.zeros(0)
        worst = float(np.max(diff, initial=0.0))
        ok = same_special and worst <= atol
        ratio = worst / atol if atol > 0 else (0.0 if worst == 0 else float("inf"))
        detail = f"max |{a_name} - {what}| = {worst:.3g}, atol {atol:.3g} ({dtype}; err/tol {ratio:.3g})"
        if not same_special:
            detail += "; NaN or infinity where the other has none"
        self._record(check, against, entries, ok, detail)

    def _record(self, check, against, entries, ok, detail) -> None:
        if against == "reference":
            backend = next(iter(entries))
            self.set(check, backend, PASS if ok else FAIL, "" if ok else detail)
        else:
            self.cells.setdefault(check, {}).setdefault("_pairs", [])
            self.cells[check]["_pairs"].append((tuple(entries), ok, detail))

    def _attribute_pairs(self, check, exempt=frozenset()) -> None:
        """A disagreement between two backends falls on the one that agrees with no backend while the other
        agrees with some (the odd one out); when neither or both agree with another, on both. A backend within
        tolerance of the oracle (`exempt`) is never blamed: the other is off."""
        pairs = self.cells.get(check, {}).pop("_pairs", [])
        agrees = {b for p, ok, _ in pairs if ok for b in p}
        for (a, b), ok, detail in pairs:
            if ok:
                continue
            blamed = [x for x in (a, b) if x not in agrees] if (a in agrees) != (b in agrees) else [a, b]
            blamed = [x for x in blamed if x not in exempt] or ([] if exempt & {a, b} else blamed)
            majority = len(blamed) == 1 and not exempt
            for backend in blamed:
                self.set(check, backend, FAIL, detail + (" (by majority: the other two agree)" if majority else ""))

    # --- texts and errors -------------------------------------------------------------------------------------

    def same_text(self, check: str, must_be=None) -> None:
        """The same text on every backend; with `must_be` (the reference), that text: a backend that has it is
        never blamed for disagreeing with one that has not."""
        values = {}
        for backend in self.backends:
            entry = self.obs[backend].get(check)
            if entry is None:
                self.set(check, backend, MISSING, "not observed")
            elif entry["kind"] == "raised":
                self.set(check, backend, FAIL, _summary(entry))
            else:
                values[backend] = entry.get("value", json.dumps(entry.get("shape")))
                if must_be is not None and values[backend] != must_be:
                    self.set(check, backend, FAIL, f"{values[backend]!r}, expected {must_be!r}")
        for a, b in itertools.combinations(values, 2):
            self.cells.setdefault(check, {}).setdefault("_pairs", []).append(
                ((a, b), values[a] == values[b], f"{a}: {values[a]!r}; {b}: {values[b]!r}")
            )
        self._attribute_pairs(check, {b for b, v in values.items() if must_be is not None and v == must_be})
        for backend in values:
            self.set(check, backend, PASS)

    def error(self, check: str, expected: dict) -> None:
        """A bad input: the layer's own exception (Keras's wrapper around an error raised in `call()` removed)
        of the declared type, with the declared text, or, declared `SAME_ON_EVERY_BACKEND`, with the same text on
        every backend. A declared text is the reference: a backend that raises it is never blamed. What Keras
        added around the layer's message (its name, the call's arguments as each backend prints tensors) is
        shown as a note, never judged: the layer did not write it."""
        seen, exact = {}, expected["message"] != SAME_ON_EVERY_BACKEND
        for backend in self.backends:
            entry = self.obs[backend].get(check)
            if entry is None:
                self.set(check, backend, MISSING, "not observed")
            elif entry["kind"] != "raised":
                self.set(check, backend, FAIL, f"expected {expected['error']}, {entry.get('value', 'no error')}")
            else:
                seen[backend] = entry
                if entry["type"] != expected["error"]:
                    self.set(
                        check,
                        backend,
                        FAIL,
                        f"{entry['origin']} error {_raised_text(entry)}; expected {expected['error']}",
                    )
                elif exact and entry["own"] != expected["message"]:
                    self.set(check, backend, FAIL, f"message {entry['own']!r}, expected {expected['message']!r}")
                if entry.get("wrapper"):
                    wrapped = self.notes.setdefault("errors", {"checks": [], "example": _wrapper_line(entry)})
                    if check not in wrapped["checks"]:
                        wrapped["checks"].append(check)
        if not exact:
            for a, b in itertools.combinations(seen, 2):
                ea, eb = seen[a], seen[b]
                if ea["type"] != eb["type"]:
                    detail, ok = f"{a} raised {ea['type']} ({ea['origin']}), {b} {eb['type']} ({eb['origin']})", False
                elif ea["own"] != eb["own"]:
                    detail, ok = f"the layer's message differs: {a}: {ea['own']!r}; {b}: {eb['own']!r}", False
                else:
                    detail, ok = "", True
                self.cells.setdefault(check, {}).setdefault("_pairs", []).append(((a, b), ok, detail))
            self._attribute_pairs(check)
        for backend in seen:
            self.set(check, backend, PASS)

    # --- the subject ------------------------------------------------------------------------------------------

    def run(self) -> None:
        checks = sorted({c for b in self.backends for c in self.obs[b]})
        self.family_scale = {}
        for backend in self.backends:
            for check, entry in self.obs[backend].items():
                family = _scale_family(check)
                if family and entry["kind"] == "numeric":
                    values = np.abs(_values(entry))
                    top = float(np.max(values[np.isfinite(values)], initial=0.0))
                    self.family_scale[family] = max(self.family_scale.get(family, 0.0), top)
        oracle = self._oracle()

        def own(check: str, label: str = "float64 run"):  # another of the backend's own observations, named
            return lambda b: (
                None if self.obs[b].get(check) is None else {**self.obs[b][check], "label": f"{b}'s {label}"}
            )

        for check in checks:
            family = check.split("/")[0].split(".")[0]
            if check == "oracle" or check.startswith(("oracle.", "oracle-")):
                for backend in self.backends:  # a reference that raised judges nothing: the subject fails
                    entry = self.obs[backend].get(check)
                    if entry is not None and entry["kind"] == "raised":
                        self.set(check, backend, FAIL, "the oracle: " + _summary(entry))
                continue
            if self._not_applicable(check):
                continue
            if self._raised_on_some(check):
                continue
            if family in ("gradients", "gradients-float64", "unknown-sizes") and "/" not in check:
                self.same_text(check)  # raised on every backend (each fails with its exception)
                continue
            if check.startswith("saved/"):
                if check == "saved/layer":  # recorded only when making the layer before loading raised
                    self.same_text(check)
                    continue
                if check.split(".")[0] == "saved/reference":
                    continue
                # a loaded model against the model the loading backend saved (the same layer, weights, inputs)
                suffix = _output_suffix(check)
                self.numeric(check, own("saved/reference" + suffix, "model before saving"), self.tolerance)
            elif family in ("forward", "compiled") or check.split(".")[0] == "unknown-sizes/declared":
                suffix = _output_suffix(check)
                reference = oracle(suffix) or own("policies/float64" + suffix)
                self.numeric(check, reference, self.tolerance)
            elif check.split(".")[0] == "unknown-sizes/grown":
                suffix = _output_suffix(check)
                grown = self._first("oracle-grown" + suffix) if self.meta.get("has_oracle") else None
                reference = (
                    (lambda b: {**grown, "oracle": True})
                    if grown
                    else own("unknown-sizes/eager-grown" + suffix, "eager call at those sizes")
                )
                self.numeric(check, reference, self.tolerance)
            elif check.split(".")[0] == "unknown-sizes/eager-grown":
                continue  # the grown run's reference on each backend (without an oracle), not judged itself
            elif family in ("gradients", "gradients-float64"):
                name = check.split("/", 1)[1]
                if self.meta.get("has_gradient_oracle"):
                    reference = self._gradient_oracle(check, name)
                elif family == "gradients-float64":
                    continue  # the float32 gradients' reference (see the module docstring), not judged itself
                else:
                    reference = own("gradients-float64/" + name)
                self.numeric(check, reference, self._grad_tolerance())
            elif family == "policies":
                policy = check.split("/")[1].split(".")[0]
                compute = POLICIES[policy][0]
                suffix = _output_suffix(check)
                reference = (
                    oracle(suffix) if policy == "float64" else oracle(suffix) or own("policies/float64" + suffix)
                )
                widened = Tolerance(
                    self.tolerance.reduction + 2,
                    self.tolerance.reason + "; +2: inputs and weights rounded to the policy's dtype",
                    self.tolerance.ulps,
                )
                self.numeric(check, reference or (lambda b: None), widened, expected_dtype=compute)
            elif family == "training":
                parts = check.split("/")
                if len(parts) == 2:  # "not applicable" texts
                    self.same_text(check)
                    continue
                if parts[1] == "float64":
                    continue  # the float32 step's reference, not judged itself
                reference = own("/".join(["training", "float64", *parts[2:]]))
                # the update w_new - w_old = -gradient / 8, and the rounding of w_new (|w_new| <= 1.5 + |update|)
                self.numeric(check, reference, self._grad_tolerance(extra=2), floor=2 * 1.5)
            elif family == "mask":
                self._mask(check)
            elif family == "symbolic":
                self._symbolic(check)
            elif check == "config/round-trip":
                self.same_text(check, must_be="ok")
            elif family in ("weights", "config"):
                self.same_text(check)
            elif family == "errors":
                bad_id = check.split("/", 1)[1]
                self.error(check, self.meta["bad_inputs"].get(bad_id, {"error": "?", "message": SAME_ON_EVERY_BACKEND}))
            else:
                self.same_text(check)
        if self.meta.get("has_gradient_oracle"):
            for name in sorted(c.split("/", 1)[1] for c in checks if c.startswith("oracle-gradients/")):
                if f"gradients/{name}" not in checks:
                    for backend in self.backends:
                        self.set(
                            f"gradients/{name}",
                            backend,
                            FAIL,
                            f"the gradient oracle gives {name!r}, the layer has no such gradient",
                        )
        self._expected_checks(checks)
        self._divergences()

    def _not_applicable(self, check: str) -> bool:
        """A check that did not run because it does not apply (the layer has no single float output to train,
        takes keyword inputs, ...), the same reason on every backend: SKIP with that reason, never PASS; nothing
        for the float64 training step, which is never judged. True when that is what it was."""
        entries = [self.obs[b].get(check) for b in self.backends]
        texts = {e["value"] for e in entries if e is not None and e["kind"] == "text"}
        if len(texts) != 1 or len([e for e in entries if e is not None]) != len(self.backends):
            return False
        (text,) = texts
        if not text.startswith("not applicable") or any(e["kind"] != "text" for e in entries):
            return False
        if check != "training/float64":
            for backend in self.backends:
                self.set(check, backend, SKIP, text)
        return True

    def _raised_on_some(self, check: str) -> bool:
        """A check that raised on some backends and ran on the others (which recorded its results under
        `check/...` or `check.<i>`): it fails where it raised, with the exception, and passes where it ran
        (its results are judged row by row). True when that is what it was."""
        raised = {b: e for b in self.backends if (e := self.obs[b].get(check)) is not None and e["kind"] == "raised"}
        ran = [
            b
            for b in self.backends
            if b not in raised and any(c.startswith((check + "/", check + ".")) for c in self.obs[b])
        ]
        if not raised or len(raised) + len(ran) != len(self.backends) or not ran:
            return False
        for backend, entry in raised.items():
            self.set(check, backend, FAIL, _summary(entry))
        for backend in ran:
            self.set(check, backend, PASS)
        return True

    def _first(self, check: str) -> dict | None:
        """`check`'s entry on the first backend that has it (oracles: NumPy, the same bytes on every backend)."""
        return next((self.obs[b][check] for b in self.backends if check in self.obs[b]), None)

    def _oracle(self):
        def of(suffix):
            entry = self._first("oracle" + suffix) if self.meta.get("has_oracle") else None
            if entry is None:
                return None
            entry = {**entry, "oracle": True}
            return lambda b: entry

        return of

    def _gradient_oracle(self, check: str, name: str):
        """The gradient oracle's `name` (a gradient the layer has and the oracle lacks fails on every backend)."""
        entry = self._first(f"oracle-gradients/{name}")
        if entry is None:
            raised = self._first("oracle-gradients")
            why = _summary(raised) if raised else f"it gives no gradient for {name!r}"
            for backend in self.backends:
                self.set(check, backend, FAIL, f"the gradient oracle: {why}")
            return lambda b: None
        entry = {**entry, "oracle": True}
        return lambda b: entry

    def _mask(self, check: str) -> None:
        """The output mask: exactly the mask oracle's when the subject has one, and the same on every backend."""
        oracle = self._first("oracle-mask")
        if oracle is None:
            self.numeric(check, lambda b: None, Tolerance(0, "masks are exact"))
            return
        if check != "mask":  # mask.0, mask.1: the layer returned a list of masks, the oracle one (or none)
            for backend in self.backends:
                if self.obs[backend].get(check) is not None:
                    want = "none" if oracle["kind"] == "text" else f"one of shape {tuple(oracle['shape'])}"
                    self.set(check, backend, FAIL, f"the layer returns a list of masks; the mask oracle gives {want}")
            return
        for backend in self.backends:
            entry = self.obs[backend].get(check)
            got = "none" if entry is None or entry["kind"] == "text" else f"shape {tuple(entry['shape'])}"
            want = "none" if oracle["kind"] == "text" else f"shape {tuple(oracle['shape'])}"
            if entry is not None and entry["kind"] != "raised" and (got == "none") != (want == "none"):
                self.set(check, backend, FAIL, f"the output mask: {got}, the mask oracle's: {want}")
        if oracle["kind"] == "text":
            self.same_text(check, must_be=oracle["value"])
        else:
            reference = {**oracle, "oracle": True}
            self.numeric(check, lambda b: reference, Tolerance(0, "masks are exact"))

    def _grad_tolerance(self, extra: int = 0) -> Tolerance:
        t = self.tolerance
        return Tolerance(
            t.reduction + self.positions + extra,
            t.reason + f"; + {self.positions}: a weight's gradient sums over the batch and positions",
            t.ulps,
        )

    def _symbolic(self, check: str) -> None:
        """`compute_output_spec` on inputs of the declared sizes, every size known: each output's shape and
        dtype exactly the eager call's (a `None` where the eager output has a size is a size lost: the layer
        after it cannot build), as many outputs, and the same on every backend."""
        for backend in self.backends:
            entry = self.obs[backend].get(check)
            eager = [self.obs[backend].get(c) for c in self._outputs_of("forward", backend)]
            if (
                not entry
                or entry["kind"] != "text"
                or not eager
                or any(e is None or e["kind"] != "numeric" for e in eager)
            ):
                continue  # no spec, or no eager output to hold it against (that row fails on its own)
            specs = json.loads(entry["value"])
            if len(specs) != len(eager):
                self.set(check, backend, FAIL, f"{len(specs)} symbolic outputs, {len(eager)} eager ones")
                continue
            for i, ((shape, dtype), e) in enumerate(zip(specs, eager)):
                which = f"output {i}: " if len(eager) > 1 else ""
                if tuple(shape) != tuple(e["shape"]):
                    lost = (
                        [a for a, (s, n) in enumerate(zip(shape, e["shape"])) if s is None]
                        if len(shape) == len(e["shape"])
                        else []
                    )
                    why = (
                        f" (size lost on axis {', '.join(map(str, lost))}: every input size was known)" if lost else ""
                    )
                    self.set(
                        check, backend, FAIL, f"{which}symbolic shape {tuple(shape)}, eager {tuple(e['shape'])}{why}"
                    )
                if dtype != e["dtype"]:
                    self.set(check, backend, FAIL, f"{which}symbolic dtype {dtype}, eager {e['dtype']}")
        self.same_text(check)

    def _outputs_of(self, prefix: str, backend: str) -> list[str]:
        """`prefix`'s output rows on `backend`: `[prefix]` for one output, `[prefix.0, prefix.1, ...]` for several."""
        if prefix in self.obs[backend]:
            return [prefix]
        rows, i = [], 0
        while f"{prefix}.{i}" in self.obs[backend]:
            rows.append(f"{prefix}.{i}")
            i += 1
        return rows

    def _expected_checks(self, checks) -> None:
        skip = dict(self.meta.get("skip", {}))
        if not self.meta.get("bad_inputs") and "errors" not in skip:
            skip["errors"] = "the subject declares no bad inputs (`bad_inputs=`)"
        for family, reason in skip.items():
            for backend in self.backends:
                self.set(family, backend, SKIP, reason)
        for backend in self.backends:  # every check some backend observed, every backend must have
            for check in checks:
                if check in self.obs[backend] or check in self.cells or self._raised_above(backend, check):
                    continue
                if check.startswith("oracle") or check.split(".")[0] in REFERENCES:
                    continue  # references: what judges them is missing or fails too, and says so
                self.set(check, backend, MISSING, "not observed")

    def _raised_above(self, backend: str, check: str) -> bool:
        """Whether the step that records `check` raised on `backend` (`gradients` for `gradients/kernel`, say):
        that step fails there with its exception, and what it would have recorded is not missing besides."""
        parts = check.split("/")
        return any(
            (self.obs[backend].get("/".join(parts[:i])) or {}).get("kind") == "raised" for i in range(1, len(parts))
        )

    def _divergences(self) -> None:
        for check_prefix, backend, reason in self.meta.get("divergences", []):
            matched = [
                c
                for c in self.cells
                if c == check_prefix or c.startswith(check_prefix + "/") or c.startswith(check_prefix + ".")
            ]
            if not matched:
                self.set(check_prefix, backend, FAIL, f"a declared divergence matches no check ({reason})")
            for check in matched:
                cell = self.cells[check].get(backend)
                if cell is None:
                    continue
                if cell[0] == FAIL:
                    cell[0] = KNOWN
                    cell[1].insert(0, f"known: {reason}")
                elif cell[0] == PASS:
                    cell[0] = FAIL
                    cell[1].append(f"declared to diverge ({reason}), but it agrees now: remove the entry")


def _positions(shapes: list) -> int:
    """How many terms a weight's gradient sums over at most: the positions of the inputs' leading axes broadcast
    together (aligned from the right, the largest size on each axis), 1 for inputs of rank 1 or less."""
    leading = [list(shape[:-1]) for shape in shapes if len(shape) > 1]
    rank = max((len(shape) for shape in leading), default=0)
    padded = [[1] * (rank - len(shape)) + shape for shape in leading]
    return int(np.prod([max(sizes) for sizes in zip(*padded)])) if rank else 1


def _output_suffix(check: str) -> str:
    """ ".1" for the second output of a layer with several ("forward.1"), "" for a layer with one."""
    return check[len(check.split(".")[0]) :]


def _scale_family(check: str) -> str | None:
    """Rows scaled together: every gradient of a subject (float32 and float64 alike), every training update."""
    head = check.split("/")[0]
    if head in ("gradients", "gradients-float64"):
        return "gradients"
    if head == "training" and check.count("/") >= 2:
        return "training"
    return None


def _wrapper_line(entry: dict) -> str:
    """Keras's words around an error raised in `call()`, on one line (the arguments as one backend printed them)."""
    return " ".join(line.strip() for line in entry["wrapper"].splitlines() if line.strip())


def _raised_text(entry: dict) -> str:
    """An exception as the report prints it: its type and its whole message, then what it was raised from."""
    text = f"{entry['type']}: {entry['own']}"
    for cause in entry.get("causes", []):
        text += f" (raised from {cause})"
    return text


def build(folder: str | Path, read_records: tuple[dict, list[str]] | None = None) -> dict:
    """The report of the records in `folder` (`read_records`: what `read(folder)` returned, if already read)."""
    records, problems = read_records or read(folder)
    problems = list(problems)
    subjects = {}
    names = sorted({n for phases in records.values() for r in phases.values() for n in r["subjects"]})
    for name in names:
        observations, meta, metas, sources = {}, None, {}, {}
        for backend, phases in records.items():
            merged = {}
            for phase in PHASES:
                subject = phases.get(phase, {}).get("subjects", {}).get(name)
                if subject is None:
                    if phase in phases:
                        problems.append(f"{backend}: the {phase} record has no subject {name!r}")
                    continue
                merged.update(subject["checks"])
                if subject.get("sources"):
                    sources[f"{backend} {phase}"] = subject["sources"]
                meta = meta or subject["meta"]
                metas[f"{backend} {phase}"] = subject["meta"]
            observations[backend] = merged
        differing = sorted({k for m in metas.values() for k in m if m.get(k) != meta.get(k)})
        if differing:  # drawn arguments (another hypothesis version), a declaration that reads the backend
            problems.append(
                f"{name}: the processes declared it differently ({', '.join(differing)}): "
                + "; ".join(f"{where}: {m.get(differing[0])}" for where, m in metas.items())
            )
        if len({json.dumps(v, sort_keys=True) for v in sources.values()}) > 1:  # edited between the processes
            problems.append(
                f"{name}: the layer's source differs between the processes: "
                + "; ".join(f"{where}: {v}" for where, v in sources.items())
            )
        judge = Judge(name, observations, meta)
        judge.run()
        subjects[name] = {"cells": judge.cells, "tolerances": judge.tolerances, "notes": judge.notes, "meta": meta}
    failing = [
        f"{name}: {check} on {backend}"
        for name, s in subjects.items()
        for check, cells in s["cells"].items()
        for backend, (status, _) in cells.items()
        if status in (FAIL, MISSING)
    ]
    if not names:
        problems.append("no subject was recorded")
    ok = not problems and not failing and all(len(records.get(b, {})) == len(PHASES) for b in BACKENDS)
    versions = {b: phases.get("record", {}).get("versions") for b, phases in records.items()}
    return {"ok": ok, "problems": problems, "failing": failing, "subjects": subjects, "versions": versions}


def _family(check: str) -> str:
    head = check.split("/")[0].split(".")[0]
    if head in ("policies", "training", "saved"):
        return "/".join(check.split("/")[:2]).split(".")[0]
    return head


def render(result: dict) -> str:
    """The report as text: per subject a matrix of check families x backends, then every non-passing cell
    with its numbers, the tolerances and their derivation, and the verdict last."""
    lines = []
    for backend, v in result["versions"].items():
        if v:
            lines.append(
                f"{backend:<11} "
                + ", ".join(
                    f"{k} {v[k]}" for k in v if k in ("keras", backend, "numpy", "tensorflow-cpu", "tf-nightly")
                )
            )
    for name, subject in result["subjects"].items():
        lines.append("")
        lines.append(f"## {name}")
        if subject["meta"].get("args"):
            lines.append("  arguments: " + ", ".join(f"{k}={v}" for k, v in subject["meta"]["args"].items()))
        families: dict[str, dict[str, str]] = {}
        counts: dict[tuple, list] = {}  # (family, backend) -> [failing or missing, all]
        order = {"PASS": 0, "SKIP": 1, "KNOWN": 2, "MISSING": 3, "FAIL": 4}
        for check, cells in subject["cells"].items():
            row = families.setdefault(_family(check), {})
            for backend, (status, _) in cells.items():
                if order[status] >= order.get(row.get(backend, "PASS"), 0):
                    row[backend] = status
                count = counts.setdefault((_family(check), backend), [0, 0])
                count[0] += status in (FAIL, MISSING)
                count[1] += 1

        def cell(family, backend):
            status = families[family].get(backend, MISSING)
            bad, total = counts.get((family, backend), (0, 0))
            return f"{status} {bad}/{total}" if status in (FAIL, MISSING) and total > 1 else status

        lines.append(f"  {'check':<26}" + "".join(f"{b:<12}" for b in BACKENDS))
        for family in sorted(families, key=_sort_key):
            lines.append(f"  {family:<26}" + "".join(f"{cell(family, b):<12}" for b in BACKENDS))
        lines += _details(subject["cells"])
        wrapped = subject.get("notes", {}).get("errors")
        if wrapped:  # Keras's words around errors raised in call(): shown, never judged
            lines.append(
                f"  note: {len(wrapped['checks'])} bad inputs raised inside call(), where Keras adds its own words "
                f"around the layer's message (its name, the call's arguments as the backend prints them; e.g. "
                f"{wrapped['example']!r}): the layer's own message is what is judged"
            )
        for reason in sorted(set(subject["tolerances"].values())):
            lines.append(f"  tolerance: {reason}")
    lines.append("")
    for problem in result["problems"]:
        lines.append(f"  problem: {problem}")
    if result["failing"]:
        lines.append(f"  {len(result['failing'])} cells fail or are missing, e.g. " + "; ".join(result["failing"][:5]))
    lines.append(f"RESULT: {'PASS' if result['ok'] else 'FAIL'}")
    return "\n".join(lines)


def _details(cells: dict) -> list[str]:
    """A line per cell that does not pass, in the order the checks run (a cause before what it knocked on), each
    exception printed whole the first time a backend raised it and named after that ("the same error as ...")."""
    lines, first = [], {}  # (backend, exception text) -> the check that raised it first
    for check, row in sorted(cells.items(), key=lambda item: (_sort_key(_family(item[0])), item[0])):
        shared = {(status, tuple(notes)) for status, notes in row.values()}
        if len(shared) == 1 and len(row) == len(BACKENDS) and row[BACKENDS[0]][0] in (SKIP, KNOWN):
            status, notes = row[BACKENDS[0]]  # the same reason on every backend: once
            lines.append(f"  {status} {check} on every backend: " + "; ".join(notes))
            continue
        for backend, (status, notes) in row.items():
            if status == PASS or not notes:
                continue
            shown = []
            for note in notes:
                if note.startswith("raised ") and (backend, note) in first:
                    note = f"the same error as {first[backend, note]} on {backend} (above)"
                elif note.startswith("raised "):
                    first[backend, note] = check
                shown.append(note)
            text = f"  {status} {check} on {backend}: " + "; ".join(shown)
            lines.append(text.replace("\n", "\n      "))
    return lines


def _sort_key(family: str):
    from conformance.harness.declaration import CHECKS

    head = family.split("/")[0]
    head = "gradients" if head == "gradients-float64" else head
    return (CHECKS.index(head) if head in CHECKS else len(CHECKS), family)
