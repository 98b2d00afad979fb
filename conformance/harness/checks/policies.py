"""policies: a new layer under each dtype policy Keras offers (`float16`, `bfloat16`, `float32`, `float64`,
`mixed_float16`, `mixed_bfloat16`), called on inputs as a model under that policy feeds it: each output in the
policy's compute dtype, against the oracle (else, for the non-float64 policies, the backend's float64 run),
within the subject's tolerance in that dtype plus two roundings (inputs and weights rounded to it). The float64
run also records `gradients-float64` (`gradients`)."""

from __future__ import annotations

from conformance.harness.checks import gradients
from conformance.harness.terms import POLICIES

NAME = "policies"
ROWS = (NAME,)
FAMILY_DEPTH = 2


def observe(run, layer, tensors) -> None:
    for policy in POLICIES:
        run.attempt(f"{NAME}/{policy}", lambda policy=policy: _observe(run, policy))


def _observe(run, policy: str) -> None:
    layer = run.built_layer(dtype=policy)
    run.record_outputs(f"{NAME}/{policy}", run.call(layer, run.policy_tensors(policy)))
    if policy == "float64" and gradients.NAME not in run.subject.skip:
        gradients.observe(run, layer, None, prefix="gradients-float64")


def judge(judge, row: str) -> None:
    policy, suffix = row.split("/")[1].split(".")[0], judge.suffix(row)
    oracle = judge.oracle_of(suffix)
    reference = oracle if policy == "float64" else oracle or judge.own("policies/float64" + suffix)
    widened = judge.tolerance.plus(2, "+2: inputs and weights rounded to the policy's dtype")
    judge.numeric(row, reference or (lambda b: None), widened, expected_dtype=POLICIES[policy][0])
