"""HyperZZWOperator as a harness subject, declared through the same public API as any user's layer: its exact
oracles of the output, the gradients and the mask (`oracle`), tolerances derived from its reduction length, and
its bad-input catalogue (`bad_inputs`), each entry with the exact text every backend must raise.

    python -m conformance.harness conformance/subjects/hyperzzw/subjects.py      # or: nox -s harness
"""

from __future__ import annotations

from hypothesis import strategies as st

from conformance.harness import BadInput, Divergence, Input, Subject, Tolerance
from conformance.subjects.hyperzzw import bad_inputs, oracle, strategies


def _layer(**kwargs):
    from conformance.subjects.hyperzzw import target  # the layer under test: hyperzzw, or HYPERZZW_TARGET's copy

    return target.HyperZZWOperator(**kwargs)


def hyperzzw_oracle(weights, x, context):
    """The exact output (`oracle.forward`), rounded once to float64."""
    return oracle.forward(x, context, weights["hyper_kernel"])


def hyperzzw_gradient_oracle(weights, cotangent, x, context):
    """The exact gradients of `sum(cotangent * output)` (`oracle.gradients`), each rounded once to float64."""
    dx, dcontext, dkernel = oracle.gradients(x, context, weights["hyper_kernel"], cotangent)
    return {"hyper_kernel": dkernel, "input0": dx, "input1": dcontext}


def hyperzzw_mask_oracle(masks, x, context):
    """The output mask the contract states (conformance.subjects.hyperzzw.oracle.output_mask)."""
    return oracle.output_mask(masks[0], masks[1], x.shape, context.shape)


def hyperzzw_tolerance(context_dim: int) -> Tolerance:
    # context @ kernel sums context_dim products, then one multiply by x: context_dim + 1 roundings per element
    return Tolerance(context_dim + 1, f"context @ hyper_kernel ({context_dim} terms), times x")


def hyperzzw_bad_inputs() -> list[BadInput]:
    """The catalogue's entries a subject can state: constructor arguments, and pairs of tensors of known shape."""
    out = []
    for case in bad_inputs.CATALOGUE:
        error = {"ValueError": ValueError, "TypeError": TypeError}.get(case.error)
        if error is None:
            continue
        if "construct" in case.modes and case.inputs is None:
            out.append(BadInput(case.id, error=error, message=case.message, args=case.kwargs))
        elif (
            "eager" in case.modes
            and isinstance(case.inputs, list)
            and len(case.inputs) == 2
            and all(
                isinstance(t, bad_inputs.T) and all(isinstance(d, int) for d in t) and len(t) >= 1 for t in case.inputs
            )
        ):
            specs = [Input(tuple(t)) for t in case.inputs]
            out.append(BadInput(case.id, error=error, message=case.message, inputs=specs, args=case.kwargs))
    return out


# Drawn configurations: input_dim, context_dim given or inferred, any of the suite's initializer families with
# its drawn config, as Keras's serialized form (the harness sets the weights itself, so the initializer shows
# in the config and the saved files).
_INITIALIZER = st.sampled_from(sorted(strategies.INITIALIZERS)).flatmap(
    lambda name: strategies.INITIALIZERS[name][0].map(lambda config: {"class_name": name, "config": dict(config)})
)
DRAWN_ARGUMENTS = st.fixed_dictionaries(
    {
        "input_dim": st.integers(1, 6),
        "context_dim": st.one_of(st.none(), st.integers(1, 6)),
        "kernel_initializer": _INITIALIZER,
    }
)
INFERRED_CONTEXT_DIM = 3  # the context's width when context_dim is not given


def _context_dim(args) -> int:
    return args["context_dim"] or INFERRED_CONTEXT_DIM


# hyperzzw's contract on two configurations, for its own subjects and for another implementation of the layer
# (KerasFactory's, `conformance/subjects/kerasfactory_layers.py`): arguments, inputs, oracles, tolerance and, for
# the first, the whole bad-input catalogue a subject can state.
CONTRACT = {
    "rank2-context": dict(
        args={"input_dim": 6},
        inputs=[Input((4, 6)), Input((4, 3))],
        oracle=hyperzzw_oracle,
        gradient_oracle=hyperzzw_gradient_oracle,
        tolerance=hyperzzw_tolerance(3),
        bad_inputs=hyperzzw_bad_inputs(),
    ),
    "rank3-masked": dict(
        args={"input_dim": 5},
        inputs=[Input((2, 1, 5), mask=0.5), Input((2, 4, 3), mask=0.7)],
        oracle=hyperzzw_oracle,
        gradient_oracle=hyperzzw_gradient_oracle,
        mask_oracle=hyperzzw_mask_oracle,
        tolerance=hyperzzw_tolerance(3),
    ),
}


def contract_subject(prefix: str, layer, configuration: str, **more) -> Subject:
    """The subject `<prefix>-<configuration>`: `layer` under hyperzzw's contract (`CONTRACT`), plus `more`
    (known divergences, say)."""
    return Subject(f"{prefix}-{configuration}", layer=layer, **CONTRACT[configuration], **more)


# LiteRT is exported from tensorflow alone here (from jax Keras offers none; from torch it needs litert-torch).
# Reproduced with Keras alone: `keras.ops.matmul` of a rank-8 input and a (2, 3) constant, exported to LiteRT with
# its shapes, fails the same way (keras 3.15.1, tensorflow-cpu 2.21.0, ai-edge-litert 2.3.0).
LITERT_RANK8 = (
    "LiteRT's converter turns the rank-8 matmul into a FULLY_CONNECTED node that the interpreter's XNNPACK "
    "delegate fails to prepare ('failed to delegate FULLY_CONNECTED node'): the artifact does not run"
)

SUBJECTS = [
    contract_subject("hyperzzw", _layer, "rank2-context"),
    contract_subject("hyperzzw", _layer, "rank3-masked"),
    # rank 8, the 1s alternating: seven broadcast runs, past TensorFlow's limit of five, so the layer must take
    # its einsum path, also when no size is known while tracing (the `unknown-sizes` row)
    Subject(
        "hyperzzw-rank8-broadcast-runs",
        layer=_layer,
        args={"input_dim": 3},
        inputs=[Input((2, 1, 2, 1, 2, 1, 2, 3)), Input((1, 2, 1, 2, 1, 2, 1, 2))],
        oracle=hyperzzw_oracle,
        gradient_oracle=hyperzzw_gradient_oracle,
        tolerance=hyperzzw_tolerance(2),
        divergences=[Divergence("exports/litert", "tensorflow", LITERT_RANK8)],
    ),
    Subject(
        "hyperzzw-drawn",
        layer=_layer,
        args=DRAWN_ARGUMENTS,
        examples=3,
        inputs=lambda args: [Input((2, 3, args["input_dim"])), Input((2, _context_dim(args)))],
        oracle=hyperzzw_oracle,
        gradient_oracle=hyperzzw_gradient_oracle,
        tolerance=lambda args: hyperzzw_tolerance(_context_dim(args)),
    ),
]
