"""The self-test: does your declaration catch the bugs layers have? For every subject, the harness plants generic
defects, each on ONE backend, by wrapping your layer (never editing it), runs them like any subject, and says
per defect whether the report named it on the right backend and check, and, where not, why.

    python -m conformance.harness selftest my_subjects.py        # the same --python and --out as a run

Each defect is a subject of its own, `<subject>--<defect>--<backend>`, running only the checks the defect shows
in (and a `<subject>--baseline` of the unplanted layer with the same checks, to tell a planted failure from one
the layer already has). Verdicts:

- caught: the report fails the defect's check on the planted backend, and no other backend gains a failure;
- not caught, with the reason the declaration gives (no bad inputs declared, no input mask, a check skipped, a
  declared divergence there, ...): what this declaration cannot see; the self-test still passes;
- MISSED (no reason the declaration gives) or MISFILED (another backend blamed): the harness is wrong; the
  self-test fails.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from conformance.harness import checks as registry
from conformance.harness.checks import family as _family
from conformance.harness.declaration import BACKENDS, CHECKS, Subject, default_tolerance

# defect -> (what it plants, the checks it runs with, the check family that must fail)
DEFECTS = {
    "output-off": ("the output off by 8 tolerances", ("forward",), "forward"),
    "traced-off": ("the output off by 8 tolerances when traced or compiled only", ("compiled",), "compiled"),
    "float64-as-float32": ("float64 results rounded to float32", ("policies",), "policies/float64"),
    "policy-dtype": ("float32 output under a float16 policy", ("policies",), "policies/float16"),
    "gradient-scaled": ("gradients 1.5 times too large, the output exact", ("gradients",), "gradients"),
    "mask-dropped": ("no output mask", ("mask",), "mask"),
    "lost-size": ("compute_output_spec loses the last axis's size", ("symbolic",), "symbolic"),
    "config-key-dropped": ("get_config() drops a key", ("config",), "config"),
    "weight-renamed": ("a weight named differently", (), "weights"),
    "error-text": ("every error's text changed", ("errors",), "errors"),
    "error-type": ("every error's type changed (ValueError <-> TypeError)", ("errors",), "errors"),
}
SEPARATOR = "--"
# The defects that took effect in this process (the record phase clears it before each subject and stores it):
# a defect planted only in traced code never takes effect where the backend runs the layer's call eagerly.
FIRED: set[str] = set()
BASELINE = "baseline"


def planted(subjects: list[Subject]) -> list[Subject]:
    """Per subject, its baseline and one subject per defect, the defect planted on one backend (in turn, and
    never where the subject declares that check to diverge already)."""
    out = []
    every = sorted({c for _, checks, _ in DEFECTS.values() for c in checks})
    for i, subject in enumerate(subjects):
        out.append(_restricted(subject, f"{subject.name}{SEPARATOR}{BASELINE}", every))
        for k, (defect, (_, checks, target)) in enumerate(DEFECTS.items()):
            diverging = {d.backend for d in subject.divergences if _family(d.check).startswith(target)}
            candidates = [BACKENDS[(i + k + j) % len(BACKENDS)] for j in range(len(BACKENDS))]
            backend = next((b for b in candidates if b not in diverging), candidates[0])
            name = f"{subject.name}{SEPARATOR}{defect}{SEPARATOR}{backend}"
            factory = functools.partial(_make_planted, subject.make_layer, defect, backend, _offset(subject))
            out.append(_restricted(dataclasses.replace(subject, layer=factory), name, checks))
    return out


def _restricted(subject: Subject, name: str, checks) -> Subject:
    """The subject under `name`, running only `checks` (and the layer's build, weights and forward call, which
    every run makes); its divergences on those checks only."""
    reason = "self-test: not a check this planted defect shows in"
    kept = (*checks, *registry.ALWAYS)
    skip = {**{c: reason for c in CHECKS if c not in kept}, **subject.skip}
    divergences = [d for d in subject.divergences if registry.head(d.check) in kept]
    return dataclasses.replace(subject, name=name, skip=skip, divergences=divergences)


def _offset(subject: Subject) -> float:
    """8 float32 tolerances of the subject's forward pass, relative to its largest output."""
    tolerance = subject.tolerance or default_tolerance([s.shape for s in subject.input_list()])
    return 8 * tolerance.atol("float32", 1.0)


