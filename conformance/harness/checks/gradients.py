"""gradients: the gradients of `sum(output * cotangent)` (cotangents drawn from NumPy, float32-exact) with
respect to each trainable weight and each float input, by the backend's autodiff through the layer's stateless
call; `gradients-float64` the same under the float64 policy (observed by `policies`).

With a gradient oracle, both are judged against it. Without one, the float32 gradients are judged against the
backend's float64 ones, and the float64 ones are not judged: without an exact reference a disagreement among
three float64 results cannot be attributed. The tolerance adds the positions a weight's gradient sums over, and
its scale is the largest gradient of the subject (a gradient's cancellations are as large as they are)."""

from __future__ import annotations

import numpy as np

from conformance.harness.run import numeric_entry

NAME = "gradients"
ROWS = (NAME, "gradients-float64", "oracle-gradients")


def observe(run, layer, tensors, prefix: str = NAME) -> None:
    run.attempt(prefix, lambda: _observe(run, layer, prefix))


def _observe(run, layer, prefix: str) -> None:
    backend = run.backend
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    tensors = run.autocast(layer, run.tensors(dtype_of_float=layer.variable_dtype))
    kwargs = run.call_kwargs(layer)
    float_inputs = [i for i, s in enumerate(run.specs) if s.dtype.startswith(("float", "bfloat"))]
    out = run.outputs(run.call(layer, tensors))
    rng = np.random.default_rng([run.subject.seed, 2])
    # float32-exact: the float32 and float64 runs (and the gradient oracle) take the same cotangents
    arrays = [rng.standard_normal(tuple(o.shape)).astype(np.float32).astype(np.float64) for o in out]
    cotangents = [backend.tensor(a, backend.dtype_of(o)) for a, o in zip(arrays, out)]

    def loss(*diff):
        ws, xs = list(diff[: len(trainable)]), list(tensors)
        for i, x in zip(float_inputs, diff[len(trainable) :]):
            xs[i] = x
        args, call_kwargs = run.pack(xs)
        y, _ = layer.stateless_call(ws, non_trainable, *args, **call_kwargs, **kwargs)
        ops = run.keras.ops
        return sum(
            ops.sum(ops.cast(a, "float32") * ops.cast(c, "float32"))
            for a, c in zip(run.keras.tree.flatten(y), cotangents)
        )

    grads = backend.gradients(loss, trainable + [tensors[i] for i in float_inputs])
    names = [v.path.split("/", 1)[-1] for v in layer.trainable_variables]
    names += [run.specs[i].name or f"input{i}" for i in float_inputs]
    for name, grad in zip(names, grads):
        run.numeric(f"{prefix}/{name}", grad)
    if prefix == NAME and run.subject.gradient_oracle is not None:
        run.attempt("oracle-gradients", lambda: _oracle(run, layer, arrays))


def _oracle(run, layer, cotangents: list) -> None:
    """The subject's gradient oracle on the same weights, inputs and cotangents (float64), by name."""
    cotangent = cotangents[0] if len(cotangents) == 1 else cotangents
    for name, array in run.call_oracle(run.subject.gradient_oracle, layer, cotangent).items():
        run.checks[f"oracle-gradients/{name}"] = numeric_entry(array, "float64")


def judge(judge, row: str) -> None:
    if "/" not in row:  # raised on every backend: each fails with its exception
        judge.same_text(row)
        return
    float64, name = row.startswith("gradients-float64/"), row.split("/", 1)[1]
    if judge.meta.get("has_gradient_oracle"):
        reference = _oracle_reference(judge, row, name)
    elif float64:
        return  # the float32 gradients' reference, not judged itself
    else:
        reference = judge.own("gradients-float64/" + name)
    judge.numeric(row, reference, tolerance(judge))


def finish(judge, rows) -> None:
    """A gradient the oracle gives and the layer lacks fails on every backend."""
    if not judge.meta.get("has_gradient_oracle"):
        return
    for name in sorted(r.split("/", 1)[1] for r in rows if r.startswith("oracle-gradients/")):
        if f"gradients/{name}" not in rows:
            for backend in judge.backends:
                judge.set(
                    f"gradients/{name}",
                    backend,
                    judge.FAIL,
                    f"the gradient oracle gives {name!r}, the layer has no such gradient",
                )


def _oracle_reference(judge, row: str, name: str):
    """The gradient oracle's `name` (a gradient the layer has and the oracle lacks fails on every backend)."""
    entry = judge.first(f"oracle-gradients/{name}")
    if entry is None:
        raised = judge.first("oracle-gradients")
        why = judge.summary(raised) if raised else f"it gives no gradient for {name!r}"
        for backend in judge.backends:
            judge.set(row, backend, judge.FAIL, f"the gradient oracle: {why}")
        return lambda b: None
    entry = {**entry, "oracle": True}
    return lambda b: entry


def tolerance(judge, extra: int = 0):
    """The subject's tolerance plus the positions a weight's gradient sums over (and `extra` roundings)."""
    why = f"+ {judge.positions}: a weight's gradient sums over the batch and positions"
    return judge.tolerance.plus(judge.positions + extra, why)


def scale_family(row: str) -> str | None:
    """Every gradient of the subject, float32 and float64 alike (not the oracle's)."""
    return NAME if row.startswith(("gradients/", "gradients-float64/")) or row in ROWS[:2] else None
