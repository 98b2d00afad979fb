"""Running the layer on a golden case's stored arrays: eagerly, compiled and under autodiff.

One layer is built per (dtype policy, shapes) and the compiled functions are kept, so a case that is checked
eagerly, compiled and differentiated pays for building and compiling once.
"""

from __future__ import annotations

import functools

import numpy as np
from keras import ops

from conformance import backend, target


@functools.lru_cache(maxsize=None)
def built_layer(dtype: str, x_shape: tuple, context_shape: tuple, context_dtype: str | None = None):
    layer = target.HyperZZWOperator(x_shape[-1], dtype=dtype)
    layer.build([x_shape, context_shape])
    return layer


def _forward(layer, x, context, kernel):
    return layer.stateless_call([kernel], [], [x, context])[0]


@functools.lru_cache(maxsize=None)
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
