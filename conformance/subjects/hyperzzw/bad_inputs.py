"""The bad-input catalogue: every bad argument and input, and the exact error it must raise.

This is the specification of the layer's errors, written by hand: each entry states the exception type and
the exact message, and every backend must raise exactly that pair, in every mode the entry lists:

- ``construct``: the constructor call itself (arguments);
- ``eager``: a fresh layer called on concrete tensors (the error comes from `build`);
- ``symbolic``: a fresh layer called on `keras.Input`s (so a functional model fails when it is built);
- ``built``: a layer first built on a valid pair (`prebuild`), then called on the bad inputs (the error
  comes from `call`).

Messages from Keras itself (unknown keyword arguments, unknown initializer names, non-tensor positional
arguments) are Keras's text; they are listed because users meet them through this layer and they must be
the same on every backend too. `golden/hyperzzw/errors.json` is written from this catalogue by the generator; the
fixture-staleness test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

NAME = "`HyperZZWOperator`"
INPUT_MODES = ("eager", "symbolic", "built")


class T(tuple):
    """In an `inputs` structure: a float32 tensor of this shape (`None` dims only in symbolic mode)."""


@dataclasses.dataclass(frozen=True)
class BadCase:
    id: str
    message: str
    kwargs: dict = dataclasses.field(default_factory=dict)
    inputs: Any = None
    modes: tuple = ("construct",)
    error: str = "ValueError"
    prebuild: tuple = (T((4, 5)), T((4, 3)))


def _dim(name: str, value) -> BadCase:
    return BadCase(
        id=f"{name}={value!r}",
        kwargs={"input_dim": 5, name: value} if name == "context_dim" else {name: value},
        message=(f"Received an invalid value for `{name}`, expected a positive integer. Received: {name}={value!r}"),
    )


def _structure(id: str, inputs, received: str, modes=INPUT_MODES) -> BadCase:
    return BadCase(
        id=id,
        kwargs={"input_dim": 5},
        inputs=inputs,
        modes=modes,
        message=f"{NAME} expects its inputs to be a list or tuple of two tensors, [x, context]. Received: {received}",
    )


def _shapes(id: str, x, c, expects: str, kwargs=None, modes=INPUT_MODES) -> BadCase:
    return BadCase(
        id=id,
        kwargs=kwargs or {"input_dim": x[-1] if x and x[-1] else 5},
        inputs=[T(x), T(c)],
        modes=modes,
        message=f"{NAME} expects {expects}. Received: x.shape={tuple(x)}, context.shape={tuple(c)}",
    )


_NON_TENSOR = (
    "Only input tensors may be passed as positional arguments. The following argument value should be "
    "passed as a keyword argument: {} (of type <class '{}'>)"
)
_BROADCAST = "the leading dimensions of `x` and `context` to be broadcast-compatible"

CATALOGUE: tuple[BadCase, ...] = (
    # --- constructor arguments --------------------------------------------------------------------------
    *(_dim("input_dim", v) for v in (0, -1, -64, True, False, 1.5, 16.0, None, "16", [16], (16,), 1j)),
    *(_dim("context_dim", v) for v in (0, -2, True, 2.5, 8.0, "8", [8])),
    BadCase(
        id="kernel_initializer='nope'",
        kwargs={"input_dim": 5, "kernel_initializer": "nope"},
        message="Could not interpret initializer identifier: nope",
    ),
    BadCase(
        id="kernel_regularizer='nope'",
        kwargs={"input_dim": 5, "kernel_regularizer": "nope"},
        message="Could not interpret regularizer identifier: nope",
    ),
    BadCase(
        id="kernel_constraint='nope'",
        kwargs={"input_dim": 5, "kernel_constraint": "nope"},
        message="Could not interpret constraint identifier: nope",
    ),
    BadCase(
        id="unknown keyword",
        kwargs={"input_dim": 5, "units": 3},
        message="Unrecognized keyword arguments passed to HyperZZWOperator: {'units': 3}",
    ),
    BadCase(
        id="dtype='nope'",
        kwargs={"input_dim": 5, "dtype": "nope"},
        message=(
            "Cannot convert 'nope' to a mixed precision DTypePolicy. Valid policies include 'mixed_float16', "
            "'mixed_bfloat16', and the name of any float dtype such as 'float32'."
        ),
    ),
    # --- the structure of the inputs --------------------------------------------------------------------
    _structure("single tensor", T((4, 5)), "a single tensor of shape (4, 5)"),
    _structure("list of one", [T((4, 5))], "a list of 1 item: [(4, 5)]"),
    _structure("list of three", [T((4, 5)), T((4, 3)), T((4, 3))], "a list of 3 items: [(4, 5), (4, 3), (4, 3)]"),
    _structure("tuple of three", (T((4, 5)), T((4, 3)), T((4, 3))), "a tuple of 3 items: [(4, 5), (4, 3), (4, 3)]"),
    _structure("empty list", [], "no tensors", modes=("eager", "built")),
    _structure("None", None, "no tensors", modes=("eager", "built")),
    _structure("dict", {"x": T((4, 5)), "context": T((4, 3))}, "an object of type dict"),
    _structure("context None", [T((4, 5)), None], "a list of 2 items: [(4, 5), <NoneType>]"),
    BadCase(
        id="context a string",
        kwargs={"input_dim": 5},
        inputs=[T((4, 5)), "abc"],
        modes=INPUT_MODES,
        message=_NON_TENSOR.format("abc", "str"),
    ),
    BadCase(
        id="python lists",
        kwargs={"input_dim": 5},
        inputs=[[1.0] * 5, [1.0] * 3],
        modes=("eager",),
        message=_NON_TENSOR.format("1.0", "float"),
    ),
    # --- ranks ------------------------------------------------------------------------------------------
    _shapes(
        "x rank 0",
        (),
        (4, 3),
        "`x` to have rank >= 2, (batch_size, ..., input_dim)",
        {"input_dim": 5},
        modes=("eager", "built"),
    ),
    _shapes("x rank 1", (5,), (4, 3), "`x` to have rank >= 2, (batch_size, ..., input_dim)"),
    _shapes("context rank 1", (4, 5), (3,), "`context` to have rank 2 or the rank of `x` (2)"),
    _shapes("context rank 3, x rank 2", (4, 5), (4, 2, 3), "`context` to have rank 2 or the rank of `x` (2)"),
    _shapes("context rank 4, x rank 3", (4, 7, 5), (4, 7, 1, 3), "`context` to have rank 2 or the rank of `x` (3)"),
    _shapes("context rank 3, x rank 4", (4, 2, 7, 5), (4, 2, 3), "`context` to have rank 2 or the rank of `x` (4)"),
    # --- last dimensions --------------------------------------------------------------------------------
    _shapes(
        "x last dim 6 for input_dim 5", (4, 6), (4, 3), "the last dimension of `x` to be input_dim=5", {"input_dim": 5}
    ),
    _shapes(
        "x last dim 1 for input_dim 5",
        (4, 7, 1),
        (4, 3),
        "the last dimension of `x` to be input_dim=5",
        {"input_dim": 5},
    ),
    _shapes(
        "x last dim unknown",
        (None, None),
        (None, 3),
        "the last dimension of `x` to be input_dim=5",
        {"input_dim": 5},
        modes=("symbolic",),
    ),
    _shapes(
        "context last dim unknown",
        (None, 5),
        (None, None),
        "the last dimension of `context` to be defined",
        modes=("symbolic",),
    ),
    _shapes(
        "context_dim=2, context 3",
        (4, 5),
        (4, 3),
        "the last dimension of `context` to be context_dim=2",
        {"input_dim": 5, "context_dim": 2},
        modes=("eager", "symbolic"),
    ),
    _shapes(
        "context_dim=4, rank-3 context 3",
        (4, 7, 5),
        (4, 7, 3),
        "the last dimension of `context` to be context_dim=4",
        {"input_dim": 5, "context_dim": 4},
        modes=("eager", "symbolic"),
    ),
    # --- leading dimensions -----------------------------------------------------------------------------
    _shapes("batch 4 vs 3", (4, 5), (3, 3), _BROADCAST),
    _shapes("rank-3 x, rank-2 context, batch 4 vs 3", (4, 7, 5), (3, 3), _BROADCAST),
    _shapes("rank-3 both, time 7 vs 6", (4, 7, 5), (4, 6, 3), _BROADCAST),
    _shapes("rank-3 both, batch 2 vs 3", (2, 7, 5), (3, 7, 3), _BROADCAST),
    _shapes("rank-4 both, height 2 vs 3", (4, 2, 6, 5), (4, 3, 6, 3), _BROADCAST),
    _shapes("rank-4 both, width 6 vs 5", (1, 2, 6, 5), (1, 1, 5, 3), _BROADCAST),
    # --- edge sizes: the mismatch at each leading axis of ranks 3-5 and 8, every other dim 1 in both ---
    *(
        _shapes(
            f"rank {rank}, axis {axis}: {a} vs {b}, every other dim 1",
            tuple(a if i == axis else 1 for i in range(rank - 1)) + (5,),
            tuple(b if i == axis else 1 for i in range(rank - 1)) + (3,),
            _BROADCAST,
        )
        for rank in (3, 4, 5, 8)
        for axis in range(rank - 1)
        for a, b in ((2, 3), (3, 2))
    ),
    # --- edge sizes of the last dimensions: 1 against a larger size, either way ---------------------------
    _shapes(
        "x last dim 1 for input_dim 3",
        (4, 1),
        (4, 3),
        "the last dimension of `x` to be input_dim=3",
        {"input_dim": 3},
        modes=("eager", "symbolic"),
    ),
    _shapes(
        "x last dim 2 for input_dim 1",
        (4, 2),
        (4, 3),
        "the last dimension of `x` to be input_dim=1",
        {"input_dim": 1},
        modes=("eager", "symbolic"),
    ),
    _shapes(
        "context_dim=1, context 2",
        (4, 5),
        (4, 2),
        "the last dimension of `context` to be context_dim=1",
        {"input_dim": 5, "context_dim": 1},
        modes=("eager", "symbolic"),
    ),
    _shapes(
        "context_dim=2, context 1",
        (4, 5),
        (4, 1),
        "the last dimension of `context` to be context_dim=2",
        {"input_dim": 5, "context_dim": 2},
        modes=("eager", "symbolic"),
    ),
    # --- a built layer called on inputs that disagree with how it was built ---------------------------
    _shapes(
        "built with context 3, called with 2",
        (4, 5),
        (4, 2),
        "the last dimension of `context` to be context_dim=3",
        modes=("built",),
    ),
    _shapes(
        "built with input_dim 5, called with x last dim 6",
        (4, 6),
        (4, 3),
        "the last dimension of `x` to be input_dim=5",
        {"input_dim": 5},
        modes=("built",),
    ),
)


def _ids_unique() -> None:
    ids = [case.id for case in CATALOGUE]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate bad-input ids: {sorted(duplicates)}")


_ids_unique()


def expected_pairs() -> dict[str, list]:
    """`{"<id>/<mode>": [error type, message]}` for every entry and mode: what golden/hyperzzw/errors.json stores."""
    return {f"{case.id}/{mode}": [case.error, case.message] for case in CATALOGUE for mode in case.modes}


def materialize(structure, mode: str):
    """Turns an `inputs` structure into backend tensors (eager, built) or `keras.Input`s (symbolic)."""
    import keras  # here, not at the top: the fixture generator reads this catalogue without a backend

    from conformance import backend

    if isinstance(structure, T):
        if mode == "symbolic":
            return keras.Input(batch_shape=tuple(structure))
        rng = np.random.default_rng(0)
        return backend.tensor(rng.standard_normal(tuple(structure)).astype(np.float32), "float32")
    if isinstance(structure, list):
        return [materialize(item, mode) for item in structure]
    if isinstance(structure, tuple):
        return tuple(materialize(item, mode) for item in structure)
    if isinstance(structure, dict):
        return {key: materialize(item, mode) for key, item in structure.items()}
    return structure


def run(case: BadCase, mode: str, layer_class) -> BaseException | None:
    """Runs one entry in one mode; returns the exception it raised, or None when it raised nothing."""
    try:
        layer = layer_class(**case.kwargs)
        if mode == "construct":
            return None
        if mode == "built":
            layer(materialize(list(case.prebuild), "eager"))
        layer(materialize(case.inputs, mode))
    except Exception as exc:  # noqa: BLE001 - recording any exception is the point
        return exc
    return None
