"""Hypothesis strategies for the layer's inputs: valid shape pairs (every rank and context form), dtypes,
bounded finite values with explicit special values, and invalid dimensions and shape pairs."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

from conformance.subjects.hyperzzw import cases, oracle

dtypes = st.sampled_from(cases.FLOAT_DTYPES)
dims = st.integers(1, 8)


@st.composite
def shape_pairs(
    draw, min_rank: int = 2, max_rank: int = 4, max_batch: int = 5, min_batch: int = 0, broadcast_batch: bool = True
):
    """A valid `(x_shape, context_shape)`: context rank 2 or equal to x's, leading dims broadcastable
    (the batch dim too, unless `broadcast_batch` is false)."""
    rank = draw(st.integers(min_rank, max_rank), label="rank")
    input_dim, context_dim = draw(dims, label="input_dim"), draw(dims, label="context_dim")
    leading = [draw(st.integers(min_batch, max_batch), label="batch")] + [
        draw(st.integers(1, 4)) for _ in range(rank - 2)
    ]
    if draw(st.booleans(), label="rank-2 context") or rank == 2:
        context_lead = [leading[0]]
        n = 1
    else:
        context_lead = list(leading)
        n = rank - 1
    # Broadcast: some leading dims are 1 on one side (never turning a 0 batch into a broadcast pair).
    x_lead = list(leading)
    for i in range(0 if broadcast_batch else 1, n):
        if leading[i] > 1:
            side = draw(st.sampled_from(["both", "x1", "c1"]))
            if side == "x1":
                x_lead[i] = 1
            elif side == "c1":
                context_lead[i] = 1
    return tuple(x_lead) + (input_dim,), tuple(context_lead) + (context_dim,)


def values(shape, dtype: str, magnitude: float = 4.0, smallest: float = 0.0):
    """Finite values of `dtype` in [-magnitude, magnitude], with 0, -0 and ±1 among them; non-zero values
    are at least `smallest` in magnitude."""
    element = st.one_of(
        st.sampled_from([0.0, -0.0, 1.0, -1.0]),
        st.floats(smallest, magnitude, allow_subnormal=False),
        st.floats(-magnitude, -smallest, allow_subnormal=False),
    )
    size = int(np.prod(shape, dtype=np.int64))
    return st.lists(element, min_size=size, max_size=size).map(
        lambda v: oracle.round_to(np.asarray(v, dtype=np.float64).reshape(shape), dtype)
    )


bad_dims = st.one_of(
    st.integers(max_value=0),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.none(),
    st.lists(st.integers(1, 5), max_size=2),
)


@st.composite
def bad_shape_pairs(draw):
    """An invalid `(x_shape, context_shape, what)`: one thing broken, named by `what`."""
    x_shape, context_shape = draw(shape_pairs(max_batch=4))
    what = draw(st.sampled_from(["x last dim", "x rank", "context rank", "leading dims"]), label="defect")
    if what == "x last dim":
        x_shape = x_shape[:-1] + (x_shape[-1] + draw(st.integers(1, 3)),)
    elif what == "x rank":
        x_shape = x_shape[-1:]
    elif what == "context rank":
        extra = draw(st.sampled_from([1, len(x_shape) + 1])) if len(x_shape) > 2 else 3
        context_shape = (2,) * (extra - 1) + context_shape[-1:] if extra > 1 else context_shape[-1:]
    else:
        axis = draw(st.integers(0, (len(context_shape) - 2)))
        a = draw(st.integers(2, 5))
        x_shape = x_shape[:axis] + (a,) + x_shape[axis + 1 :]
        context_shape = context_shape[:axis] + (a + 1,) + context_shape[axis + 1 :]
    return x_shape, context_shape, what


# --- shapes users have, for the properties against the exact oracle ------------------------------------------

POLICIES = cases.POLICIES  # name -> (compute dtype, variable dtype)
policies = st.sampled_from(sorted(POLICIES))
# Feature sizes up to a few hundred, half of the draws small (1-8: no SIMD lane filled, dims of 1).
feature_dims = st.sampled_from(["small", "small", "medium", "large"]).flatmap(
    lambda size: {"small": st.integers(1, 8), "medium": st.integers(9, 64), "large": st.integers(65, 320)}[size]
)
# Batch 0 and 1, small, and past the SIMD widths (8 and 16 lanes) with remainders.
# (sampled_from, not one_of: hypothesis draws the first branch of a one_of far more often at few examples)
batch_sizes = st.sampled_from([17, 33, 3, 40, 1, 0, 8, 16, 5])


def _size_class(n: int) -> str:
    return "1-8" if n <= 8 else "9-64" if n <= 64 else "65-320"


@st.composite
def user_shape_pairs(draw, budget: int = 20_000, max_rank: int = 5):
    """A valid `(x_shape, context_shape)` of rank 2 to `max_rank`, either context form, with broadcast
    leading dims, sized like real inputs but within `budget` multiply-adds (so the exact oracle stays fast):
    positions * context_dim * input_dim <= budget."""
    rank = draw(st.integers(2, max_rank), label="rank")
    input_dim, context_dim = draw(feature_dims, label="input_dim"), draw(feature_dims, label="context_dim")
    form = "rank-2 context" if rank == 2 else draw(st.sampled_from(["rank-2 context", "rank-N context"]), label="form")
    positions_cap = max(1, budget // (input_dim * context_dim))
    batch = min(draw(batch_sizes, label="batch"), positions_cap)
    leading = [batch]
    for _ in range(rank - 2):
        room = max(1, positions_cap // max(math.prod(leading), 1))
        leading.append(draw(st.integers(1, max(1, min(4, room)))))
    x_lead, context_lead = list(leading), [batch] if form == "rank-2 context" else list(leading)
    for i in range(1 if form == "rank-2 context" else 0, len(context_lead)):
        if leading[i] > 1:
            side = draw(st.sampled_from(["both", "x1", "c1"]), label="broadcast")
            if side == "x1":
                x_lead[i] = 1
            elif side == "c1":
                context_lead[i] = 1
    event(f"rank {rank}, {form}")
    event(f"input_dim {_size_class(input_dim)}, context_dim {_size_class(context_dim)}")
    event(
        "batch "
        + ("0" if batch == 0 else "1" if batch == 1 else "2-7" if batch < 8 else "8-16" if batch <= 16 else "17-40")
    )
    return tuple(x_lead) + (input_dim,), tuple(context_lead) + (context_dim,)


def random_values(seed: int, shape, dtype: str, zeros: float = 0.1) -> np.ndarray:
    """Values of `dtype` from a seeded generator (hypothesis draws the seed: an element-by-element
    strategy is too slow for thousands of elements): normals of mixed scale, with a fraction `zeros` of
    signed zeros and a few exact ±1."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * 2.0 ** rng.integers(-3, 3, shape)
    pick = rng.random(shape)
    values = np.where(pick < zeros / 2, 0.0, np.where(pick < zeros, -0.0, values))
    values = np.where((pick > 0.97) & (pick < 0.985), 1.0, np.where(pick >= 0.985, -1.0, values))
    return oracle.round_to(values, dtype)