def _make_planted(make_layer, defect: str, backend: str, offset: float, /, **kwargs):
    """The subject's layer made as it would be (`make_layer`, the subject's), then given a class that plants
    `defect` on `backend`. The planting's own parameters are positional only: a layer's arguments (`kwargs`) may
    share their names (Rescaling takes `offset`)."""
    import keras

    try:
        made = make_layer(**kwargs)
    except Exception as exc:
        if defect.startswith("error-") and keras.backend.backend() == backend:
            raise _altered(exc, defect, backend) from None
        raise
    made.__class__ = _planted_class(type(made), defect, backend, offset)
    return made


@functools.cache
def _planted_class(cls, defect: str, backend: str, offset: float):
    """A subclass of the layer's class, under the same name and module, that plants `defect` on `backend`."""
    import keras
    from keras import ops

    def here() -> bool:
        return keras.backend.backend() == backend

    def each_float(out, fn):
        return keras.tree.map_structure(
            lambda t: fn(t) if hasattr(t, "dtype") and keras.backend.is_float_dtype(t.dtype) else t, out
        )

    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    if defect in ("output-off", "traced-off", "float64-as-float32", "policy-dtype", "gradient-scaled"):

        def alter(self, t):
            if defect == "output-off" or (defect == "traced-off" and _tracing(t)):
                FIRED.add(defect)
                return t + ops.cast(offset, t.dtype) * ops.max(ops.abs(t))
            if defect == "float64-as-float32" and self.compute_dtype == "float64":
                FIRED.add(defect)
                return ops.cast(ops.cast(t, "float32"), "float64")
            if defect == "policy-dtype" and self.compute_dtype == "float16":
                FIRED.add(defect)
                return ops.cast(t, "float32")
            if defect == "gradient-scaled":
                FIRED.add(defect)
                frozen = ops.stop_gradient(t)
                return frozen + ops.cast(1.5, t.dtype) * (t - frozen)
            return t

        @functools.wraps(cls.call)
        def call(self, *args, **kwargs):
            out = cls.call(self, *args, **kwargs)
            return each_float(out, lambda t: alter(self, t)) if here() else out

        namespace["call"] = call
    elif defect == "mask-dropped":

        @functools.wraps(cls.compute_mask)
        def compute_mask(self, *args, **kwargs):
            if here():
                FIRED.add(defect)
                return None
            return cls.compute_mask(self, *args, **kwargs)

        namespace["compute_mask"] = compute_mask
    elif defect == "lost-size":

        def compute_output_spec(self, *args, **kwargs):
            spec = cls.compute_output_spec(self, *args, **kwargs)
            if not here():
                return spec
            FIRED.add(defect)
            return keras.tree.map_structure(
                lambda s: keras.KerasTensor(tuple(s.shape[:-1]) + (None,), dtype=s.dtype) if s.shape else s, spec
            )

        namespace["compute_output_spec"] = compute_output_spec
    elif defect == "config-key-dropped":

        def get_config(self):
            config = cls.get_config(self)
            if here():
                FIRED.add(defect)
                own = [k for k in config if k not in ("name", "trainable", "dtype")]
                config.pop(own[0] if own else "dtype", None)
            return config

        namespace["get_config"] = get_config
    elif defect in ("weight-renamed", "error-text", "error-type"):

        def __call__(self, *args, **kwargs):
            try:
                out = cls.__call__(self, *args, **kwargs)
            except Exception as exc:
                if defect.startswith("error-") and here():
                    raise _altered(exc, defect, backend) from None
                raise
            if defect == "weight-renamed" and here() and self.weights and not self.weights[0].path.endswith("_"):
                FIRED.add(defect)
                self.weights[0]._path += "_"  # the name the weights check reads
            return out

        namespace["__call__"] = __call__
    return type(cls.__name__, (cls,), namespace)


