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
import math
import zlib
from fractions import Fraction

import numpy as np

from conformance.harness import declaration as harness_declaration
from conformance.subjects.hyperzzw import oracle

SEED = 20261122
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Every dtype policy the layer supports, Keras's float policies: name -> (compute dtype, variable dtype).
POLICIES = harness_declaration.POLICIES


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


class Draws:
    """Random values drawn from the raw 64-bit words of a PCG64 stream, as exact dyadic rationals.

    NumPy's `Generator` methods (`standard_normal`, `uniform`, `shuffle`, ...) may change their algorithms
    between NumPy versions and call libm, so nothing here uses them: only `random_raw`, PCG64's output
    words, whose stream NumPy keeps stable, and integer arithmetic. Each draw is an exact value (an
    `oracle.Exact`) that the caller rounds once to the case's dtype.
    """

    def __init__(self, *key):
        self._bits = np.random.PCG64(np.random.SeedSequence([SEED, *key]))

    def raw(self, shape) -> np.ndarray:
        return self._bits.random_raw(int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def unit(self, shape) -> oracle.Exact:
        """Uniform on [0, 1): the top 53 bits of a word, times 2**-53."""
        return oracle.Exact.of_ints(self.raw(shape) >> np.uint64(11), -53)

    def uniform(self, low: float, high: float, shape) -> oracle.Exact:
        """Uniform on [low, high): `low + (high - low) * unit`, exactly."""
        low_ = oracle.Exact.of(np.full(shape, low))
        return low_ + (oracle.Exact.of(np.full(shape, high)) - low_) * self.unit(shape)

    def normal(self, shape) -> oracle.Exact:
        """Mean 0, variance 1: the sum of three uniforms on [-1, 1) (Irwin-Hall), bounded by 3."""
        words = (self.raw(tuple(shape) + (3,)) >> np.uint64(11)).astype(object)
        return oracle.Exact.of_ints(words.sum(axis=-1) * 2 - 3 * 2**53, -53)

    def signs(self, shape) -> np.ndarray:
        return np.where(self.raw(shape) >> np.uint64(63), -1.0, 1.0)

    def below(self, n: int, shape) -> np.ndarray:
        """Integers in [0, n) (the word modulo n: a bias below 2**-50 for the small n used here)."""
        return (self.raw(shape) % np.uint64(n)).astype(np.int64)

    def permutation(self, n: int) -> np.ndarray:
        return np.argsort(self.raw((n,)), kind="stable")


def _draws(case: Case) -> Draws:
    return Draws(zlib.crc32(case.id.encode()))


def _glorot(draws: Draws, shape) -> oracle.Exact:
    """glorot_uniform's distribution: uniform on [-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) as
    float64 computes it (`math.sqrt` is correctly rounded on every IEEE 754 machine)."""
    limit = math.sqrt(6 / sum(shape))
    return draws.uniform(-1.0, 1.0, shape) * oracle.Exact.of(np.full(shape, limit))


def _normal(case, draws):
    d = case.dtype
    return (
        draws.normal(case.x_shape).round(d),
        draws.normal(case.context_shape).round(d),
        _glorot(draws, case.kernel_shape).round(d),
    )


def _special_x(case, draws):
    """x holds ±0, ±Inf and NaN among normal values; context and kernel are finite and non-zero."""
    x, context, kernel = _normal(case, draws)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    flat = x.reshape(-1)
    flat[: 3 * len(specials)] = np.tile(specials, 3)
    return flat[draws.permutation(flat.size)].reshape(case.x_shape), context, kernel


def _special_context(case, draws):
    """NaN and ±Inf in the context (they spread along a row through the matmul), zeros in the kernel
    (so Inf * 0 makes NaN), and a row whose weights are exactly zero (x * 0 keeps x's sign of zero)."""
    x, context, kernel = _normal(case, draws)
    context[0, 0] = np.nan
    context[1, 1] = np.inf
    context[2, 0] = -np.inf
    context[3, :] = 0.0
    kernel[1, ::2] = 0.0
    return x, context, kernel


def _subnormal(case, draws):
    """Results in the subnormal range: tiny x times weights near 1 (and subnormal x themselves)."""
    d, min_exp = case.dtype, oracle.FORMATS[case.dtype][1]
    # x in +-[0.01, 4) * tiny, tiny = 2**min_exp the smallest normal value
    x = (draws.uniform(0.01, 4.0, case.x_shape) * oracle.Exact.of(draws.signs(case.x_shape))).scale(min_exp)
    context = draws.normal(case.context_shape).abs() + oracle.Exact.of(np.full(case.context_shape, 0.5))
    # kernel in [0.1, 1) / context_dim; context_dim is a power of two, so the division is exact
    if case.context_dim & (case.context_dim - 1):
        raise ValueError("a subnormal case's context_dim must be a power of two")
    kernel = draws.uniform(0.1, 1.0, case.kernel_shape).scale(-(case.context_dim.bit_length() - 1))
    return x.round(d), context.round(d), kernel.round(d)


def _near_overflow(case, draws):
    """Outputs up to about 0.9 of the dtype's largest value, with all-positive sums (no partial overflow),
    plus one entry, x = the largest value, whose weight exceeds 1, so that its exact result rounds to +Inf."""
    d, largest = case.dtype, oracle.FORMATS[case.dtype][2]
    context = draws.uniform(0.5, 1.0, case.context_shape).round(d)
    kernel = draws.uniform(0.5, 1.0, case.kernel_shape).round(d)
    weights = oracle.exact_forward(np.ones(case.x_shape), context, kernel)  # context @ kernel, exactly
    w_max = max(Fraction(int(n)) * Fraction(2) ** weights.e for n in weights.n.ravel())
    u = draws.uniform(0.3, 0.9, case.x_shape)
    scale = Fraction(largest) / w_max
    x = np.array(
        [
            oracle.round_ratio(*(Fraction(int(n)) * Fraction(2) ** u.e * scale).as_integer_ratio(), d)
            for n in u.n.ravel()
        ]
    ).reshape(case.x_shape)
    x[0, 0] = largest
    if math.isfinite(oracle.forward(x[:1, :1], context[:1], kernel[:, :1], d)[0, 0]):
        raise ValueError("the overflowing entry of a near-overflow case must round to +Inf")
    return x, context, kernel


def _one_hot(case, draws):
    x, _, kernel = _normal(case, draws)
    context = np.eye(case.context_dim)[draws.below(case.context_dim, case.context_shape[:-1])]
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
    draws = _draws(case)
    x, context, kernel = RECIPES[case.values](case, draws)
    cotangent = draws.uniform(-1.0, 1.0, oracle.output_shape(case.x_shape, case.context_shape)).round(case.dtype)
    return {"x": x, "context": context, "kernel": kernel, "cotangent": cotangent}


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


# --- masks ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MaskCase:
    """Keras masks on `[x, context]` of these shapes (None: no mask on that input); `oracle.output_mask` gives
    the layer's output mask. The masks are drawn from PCG64 words (`Draws`), about 60% of positions kept."""

    id: str
    x_shape: tuple
    context_shape: tuple
    x_mask_shape: tuple | None
    context_mask_shape: tuple | None

    def definition(self) -> dict:
        return dataclasses.asdict(self)


MASK_CASES = (
    MaskCase("x masked, rank-2 context", (3, 5, 4), (3, 2), (3, 5), None),
    MaskCase("x masked, rank-2 context with a mask of its own", (3, 5, 4), (3, 2), (3, 5), (3,)),
    MaskCase("both masked, same rank", (3, 5, 4), (3, 5, 2), (3, 5), (3, 5)),
    MaskCase("both masked, the context broadcasts over time", (3, 5, 4), (3, 1, 2), (3, 5), (3, 1)),
    MaskCase("both masked, x broadcasts over time", (3, 1, 4), (3, 5, 2), (3, 1), (3, 5)),
    MaskCase("only the context masked", (3, 5, 4), (3, 5, 2), None, (3, 5)),
    MaskCase("rank 4, both masked, broadcast", (2, 3, 4, 4), (2, 3, 1, 2), (2, 3, 4), (2, 3, 1)),
    MaskCase("rank 4, x masked over its first two axes", (2, 3, 4, 4), (2, 2), (2, 3), None),
    MaskCase("no masks", (3, 5, 4), (3, 5, 2), None, None),
    # One input masked, its masked axis 1 where the other input's is not: the mask is broadcast to the output.
    MaskCase("x masked, one step, against a five-step context", (2, 1, 3), (2, 5, 4), (2, 1), None),
    MaskCase("x masked, batch 1, against a context batch of 2", (1, 5, 3), (2, 5, 4), (1, 5), None),
    MaskCase("the context masked, one step, against five steps of x", (2, 5, 3), (2, 1, 4), None, (2, 1)),
    MaskCase("x masked, batch 1, against a rank-2 context batch of 2", (1, 5, 3), (2, 4), (1, 5), None),
    MaskCase(
        "rank 8, x masked, 1s alternating",
        (2, 1, 3, 1, 2, 1, 2, 4),
        (2, 5, 1, 2, 1, 3, 1, 3),
        (2, 1, 3, 1, 2, 1, 2),
        None,
    ),
    # 1s alternating between the masks: more runs of broadcast dims than TensorFlow's logical_and takes
    MaskCase(
        "rank 8, both masked, 1s alternating",
        (2, 1, 3, 1, 2, 1, 2, 4),
        (2, 5, 1, 2, 1, 3, 1, 3),
        (2, 1, 3, 1, 2, 1, 2),
        (2, 5, 1, 2, 1, 3, 1),
    ),
)


def make_masks(case: MaskCase) -> dict[str, np.ndarray]:
    """The case's input masks (only those it has), as booleans."""
    draws = Draws(zlib.crc32(b"mask"), zlib.crc32(case.id.encode()))
    return {
        name: draws.below(10, shape) < 6
        for name, shape in (("x_mask", case.x_mask_shape), ("context_mask", case.context_mask_shape))
        if shape is not None
    }


def mask_slug(case: MaskCase) -> str:
    """The case's id as a name for files and record keys: letters, digits and '-' only."""
    return "-".join("".join(ch if ch.isalnum() else " " for ch in case.id).split())


def catalogue_hash() -> str:
    """A hash of the case definitions (not their data): it changes whenever the catalogue does."""
    definitions = [case.definition() for case in CASES] + [TRAINING.definition(), SEED]
    definitions += [case.definition() for case in MASK_CASES]
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
    """The training run's data and initial weights, each drawn exactly and rounded once to the dtype."""
    draws, d = Draws(zlib.crc32(b"training")), case.dtype
    x = draws.normal((case.batch, case.input_dim)).round(d)
    context = draws.normal((case.batch, case.context_dim)).round(d)
    kernel = _glorot(draws, (case.context_dim, case.input_dim)).round(d)
    w = _glorot(draws, (case.input_dim, 1)).round(d)
    # A target the model can fit: a different "true" kernel and head, plus noise of standard deviation 1/8.
    true_kernel = draws.normal(kernel.shape).round(d)
    true_w = draws.normal(w.shape).round(d)
    hidden = oracle.exact_forward(x, context, true_kernel)
    y = hidden.matmul(oracle.Exact.of(true_w)) + draws.normal((case.batch, 1)).scale(-3)
    return {"x": x, "context": context, "y": y.round(d), "kernel": kernel, "w": w}