def symbolic(shape, mask) -> tuple:
    """`shape` with the leading dims where `mask` is true replaced by None (unknown)."""
    return tuple(None if unknown else n for n, unknown in zip(shape[:-1], mask)) + (shape[-1],)


# --- every rank the contract allows, with adversarial broadcast patterns --------------------------------------


def broadcast_runs(x_shape, context_shape) -> int:
    """How many runs of dimensions broadcast alike between x and `context @ kernel` in x's layout (TensorFlow's
    broadcasting kernels handle at most five; the layer must handle any number)."""
    weights = oracle.broadcast_weights(np.empty(tuple(context_shape[:-1]) + (x_shape[-1],)), len(x_shape)).shape
    runs, previous = 0, None
    for a, b in zip(x_shape, weights):
        if a == 1 and b == 1:
            continue
        kind = "x" if a == 1 else "w" if b == 1 else "="
        runs, previous = runs + (kind != previous), kind
    return runs


@st.composite
def every_rank_shape_pairs(draw, max_rank: int = 8, budget: int = 3_000):
    """A valid `(x_shape, context_shape)` of rank 2 to `max_rank`, either context form, whose leading dims
    broadcast in adversarial patterns: 1s alternating between the two inputs (TensorFlow's kernels cannot
    merge those), the same shifted by one, or a random mix; within `budget` multiply-adds."""
    # High ranks first: hypothesis favours the first of a sampled_from, and ranks 2-5 are drawn elsewhere too.
    rank = draw(st.sampled_from(list(range(max_rank, 1, -1))), label="rank")
    input_dim, context_dim = draw(st.integers(1, 5), label="input_dim"), draw(st.integers(1, 5), label="context_dim")
    form = "rank-2 context" if rank == 2 else draw(st.sampled_from(["rank-N context", "rank-2 context"]), label="form")
    pattern = draw(st.sampled_from(["alternating", "alternating, shifted", "random"]), label="pattern")
    positions_cap = max(1, budget // (input_dim * context_dim))
    leading = []
    for _ in range(rank - 1):
        room = positions_cap // max(math.prod(leading), 1)
        leading.append(draw(st.integers(2, 3)) if room >= 3 else 2 if room >= 2 else 1)
    x_lead, context_lead = list(leading), list(leading)
    for i in range(len(leading)):
        side = {"alternating": ("x1", "c1")[i % 2], "alternating, shifted": ("c1", "x1")[i % 2]}.get(pattern)
        side = side or draw(st.sampled_from(["both", "x1", "c1"]))
        if side == "x1":
            x_lead[i] = 1
        elif side == "c1":
            context_lead[i] = 1
    if form == "rank-2 context":
        context_lead = context_lead[:1]
    x_shape, context_shape = tuple(x_lead) + (input_dim,), tuple(context_lead) + (context_dim,)
    event(f"rank {rank}, {form}")
    event(f"pattern {pattern}")
    event(f"broadcast runs {'6+' if broadcast_runs(x_shape, context_shape) > 5 else '1-5'}")
    return x_shape, context_shape


# --- the constructor's arguments -----------------------------------------------------------------------------

# Keras's initializer families: (class name, config strategy, random?). Variance scaling in each mode and
# distribution (fan-in and fan-out differ whenever context_dim != input_dim), the named glorot/he/lecun
# forms, plain random ones, orthogonal, and the deterministic ones.
_VARIANCE = st.fixed_dictionaries(
    {
        "scale": st.sampled_from([0.5, 1.0, 2.0]),
        "mode": st.sampled_from(["fan_in", "fan_out", "fan_avg"]),
        "distribution": st.sampled_from(["truncated_normal", "untruncated_normal", "uniform"]),
    }
)
INITIALIZERS = {
    "VarianceScaling": (_VARIANCE, True),
    "GlorotUniform": (st.just({}), True),
    "GlorotNormal": (st.just({}), True),
    "HeUniform": (st.just({}), True),
    "HeNormal": (st.just({}), True),
    "LecunUniform": (st.just({}), True),
    "LecunNormal": (st.just({}), True),
    "RandomNormal": (
        st.fixed_dictionaries({"mean": st.sampled_from([0.0, 1.0]), "stddev": st.sampled_from([0.05, 1.0])}),
        True,
    ),
    "RandomUniform": (st.fixed_dictionaries({"minval": st.just(-2.0), "maxval": st.sampled_from([0.5, 3.0])}), True),
    "TruncatedNormal": (st.fixed_dictionaries({"stddev": st.sampled_from([0.05, 1.0])}), True),
    "Orthogonal": (st.fixed_dictionaries({"gain": st.sampled_from([1.0, 0.5])}), True),
    "Zeros": (st.just({}), False),
    "Ones": (st.just({}), False),
    "Constant": (st.fixed_dictionaries({"value": st.sampled_from([0.25, -3.0])}), False),
    "Identity": (st.fixed_dictionaries({"gain": st.sampled_from([1.0, 2.0])}), False),
}
REGULARIZERS = {
    "L1": st.fixed_dictionaries({"l1": st.sampled_from([0.01, 0.5])}),
    "L2": st.fixed_dictionaries({"l2": st.sampled_from([0.01, 0.5])}),
    "L1L2": st.fixed_dictionaries({"l1": st.sampled_from([0.01, 0.25]), "l2": st.sampled_from([0.02, 0.5])}),
}
CONSTRAINTS = {
    "NonNeg": st.just({}),
    "MaxNorm": st.fixed_dictionaries({"max_value": st.sampled_from([0.5, 2.0]), "axis": st.just(0)}),
    "UnitNorm": st.fixed_dictionaries({"axis": st.just(0)}),
    "MinMaxNorm": st.fixed_dictionaries(
        {
            "min_value": st.just(0.5),
            "max_value": st.sampled_from([1.0, 2.0]),
            "rate": st.sampled_from([1.0, 0.5]),
            "axis": st.just(0),
        }
    ),
}


@st.composite
def constructor_arguments(draw, name: str):
    """A `HyperZZWOperator` configuration as dicts of Keras class names and configs (the test builds the Keras
    objects): `context_dim` explicit or inferred, the initializer family `name` (seeded or not, when it is
    random), a regularizer and a constraint, or none."""
    config_strategy, random = INITIALIZERS[name]
    config = dict(draw(config_strategy))
    seeded = random and draw(st.booleans(), label="seeded")
    if seeded:
        config["seed"] = draw(st.integers(0, 2**16))
    regularizer = draw(st.sampled_from([None, *sorted(REGULARIZERS)]), label="regularizer")
    constraint = draw(st.sampled_from([None, *sorted(CONSTRAINTS)]), label="constraint")
    args = {
        "explicit_context_dim": draw(st.booleans(), label="explicit context_dim"),
        "initializer": (name, config),
        "random": random,
        "seeded": seeded,
        "regularizer": None if regularizer is None else (regularizer, draw(REGULARIZERS[regularizer])),
        "constraint": None if constraint is None else (constraint, draw(CONSTRAINTS[constraint])),
    }
    family = "variance scaling" if name == "VarianceScaling" else name
    event(f"initializer {family}{', seeded' if seeded else ', unseeded' if random else ''}")
    event(f"regularizer {regularizer}, constraint {constraint}")
    return args
