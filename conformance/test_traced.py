"""Traced with unknown dimensions, then run at other sizes: `jax.export` with symbolic shapes,
`tf.function` with `None` in its `input_signature`, `torch.export` with `Dim` and `torch.compile(dynamic=True)`
(`backend.trace_with_unknown_dims`). The unknown dims sit in every position that may be unknown: the batch,
the sequence axes, and the axis a rank-3 context broadcasts over (the static 1 stays static). Each program is
traced once, run on the golden case and on a smaller batch and sequence, and compared with the oracle at
the golden tolerance; bad static shapes are rejected at trace time with the layer's own error.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import assertions, backend
from conformance.subjects.hyperzzw import cases, golden, oracle, tolerance
from conformance.subjects.hyperzzw.target import HyperZZWOperator

# (x shape, context shape, golden case): a string is an unknown dim (the same string, the same size).
TRACED = [
    (("b", 32), ("b", 8), "rank2-float32"),
    (("b", "t", 16), ("b", 8), "rank3-ctx2-float32"),
    (("b", "t", 16), ("b", "t", 8), "rank3-ctx3-float32"),
    (("b", "t", 16), ("b", 1, 8), "rank3-ctx-broadcast-time"),
    (("b", 1, 16), ("b", "t", 8), "rank3-x-broadcast-time"),
    (("b", "h", "w", 8), ("b", 5), "rank4-ctx2-float32"),
    (("b", "h", "w", 8), ("b", 1, "w", 5), "rank4-ctx4-float32"),
]
MODES = ["trace"] + (["torch.compile(dynamic=True)"] if backend.NAME == "torch" else [])


def _layer(case, data):
    layer = HyperZZWOperator(case.input_dim, context_dim=case.context_dim)
    layer.build([case.x_shape, case.context_shape])
    layer.hyper_kernel.assign(data["kernel"].astype(np.float32))
    return layer


def _program(layer, x_spec, c_spec, mode):
    def fn(x, context):
        return layer([x, context])

    if mode == "trace":
        return backend.trace_with_unknown_dims(fn, [(x_spec, "float32"), (c_spec, "float32")], owner=layer)
    import torch

    compiled = torch.compile(fn, dynamic=True, backend="aot_eager")
    return lambda x, context: compiled(torch.as_tensor(x), torch.as_tensor(context))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("x_spec, c_spec, case_id", TRACED, ids=[t[2] for t in TRACED])
def test_traced_with_unknown_dims_matches_the_oracle(x_spec, c_spec, case_id, mode):
    case = cases.by_id(case_id)
    data = golden.load_case(case)
    atol = tolerance.forward_atol(data["x"], data["context"], data["kernel"], case.dtype, backend.NAME)
    program = _program(_layer(case, data), x_spec, c_spec, mode)
    x, context, expected = data["x"], data["context"], data["output"]
    # The whole case, then a smaller batch and every unknown sequence axis cut to its first 2 entries.
    smaller = [slice(0, max(1, case.x_shape[0] // 2))]
    cut_x = tuple(slice(0, 2) if isinstance(d, str) and i else slice(None) for i, d in enumerate(x_spec))
    cut_c = tuple(slice(0, 2) if isinstance(d, str) and i else slice(None) for i, d in enumerate(c_spec))
    runs = [
        (x, context, expected, atol),
        (x[smaller[0]][(slice(None),) + cut_x[1:]], context[smaller[0]][(slice(None),) + cut_c[1:]], None, None),
    ]
    for i, (xs, cs, want, tol) in enumerate(runs):
        if want is None:  # the expected values of the cut: the same cut of the output (and of the bound)
            out_cut = tuple(slice(0, n) for n in oracle.output_shape(xs.shape, cs.shape))
            want, tol = expected[out_cut], np.broadcast_to(atol, expected.shape)[out_cut]
        out = program(xs.astype(np.float32), cs.astype(np.float32))
        assertions.assert_dtype(backend.dtype_of(out), "float32", f"{case_id} {mode}")
        assertions.assert_close(backend.to_numpy(out), want, tol, f"{case_id} {mode} run {i} {xs.shape}/{cs.shape}")


@pytest.mark.xfail(
    backend.NAME == "jax",
    raises=TypeError,
    strict=True,
    reason="JAX's own broadcasting cannot broadcast a symbolic size against a known size > 1 (jax 0.10.2: "
    "`TypeError: mul got incompatible shapes for broadcasting: (b, t, 16), (b, 6, 16)`); the layer accepts "
    "the pair (a symbolic size is unknown, not a size that differs from 6), so the error is JAX's, not a "
    "ValueError of the layer's claiming the shapes are incompatible",
)
def test_an_unknown_dim_against_a_known_size_takes_that_size():
    """x's sequence axis unknown, the context's known (6, the golden case's): the pair is valid and the
    output has that size. torch.export traces a sample (t = 3 here) that cannot broadcast against 6, which
    the layer rightly rejects, so torch traces it with torch.compile(dynamic=True) on the real arrays."""
    case = cases.by_id("rank3-ctx3-float32")
    data = golden.load_case(case)
    mode = "torch.compile(dynamic=True)" if backend.NAME == "torch" else "trace"
    program = _program(_layer(case, data), ("b", "t", 16), ("b", case.context_shape[1], 8), mode)
    out = program(data["x"].astype(np.float32), data["context"].astype(np.float32))
    atol = tolerance.forward_atol(data["x"], data["context"], data["kernel"], case.dtype, backend.NAME)
    assertions.assert_close(backend.to_numpy(out), data["output"], atol, f"{case.id} {mode}, x's axis 1 unknown")


BAD = [
    # (x spec, context spec, message) for a layer HyperZZWOperator(32, context_dim=8)
    (("b", 16), ("b", 8), "`HyperZZWOperator` expects the last dimension of `x` to be input_dim=32."),
    (("b", 32), ("b", 5), "`HyperZZWOperator` expects the last dimension of `context` to be context_dim=8."),
    (("b", "t", 32), ("b", 3, 2, 8), "`HyperZZWOperator` expects `context` to have rank 2 or the rank of `x` (3)."),
    (
        ("b", 2, 32),
        ("b", 3, 8),
        "`HyperZZWOperator` expects the leading dimensions of `x` and `context` to be broadcast-compatible.",
    ),
]


@pytest.mark.parametrize("x_spec, c_spec, message", BAD, ids=[m.split(" expects ")[1][:40] for _, _, m in BAD])
def test_bad_shapes_are_rejected_at_trace_time(x_spec, c_spec, message):
    """The layer's ValueError, raised while tracing (the static dims decide it), with the same text on
    every backend: unknown dims print as None."""
    layer = HyperZZWOperator(32, context_dim=8)
    layer.build([(None, 32), (None, 8)])

    def fn(x, context):
        return layer([x, context])

    fmt = lambda spec: str(tuple(None if isinstance(d, str) else d for d in spec))  # noqa: E731
    received = f" Received: x.shape={fmt(x_spec)}, context.shape={fmt(c_spec)}"
    with pytest.raises(ValueError) as info:
        backend.trace_with_unknown_dims(fn, [(x_spec, "float32"), (c_spec, "float32")], owner=layer)
    assert str(info.value) == message + received
