"""What only the benchmark needs from a backend: its native ops, synchronisation, thread control, timing inputs
and torch's compile cache. The suite's own adapters (conversion, autodiff, compilation) are
`conformance/backend.py`; this module builds on them for the benchmark alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from conformance.backend import NAME

if NAME == "jax":
    import jax
elif NAME == "torch":
    import torch
elif NAME == "tensorflow":
    import tensorflow as tf

# The backend library's own ops, not `keras.ops`: what the benchmark's `raw` implementation is written in.
if NAME == "jax":
    NATIVE = {
        "matmul": jax.numpy.matmul,
        "multiply": jax.numpy.multiply,
        "sum": jax.numpy.sum,
        "cast": lambda value, dtype: value.astype(dtype),
    }
elif NAME == "torch":
    NATIVE = {
        "matmul": torch.matmul,
        "multiply": torch.mul,
        "sum": torch.sum,
        "cast": lambda value, dtype: value.to(getattr(torch, dtype)),
    }
elif NAME == "tensorflow":
    NATIVE = {"matmul": tf.matmul, "multiply": tf.multiply, "sum": tf.reduce_sum, "cast": tf.cast}
else:  # pragma: no cover
    NATIVE = {}


def sync(result) -> None:
    """Waits until `result` (a tensor or a sequence of them) is computed. jax dispatches asynchronously;
    torch and TF CPU ops have finished when they return (a GPU would need a barrier)."""
    if NAME == "jax":
        jax.block_until_ready(result)
    elif NAME == "torch" and torch.cuda.is_available():
        torch.cuda.synchronize()
    elif NAME == "tensorflow" and _TF_GPU:
        tf.test.experimental.sync_devices()


_TF_GPU = NAME == "tensorflow" and bool(tf.config.list_physical_devices("GPU"))


def no_grad():
    """A context in which a forward records nothing for autodiff (torch's `no_grad`; a no-op elsewhere)."""
    return torch.no_grad() if NAME == "torch" else contextlib.nullcontext()


def set_threads(threads: int) -> None:
    """Caps intra-op CPU threads (jax: only through XLA_FLAGS, before jax is imported)."""
    if NAME == "torch":
        torch.set_num_threads(threads)
    elif NAME == "tensorflow":
        tf.config.threading.set_intra_op_parallelism_threads(threads)


def threads():
    """The intra-op thread count the backend uses, or "default"."""
    if NAME == "torch":
        return torch.get_num_threads()
    if NAME == "tensorflow":
        return tf.config.threading.get_intra_op_parallelism_threads() or "default"
    return 1 if "intra_op_parallelism_threads=1" in os.environ.get("XLA_FLAGS", "") else "default"


def timing_inputs(x, context, kernel) -> tuple:
    """(x, context, kernel) as the benchmark's `raw` differentiates them: leaves that require grad (torch),
    the kernel a `tf.Variable` as a layer's kernel is (TF, so reading it is part of every call), else as given."""
    if NAME == "torch":
        return tuple(t.requires_grad_(True) for t in (x, context, kernel))
    if NAME == "tensorflow":
        return x, context, tf.Variable(kernel)
    return x, context, kernel


def reset_compile_cache() -> None:
    """Forgets every compiled graph (torch: Dynamo's cache, so no case hits its recompile limit, which
    silently falls back to eager; other backends compile per function object and keep no such limit)."""
    if NAME == "torch":
        torch._dynamo.reset()


def graph_breaks(fn: Callable, *args) -> dict | None:
    """What torch's Dynamo makes of `fn(*args)`: graphs, graph breaks and why (None on other backends)."""
    if NAME != "torch":
        return None
    reset_compile_cache()
    try:
        with torch.no_grad():
            explained = torch._dynamo.explain(fn)(*args)
        return {
            "graphs": explained.graph_count,
            "graph_breaks": explained.graph_break_count,
            "break_reasons": [str(r.reason) for r in explained.break_reasons][:5],
        }
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        return {"error": f"{type(error).__name__}: {error}"[:300]}
    finally:
        reset_compile_cache()
