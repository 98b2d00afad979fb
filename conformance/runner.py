"""Running the layer on a golden case's stored arrays: eagerly, compiled and under autodiff; and the
training reference's model and SGD steps.

One layer is built per (dtype policy, shapes) and the compiled functions are kept, so a case that is checked
eagerly, compiled and differentiated pays for building and compiling once.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from conformance import backend
from conformance.subjects.hyperzzw import cases, target


@functools.cache
def built_layer(dtype: str, x_shape: tuple, context_shape: tuple, context_dtype: str | None = None):
    layer = target.HyperZZWOperator(x_shape[-1], dtype=dtype)
    layer.build([x_shape, context_shape])
    return layer


def _forward(layer, x, context, kernel):
    return layer.stateless_call([kernel], [], [x, context])[0]


@functools.cache
def compiled_forward(dtype: str, x_shape: tuple, context_shape: tuple, context_dtype: str | None = None):
    layer = built_layer(dtype, x_shape, context_shape, context_dtype)
    _, compile_fn = backend.COMPILERS["jit"]
    return compile_fn(functools.partial(_forward, layer))


def _tensors(arrays: dict[str, np.ndarray], dtype: str, context_dtype: str | None, *names: str):
    return [backend.tensor(arrays[n], (context_dtype or dtype) if n == "context" else dtype) for n in names]


def run_case(arrays: dict[str, np.ndarray], dtype: str, mode: str, context_dtype: str | None = None):
    """The layer's output on a case's stored arrays: `mode` is "eager" (the layer's `__call__`, kernel
    assigned) or "jit" (the backend's compiler around `stateless_call`). Returns the backend tensor."""
    x, context, kernel = _tensors(arrays, dtype, context_dtype, "x", "context", "kernel")
    key = (dtype, tuple(x.shape), tuple(context.shape), context_dtype)
    if mode == "eager":
        layer = built_layer(*key)
        layer.hyper_kernel.assign(kernel)
        return layer([x, context])
    return compiled_forward(*key)(x, context, kernel)


def gradients_case(arrays: dict[str, np.ndarray], dtype: str, context_dtype: str | None = None):
    """Gradients of `sum(cotangent * output)` w.r.t. (x, context, kernel) by the backend's autodiff
    (context omitted for integer contexts)."""
    x, context, kernel, g = _tensors(arrays, dtype, context_dtype, "x", "context", "kernel", "cotangent")
    layer = built_layer(dtype, tuple(x.shape), tuple(context.shape), context_dtype)

    if context_dtype is None:

        def loss(x, context, kernel):
            return ops.sum(g * _forward(layer, x, context, kernel))

        return backend.gradients(loss, [x, context, kernel])

    def loss_no_context(x, kernel):
        return ops.sum(g * _forward(layer, x, context, kernel))

    dx, dkernel = backend.gradients(loss_no_context, [x, kernel])
    return [dx, None, dkernel]


def stateless_forward(layer):
    """`forward(x, context, kernel)`: the layer's `__call__` (so the dtype policy's autocasting applies, as
    in Keras's own trainers), with the kernel given by value instead of read from the variable, so it can be
    traced and differentiated."""

    def forward(x, context, kernel):
        with keras.StatelessScope(state_mapping=[(layer.hyper_kernel, kernel)]):
            return layer([x, context])

    return forward


def sum_loss_and_output(forward, args, differentiable, g):
    """`fn(*args[i] for i in differentiable)` -> `(sum(g * output), output)`, the other `args` held fixed;
    the sum in float64 for a float64 output, else float32. For `backend.output_and_gradients`."""

    def fn(*diff_args):
        full = list(args)
        for i, a in zip(differentiable, diff_args):
            full[i] = a
        out = forward(*full)
        wide = "float64" if backend.dtype_of(out) == "float64" else "float32"
        return ops.sum(ops.cast(g * out, wide)), out

    return fn


def functional_model(case: cases.Case):
    """A functional model around the layer (named "zzw") for `case`'s shapes and dtypes, batch unknown.
    Returns `(model, layer)`."""
    x = keras.Input(shape=case.x_shape[1:], name="x", dtype=case.dtype)
    context = keras.Input(shape=case.context_shape[1:], name="context", dtype=case.context_dtype or case.dtype)
    layer = target.HyperZZWOperator(case.input_dim, name="zzw", dtype=case.dtype)
    return keras.Model([x, context], layer([x, context])), layer


def training_model():
    """The training reference's model: the layer under `Dense(1, use_bias=False)`, in the case's dtype.
    Returns `(model, layer, head)`."""
    t = cases.TRAINING
    x = keras.Input((t.input_dim,), name="x")
    context = keras.Input((t.context_dim,), name="context")
    layer = target.HyperZZWOperator(t.input_dim, name="zzw", dtype=t.dtype)
    head = keras.layers.Dense(1, use_bias=False, name="head", dtype=t.dtype)
    return keras.Model([x, context], head(layer([x, context]))), layer, head


def compile_for_training(model, jit_compile: bool) -> None:
    """Keras's SGD at the reference's learning rate and its mean squared error."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=cases.TRAINING.learning_rate),
        loss=keras.losses.MeanSquaredError(),
        jit_compile=jit_compile,
    )


def sgd_steps(model, layer, head, data: dict, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`steps` SGD steps through `model.fit`, each from the stored reference state `(kernels[k], ws[k])`
    (one epoch of one full batch is one step): the losses before each step and the kernels after it."""
    t = cases.TRAINING
    inputs = [data["x"].astype(t.dtype), data["context"].astype(t.dtype)]
    target_y = data["y"].astype(t.dtype)
    losses, kernels, ws = [], [], []
    for k in range(steps):
        layer.hyper_kernel.assign(data["kernels"][k].astype(t.dtype))
        head.kernel.assign(data["ws"][k].astype(t.dtype))
        history = model.fit(inputs, target_y, batch_size=t.batch, epochs=1, shuffle=False, verbose=0)
        losses.append(float(history.history["loss"][0]))
        kernels.append(backend.to_numpy(layer.hyper_kernel))
        ws.append(backend.to_numpy(head.kernel))
    return np.asarray(losses), np.stack(kernels), np.stack(ws)