def _tracing(t) -> bool:
    """Whether `t` is being traced or compiled (jax.jit, tf.function, torch.compile) rather than run eagerly."""
    import keras

    name = keras.backend.backend()
    if name == "jax":
        import jax

        return isinstance(t, jax.core.Tracer)
    if name == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if name == "torch":
        import torch

        return torch.compiler.is_compiling()
    return False


def _altered(exc: BaseException, defect: str, backend: str) -> BaseException:
    """The layer's own exception with its text (error-text) or its type (error-type) changed."""
    from conformance.harness.run import keras_call_error

    inner, text, _ = keras_call_error(exc)
    FIRED.add(defect)
    if defect == "error-text":
        try:
            return type(inner)(f"{text} (planted: this text differs on {backend})")
        except Exception:
            return RuntimeError(f"{text} (planted: this text differs on {backend})")
    return (TypeError if isinstance(inner, ValueError) else ValueError)(text)


# --- the verdicts -----------------------------------------------------------------------------------------------


def evaluate(result: dict, records: dict) -> dict:
    """Per subject, per defect: caught, not caught (with the declaration's reason), MISSED or MISFILED.
    `result` is the report's (`compare.build`), `records` the records it read (`compare.read`)."""
    subjects = result["subjects"]
    out = {}
    for name, subject in subjects.items():
        parts = name.split(SEPARATOR)
        if len(parts) != 3:
            continue
        original, defect, backend = parts
        base_name = f"{original}{SEPARATOR}{BASELINE}"
        baseline = subjects.get(base_name, {"cells": {}, "meta": {}})
        recorded = records.get(backend, {}).get("record", {}).get("subjects", {})
        observed = recorded.get(base_name, {}).get("checks", {})
        fired = defect in recorded.get(name, {}).get("planted_fired", [])
        out.setdefault(original, {})[defect] = _verdict(defect, backend, subject, baseline, observed, fired)
    return out


def _bad(status: str) -> bool:
    return status in ("FAIL", "MISSING")


def _verdict(defect: str, backend: str, subject: dict, baseline: dict, observed: dict, fired: bool) -> dict:
    target = DEFECTS[defect][2]
    cells, before = subject["cells"], baseline["cells"]
    new = {
        (check, b)
        for check, row in cells.items()
        for b, (status, _) in row.items()
        if _bad(status) and not _bad(before.get(check, {}).get(b, ["PASS"])[0])
    }
    hits = sorted(check for check, b in new if b == backend and _family(check).startswith(target))
    elsewhere = sorted(f"{check} on {b}" for check, b in new if b != backend)
    verdict = {"backend": backend, "planted": DEFECTS[defect][0], "check": target}
    if elsewhere:
        return {**verdict, "verdict": "MISFILED", "why": "also failed: " + ", ".join(elsewhere)}
    if hits:
        return {**verdict, "verdict": "caught", "why": ", ".join(hits)}
    why = _why_not(defect, backend, target, subject, observed) or (
        "" if fired else f"the planted defect never took effect on {backend}" + _NEVER.get(defect, "")
    )
    return {**verdict, "verdict": "not caught" if why else "MISSED", "why": why or _shown(cells, target, backend)}


_NEVER = {
    "traced-off": ": its compiler runs the layer's call eagerly (a graph break before it), so no traced code differs",
}


