# Copyright 2026 The hyperzzw Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and limitations under the License.
"""HyperZZWOperator: a context-conditioned Keras 3 layer, ``output = x * (context @ hyper_kernel)``.

This file is the whole of the ``hyperzzw`` layer. It imports nothing but ``keras`` and the Python standard
library, runs unchanged on the JAX, PyTorch and TensorFlow backends of Keras 3, and never refers to its own
module path, so it can be vendored: copy this one file into your project (for example as
``yourpkg/_vendor/hyperzzw.py``) and import ``HyperZZWOperator`` from there. ``scripts/vendor.py`` in the
hyperzzw repository does the copy and adds a provenance header.

The contract for a vendored copy: copy the file unmodified, keep the licence header above, and let the
hyperzzw conformance suite check it (it can be pointed at your copy). The layer is registered with Keras
under the name ``hyperzzw>HyperZZWOperator``, so ``.keras`` files saved with the package load with a vendored
copy and the other way round.

The layer follows KerasFactory's ``HyperZZWOperator`` (same weight name, ``hyper_kernel``, and shape,
``(context_dim, input_dim)``), and adds what that layer leaves undefined: base-layer keyword arguments are
honoured, an explicit ``context_dim`` is checked against the context, rank-3+ inputs broadcast by a stated
rule, and every bad argument or input raises a ``ValueError`` that names what was expected and what was
received, with the same text on every backend.
"""

import numbers
import operator

import keras
from keras import ops

__version__ = "0.2.1"
__all__ = ["HyperZZWOperator"]

_NAME = "HyperZZWOperator"


def _error(message):
    """A `ValueError` whose text is the same on every backend.

    Keras appends the call's arguments, formatted by the backend (`jnp.ndarray(...)`, `torch.Tensor(...)`),
    to errors raised inside `call()` unless the error is marked as already carrying that information; and
    TensorFlow's autograph, inside a user's `tf.function`, rewrites the message to start with "in user code:"
    and a traceback unless the error is marked to pass through.
    """
    error = ValueError(message)
    error._keras_call_info_injected = True
    error.ag_pass_through = True
    return error


def _check_dim(name, value):
    """Returns `value` as a Python int, or raises if it is not a positive integer (bools are not)."""
    if not isinstance(value, bool):
        try:
            as_int = operator.index(value)
        except TypeError:
            as_int = None
        if as_int is not None and as_int > 0:
            return as_int
    raise _error(f"Received an invalid value for `{name}`, expected a positive integer. Received: {name}={value!r}")


def _fmt_shape(shape):
    # A dim known only at run time (None, a traced symbolic size) prints as None on every backend.
    return str(tuple(int(d) if isinstance(d, numbers.Integral) else None for d in shape))


def _is_symbolic(value):
    """A dimension known only when the program runs: `jax.export`'s symbolic sizes (`b`, `2*t`), which are
    not integers, but add, multiply and convert to int once bound."""
    return (
        value is not None
        and not isinstance(value, (numbers.Number, str, bytes))
        and getattr(value, "ndim", 0) == 0
        and not hasattr(type(value), "__index__")
        and hasattr(type(value), "__int__")
        and hasattr(type(value), "__add__")
    )


def _is_dim(value):
    # Integer-like scalars count (Python, NumPy and torch.compile's symbolic ints), and symbolic sizes;
    # bools and arrays do not.
    if value is None or _is_symbolic(value):
        return True
    if isinstance(value, bool) or getattr(value, "ndim", 0) != 0:
        return False
    return hasattr(type(value), "__index__")


def _all_ints(shape):
    return isinstance(shape, tuple) and all(type(d) is int for d in shape)


# Backend dtype object -> Keras's name for it: `standardize_dtype` costs more than the rest of a small eager
# call's checks, and a process meets a handful of dtypes.
_DTYPE_NAMES = {}


def _dtype_name(dtype):
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = keras.backend.standardize_dtype(dtype)
    return name


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(_is_dim(d) for d in value)


