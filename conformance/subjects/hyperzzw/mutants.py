"""Plausible single defects in the layer, for checking that the suite catches them.

Each mutant is one textual edit of `hyperzzw/layer.py`. `scripts/mutants.py` writes each mutated file to a
temporary folder and runs the suite against it through `HYPERZZW_TARGET`, on the current backend; every
mutant must turn the suite red. The edits are exact strings, so a mutant whose anchor no longer exists in
the layer fails loudly instead of silently testing nothing.
"""

from __future__ import annotations

# Mutants that are not defects on one backend, with the reason; they must still be caught on the others.
_PROMOTION = (
    "keras.ops follows JAX's promotion rules here (int32 with float16 -> float16, bool with float -> float), so "
    "without the cast the layer computes the same values in the same dtype; torch needs the cast"
)
_MATMUL64 = "keras.ops.matmul keeps float64 on this backend; the einsum is there for torch"
_EINSUM_TF = (
    "keras.ops.einsum on TensorFlow accepts 'ac,ci->ai' for a rank-3 context and contracts its last axis all "
    "the same (measured: shape (4, 6, 16), and the float64 golden cases pass); jax and torch reject it"
)
_AUTOGRAPH = "only TensorFlow's autograph rewrites errors raised inside a tf.function"
_SYMBOLIC = "only jax.export gives symbolic sizes that are not integers (TensorFlow gives None, torch SymInts)"
_TF_RUNS = (
    "only TensorFlow's broadcasting kernels stop at five runs of broadcast dimensions; multiply and logical_and "
    "take any rank here"
)
_MULTIPLY64 = (
    "keras.ops.multiply keeps float64 on this backend in this Keras (it computes float64 in float32 on torch from "
    "the Keras 3.16 nightlies on: keras-team/keras#23225; the nightly set catches this mutant there)"
)
EQUIVALENT_ON = {
    "einsum past TensorFlow's broadcast limit dropped": {"jax": _TF_RUNS, "torch": _TF_RUNS},
    "the masks' AND past TensorFlow's broadcast limit by logical_and": {"jax": _TF_RUNS, "torch": _TF_RUNS},
    "TensorFlow's broadcast limit taken as six runs": {"jax": _TF_RUNS, "torch": _TF_RUNS},
    "unknown sizes counted as 1s in the broadcast runs": {"jax": _TF_RUNS, "torch": _TF_RUNS},
    "float64 product by multiply wherever": {"jax": _MULTIPLY64, "torch": _MULTIPLY64, "tensorflow": _MULTIPLY64},
    # the memo's wrong name only skips casts, which jax's and TensorFlow's promotion make no defect (see _PROMOTION)
    "dtype memo keyed on nothing": {"jax": _PROMOTION, "tensorflow": _PROMOTION},
    "autograph rewrites the layer's errors": {"jax": _AUTOGRAPH, "torch": _AUTOGRAPH},
    "symbolic sizes rejected": {"tensorflow": _SYMBOLIC, "torch": _SYMBOLIC},
    "symbolic sizes checked as if known": {"tensorflow": _SYMBOLIC, "torch": _SYMBOLIC},
    "float64 einsum subscripts for a rank-2 context only": {"tensorflow": _EINSUM_TF},
    "no cast of integer inputs": {"jax": _PROMOTION, "tensorflow": _PROMOTION},
    "boolean contexts not cast": {"jax": _PROMOTION, "tensorflow": _PROMOTION},
    "float64 computed through matmul (float32 on torch)": {"jax": _MATMUL64, "tensorflow": _MATMUL64},
}

