"""training: one step of SGD (learning rate 1/8, a power of two: the same in every float dtype; mean squared error
to a NumPy-drawn target) by `train_on_batch`, as `model.fit` takes it, under the float32 and float64 policies;
each trainable weight's update. The float32 step is judged against the backend's float64 step (its reference,
not judged itself), within the gradients' tolerance plus the rounding of the new weights."""

from __future__ import annotations

import numpy as np

from conformance.harness.checks import gradients
from conformance.harness.run import numeric_entry
from conformance.harness.terms import POLICIES

NAME = "training"
ROWS = (NAME,)
FAMILY_DEPTH = 2


def observe(run, layer, tensors) -> None:
    for policy in ("float32", "float64"):
        run.attempt(f"{NAME}/{policy}", lambda policy=policy: _observe(run, policy))


def _observe(run, policy: str) -> None:
    keras, backend = run.keras, run.backend
    layer = run.built_layer(dtype=policy)
    model = run.model(layer, dtype=POLICIES[policy][1])
    tensors = run.policy_tensors(policy)
    outs = run.outputs(model(tensors))
    if len(outs) != 1 or not backend.dtype_of(outs[0]).startswith(("float", "bfloat")):
        return run.text(f"{NAME}/{policy}", "not applicable: the layer has no single float output")
    if not layer.trainable_variables:
        return run.text(f"{NAME}/{policy}", "not applicable: the layer has no trainable weights")
    rng = np.random.default_rng([run.subject.seed, 3])
    target = rng.standard_normal(tuple(outs[0].shape))
    # the loss in the layer's compute dtype (a Keras loss computes in float32 unless told otherwise)
    loss = keras.losses.MeanSquaredError(dtype=layer.compute_dtype if policy == "float64" else None)
    model.compile(optimizer=keras.optimizers.SGD(0.125), loss=loss)
    before = [backend.to_numpy(v.value) for v in layer.trainable_variables]
    model.train_on_batch(tensors, backend.tensor(target, backend.dtype_of(outs[0])))
    for variable, old in zip(layer.trainable_variables, before):  # the update, exact in float64
        update = backend.to_numpy(variable.value) - old
        run.checks[f"{NAME}/{policy}/{variable.path.split('/', 1)[-1]}"] = numeric_entry(
            update, backend.dtype_of(variable)
        )
    return None


def judge(judge, row: str) -> None:
    parts = row.split("/")
    if len(parts) <= 2:  # "not applicable" texts (judged before this), or raised on every backend
        judge.same_text(row)
    elif parts[1] != "float64":  # the float64 step is the float32 one's reference, not judged itself
        reference = judge.own("/".join([NAME, "float64", *parts[2:]]))
        # the update w_new - w_old = -gradient / 8, and the rounding of w_new (|w_new| <= 1.5 + |update|)
        judge.numeric(row, reference, gradients.tolerance(judge, extra=2), floor=2 * 1.5)


def scale_family(row: str) -> str | None:
    """Every weight update of the subject."""
    return NAME if row.count("/") >= 2 else None
