"""What a complete backend session observes: every observation declared once, with its reference and tolerance.

The report's PASS means "every observation declared here was made by every backend, and agrees". Tests record
against these objects (`observer.numeric(expected.golden_output(case, "eager"), ...)`), never by building a key;
each test says which ones it makes (`@pytest.mark.observes(...)`), and collecting the whole suite fails if a
declared observation has no test to make it (`check_producers`). The report loops over `NUMERIC` and `ERRORS`.
Adding an observation is one entry here plus the test that makes it.

This module reads the catalogue and the golden data with NumPy alone: the report and `golden_check` use it
without a Keras backend.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from conformance.subjects.hyperzzw import bad_inputs, cases, golden, tolerance

COMPILED_MODE = "jit"
OUTPUT_MODES = ("eager", COMPILED_MODE)
GRADIENTS = ("dx", "dcontext", "dkernel")
TRAINING_QUANTITIES = ("losses", "kernels", "ws")


@functools.cache
def _case_arrays(case_id: str) -> dict:
    """A golden case's stored arrays, read and verified once per process."""
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


@functools.cache
def _training() -> dict:
    return golden.load_npz("training.npz")


@functools.cache
def _masks() -> dict:
    return golden.load_npz("masks.npz")


@dataclasses.dataclass(frozen=True)
class Numeric:
    """One numeric observation: what a backend computed for `source` (a golden case, the training run, or a
    saved file holding `case`'s model), compared with `case`'s stored oracle value of `quantity`."""

    source: str
    quantity: str
    mode: str
    case: str  # the golden case (or "training") holding the reference values

    @property
    def key(self) -> str:
        """The record's key for this observation (records are JSON); built here and nowhere else."""
        return f"{self.source}/{self.quantity}/{self.mode}"

    def reference(self) -> tuple[np.ndarray, str, Callable[[str | None], np.ndarray]]:
        """(the oracle's values, their dtype, the elementwise tolerance for a backend: `atol(backend)`)."""
        if self.case == "masks":  # a mask is exact: no tolerance
            values = _masks()[f"{self.source.removeprefix('mask-')}/output_mask"]
            return values, "bool", lambda backend: np.zeros(values.shape)
        if self.case == "training":
            data = _training()
            if self.quantity == "losses":
                return data["losses"], cases.TRAINING.dtype, lambda backend: data["loss_atol"]
            # the state after each step: kernels[1:] / ws[1:], with that step's bound
            atol = data["kernel_atol"] if self.quantity == "kernels" else data["w_atol"]
            return data[self.quantity][1:], cases.TRAINING.dtype, lambda backend: atol
        case = cases.by_id(self.case)
        return (
            _case_arrays(case.id)[self.quantity],
            case.dtype,
            lambda backend: _case_atols(case.id, backend)[self.quantity],
        )


@dataclasses.dataclass(frozen=True)
class ErrorCheck:
    """One bad-input entry in one mode: the (type, message) it raises, compared with `golden/hyperzzw/errors.json`."""

    case: str
    mode: str

    @property
    def key(self) -> str:
        return f"{self.case}/{self.mode}"


def _declare() -> tuple[dict[str, Numeric], dict[str, ErrorCheck]]:
    numeric = []
    for case in cases.CASES:
        numeric += [Numeric(case.id, "output", mode, case.id) for mode in OUTPUT_MODES]
        numeric += [
            Numeric(case.id, name, "grad", case.id)
            for name in GRADIENTS
            if name != "dcontext" or case.context_dtype is None  # no gradient w.r.t. an integer context
        ]
    numeric += [Numeric("training", q, mode, "training") for q in TRAINING_QUANTITIES for mode in OUTPUT_MODES]
    # The saved files all hold KERAS_CASE's model: a .keras file and the .weights.h5 inside it per backend that
    # wrote one, and each format a session round-trips itself.
    numeric += [Numeric(f"keras-file-{b}", "output", "eager", golden.KERAS_CASE) for b in golden.KERAS_BACKENDS]
    numeric += [Numeric(f"weights-file-{b}", "output", "eager", golden.KERAS_CASE) for b in golden.KERAS_BACKENDS]
    numeric += [Numeric(f"saved-{fmt}", "output", "eager", golden.KERAS_CASE) for fmt in golden.SAVED_FORMATS]
    # The output mask of each mask case whose output carries one (the others are checked to carry none).
    numeric += [
        Numeric(f"mask-{cases.mask_slug(case)}", "mask", mode, "masks")
        for case in cases.MASK_CASES
        if case.x_mask_shape is not None or (case.context_mask_shape and len(case.context_shape) == len(case.x_shape))
        for mode in OUTPUT_MODES
    ]
    errors = [ErrorCheck(case.id, mode) for case in bad_inputs.CATALOGUE for mode in case.modes]
    return {o.key: o for o in numeric}, {e.key: e for e in errors}


NUMERIC, ERRORS = _declare()
ALL = {**NUMERIC, **ERRORS}


def _lookup(key: str):
    try:
        return ALL[key]
    except KeyError:
        raise KeyError(f"{key!r} is not a declared observation (conformance/expected.py)") from None


# The lookups tests record with: each returns a declared observation or raises KeyError.
def golden_output(case: cases.Case, mode: str) -> Numeric:
    return _lookup(Numeric(case.id, "output", mode, case.id).key)


def golden_gradient(case: cases.Case, quantity: str) -> Numeric:
    return _lookup(Numeric(case.id, quantity, "grad", case.id).key)


def golden_gradients(case: cases.Case) -> list[Numeric]:
    return [o for o in NUMERIC.values() if o.source == case.id and o.mode == "grad"]


def training(quantity: str, mode: str) -> Numeric:
    return _lookup(Numeric("training", quantity, mode, "training").key)


def keras_file(saved_by: str) -> Numeric:
    return _lookup(Numeric(f"keras-file-{saved_by}", "output", "eager", golden.KERAS_CASE).key)


def weights_file(saved_by: str) -> Numeric:
    return _lookup(Numeric(f"weights-file-{saved_by}", "output", "eager", golden.KERAS_CASE).key)


def saved_format(fmt: str) -> Numeric:
    return _lookup(Numeric(f"saved-{fmt}", "output", "eager", golden.KERAS_CASE).key)


def output_mask(case: cases.MaskCase, mode: str) -> Numeric | None:
    """The declared output mask of `case` in `mode`, or None where the output carries no mask."""
    return NUMERIC.get(Numeric(f"mask-{cases.mask_slug(case)}", "mask", mode, "masks").key)


def error_check(case: bad_inputs.BadCase, mode: str) -> ErrorCheck:
    return _lookup(ErrorCheck(case.id, mode).key)


def check_producers(produced: set) -> list[str]:
    """The declared observations no collected test makes (empty when every one has its test)."""
    return sorted(key for key, observation in ALL.items() if observation not in produced)
