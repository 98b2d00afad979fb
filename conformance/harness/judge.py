"""How the report judges one subject: the primitives every check's `judge` calls, and the order they run in.

A value is compared with its reference (the oracle, else what the check names: the backend's own float64 run,
the model before saving, ...) within the tolerance and with every other backend within twice it; a text must be
the same on every backend (or the reference's); an error must be the declared one. `Judge.run` hands each row
to the check that recorded it (`conformance.harness.checks`), then fails what some backend observed and another
did not, and applies the declared divergences.

Who is blamed: a backend outside tolerance of the oracle; without one, a backend that disagrees with both
others while they agree (the report says "by majority": two backends can share an error); with no majority,
every backend of a disagreeing pair. A backend that matches the reference (the oracle, a declared text) is never
blamed for disagreeing with one that does not.

NumPy only: the report's process imports neither keras nor a backend nor the declaration file.
"""

from __future__ import annotations

import contextlib
import itertools
import json

import numpy as np

from conformance.harness import checks as registry
from conformance.harness.terms import BACKENDS, UNIT_ROUNDOFF, Tolerance, declared_tolerance

PASS, FAIL, KNOWN, SKIP, MISSING = "PASS", "FAIL", "KNOWN", "SKIP", "MISSING"


def values_of(entry: dict) -> np.ndarray:
    return np.asarray(entry["values"], np.float64).reshape(entry["shape"])


def summary(exc: dict) -> str:
    """The exception as the report prints it, whole: its type and message (for TensorFlow's graph errors, `in
    user code:` then a traceback, the line that says what went wrong: the last), then what it was raised from."""
    lines = [line.strip() for line in exc["own"].strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":") and lines[0].startswith(("in user code", "Graph execution error")):
        exc = {**exc, "own": lines[-1]}
    return "raised " + raised_text(exc)


def wrapper_line(entry: dict) -> str:
    """Keras's words around an error raised in `call()`, on one line (the arguments as one backend printed them)."""
    return " ".join(line.strip() for line in entry["wrapper"].splitlines() if line.strip())


def raised_text(entry: dict) -> str:
    """An exception as the report prints it: its type and its whole message, then what it was raised from."""
    text = f"{entry['type']}: {entry['own']}"
    for cause in entry.get("causes", []):
        text += f" (raised from {cause})"
    return text