def _describe(inputs, shapes):
    """A backend-independent description of what a layer call received, for error messages.

    `shapes` says whether `inputs` is what `build` receives (shape tuples) or what `call` receives (tensors).
    """
    if inputs is None or (isinstance(inputs, (list, tuple)) and not inputs):
        return "no tensors"  # Keras hands `build` None for `None`, `[]` and `()` alike
    if hasattr(inputs, "shape") or (shapes and _is_shape(inputs)):
        return f"a single tensor of shape {_fmt_shape(_static_shape(inputs))}"
    if isinstance(inputs, (list, tuple)):
        parts = []
        for item in inputs:
            item = _static_shape(item)
            parts.append(_fmt_shape(item) if _is_shape(item) else f"<{type(item).__name__}>")
        kind = type(inputs).__name__
        items = "item" if len(inputs) == 1 else "items"
        return f"a {kind} of {len(inputs)} {items}: [{', '.join(parts)}]"
    return f"an object of type {type(inputs).__name__}"


def _static_shape(tensor):
    shape = getattr(tensor, "shape", None)
    return tuple(shape) if shape is not None else tensor


def _split(inputs, shapes):
    """Returns `(x, context)` from `[x, context]` (shapes in `build`, tensors in `call`), or raises."""
    if isinstance(inputs, (list, tuple)) and len(inputs) == 2 and not (shapes and _is_shape(inputs)):
        return inputs[0], inputs[1]
    raise _error(
        f"`{_NAME}` expects its inputs to be a list or tuple of two tensors, [x, context]. "
        f"Received: {_describe(inputs, shapes)}"
    )


# TensorFlow's broadcasting kernels (`tf.multiply`, `tf.logical_and`, `tf.broadcast_to`) handle at most five
# runs of dimensions that broadcast alike, and raise `UnimplementedError` beyond; `einsum` broadcasts by other
# means and handles any rank on every backend (measured to rank 13), but is slower, so the layer takes it only
# past that limit (for the product and for the AND of two masks).
_MAX_BROADCAST_RUNS = 5


def _broadcast_runs(a_shape, b_shape):
    """How many runs of dimensions broadcast alike (`a` along, `b` along, or neither) between two shapes of
    one rank, as TensorFlow counts them; an unknown dimension counts as a run of its own."""
    runs, previous = 0, None
    for a, b in zip(a_shape, b_shape):
        a, b = (None if d is None or _is_symbolic(d) else int(d) for d in (a, b))
        if a == 1 and b == 1:
            continue  # broadcasts nothing: TensorFlow drops it
        kind = "a" if a == 1 else "b" if b == 1 else "=" if a == b and a is not None else object()
        if kind != previous:
            runs, previous = runs + 1, kind
    return runs


def _past_broadcast_limit(a_shape, b_shape):
    """Whether broadcasting two shapes of one rank takes more runs than TensorFlow's kernels handle."""
    if len(a_shape) != len(b_shape) or len(a_shape) <= _MAX_BROADCAST_RUNS:
        return False
    return _broadcast_runs(a_shape, b_shape) > _MAX_BROADCAST_RUNS


def _broadcast_dim(a, b):
    """Broadcasts two static dimensions (None is unknown); returns False when they cannot broadcast."""
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    if a is None:
        return b
    if b is None:
        return a
    return False


def _trailing_axes(tensor, rank, after=None):
    """`tensor` with axes of size 1 added up to `rank`: at the end (a mask over the first axes covers the
    axes after them), or after axis `after` (a rank-2 context's batch axis)."""
    for _ in range(rank - len(tensor.shape)):
        tensor = ops.expand_dims(tensor, axis=-1 if after is None else after)
    return tensor


