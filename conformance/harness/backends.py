"""Backend plumbing the harness and the suite need: conversion, autodiff and compilation, each written once per
backend.

Everything else in the suite is backend-agnostic and goes through `keras.ops`; only this module imports a
backend library, and only the one Keras is running on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

NAME = keras.backend.backend()

# The backend library's version, for the report header and the observation records.
if NAME == "jax":
    import jax

    LIBRARY_VERSION = jax.__version__
elif NAME == "torch":
    import torch

    LIBRARY_VERSION = torch.__version__
elif NAME == "tensorflow":
    import tensorflow as tf

    LIBRARY_VERSION = tf.__version__
else:  # pragma: no cover - numpy/openvino backends are not part of the contract
    LIBRARY_VERSION = "?"

# How each backend compiles a function, and what it cannot: `COMPILERS[name] = (description, compile)`.
if NAME == "jax":
    COMPILERS = {"jit": ("jax.jit", jax.jit)}
elif NAME == "tensorflow":
    COMPILERS = {"jit": ("tf.function(jit_compile=True)", lambda fn: tf.function(fn, jit_compile=True))}
elif NAME == "torch":
    # torch.compile's default inductor backend generates and builds C++ for every new graph (tens of seconds
    # each on 2 cores); "aot_eager" runs the same Dynamo capture and AOTAutograd tracing of the layer's
    # Python (shape checks included) and executes the captured graph with eager kernels.
    COMPILERS = {"jit": ("torch.compile(backend='aot_eager')", lambda fn: torch.compile(fn, backend="aot_eager"))}
    # What users compile with for speed, and what the benchmark times: inductor, one graph per shape.
    COMPILERS["inductor"] = ("torch.compile (inductor, dynamic=False)", lambda fn: torch.compile(fn, dynamic=False))
else:  # pragma: no cover
    COMPILERS = {}
# The compiler a user picks for speed on this backend (the benchmark's "compiled" modes).
FAST_COMPILER = "inductor" if NAME == "torch" else "jit"


def tensor(array: np.ndarray, dtype: str):
    """A backend tensor of `dtype` holding `array`'s values (which must be representable in `dtype`)."""
    array = np.asarray(array)
    if dtype == "bfloat16":  # NumPy has no bfloat16: go through float32, which holds its values exactly
        return ops.cast(ops.convert_to_tensor(array.astype(np.float32), dtype="float32"), dtype)
    # Always name the dtype: without it Keras converts float64 arrays to floatx (float32) on some backends.
    return ops.convert_to_tensor(array.astype(dtype), dtype=dtype)


def to_numpy(value) -> np.ndarray:
    """A float64 (or bool/int) NumPy copy of a backend tensor; float16/bfloat16 are widened exactly."""
    dtype = keras.backend.standardize_dtype(value.dtype)
    if dtype in ("float16", "bfloat16"):
        value = ops.cast(value, "float32")
    array = np.asarray(ops.convert_to_numpy(value))
    return array.astype(np.float64) if array.dtype.kind == "f" else array


def dtype_of(value) -> str:
    return keras.backend.standardize_dtype(value.dtype)


def gradient_step(loss: Callable, n_args: int, compiler: str | None = None) -> Callable:
    """`step(*args)`: the gradients of the scalar `loss(*args)` with respect to each of its `n_args`
    arguments, by the backend's autodiff as its users write a training step (`jax.grad`;
    `torch.autograd.grad`, whose arguments must be leaves that require grad, or a variable's tensor;
    `tf.GradientTape`, watching tensors and variables alike), compiled with `COMPILERS[compiler]` if given
    (jax and TF compile the gradient; torch compiles the loss, and AOTAutograd gives its backward)."""
    compile_ = COMPILERS[compiler][1] if compiler else (lambda fn: fn)
    if NAME == "jax":
        return compile_(jax.grad(loss, argnums=tuple(range(n_args))))
    if NAME == "torch":
        compiled_loss = compile_(loss)
        return lambda *args: torch.autograd.grad(compiled_loss(*args), args)
    if NAME == "tensorflow":
        return compile_(lambda *args: _taped(lambda *xs: (loss(*xs), None), args)[1])
    raise NotImplementedError(NAME)  # pragma: no cover


def gradients(fn: Callable, args: Sequence) -> list:
    """The gradient of the scalar `fn(*args)` with respect to each of `args`, by the backend's autodiff, as
    backend tensors (convert with `to_numpy`; `dtype_of` tells the dtype the backend produced)."""
    if NAME == "torch":
        args = [a.detach().clone().requires_grad_(True) for a in args]
    elif NAME == "tensorflow":
        args = [tf.convert_to_tensor(a) for a in args]
    return list(gradient_step(fn, len(args))(*args))


def _taped(fn: Callable, args: Sequence) -> tuple:
    """`fn(*args)` returns `(loss, aux)`: `aux` and the gradient of `loss` w.r.t. each of `args`, by a tape."""
    with tf.GradientTape() as tape:
        for a in args:
            tape.watch(a)
        loss, aux = fn(*args)
    return aux, tape.gradient(loss, list(args))


