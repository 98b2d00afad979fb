"""HyperZZWOperator as a harness subject, declared through the same public API as any user's layer: its exact
oracle (`conformance.oracle`), tolerances derived from its reduction length, and its bad-input catalogue
(`conformance.bad_inputs`), each entry with the exact text every backend must raise.

    python -m conformance.harness conformance/subjects/hyperzzw.py      # or: nox -s harness
"""

from __future__ import annotations

from conformance import bad_inputs, oracle
from conformance.harness import BadInput, Input, Subject, Tolerance


def _layer(**kwargs):
    from conformance import target  # the layer under test: hyperzzw, or HYPERZZW_TARGET's copy

    return target.HyperZZWOperator(**kwargs)


def hyperzzw_oracle(weights, x, context):
    """The exact output (conformance.oracle), rounded once to float64."""
    return oracle.forward(x, context, weights["hyper_kernel"])


def hyperzzw_mask_oracle(masks, x, context):
    """The output mask the contract states (conformance.oracle.output_mask)."""
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


SUBJECTS = [
    Subject(
        "hyperzzw-rank2-context",
        layer=_layer,
        args={"input_dim": 6},
        inputs=[Input((4, 6)), Input((4, 3))],
        oracle=hyperzzw_oracle,
        tolerance=hyperzzw_tolerance(3),
        bad_inputs=hyperzzw_bad_inputs(),
    ),
    Subject(
        "hyperzzw-rank3-masked",
        layer=_layer,
        args={"input_dim": 5},
        inputs=[Input((2, 1, 5), mask=0.5), Input((2, 4, 3), mask=0.7)],
        oracle=hyperzzw_oracle,
        mask_oracle=hyperzzw_mask_oracle,
        tolerance=hyperzzw_tolerance(3),
    ),
]