def _leading_trues(tensor):
    """Trues of `tensor`'s shape without its last axis, whatever its sizes (known, or only when it runs)."""
    if tensor.shape[-1] == 0:  # nothing to slice: the `any` of an empty axis is False
        return ops.logical_not(ops.any(ops.zeros_like(tensor, dtype="bool"), axis=-1))
    return ops.ones_like(tensor[..., 0], dtype="bool")


def _static_broadcast(shapes):
    """The NumPy broadcast of static shapes of one rank, or None when one is unknown or they do not broadcast."""
    if not all(_all_ints(shape) for shape in shapes) or len({len(shape) for shape in shapes}) != 1:
        return None
    out = []
    for dims in zip(*shapes):
        sizes = set(dims) - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# Integer dtypes wider than float32's 24-bit significand. Every backend converts them to bfloat16 through
# float32 (measured: jax, torch and TensorFlow, Keras 3.15), so an integer within half a float32 ulp of a point
# midway between two bfloat16 values lands on that midpoint and then rounds to even, not to the nearer one.
_WIDE_INTEGERS = frozenset({"int32", "uint32", "int64"})


def _wide_integers_to_bfloat16(tensor, dtype):
    """`tensor` (of integer `dtype`: int32, uint32 or int64) rounded once, to the nearest bfloat16."""
    single = ops.cast(tensor, "float32")  # rounds once (measured on every backend)
    near = ops.cast(ops.cast(single, "bfloat16"), "float32")
    # Where float32 rounded onto a point midway between two bfloat16 values (`near` and `2 * single - near`,
    # exact in float32), the integer itself lies on one side of it: take the bfloat16 on that side. (Where
    # `single` is past the integer range, 2**31, 2**32 or 2**63, it is a bfloat16 value, never midway.)
    other = 2.0 * single - near
    midway = ops.logical_and(
        ops.not_equal(near, single), ops.equal(ops.cast(ops.cast(other, "bfloat16"), "float32"), other)
    )
    back = ops.cast(single, dtype)
    side = ops.where(ops.greater(tensor, back), ops.maximum(near, other), ops.minimum(near, other))
    fixed = ops.where(ops.logical_and(midway, ops.not_equal(tensor, back)), side, near)
    return ops.cast(fixed, "bfloat16")


def _multiply_keeps_float64():
    """Whether `keras.ops.multiply` of two float64 tensors is float64 (see `HyperZZWOperator.build`)."""
    one = ops.ones((1,), dtype="float64")
    return keras.backend.standardize_dtype(ops.multiply(one, one).dtype) == "float64"