def output_and_gradients(fn: Callable, args: Sequence, compiled: bool = False) -> tuple:
    """`fn(*args)` returns `(loss, output)`: the output and the gradient of the scalar loss with respect to
    each of `args`, from ONE evaluation of `fn` (eager, or compiled as `COMPILERS['jit']` compiles),
    so a compiled forward and its backward come from the same trace (on torch: one `torch.compile`, whose
    AOTAutograd graph also gives the backward)."""
    argnums = tuple(range(len(args)))
    if NAME == "jax":
        grad_fn = jax.value_and_grad(fn, argnums=argnums, has_aux=True)
        (_, output), grads = (jax.jit(grad_fn) if compiled else grad_fn)(*args)
    elif NAME == "tensorflow":

        def taped(*xs):
            return _taped(fn, xs)

        output, grads = (tf.function(taped, jit_compile=True) if compiled else taped)(
            *[tf.convert_to_tensor(a) for a in args]
        )
    elif NAME == "torch":
        args = [a.detach().clone().requires_grad_(True) for a in args]
        loss, output = (COMPILERS["jit"][1](fn) if compiled else fn)(*args)
        grads = torch.autograd.grad(loss, args)
        output = output.detach()
    else:  # pragma: no cover
        raise NotImplementedError(NAME)
    return output, list(grads)


def trace_with_unknown_dims(fn: Callable, specs: Sequence[tuple], owner=None) -> Callable:
    """`fn` traced once with unknown dimensions, the way each backend does it, then callable on concrete
    arrays of any size those dimensions allow. `specs` is one `(shape, dtype)` per argument, a shape's
    unknown dims named by strings (the same name: the same size): `jax.export` with
    `jax.export.symbolic_shape`, `tf.function` with `None` in its `input_signature`, `torch.export` with
    `torch.export.Dim` (`owner`, a layer, becomes a submodule so its weights are the program's parameters)."""
    if NAME == "jax":
        from jax import export

        scope = export.SymbolicScope()
        args = [
            jax.ShapeDtypeStruct(export.symbolic_shape(", ".join(map(str, shape)), scope=scope), dtype)
            for shape, dtype in specs
        ]
        return export.export(jax.jit(fn))(*args).call
    if NAME == "tensorflow":
        signature = [tf.TensorSpec([None if isinstance(d, str) else d for d in shape], dtype) for shape, dtype in specs]
        concrete = tf.function(fn, input_signature=signature).get_concrete_function()
        return lambda *xs: concrete(*[tf.convert_to_tensor(x) for x in xs])
    if NAME == "torch":
        names = sorted({d for shape, _ in specs for d in shape if isinstance(d, str)})
        dims = {name: torch.export.Dim(name) for name in names}

        class Traced(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.owner = owner

            def forward(self, x, context):
                return fn(x, context)

        # Sample sizes of 2 and up (torch specializes sizes 0 and 1), distinct per name.
        sizes = {name: 2 + i for i, name in enumerate(names)}
        sample = tuple(
            torch.zeros([sizes[d] if isinstance(d, str) else d for d in shape], dtype=getattr(torch, dtype))
            for shape, dtype in specs
        )
        dynamic = tuple({i: dims[d] for i, d in enumerate(shape) if isinstance(d, str)} or None for shape, _ in specs)
        assert len(specs) == 2, "torch: (x, context) only"
        program = torch.export.export(Traced(), sample, dynamic_shapes=dynamic).module()
        return lambda *xs: program(*[torch.as_tensor(np.asarray(x)) for x in xs])
    raise NotImplementedError(NAME)  # pragma: no cover


# Whether a traced size may stand for a 1 that broadcasts: TensorFlow's `None` may (it broadcasts at run time);
# jax's symbolic sizes may not (a symbol against another cannot broadcast), and torch specializes sizes 0 and 1.
UNKNOWN_ONES = NAME == "tensorflow"


def compile_with_unknown_sizes(fn: Callable, specs: Sequence[tuple]) -> Callable:
    """`fn` compiled with sizes unknown until it runs, then callable on NumPy arrays of any sizes the specs
    allow (`specs`: one `(shape, dtype)` per argument, unknown dims named by strings, the same name the same
    size): `jax.export` with symbolic shapes and `tf.function` with `None` in its input signature, traced
    once, before any size is known; `torch.compile(dynamic=True)`, whose graph keeps sizes symbolic
    (guarded, and retraced where a guard fails)."""
    if NAME == "jax":
        return trace_with_unknown_dims(fn, specs)
    if NAME == "tensorflow":
        signature = [tf.TensorSpec([None if isinstance(d, str) else d for d in shape], t) for shape, t in specs]
        concrete = tf.function(fn, input_signature=signature).get_concrete_function()
        return lambda *xs: concrete(*[tf.convert_to_tensor(x) for x in xs])
    if NAME == "torch":
        compiled = torch.compile(fn, dynamic=True, backend="aot_eager")
        return lambda *xs: compiled(*[torch.as_tensor(np.asarray(x)) for x in xs])
    raise NotImplementedError(NAME)  # pragma: no cover