class Judge:
    """Compares one subject's observations across backends and fills its matrix (`cells`: row -> backend ->
    [status, details]). A check's `judge(judge, row)` calls its primitives; it imports nothing of this module."""

    PASS, FAIL, KNOWN, SKIP, MISSING = PASS, FAIL, KNOWN, SKIP, MISSING

    @staticmethod
    def suffix(row: str) -> str:
        """ ".1" for the second output of a layer with several ("forward.1"), "" for a layer with one."""
        return row[len(row.split(".")[0]) :]

    summary = staticmethod(summary)
    raised_text = staticmethod(raised_text)
    wrapper_line = staticmethod(wrapper_line)

    def __init__(self, name: str, observations: dict, meta: dict):
        self.name, self.obs, self.meta = name, observations, meta  # obs: {backend: {check: entry}}
        self.backends = [b for b in BACKENDS if b in observations]
        self.tolerance = declared_tolerance(meta)
        self.positions = positions([s["shape"] for s in meta["inputs"]])
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

    @contextlib.contextmanager
    def among(self, backends: list[str]):
        """Judging among `backends` alone (the others are SKIP for this row: the check says why)."""
        every, self.backends = self.backends, list(backends)
        try:
            yield
        finally:
            self.backends = every

    # --- numeric --------------------------------------------------------------------------------------------

    def numeric(
        self, check: str, reference_of, tolerance: Tolerance, expected_dtype=None, floor: float = 0.0, trusted=False
    ) -> None:
        """`check` on every backend: against `reference_of(backend)` (an entry, or None), and between backends. A
        backend within tolerance of the oracle is not blamed by the others; nor, with `trusted`, one within
        tolerance of its own reference (one that other checks hold to the others, as an exported artifact's
        model is by `forward`)."""
        entries = {b: self.obs[b].get(check) for b in self.backends}
        usable, exempt, texts = {}, set(), {}
        for backend, entry in entries.items():
            if entry is None:
                # else that check's failure says it, or the backend returned several (`mask.0`, judged apart)
                if not self._raised_above(backend, check) and not self.outputs_of(check, backend):
                    self.set(check, backend, MISSING, "not observed")
            elif entry["kind"] == "raised":
                self.set(check, backend, FAIL, summary(entry))
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
            if (reference.get("oracle") or trusted) and self.cells[check][backend][0] == PASS:
                exempt.add(backend)  # within tol of the oracle: a pair it disagrees with is the other's error
        for a, b in itertools.combinations(usable, 2):
            self._close(check, {a: usable[a], b: usable[b]}, None, tolerance, "pair", floor)
        self.blame_pairs(check, exempt)
        for backend in [*usable, *texts]:
            self.set(check, backend, PASS)

    def _close(self, check, entries: dict, reference, tolerance: Tolerance, against: str, floor: float = 0.0) -> None:
        (a_name, a), *rest = entries.items()
        got = values_of(a)
        if against == "reference":
            # at the coarser precision of the two (a reference stored in float32 for a float64 output)
            want, dtype = values_of(reference), coarser(a["dtype"], reference["dtype"])
            what = reference.get("label") or ("the oracle" if reference.get("oracle") else f"{a_name}'s float64 run")
        else:
            ((b_name, b),) = rest
            # two dtypes (one backend's output in the wrong dtype, which its own row says): at the coarser's
            # precision, so the other backend is not blamed for the rounding the wrong dtype lacks
            want, dtype = values_of(b), coarser(a["dtype"], b["dtype"])
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
        family = registry.scale_family(check)
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
            self.pair(check, *entries, ok, detail)

    def pair(self, check: str, a: str, b: str, ok: bool, detail: str) -> None:
        """Two backends' observations of `check` agree (`ok`) or not (`detail`); `blame_pairs` judges them."""
        self.cells.setdefault(check, {}).setdefault("_pairs", []).append(((a, b), ok, detail))

    def blame_pairs(self, check, exempt=frozenset()) -> None:
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

    # --- texts ----------------------------------------------------------------------------------------------------

    def same_text(self, check: str, must_be=None) -> None:
        """The same text on every backend; with `must_be` (the reference), that text: a backend that has it is
        never blamed for disagreeing with one that has not."""
        values = {}
        for backend in self.backends:
            entry = self.obs[backend].get(check)
            if entry is None:
                self.set(check, backend, MISSING, "not observed")
            elif entry["kind"] == "raised":
                self.set(check, backend, FAIL, summary(entry))
            else:
                values[backend] = entry.get("value", json.dumps(entry.get("shape")))
                if must_be is not None and values[backend] != must_be:
                    self.set(check, backend, FAIL, f"{values[backend]!r}, expected {must_be!r}")
        for a, b in itertools.combinations(values, 2):
            self.pair(check, a, b, values[a] == values[b], f"{a}: {values[a]!r}; {b}: {values[b]!r}")
        self.blame_pairs(check, {b for b, v in values.items() if must_be is not None and v == must_be})
        for backend in values:
            self.set(check, backend, PASS)

    # --- the subject ------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Every row every backend observed, each judged by the check that recorded it; then what is missing,
        and the declared divergences."""
        rows = sorted({c for b in self.backends for c in self.obs[b]})
        self.family_scale = {}
        for backend in self.backends:
            for row, entry in self.obs[backend].items():
                family = registry.scale_family(row)
                if family and entry["kind"] == "numeric":
                    values = np.abs(values_of(entry))
                    top = float(np.max(values[np.isfinite(values)], initial=0.0))
                    self.family_scale[family] = max(self.family_scale.get(family, 0.0), top)
        for row in rows:
            if row.split(".")[0] in registry.UNJUDGED:
                continue  # a backend's own reference for another of its rows, not judged itself
            if registry.head(row).startswith("oracle"):
                for backend in self.backends:  # a reference that raised judges nothing: the subject fails
                    entry = self.obs[backend].get(row)
                    if entry is not None and entry["kind"] == "raised":
                        self.set(row, backend, FAIL, "the oracle: " + summary(entry))
                continue
            if self._not_applicable(row) or self._raised_on_some(row):
                continue
            check = registry.owner(row)
            if check is None:
                self.same_text(row)
            else:
                check.judge(self, row)
        for check in registry.CHECKS:
            if hasattr(check, "finish"):
                check.finish(self, rows)
        self._expected_checks(rows)
        self._divergences()

    def own(self, row: str, label: str = "float64 run"):
        """The reference `row`, another of each backend's own observations, named in the report by `label`."""
        return lambda b: None if self.obs[b].get(row) is None else {**self.obs[b][row], "label": f"{b}'s {label}"}

    def oracle_of(self, suffix: str):
        """The oracle's output `suffix` ("" or ".1") as every backend's reference, or None without an oracle."""
        entry = self.first("oracle" + suffix) if self.meta.get("has_oracle") else None
        if entry is None:
            return None
        entry = {**entry, "oracle": True}
        return lambda b: entry

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
            self.set(check, backend, FAIL, summary(entry))
        for backend in ran:
            self.set(check, backend, PASS)
        return True

    def first(self, row: str) -> dict | None:
        """`row`'s entry on the first backend that has it (oracles: NumPy, the same bytes on every backend)."""
        return next((self.obs[b][row] for b in self.backends if row in self.obs[b]), None)

    def outputs_of(self, prefix: str, backend: str) -> list[str]:
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
                if check.startswith("oracle") or check.split(".")[0] in registry.UNJUDGED:
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
            head = registry.head(check_prefix)
            if not matched and self.cells.get(head, {}).get(backend, [None])[0] == SKIP:
                continue  # its check did not run here (no export runtime installed, say): SKIP says why
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


def coarser(a: str, b: str) -> str:
    """Of two dtypes, the one of larger unit roundoff (a non-float dtype counts as exact)."""
    return max((a, b), key=lambda d: UNIT_ROUNDOFF.get(d, 0.0))


def positions(shapes: list) -> int:
    """How many terms a weight's gradient sums over at most: the positions of the inputs' leading axes broadcast
    together (aligned from the right, the largest size on each axis), 1 for inputs of rank 1 or less."""
    leading = [list(shape[:-1]) for shape in shapes if len(shape) > 1]
    rank = max((len(shape) for shape in leading), default=0)
    padded = [[1] * (rank - len(shape)) + shape for shape in leading]
    return int(np.prod([max(sizes) for sizes in zip(*padded)])) if rank else 1