@keras.saving.register_keras_serializable(package="hyperzzw")
class HyperZZWOperator(keras.layers.Layer):
    """Context-conditioned elementwise layer: `output = x * (context @ hyper_kernel)`.

    The context is projected by a learned `hyper_kernel` of shape `(context_dim, input_dim)` into one
    weight per feature of `x`, and `x` is multiplied elementwise by those weights, so each context
    rescales the features of `x` in its own way.

    Args:
        input_dim: Positive integer, the size of the last dimension of `x` (and of the output).
        context_dim: Positive integer or `None`, the size of the last dimension of `context`. With `None`
            (the default) it is inferred from the context when the layer is built; afterwards
            `layer.context_dim` holds the inferred value and `get_config()` reports it. An explicit value
            that disagrees with the context is an error.
        kernel_initializer: Initializer for the `hyper_kernel` weight. Defaults to `"glorot_uniform"`.
        kernel_regularizer: Regularizer function applied to the `hyper_kernel` weight.
        kernel_constraint: Constraint function applied to the `hyper_kernel` weight.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        A list or tuple of two tensors, `[x, context]`:
        - `x`: N-D tensor with shape `(batch_size, ..., input_dim)`, N >= 2.
        - `context`: either 2-D with shape `(batch_size, context_dim)`, applied to every position of `x`,
          or N-D like `x` with shape `(batch_size, ..., context_dim)`, whose leading dimensions
          broadcast against those of `x` (NumPy rules: equal, or one of them 1).
        Integer and boolean inputs (one-hot contexts, say) are cast to the layer's compute dtype.

    Output shape:
        N-D tensor with the shape of `x` broadcast against the context's leading dimensions:
        `(batch_size, ..., input_dim)`, in the layer's compute dtype.

    Example:

    >>> x = keras.ops.ones((2, 3))
    >>> context = keras.ops.ones((2, 4))
    >>> layer = HyperZZWOperator(input_dim=3, kernel_initializer="ones")
    >>> y = layer([x, context])
    >>> layer.context_dim
    4
    >>> tuple(layer.hyper_kernel.shape), tuple(y.shape)
    ((4, 3), (2, 3))
    >>> keras.ops.convert_to_numpy(y).tolist()
    [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
    """

    def __init__(
        self,
        input_dim,
        context_dim=None,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        input_dim = _check_dim("input_dim", input_dim)
        if context_dim is not None:
            context_dim = _check_dim("context_dim", context_dim)
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.context_dim = context_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, input_shape):
        x_shape, context_shape = _split(input_shape, shapes=True)
        self.context_dim = self._check_shapes(x_shape, context_shape)[0]
        self.hyper_kernel = self.add_weight(
            name="hyper_kernel",
            shape=(self.context_dim, self.input_dim),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        # keras-team/keras#23225 (in the Keras 3.16 nightlies; reported as keras-team/keras#23704): on the
        # torch backend `keras.ops.multiply` computes two float64 inputs in float32. Where it does, the float64
        # product goes through `einsum`, which keeps float64; elsewhere `multiply`, which is faster.
        self._multiply_by_einsum = self.compute_dtype == "float64" and not _multiply_keeps_float64()

    def call(self, inputs):
        x, context = _split(inputs, shapes=False)
        # Static shapes only (no device work): the same checks, and messages, as at build time.
        self._check_shapes(_static_shape(x), _static_shape(context))
        x = self._to_compute_dtype(x)
        context = self._to_compute_dtype(context)
        if self.compute_dtype == "float64":
            # einsum, not matmul: keras.ops.matmul on the torch backend computes float64 inputs in float32
            # (keras 3.15 promotes 64-bit dtypes to 32-bit there), measured at ~1e-8 error; einsum keeps
            # float64. Explicit subscripts, not "...": TensorFlow's gradient of a broadcast ("...") einsum
            # materialises a (context_dim, input_dim, batch) product (measured 30x slower at batch 8192).
            lead = "abdefghjklmnopqrstuvwxyz"[: len(context.shape) - 1]
            weights = ops.einsum(f"{lead}c,ci->{lead}i", context, self.hyper_kernel)
        else:
            # matmul everywhere else: as fast as the raw backend expression, eager and compiled.
            weights = ops.matmul(context, self.hyper_kernel)
        # A rank-2 context applies to every position of x: (batch, input_dim) -> (batch, 1, ..., input_dim).
        for _ in range(len(x.shape) - len(context.shape)):
            weights = ops.expand_dims(weights, axis=1)
        if self._multiply_by_einsum or _past_broadcast_limit(x.shape, weights.shape):
            return ops.einsum("...i,...i->...i", x, weights)
        return ops.multiply(x, weights)

    def compute_output_shape(self, input_shape):
        x_shape, context_shape = _split(input_shape, shapes=True)
        return self._check_shapes(x_shape, context_shape)[1]

    def compute_mask(self, inputs, mask=None):
        # As for an elementwise product: the output keeps the mask of `x`; a context of x's rank has x's
        # time axes, and its mask is combined with x's by logical AND; a rank-2 context has no time axis, and
        # carries no mask over to the output. The mask describes the output: it has the output's leading
        # shape, so a mask whose axis is 1 where the other input's is not is broadcast (NumPy rules), and a
        # mask over the first axes only covers the axes after them.
        if not isinstance(mask, (list, tuple)) or len(mask) != 2 or mask[0] is None and mask[1] is None:
            return None
        x, context = _split(inputs, shapes=False)
        rank = len(x.shape) - 1  # the output mask's rank
        masks = [mask[0], mask[1] if len(context.shape) == len(x.shape) else None]
        if masks[0] is None and masks[1] is None:
            return None
        masks = [None if m is None else _trailing_axes(m, rank) for m in masks]
        lead = self._check_shapes(_static_shape(x), _static_shape(context))[1][:-1]
        present = [m for m in masks if m is not None]
        if not (_all_ints(lead) and _static_broadcast([tuple(m.shape) for m in present]) == lead):
            # A size unknown now (traced, symbolic), or a mask smaller than the output: AND in Trues of each
            # input's leading shape, which broadcast to the output's at run time, whatever the sizes are then.
            present += [_trailing_axes(_leading_trues(tensor), rank, after=1) for tensor in (x, context)]
        result = present[0]
        for other in present[1:]:
            if _past_broadcast_limit(result.shape, other.shape):
                # The AND as a product of 0s and 1s: TensorFlow's `logical_and` has `multiply`'s broadcast limit.
                both = ops.einsum("...,...->...", ops.cast(result, "float32"), ops.cast(other, "float32"))
                result = ops.cast(both, "bool")
            else:
                result = ops.logical_and(result, other)
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "context_dim": self.context_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            }
        )
        return config

    def _to_compute_dtype(self, tensor):
        name = _dtype_name(tensor.dtype)
        if name != self.compute_dtype:
            if self.compute_dtype == "bfloat16" and name in _WIDE_INTEGERS:
                return _wide_integers_to_bfloat16(tensor, name)
            tensor = ops.cast(tensor, self.compute_dtype)
        return tensor

    def _check_shapes(self, x_shape, context_shape):
        """Validates static shapes; returns `(context_dim, output_shape)`. `None` is an unknown dim."""
        if not (_all_ints(x_shape) and _all_ints(context_shape)):  # else: sizes known, the common case
            if not _is_shape(x_shape) or not _is_shape(context_shape):
                raise _error(
                    f"`{_NAME}` expects its inputs to be a list or tuple of two tensors, [x, context]. "
                    f"Received: {_describe([x_shape, context_shape], shapes=True)}"
                )
            # A symbolic size is checked as an unknown one: what cannot be decided statically is not rejected.
            x_shape = tuple(None if _is_symbolic(d) else d for d in x_shape)
            context_shape = tuple(None if _is_symbolic(d) else d for d in context_shape)
        x_shape, context_shape = tuple(x_shape), tuple(context_shape)

        def invalid(expected):
            return _error(
                f"`{_NAME}` expects {expected}. "
                f"Received: x.shape={_fmt_shape(x_shape)}, context.shape={_fmt_shape(context_shape)}"
            )

        if len(x_shape) < 2:
            raise invalid("`x` to have rank >= 2, (batch_size, ..., input_dim)")
        if len(context_shape) not in (2, len(x_shape)):
            raise invalid(f"`context` to have rank 2 or the rank of `x` ({len(x_shape)})")
        if x_shape[-1] != self.input_dim:
            raise invalid(f"the last dimension of `x` to be input_dim={self.input_dim}")
        context_dim = context_shape[-1]
        if context_dim is None:
            raise invalid("the last dimension of `context` to be defined")
        if self.context_dim is not None and context_dim != self.context_dim:
            raise invalid(f"the last dimension of `context` to be context_dim={self.context_dim}")
        # Leading dims that must broadcast: the batch dim only for a rank-2 context, else all of them.
        n = len(context_shape) - 1
        leading = [_broadcast_dim(a, b) for a, b in zip(x_shape[:n], context_shape[:n])]
        if any(d is False for d in leading):
            raise invalid("the leading dimensions of `x` and `context` to be broadcast-compatible")
        return context_dim, tuple(leading) + x_shape[n:]
