"""compiled: the layer's stateless call compiled as each backend compiles (`backends.COMPILERS["jit"]`: `jax.jit`,
`tf.function(jit_compile=True)`, `torch.compile(backend="aot_eager")`), judged as the eager call is (`forward`):
a layer whose traced code takes another path than its eager code differs here."""

from __future__ import annotations

from conformance.harness.checks import forward

NAME = "compiled"
ROWS = (NAME,)


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: run.record_outputs(NAME, _compiled(run, layer, tensors)))


def _compiled(run, layer, tensors):
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    kwargs = run.call_kwargs(layer)

    def fn(trainable, non_trainable, *xs):
        args, call_kwargs = run.pack(list(xs))
        out, _ = layer.stateless_call(trainable, non_trainable, *args, **call_kwargs, **kwargs)
        return out

    return run.backend.COMPILERS["jit"][1](fn)(trainable, non_trainable, *run.autocast(layer, tensors))


judge = forward.judge
