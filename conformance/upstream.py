"""Upstream canaries: the `keras.ops` behaviour the layer relies on, probed directly, with what is expected.

The layer leans on six Keras functions: `matmul` (the projection), `einsum` (the projection and product in
float64, and past TensorFlow's broadcast limit), `multiply` (the product), `expand_dims` (a rank-2 context),
`cast` (inputs to the compute dtype) and `standardize_dtype`. `probe()` runs each on every input dtype the
layer accepts and returns the dtype that came out. `expected()` says what that should be: the input dtype
(Keras's own rule for these ops), except for the known deviations below, each named with the Keras change
behind it and the versions it holds for. `test_upstream.py` compares the two per probe, so a Keras or backend
release that changes one fails naming the op, the dtypes and the versions; and a deviation that disappears
fails too, saying the layer's workaround for it can go. Each record carries the probes (`upstream` in the
record), and the report lists those that differ from the pinned set.
"""

from __future__ import annotations

# The dtypes the layer computes in (its dtype policies' compute dtypes), and what `cast` also takes in.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
CAST_FROM = FLOAT_DTYPES + ("int32", "int64", "bool")
OPS = ("matmul", "einsum", "multiply", "expand_dims", "cast", "standardize_dtype")


def release(version: str) -> tuple[int, ...]:
    """A version's release numbers, `"3.16.0.dev2026102704"` -> `(3, 16, 0)`, for comparing with `(3, 16)`."""
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


# (backend, op, input dtype) -> (output dtype, since which Keras (major, minor), upstream reference).
# Each is the reason for a line of the layer: matmul -> einsum for float64, multiply -> einsum for float64.
DEVIATIONS = {
    ("torch", "matmul", "float64"): (
        "float32",
        (3, 0),
        "keras.ops.matmul on torch promotes 64-bit dtypes to 32-bit (the layer projects float64 by einsum)",
    ),
    ("torch", "multiply", "float64"): (
        "float32",
        (3, 16),
        "keras-team/keras#23225 (add/multiply go through result_type, which maps 64-bit to "
        "32-bit on torch), reported as keras-team/keras#23704 (the layer multiplies float64 by einsum where "
        "multiply does this)",
    ),
}


def probe_ids() -> list[str]:
    ids = [f"{op}/{dtype}" for op in OPS if op != "cast" for dtype in FLOAT_DTYPES]
    ids += [f"cast/{source}->{target}" for source in CAST_FROM for target in FLOAT_DTYPES]
    return ids


def expected(backend: str, keras_version: str, probe_id: str) -> tuple[str, str | None]:
    """(the dtype `probe_id` must give, the upstream reference when it is a known deviation)."""
    op, dtypes = probe_id.split("/")
    if op == "cast":
        return dtypes.split("->")[1], None
    deviation = DEVIATIONS.get((backend, op, dtypes))
    if deviation and release(keras_version) >= deviation[1]:
        return deviation[0], deviation[2]
    return dtypes, None


def probe(probe_id: str) -> str:
    """Runs one probe on tiny concrete tensors and returns the dtype that came out (standardized)."""
    import keras
    from keras import ops

    op, dtypes = probe_id.split("/")
    standardize = keras.backend.standardize_dtype
    if op == "cast":
        source, target = dtypes.split("->")
        return standardize(ops.cast(ops.cast(ops.ones((2, 3)), source), target).dtype)
    a, b = ops.cast(ops.ones((2, 3)), dtypes), ops.cast(ops.ones((3, 4)), dtypes)
    if op == "matmul":
        result = ops.matmul(a, b)
    elif op == "einsum":
        result = ops.einsum("ac,ci->ai", a, b)
    elif op == "multiply":
        result = ops.multiply(a, a)
    elif op == "expand_dims":
        result = ops.expand_dims(a, axis=1)
    else:  # standardize_dtype of the backend's own dtype object
        return standardize(a.dtype)
    return standardize(result.dtype)