def _why_not(defect: str, backend: str, target: str, subject: dict, observed: dict) -> str:
    """The declaration's reason a planted defect cannot show (from the subject's meta and what its baseline
    observed on that backend), or "" when it has none."""
    meta, cells = subject["meta"], subject["cells"]
    skip = meta.get("skip", {})
    head = target.split("/")[0]
    if head in skip and not skip[head].startswith("self-test"):
        return f"the subject skips {head}: {skip[head]}"
    for check, row in cells.items():
        status, notes = row.get(backend, ["PASS", []])
        if _family(check).startswith(target) and status == "KNOWN":
            return f"{check} is declared to diverge on {backend}: {notes[0] if notes else ''}"
    kinds = {c: e.get("kind") for c, e in observed.items()}
    floats = [
        e
        for c, e in observed.items()
        if c.split(".")[0] == "forward" and str(e.get("dtype", "")).startswith(("float", "bfloat"))
    ]
    if defect.startswith("error-") and not meta.get("bad_inputs"):
        return "the subject declares no bad inputs"
    if defect == "mask-dropped" and not any(k == "numeric" for c, k in kinds.items() if c.split(".")[0] == "mask"):
        why = (
            "the subject takes keyword inputs" if "not applicable" in str(observed.get("mask", {}).get("value")) else ""
        )
        return why or "the layer returns no mask for the declared inputs (declare an input with mask=)"
    if defect == "weight-renamed" and json.loads(observed.get("weights", {}).get("value", "[]")) == []:
        return "the layer has no weights"
    if defect == "gradient-scaled" and not any(c.startswith("gradients/") for c in observed):
        return "the layer has no gradient to take (no trainable weight, no float input)"
    if defect in ("output-off", "traced-off", "gradient-scaled", "float64-as-float32", "policy-dtype") and not floats:
        return "the layer has no float output"
    if defect == "config-key-dropped" and observed.get("config", {}).get("value") in (None, "{}"):
        return "the layer has no config"
    f64 = [e for c, e in observed.items() if c.split(".")[0] == "policies/float64" and e.get("kind") == "numeric"]
    if defect == "float64-as-float32" and f64 and all(_float32_exact(e["values"]) for e in f64):
        return "its float64 output holds float32 values exactly here (no arithmetic on float32-exact weights)"
    return ""


def _float32_exact(values) -> bool:
    import numpy as np

    array = np.asarray(values, np.float64)
    return bool(np.array_equal(array.astype(np.float32).astype(np.float64), array, equal_nan=True))


def _shown(cells: dict, target: str, backend: str) -> str:
    """What the report said of the defect's check on the planted backend (for a MISSED verdict)."""
    rows = {c: row[backend] for c, row in cells.items() if _family(c).startswith(target) and backend in row}
    if not rows:
        return f"no {target} row on {backend}"
    return "; ".join(f"{c}: {s}" + (f" ({'; '.join(n)})" if n else "") for c, (s, n) in rows.items())


def faults(verdicts: dict) -> list[str]:
    """The planted defects the harness missed or blamed on another backend: its own faults."""
    return [f"{s}: {d}" for s, ds in verdicts.items() for d, v in ds.items() if v["verdict"] in ("MISSED", "MISFILED")]


def passed(verdicts: dict) -> bool:
    return bool(verdicts) and not faults(verdicts)


def render(verdicts: dict) -> str:
    lines = []
    for subject, defects in verdicts.items():
        lines.append(f"## {subject}")
        for defect, v in defects.items():
            lines.append(f"  {v['verdict']:<11} {defect:<19} on {v['backend']:<11} {v['why']}")
    bad = faults(verdicts)
    counts = {}
    for ds in verdicts.values():
        for v in ds.values():
            counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
    lines.append("")
    lines.append("  " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if bad:
        lines.append("  the harness missed or misfiled: " + "; ".join(bad))
    lines.append(f"SELF-TEST: {'PASS' if passed(verdicts) else 'FAIL'}")
    return "\n".join(lines)


def write(folder: Path, verdicts: dict) -> str:
    text = render(verdicts)
    (folder / "selftest.txt").write_text(text + "\n")
    (folder / "selftest.json").write_text(json.dumps(verdicts, indent=1))
    return text