MUTANTS: dict[str, tuple[str, str]] = {
    "transposed kernel": (
        "shape=(self.context_dim, self.input_dim),",
        "shape=(self.input_dim, self.context_dim),",
    ),
    "output features reversed": (
        "weights = ops.matmul(context, self.hyper_kernel)",
        "weights = ops.matmul(context, self.hyper_kernel)[..., ::-1]",
    ),
    "add instead of multiply": ("return ops.multiply(x, weights)", "return ops.add(x, weights)"),
    "off by a little": ("return ops.multiply(x, weights)", "return ops.multiply(x, weights) * 1.00002"),
    "weights ignore the context sign": (
        "weights = ops.matmul(context, self.hyper_kernel)",
        "weights = ops.matmul(ops.abs(context), self.hyper_kernel)",
    ),
    "float64 computed through matmul (float32 on torch)": (
        'weights = ops.einsum(f"{lead}c,ci->{lead}i", context, self.hyper_kernel)',
        "weights = ops.matmul(context, self.hyper_kernel)",
    ),
    # KerasFactory's behaviour: a (batch, input_dim) weight multiplied into (batch, time, input_dim) aligns
    # batch with time. (Inserting the new axes at -2 instead of 1 is not a defect: it gives the same shape.)
    "rank-2 context aligned with time, not batch": (
        "weights = ops.expand_dims(weights, axis=1)",
        "weights = ops.expand_dims(weights, axis=0)",
    ),
    "no broadcast check": ("if any(d is False for d in leading):", "if False:"),
    "context_dim inferred from x": ("context_dim = context_shape[-1]", "context_dim = x_shape[-1]"),
    "no cast of integer inputs": (
        "        if name != self.compute_dtype:\n",
        "        if False:\n",
    ),
    "float64 weights leak": (
        "            constraint=self.kernel_constraint,\n        )",
        '            constraint=self.kernel_constraint,\n            dtype="float64",\n        )',
    ),
    "computes in float32": ("return ops.multiply(x, weights)", 'return ops.cast(ops.multiply(x, weights), "float32")'),
    "error message reworded": ("expected a positive integer", "expected an integer > 0"),
    "error type changed": ("    error = ValueError(message)", "    error = TypeError(message)"),
    "Keras call-info text not suppressed": ("    error._keras_call_info_injected = True\n", ""),
    "autograph rewrites the layer's errors": ("    error.ag_pass_through = True\n", ""),
    "symbolic sizes rejected": ("    if value is None or _is_symbolic(value):", "    if value is None:"),
    "symbolic sizes checked as if known": (
        # (still a tuple: dropping the conversion altogether also breaks list shapes, which is another defect)
        "        x_shape = tuple(None if _is_symbolic(d) else d for d in x_shape)\n",
        "        x_shape = tuple(x_shape)\n",
    ),
    "lost config field": (
        '                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),\n',
        "",
    ),
    "bools accepted as dims": ("    if not isinstance(value, bool):\n", "    if True:\n"),
    "initializer ignored": ("initializer=self.kernel_initializer,", 'initializer="zeros",'),
    # --- added with the exact oracle: each an honest mistake a contributor could make ---
    # A few ulps: x1.000001 is 8 float32 ulps (and rounds to 1 in float16/bfloat16, where it is no defect).
    "output drifts by a few float32 ulps": (
        "return ops.multiply(x, weights)",
        "return ops.multiply(x, weights) * 1.000001",
    ),
    # shape handling
    "rank-2 context expanded only once": (
        "        for _ in range(len(x.shape) - len(context.shape)):\n"
        "            weights = ops.expand_dims(weights, axis=1)",
        "        if len(x.shape) > len(context.shape):\n            weights = ops.expand_dims(weights, axis=1)",
    ),
    "only the batch dim checked for broadcasting": ("        n = len(context_shape) - 1\n", "        n = 1\n"),
    "output shape ignores the broadcast": (
        "        return self._check_shapes(x_shape, context_shape)[1]",
        "        self._check_shapes(x_shape, context_shape)\n        return tuple(x_shape)",
    ),
    "explicit context_dim not checked against the context": (
        "        if self.context_dim is not None and context_dim != self.context_dim:",
        "        if False:",
    ),
    "float64 einsum subscripts for a rank-2 context only": (
        'lead = "abdefghjklmnopqrstuvwxyz"[: len(context.shape) - 1]',
        'lead = "a"',
    ),
    # weight handling
    "inferred context_dim not stored": (
        "        self.context_dim = self._check_shapes(x_shape, context_shape)[0]\n"
        '        self.hyper_kernel = self.add_weight(\n            name="hyper_kernel",\n'
        "            shape=(self.context_dim, self.input_dim),",
        "        context_dim = self._check_shapes(x_shape, context_shape)[0]\n"
        '        self.hyper_kernel = self.add_weight(\n            name="hyper_kernel",\n'
        "            shape=(context_dim, self.input_dim),",
    ),
    "regularizer not attached to the weight": ("regularizer=self.kernel_regularizer,", "regularizer=None,"),
    "constraint not attached to the weight": ("constraint=self.kernel_constraint,\n", "constraint=None,\n"),
    # dtype promotion
    "integer inputs cast to float32, not the compute dtype": (
        "            tensor = ops.cast(tensor, self.compute_dtype)",
        '            tensor = ops.cast(tensor, "float32")',
    ),
    # (Reading `self.hyper_kernel.value` instead would be no defect: Keras autocasts `.value` too.)
    "kernel cast to the variable dtype (mixed precision)": (
        "weights = ops.matmul(context, self.hyper_kernel)",
        "weights = ops.matmul(context, ops.cast(self.hyper_kernel, self.variable_dtype))",
    ),
    # Not an honest mistake but a sensitivity probe: the forward pass is untouched (k + 1e-5 * (k - k) is k,
    # exactly) and only the kernel gradient is scaled by 1 + 1e-5; the per-step training bound must see it.
    "kernel gradient alone off by 1e-5": (
        "            weights = ops.matmul(context, self.hyper_kernel)",
        "            kernel = self.hyper_kernel + 1e-5 * (self.hyper_kernel - ops.stop_gradient(self.hyper_kernel))\n"
        "            weights = ops.matmul(context, kernel)",
    ),
    # serialization
    "context_dim missing from the config": ('                "context_dim": self.context_dim,\n', ""),
    "initializer serialized as the default": (
        '"kernel_initializer": keras.initializers.serialize(self.kernel_initializer),',
        '"kernel_initializer": "glorot_uniform",',
    ),
    # --- added 2026-12-02: more honest mistakes ---
    # An unknown dim against a 1 is unknown (it may be 5 at run time); taking the 1 claims a static size
    # that the run-time broadcast does not give.
    "unknown dim against a 1 taken as 1": (
        "    if a == 1:\n        return b\n",
        "    if a == 1 or a is None:\n        return b\n",
    ),
    # A "guard" against empty batches: batch 0 is a valid input (Keras predicts on empty batches).
    "empty batches rejected": (
        "        if len(x_shape) < 2:\n",
        "        if 0 in x_shape or len(x_shape) < 2:\n",
    ),
    # Shapes printed as lists: every error text changes (Keras prints tuples).
    "shapes printed as lists in errors": (
        "    return str(tuple(int(d) if isinstance(d, numbers.Integral) else None for d in shape))",
        "    return str([int(d) if isinstance(d, numbers.Integral) else None for d in shape])",
    ),
    # get_config built from scratch: name, dtype policy and trainable are lost on a round trip.
    "config drops the base layer's fields": ("        config = super().get_config()\n", "        config = {}\n"),
    # Only integer inputs cast: a boolean (one-hot) context reaches matmul as bool.
    "boolean contexts not cast": (
        "        if name != self.compute_dtype:\n",
        '        if "int" in name:\n',
    ),
    # The weight created frozen: a forward pass is right, training never moves it.
    "hyper_kernel created non-trainable": (
        "            constraint=self.kernel_constraint,\n        )",
        "            constraint=self.kernel_constraint,\n            trainable=False,\n        )",
    ),
    # --- added with masks, every rank and the constructor's arguments ---
    # Masks: the layer declared non-masking (Keras then drops the mask), the context's mask ignored or OR'd
    # in, and a rank-2 context's mask (it has no time axis) carried over.
    # (Keras takes a layer that overrides compute_mask as supporting masks.)
    "masks not supported": (
        "    def compute_mask(self, inputs, mask=None):",
        "    def _compute_mask(self, inputs, mask=None):",
    ),
    "the context's mask ignored": (
        "        masks = [mask[0], mask[1] if len(context.shape) == len(x.shape) else None]",
        "        masks = [mask[0], None]",
    ),
    "masks combined by OR": (
        "                result = ops.logical_and(result, other)",
        "                result = ops.logical_or(result, other)",
    ),
    "a rank-2 context's mask carried over": (
        "        masks = [mask[0], mask[1] if len(context.shape) == len(x.shape) else None]",
        "        masks = [mask[0], mask[1]]",
    ),
    # The mask is the output's: an input's mask returned as it is when its axis of 1 broadcasts (the shape of
    # x's mask for an output of the context's steps), and the same only when a size is unknown while tracing.
    "the output mask not broadcast": (
        "        if not (_all_ints(lead) and _static_broadcast([tuple(m.shape) for m in present]) == lead):",
        "        if False:",
    ),
    "the output mask not broadcast when a size is unknown": (
        "        if not (_all_ints(lead) and _static_broadcast([tuple(m.shape) for m in present]) == lead):",
        "        if _all_ints(lead) and _static_broadcast([tuple(m.shape) for m in present]) != lead:",
    ),
    # Ranks: the plain multiply everywhere (TensorFlow then raises its own UnimplementedError at rank 6+).
    "einsum past TensorFlow's broadcast limit dropped": (
        "        if self._multiply_by_einsum or _past_broadcast_limit(x.shape, weights.shape):",
        "        if self._multiply_by_einsum:",
    ),
    # TensorFlow's limit off by one: six runs taken as still within it.
    "TensorFlow's broadcast limit taken as six runs": ("_MAX_BROADCAST_RUNS = 5\n", "_MAX_BROADCAST_RUNS = 6\n"),
    # Masks past the same limit: the product fixed, the masks' AND left to `logical_and` (TensorFlow then
    # raises its own UnimplementedError from compute_mask at rank 7+).
    "the masks' AND past TensorFlow's broadcast limit by logical_and": (
        "            if _past_broadcast_limit(result.shape, other.shape):",
        "            if False:",
    ),
    "float64 product by multiply wherever": (
        '        self._multiply_by_einsum = self.compute_dtype == "float64" and not _multiply_keeps_float64()',
        "        self._multiply_by_einsum = False",
    ),
    # Constructor arguments: the kernel drawn as (input_dim, context_dim) and transposed (the initializer's
    # fan-in and fan-out swapped: same shape, wrong scale); a seeded default (every layer the same kernel); the
    # regularizer's
    # factor replaced by Keras's default.
    "initializer fans swapped": (
        "            initializer=self.kernel_initializer,",
        "            initializer=lambda shape, dtype=None: ops.transpose(self.kernel_initializer(shape[::-1], dtype)),",
    ),
    "the default initializer seeded": (
        '        kernel_initializer="glorot_uniform",',
        "        kernel_initializer=keras.initializers.GlorotUniform(seed=0),",
    ),
    "regularizer factor lost": (
        "            regularizer=self.kernel_regularizer,",
        "            regularizer=self.kernel_regularizer and keras.regularizers.L2(),",
    ),
    # Values: the projection clipped to float16's range "against overflow" (right for small inputs only).
    "weights clipped to float16's range": (
        "            weights = ops.matmul(context, self.hyper_kernel)\n",
        "            weights = ops.clip(ops.matmul(context, self.hyper_kernel), -65504.0, 65504.0)\n",
    ),
    # Edge sizes: a last dim of 1 taken as broadcastable against input_dim ("x of 1 feature broadcasts").
    "x's last dim of 1 accepted for any input_dim": (
        "        if x_shape[-1] != self.input_dim:",
        "        if x_shape[-1] not in (1, self.input_dim):",
    ),
    # Edge sizes: the broadcast check skips the last leading axis (an off-by-one in the slice).
    "the last leading dim not checked": (
        "zip(x_shape[:n], context_shape[:n])]",
        "zip(x_shape[:n], context_shape[:n])][: max(n - 1, 1)] + list(x_shape[max(n - 1, 1):n])",
    ),
    # The per-call dtype memo keyed wrongly (on nothing): every tensor then takes the first dtype's name, so
    # later inputs of another dtype skip their cast, or are cast when they need not be.
    "dtype memo keyed on nothing": (
        "    name = _DTYPE_NAMES.get(dtype)\n    if name is None:\n        name = _DTYPE_NAMES[dtype] = ",
        "    name = _DTYPE_NAMES.get(0)\n    if name is None:\n        name = _DTYPE_NAMES[0] = ",
    ),
    # Sizes unknown while tracing: an unknown size counted as a 1 (which broadcasts nothing), so a tf.function
    # traced with None sizes takes the plain multiply where the sizes it meets at run time need the einsum.
    "unknown sizes counted as 1s in the broadcast runs": (
        "        a, b = (None if d is None or _is_symbolic(d) else int(d) for d in (a, b))",
        "        a, b = (1 if d is None or _is_symbolic(d) else int(d) for d in (a, b))",
    ),
    # Dtype policies through saving: the config names the compute dtype, not the policy (a mixed policy comes
    # back as float16 or bfloat16 throughout, its kernel in the compute dtype).
    "the config holds the compute dtype, not the policy": (
        "        config = super().get_config()",
        '        config = {**super().get_config(), "dtype": self.compute_dtype}',
    ),
    # Integers over their range: cast through float32 first (2**24 + 1 becomes 2**24 under a float64 policy).
    "integers cast through float32": (
        "            tensor = ops.cast(tensor, self.compute_dtype)",
        '            tensor = ops.cast(ops.cast(tensor, "float32"), self.compute_dtype)',
    ),
    # The initializer's randomness: every layer draws from a seed generator of its own, which ignores the seed a
    # user gave (set_random_seed still reproduces the unseeded draws).
    "the initializer's seed replaced by a generator of the layer's": (
        "        self.kernel_initializer = keras.initializers.get(kernel_initializer)\n",
        "        self.kernel_initializer = keras.initializers.get(kernel_initializer)\n"
        '        if hasattr(self.kernel_initializer, "seed"):\n'
        "            self.kernel_initializer.seed = keras.random.SeedGenerator()\n",
    ),
}


def apply(source: str, name: str) -> str:
    old, new = MUTANTS[name]
    if source.count(old) != 1:
        raise ValueError(f"mutant {name!r}: its anchor occurs {source.count(old)} times in the layer, not once")
    return source.replace(old, new)
