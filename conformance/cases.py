"""The golden case catalogue: every stored case, declared in one readable list.

A case is a pair of input shapes, a dtype and a recipe for the values. `make_inputs` turns it into concrete
arrays (x, context, hyper_kernel and the cotangent `g` of the scalar loss `sum(g * output)`), already rounded
to the case's dtype, from a seed derived from the case id, so the same catalogue always gives the same
bytes. The layer's kernel is stored with each case because seeded initialisation differs per backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib

import numpy as np

from conformance import oracle

SEED = 20261122
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    x_shape: tuple
    context_shape: tuple
    dtype: str = "float32"
    values: str = "normal"  # a recipe in RECIPES
    context_dtype: str | None = None  # e.g. "int32" for one-hot contexts; None means `dtype`

    @property
    def input_dim(self) -> int:
        return self.x_shape[-1]

    @property
    def context_dim(self) -> int:
        return self.context_shape[-1]

    @property
    def kernel_shape(self) -> tuple:
        return (self.context_dim, self.input_dim)

    def definition(self) -> dict:
        return dataclasses.asdict(self)


def _rng(case: Case) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(case.id.encode())])


def _normal(case, rng):
    return (
        rng.standard_normal(case.x_shape),
        rng.standard_normal(case.context_shape),
        rng.uniform(-1, 1, case.kernel_shape) * np.sqrt(6 / sum(case.kernel_shape)),  # glorot_uniform's range
    )


def _special_x(case, rng):
    """x holds ±0, ±Inf and NaN among normal values; context and kernel are finite and non-zero."""
    x, context, kernel = _normal(case, rng)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    flat = x.reshape(-1)
    flat[: 3 * len(specials)] = np.tile(specials, 3)
    rng.shuffle(flat)
    return flat.reshape(case.x_shape), context, kernel


def _special_context(case, rng):
    """NaN and ±Inf in the context (they spread along a row through the matmul), zeros in the kernel
    (so Inf * 0 makes NaN), and a row whose weights are exactly zero (x * 0 keeps x's sign of zero)."""
    x, context, kernel = _normal(case, rng)
    context[0, 0] = np.nan
    context[1, 1] = np.inf
    context[2, 0] = -np.inf
    context[3, :] = 0.0
    kernel[1, ::2] = 0.0
    return x, context, kernel


def _subnormal(case, rng):
    """Results in the subnormal range: tiny x times weights near 1 (and subnormal x themselves)."""
    tiny = 2.0 ** oracle.FORMATS[case.dtype][1]  # the smallest normal value
    x = rng.uniform(0.01, 4.0, case.x_shape) * tiny * rng.choice([-1.0, 1.0], case.x_shape)
    context = np.abs(rng.standard_normal(case.context_shape)) + 0.5
    kernel = rng.uniform(0.1, 1.0, case.kernel_shape) / case.context_dim
    return x, context, kernel


def _near_overflow(case, rng):
    """Outputs up to about 0.9 of the dtype's largest value, with all-positive sums (no partial overflow),
    plus one entry whose exact result exceeds the largest value and must round to +Inf."""
    largest = oracle.FORMATS[case.dtype][2]
    context = rng.uniform(0.5, 1.0, case.context_shape)
    kernel = rng.uniform(0.5, 1.0, case.kernel_shape)
    weights = context @ kernel
    x = rng.uniform(0.3, 0.9, case.x_shape) * largest / weights.max()
    x[0, 0] = 2.0 * largest / weights[0, 0]
    return x, context, kernel


def _one_hot(case, rng):
    x, _, kernel = _normal(case, rng)
    context = np.eye(case.context_dim)[rng.integers(0, case.context_dim, case.context_shape[:-1])]
    return x, context, kernel


RECIPES = {
    "normal": _normal,
    "special_x": _special_x,
    "special_context": _special_context,
    "subnormal": _subnormal,
    "near_overflow": _near_overflow,
    "one_hot": _one_hot,
}


def make_inputs(case: Case) -> dict[str, np.ndarray]:
    """The case's inputs as float64 arrays holding values exactly representable in the case's dtype."""
    rng = _rng(case)
    x, context, kernel = RECIPES[case.values](case, rng)
    out_shape = np.broadcast_shapes(
        case.x_shape[:-1],
        case.context_shape[:-1] + (1,) * (len(case.x_shape) - len(case.context_shape)),
    ) + (case.input_dim,)
    cotangent = rng.uniform(-1.0, 1.0, out_shape)
    return {
        "x": oracle.round_to(x, case.dtype),
        "context": oracle.round_to(context, case.dtype),
        "kernel": oracle.round_to(kernel, case.dtype),
        "cotangent": oracle.round_to(cotangent, case.dtype),
    }


def _c(id, x, c, dtype="float32", values="normal", context_dtype=None):
    return Case(id=id, x_shape=x, context_shape=c, dtype=dtype, values=values, context_dtype=context_dtype)


CASES: tuple[Case, ...] = (
    # rank 2, every dtype
    *(_c(f"rank2-{d}", (16, 32), (16, 8), d) for d in FLOAT_DTYPES),
    # rank 3: a rank-2 context applied at every position; a rank-3 context; broadcast both ways
    *(_c(f"rank3-ctx2-{d}", (4, 6, 16), (4, 8), d) for d in FLOAT_DTYPES),
    _c("rank3-ctx3-float32", (4, 6, 16), (4, 6, 8)),
    _c("rank3-ctx3-float64", (4, 6, 16), (4, 6, 8), "float64"),
    _c("rank3-ctx3-bfloat16", (4, 6, 16), (4, 6, 8), "bfloat16"),
    _c("rank3-ctx-broadcast-time", (4, 6, 16), (4, 1, 8)),
    _c("rank3-x-broadcast-time", (4, 1, 16), (4, 6, 8)),
    # rank 4
    _c("rank4-ctx2-float32", (2, 3, 4, 8), (2, 5)),
    _c("rank4-ctx4-float32", (2, 3, 4, 8), (2, 1, 4, 5)),
    _c("rank4-ctx4-float16", (2, 3, 4, 8), (2, 3, 4, 5), "float16"),
    # batch sizes 0, 1 and large-ish; broadcast of the batch
    _c("batch0", (0, 16), (0, 4)),
    _c("batch0-rank3", (0, 3, 16), (0, 4)),
    _c("batch1", (1, 16), (1, 4)),
    _c("batch-large", (256, 24), (256, 12)),
    _c("x-batch-broadcast", (1, 16), (8, 4)),
    # dimensions of 1; contexts wider than inputs and the reverse
    _c("input_dim1", (8, 1), (8, 4)),
    _c("context_dim1", (8, 16), (8, 1)),
    _c("both-dims1", (8, 1), (8, 1), "float64"),
    _c("context-wider", (8, 4), (8, 64)),
    _c("context-wider-float16", (8, 4), (8, 64), "float16"),
    _c("input-wider", (8, 64), (8, 2)),
    # special values
    *(_c(f"special-x-{d}", (8, 8), (8, 4), d, "special_x") for d in FLOAT_DTYPES),
    *(_c(f"special-context-{d}", (6, 8), (6, 4), d, "special_context") for d in ("float32", "float64")),
    *(_c(f"subnormal-{d}", (8, 8), (8, 4), d, "subnormal") for d in FLOAT_DTYPES),
    _c("near-overflow-float16", (8, 8), (8, 4), "float16", "near_overflow"),
    _c("near-overflow-bfloat16", (8, 8), (8, 4), "bfloat16", "near_overflow"),
    # integer one-hot contexts are cast to the compute dtype
    _c("one-hot-int32-context", (8, 16), (8, 5), "float32", "one_hot", "int32"),
)

if len({case.id for case in CASES}) != len(CASES):
    raise RuntimeError("golden case ids must be unique")


def catalogue_hash() -> str:
    """A hash of the case definitions (not their data): it changes whenever the catalogue does."""
    definitions = [case.definition() for case in CASES] + [TRAINING.definition(), SEED]
    blob = json.dumps(definitions, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def by_id(case_id: str) -> Case:
    for case in CASES:
        if case.id == case_id:
            return case
    raise KeyError(case_id)


@dataclasses.dataclass(frozen=True)
class TrainingCase:
    """A short training run: `Dense(1, use_bias=False)` on top of the layer, MSE loss, full-batch SGD."""

    batch: int = 32
    input_dim: int = 6
    context_dim: int = 3
    steps: int = 8
    learning_rate: float = 0.0625  # a power of two: exact in the optimizer's float32 learning-rate variable
    dtype: str = "float32"

    def definition(self) -> dict:
        return dataclasses.asdict(self)


TRAINING = TrainingCase()


def make_training_inputs(case: TrainingCase = TRAINING) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([SEED, zlib.crc32(b"training")])
    x = rng.standard_normal((case.batch, case.input_dim))
    context = rng.standard_normal((case.batch, case.context_dim))
    kernel = rng.uniform(-1, 1, (case.context_dim, case.input_dim)) * np.sqrt(6 / (case.context_dim + case.input_dim))
    w = rng.uniform(-1, 1, (case.input_dim, 1)) * np.sqrt(6 / (case.input_dim + 1))
    # A target the model can fit: a different "true" kernel and head, plus noise.
    y = (x * (context @ rng.standard_normal(kernel.shape))) @ rng.standard_normal(w.shape)
    y += 0.1 * rng.standard_normal(y.shape)
    arrays = {"x": x, "context": context, "y": y, "kernel": kernel, "w": w}
    return {name: oracle.round_to(value, case.dtype) for name, value in arrays.items()}
