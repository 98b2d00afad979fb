"""Hypothesis strategies for the layer's inputs: valid shape pairs (every rank and context form), dtypes,
bounded finite values with explicit special values, and invalid dimensions and shape pairs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from conformance import cases, oracle

dtypes = st.sampled_from(cases.FLOAT_DTYPES)
dims = st.integers(1, 8)


@st.composite
def shape_pairs(draw, min_rank: int = 2, max_rank: int = 4, max_batch: int = 5, min_batch: int = 0,
                broadcast_batch: bool = True):
    """A valid `(x_shape, context_shape)`: context rank 2 or equal to x's, leading dims broadcastable
    (the batch dim too, unless `broadcast_batch` is false)."""
    rank = draw(st.integers(min_rank, max_rank), label="rank")
    input_dim, context_dim = draw(dims, label="input_dim"), draw(dims, label="context_dim")
    leading = [draw(st.integers(min_batch, max_batch), label="batch")] + [draw(st.integers(1, 4)) for _ in range(rank - 2)]
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


def output_shape(x_shape, context_shape):
    lead = np.broadcast_shapes(
        tuple(x_shape[:-1]), tuple(context_shape[:-1]) + (1,) * (len(x_shape) - len(context_shape))
    )
    return tuple(lead) + (x_shape[-1],)


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
