"""Benchmark ``HyperZZWOperator`` against a bare two-input layer, the raw backend expression and ``keras.layers.Dense``.

For every grid point (batch, input_dim, context_dim), dtype and mode (eager / compiled, forward /
forward+backward) four implementations of ``output = x * (context @ kernel)`` are timed side by side in one
process, interleaved round by round: ``layer`` (as a user calls it), ``bare`` (a two-input Keras layer doing
the same math with no checks: Keras's own floor for a ``[x, context]`` call), ``raw`` (the backend's own ops)
and ``dense`` (``Dense(input_dim, use_bias=False)`` on the context, times ``x``). The backend plumbing, the layer
and the result check's bound are the suite's (``conformance/``); statistics and tables are pandas', the plot
seaborn's. Results (Markdown, JSON, PNG) go to ``benchmarks/results/``; ``benchmarks/README.md`` explains them.

    nox -s benchmark-jax -- --grid quick                  # or, from the repository root:
    KERAS_BACKEND=torch python -m benchmarks.benchmark --grid point
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import itertools
import json
import os
import platform
import pstats
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# benchmarks.timing (native ops, sync, threads), imported by main() once KERAS_BACKEND is set.
tm: types.ModuleType | None = None
BACKENDS = ("jax", "torch", "tensorflow")
MODES = ("eager-fwd", "eager-fwdbwd", "compiled-fwd", "compiled-fwdbwd")
IMPLS = ("layer", "bare", "raw", "dense")
DTYPES = ("float32", "bfloat16", "mixed_bfloat16")  # mixed_bfloat16: float32 inputs, bfloat16 compute
CASE = ["batch", "input_dim", "context_dim", "dtype", "mode"]  # what identifies one timed case
COLUMNS = [
    "check",
    "error",
    "median_s",
    "iqr_s",
    "min_s",
    "first_call_s",
    "ratio_to_raw",
    "ratio_to_raw_iqr",
    "ratio_to_bare",
    "ratio_to_bare_iqr",
    "ratio_to_dense",
    "min_ratio_to_raw",
    "gflops",
    "gbps",
]  # what the report reads from each record
HEADLINE = {"batch": 8192, "input_dim": 512, "context_dim": 64}
GRIDS = {
    "full": {"batch": (256, 1024, 4096, 16384, 65536), "input_dim": (64, 256, 1024), "context_dim": (8, 64, 256)},
    "quick": {"batch": (256, 1024, 4096, 16384), "input_dim": (512,), "context_dim": (64,)},
    "point": {key: (value,) for key, value in HEADLINE.items()},
}
PROBE = {"batch": 256, "input_dim": 64, "context_dim": 8}  # where compute is negligible: per-call overhead
GRIDS["probe"] = {key: (value,) for key, value in PROBE.items()}
COMPILED_RATIO_TARGET, COMPILED_TARGET_MIN_BATCH, OVERHEAD_SLACK = 1.05, 4096, 1.05
BARE_RATIO_TARGET = 1.10  # eager, at the probe shape: the layer's own per-call cost on top of Keras's floor
# B = batch, D = input_dim, C = context_dim; benchmarks/README.md derives both models.
FLOP_MODEL = (
    "forward 2*B*C*D + B*D (context @ kernel, times x); forward+backward 3 * 2*B*C*D + 4*B*D (the "
    "forward and the two gradient matmuls; the multiply, the sum, d_x and g)"
)
BYTE_MODEL = (
    "each input (B*D, B*C, C*D) read once, the output (forward) or the three gradients written once; "
    "intermediates not counted, so GB/s is a lower bound"
)
ELEMENT_BYTES = {"float32": (4, 4), "bfloat16": (2, 2), "mixed_bfloat16": (4, 2)}  # (inputs and kernel, output)
# The overhead probe's attribution: label -> (minuend, subtrahend), differences of the probe's timings.
ATTRIBUTION = {
    "keras.ops dispatch": ("keras.ops", "raw"),
    "einsum instead of matmul": ("keras.ops einsum", "keras.ops"),
    "layer body beyond matmul + multiply": ("layer.call", "keras.ops"),
    "of which: the shape checks": ("layer._check_shapes", None),
    "the layer's own cost": ("layer()", "bare()"),
    "Layer.__call__ for [x, context] (Keras)": ("bare()", "bare.call"),
    "Layer.__call__ for [x, context], the layer's (Keras, and its masking)": ("layer()", "layer.call"),
    "Layer.__call__ for Dense": ("dense()", "dense.call"),
    "layer overhead": ("layer()", "raw"),
    "dense overhead": ("dense()", "raw"),
}


# --- timing --------------------------------------------------------------------------------------------


def time_interleaved(
    runners: dict[str, Callable], sync: Callable, repeats: int, warmup: int, min_time: float
) -> pd.DataFrame:
    """Per-call times, one row `(impl, round, t)` per call: after `warmup` untimed calls each, `repeats`
    rounds, the runners' order rotated each round; each runner runs a block of back-to-back calls (as many
    as fit in `min_time`, at least one), each synchronised and timed on its own (robust to the long tail of
    a shared machine, which a block average would absorb), with the garbage collector off."""
    calls = {}
    for name, run in runners.items():
        best = np.inf
        for _ in range(max(warmup, 1)):
            start = time.perf_counter()
            sync(run())
            best = min(best, time.perf_counter() - start)
        calls[name] = max(1, int(np.ceil(min_time / max(best, 1e-9))))
    names, samples = list(runners), []
    for r in range(repeats):
        gc.collect()
        gc.disable()
        try:
            for name in names[r % len(names) :] + names[: r % len(names)]:
                for _ in range(calls[name]):
                    start = time.perf_counter()
                    sync(runners[name]())
                    samples.append((name, r, time.perf_counter() - start))
        finally:
            gc.enable()
    return pd.DataFrame(samples, columns=["impl", "round", "t"])


def per_call_stats(samples: pd.DataFrame) -> pd.DataFrame:
    """Per implementation (the index): quartiles, IQR and minimum of the per-call times, calls and rounds."""
    by_impl = samples.groupby("impl", sort=False)
    s = by_impl.t.describe().rename(columns={"50%": "median_s", "25%": "q1_s", "75%": "q3_s", "min": "min_s"})
    return s.assign(iqr_s=s.q3_s - s.q1_s, calls=s["count"].astype(int), rounds=by_impl["round"].nunique())[
        ["median_s", "q1_s", "q3_s", "iqr_s", "min_s", "calls", "rounds"]
    ]


def paired(rounds: pd.DataFrame, baseline: str, op: str) -> tuple[pd.Series, pd.Series]:
    """Per implementation, the median and IQR over rounds of `op` ("div" or "sub") of its block medians per
    round (`rounds`, rounds x implementations) and `baseline`'s: blocks that ran back to back are paired,
    which cancels most drift between rounds."""
    q = getattr(rounds, op)(rounds[baseline], axis=0).quantile([0.25, 0.5, 0.75])
    return q.loc[0.5], q.loc[0.75] - q.loc[0.25]


def profiled(run: Callable, n: int) -> pstats.Stats:
    """cProfile's statistics of `n` calls of `run` (after one unprofiled call)."""
    run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        run()
    profiler.disable()
    return pstats.Stats(profiler, stream=io.StringIO())


def without_grad(be, step: Callable, *args) -> Callable:
    """`step(*args)` as a zero-argument inference call: under `tm.no_grad()` (torch records no autodiff graph),
    with no extra call frame in the timed path."""

    def run():
        with tm.no_grad():
            return step(*args)

    return run


# --- the four implementations ----------------------------------------------------------------------------


def bare_layer_class():
    """A two-input Keras layer computing `x * (context @ kernel)` with `keras.ops` and nothing else: no checks,
    no casts, no masks. What any `[x, context]` layer costs Keras per call, the floor the layer is held to."""
    import keras
    from keras import ops

    class Bare(keras.layers.Layer):
        def __init__(self, input_dim, context_dim, **kwargs):
            super().__init__(**kwargs)
            self.kernel = self.add_weight(shape=(context_dim, input_dim), name="kernel")
            self.built = True  # its one weight exists (jax's stateless_call asks)

        def call(self, inputs):
            x, context = inputs
            return ops.multiply(x, ops.matmul(context, self.kernel))

    return Bare


def make_setup(be, layer_cls, dims: tuple[int, int, int], dtype: str, seed: int) -> types.SimpleNamespace:
    """What the runners of one (point, dtype) share: inputs, the layer and Dense holding the same kernel, and
    raw's kernel (an array on jax, a leaf tensor on torch, a tf.Variable on TF, as the layer's is)."""
    import keras

    rng = np.random.default_rng(seed)
    b, d, c = dims
    x, context = rng.standard_normal((b, d), np.float32), rng.standard_normal((b, c), np.float32)
    kernel = (rng.standard_normal((c, d), np.float32) / np.sqrt(c)).astype(np.float32)
    policy = keras.dtype_policies.get(dtype)
    input_dtype = policy.variable_dtype if dtype.startswith("mixed_") else policy.compute_dtype
    layer = layer_cls(d, context_dim=c, dtype=dtype)
    layer.build([(None, d), (None, c)])
    layer.hyper_kernel.assign(kernel)
    dense = keras.layers.Dense(d, use_bias=False, dtype=dtype)
    dense.build((None, c))
    dense.kernel.assign(kernel)
    bare = bare_layer_class()(d, c, dtype=dtype)
    bare.kernel.assign(kernel)
    x, context, raw_kernel = tm.timing_inputs(
        be.tensor(x, input_dtype), be.tensor(context, input_dtype), be.tensor(kernel, policy.variable_dtype)
    )
    return types.SimpleNamespace(
        dims=dims,
        dtype=dtype,
        compute_dtype=policy.compute_dtype,
        x=x,
        context=context,
        kernel=raw_kernel,
        layer=layer,
        dense=dense,
        bare=bare,
    )


def forward_fns(be, setup, pure: bool) -> dict[str, tuple[Callable, Any]]:
    """`{impl: (fn(kernel, x, context), kernel)}`. Pure (jax, for jax.grad and jax.jit): the layer and Dense
    run by `stateless_call` on the kernel passed in. Otherwise they call themselves as users do, and the
    kernel passed is their own variable's (for the autodiff to differentiate w.r.t. it)."""
    cast, multiply, mixed = tm.NATIVE["cast"], tm.NATIVE["multiply"], setup.dtype.startswith("mixed_")

    def compute(v):  # a mixed policy computes in its compute dtype: raw and Dense cast as Keras does
        return cast(v, setup.compute_dtype) if mixed else v

    layer, dense, bare = setup.layer, setup.dense, setup.bare

    # Named functions, not lambdas: TF's autograph reads their source.
    def raw(k, x, c):
        return multiply(compute(x), tm.NATIVE["matmul"](compute(c), compute(k)))

    def layer_pure(k, x, c):
        return layer.stateless_call([k], [], [x, c])[0]

    def dense_pure(k, x, c):
        return multiply(compute(x), dense.stateless_call([k], [], c)[0])

    def layer_call(k, x, c):
        return layer([x, c])

    def bare_pure(k, x, c):
        return bare.stateless_call([k], [], [x, c])[0]

    def bare_call(k, x, c):
        return bare([x, c])

    def dense_call(k, x, c):
        return multiply(compute(x), dense(c))

    return {
        "layer": (layer_pure if pure else layer_call, layer.hyper_kernel.value),
        "bare": (bare_pure if pure else bare_call, bare.kernel.value),
        "raw": (raw, setup.kernel),
        "dense": (dense_pure if pure else dense_call, dense.kernel.value),
    }


def runners(be, setup, mode: str) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per implementation, each one call of `mode`. Compiled: `jax.jit`,
    `torch.compile` (inductor, dynamic=False, a fresh Dynamo cache per case) or `tf.function(jit_compile=True)`
    around the forward, or the loss `sum(output)` and its gradient w.r.t. (kernel, x, context)."""
    compiled, backward = mode.startswith("compiled"), mode.endswith("fwdbwd")
    compiler = be.FAST_COMPILER if compiled else None
    if compiled:
        tm.reset_compile_cache()  # torch: never hit Dynamo's recompile limit (a silent fall back to eager)
    out, x, c = {}, setup.x, setup.context
    for impl, (fn, k) in forward_fns(be, setup, pure=be.NAME == "jax" and mode != "eager-fwd").items():
        if backward:
            step = be.gradient_step(lambda k, x, c, fn=fn: tm.NATIVE["sum"](fn(k, x, c)), 3, compiler)
            out[impl] = lambda step=step, k=k: step(k, x, c)
        else:
            step = be.COMPILERS[compiler][1](fn) if compiler else fn
            out[impl] = without_grad(be, step, k, x, c)
    return out


def check(be, setup, mode: str, results: dict[str, Any]) -> str:
    """Each implementation's output (or its three gradients) against a float64 reference on the values the
    backend holds, within the suite's derived bound gamma(n + 2) * M (`conformance.subjects.hyperzzw.tolerance`,
    with BLAS sums: these shapes are too large to sum in a fixed order; nothing here is stored)."""
    from conformance.subjects.hyperzzw import oracle, tolerance

    dt = setup.compute_dtype
    x, c, k = (oracle.round_to(be.to_numpy(v), dt) for v in (setup.x, setup.context, setup.kernel))
    if mode.endswith("-fwd"):
        expected = [oracle.forward_formula(x, c, k, np.matmul)]
        atols = [tolerance.forward_atol(x, c, k, dt, be.NAME, sums=tolerance.BLAS)]
    else:
        g = np.ones(x.shape)
        dx, dc, dk = oracle.gradient_formulas(x, c, k, g, *tolerance.BLAS)
        tx, tc, tk = tolerance.gradient_atols(x, c, k, g, dt, be.NAME, sums=tolerance.BLAS)
        expected, atols = [dk, dx, dc], [tk, tx, tc]
    worst = 0.0
    for result in results.values():
        for value, want, atol in zip(result if isinstance(result, (list, tuple)) else [result], expected, atols):
            with np.errstate(divide="ignore", invalid="ignore"):
                worst = max(worst, float(np.max(np.abs(be.to_numpy(value) - want) / atol)))
    return f"ok ({worst:.2g} of the bound)" if worst <= 1 else f"MISMATCH ({worst:.3g} times the bound)"


def run_case(be, setup, mode: str, args) -> list[dict]:
    """Times one (point, dtype, mode), the three implementations interleaved: one record per implementation."""
    (b, d, c), fwd, (s_in, s_out) = setup.dims, mode.endswith("-fwd"), ELEMENT_BYTES[setup.dtype]
    inputs = s_in * (b * d + b * c + c * d)  # the FLOP and byte models
    case = {
        "batch": b,
        "input_dim": d,
        "context_dim": c,
        "dtype": setup.dtype,
        "mode": mode,
        "flops": 2 * b * c * d + b * d if fwd else 3 * 2 * b * c * d + 4 * b * d,
        "bytes": inputs + s_out * b * d if fwd else 2 * inputs,
    }
    try:
        run, first, results = runners(be, setup, mode), {}, {}
        for impl, call in run.items():  # the first call compiles, in the compiled modes
            start = time.perf_counter()
            results[impl] = call()
            tm.sync(results[impl])
            first[impl] = time.perf_counter() - start
        case["check"] = check(be, setup, mode, results)
        del results
        samples = time_interleaved(run, tm.sync, args.repeats, args.warmup, args.min_time)
    except Exception as error:  # noqa: BLE001 - one failing case (say torch.compile) must not end the run
        return [
            {**case, "impl": impl, "error": f"{type(error).__name__}: {error}".splitlines()[0][:300]} for impl in IMPLS
        ]
    s = per_call_stats(samples).assign(first_call_s=pd.Series(first))
    s["gflops"], s["gbps"] = case["flops"] / s.median_s / 1e9, case["bytes"] / s.median_s / 1e9
    rounds = samples.groupby(["round", "impl"]).t.median().unstack()  # each round's block medians
    s["ratio_to_raw"], s["ratio_to_raw_iqr"] = paired(rounds, "raw", "div")
    s["ratio_to_dense"], s["ratio_to_dense_iqr"] = paired(rounds, "dense", "div")
    s["ratio_to_bare"], s["ratio_to_bare_iqr"] = paired(rounds, "bare", "div")
    s["overhead_vs_raw_s"], s["overhead_vs_raw_iqr_s"] = paired(rounds, "raw", "sub")
    s["min_ratio_to_raw"] = s.min_s / s.min_s["raw"]
    return [{**case, "impl": impl, **values} for impl, values in s.loc[list(IMPLS)].to_dict("index").items()]


def breakdown(be, layer_cls, args) -> dict[str, Any]:
    """Where the eager layer's per-call time goes at the probe shape (float32, forward, no grad): the native
    expression; the same ops through `keras.ops` (matmul, and the layer's einsum); the layer's body
    (`layer.call`) and the layer as called; the same for Dense; the shape checks alone."""
    import keras
    from keras import ops

    setup = make_setup(be, layer_cls, tuple(PROBE.values()), "float32", args.seed)
    layer, dense, bare = setup.layer, setup.dense, setup.bare
    x, c, kernel = setup.x, setup.context, setup.layer.hyper_kernel
    shapes, multiply = (tuple(x.shape), tuple(c.shape)), tm.NATIVE["multiply"]
    steps = {
        "raw": lambda: multiply(x, tm.NATIVE["matmul"](c, setup.kernel)),
        "keras.ops": lambda: ops.multiply(x, ops.matmul(c, kernel)),
        "keras.ops einsum": lambda: ops.multiply(x, ops.einsum("...c,ci->...i", c, kernel)),
        "layer.call": lambda: layer.call([x, c]),
        "layer()": lambda: layer([x, c]),
        "bare.call": lambda: bare.call([x, c]),
        "bare()": lambda: bare([x, c]),
        "dense.call": lambda: multiply(x, dense.call(c)),
        "dense()": lambda: multiply(x, dense(c)),
        "layer._check_shapes": lambda: layer._check_shapes(*shapes),
    }
    run = {name: without_grad(be, step) for name, step in steps.items()}
    torch_threads = tm.threads() if be.NAME == "torch" else None
    if torch_threads:  # tiny ops gain nothing from threads; one isolates the Python overhead
        tm.set_threads(1)
    try:
        samples = time_interleaved(
            run,
            lambda r: r is None or isinstance(r, tuple) or tm.sync(r),
            max(args.repeats, 15),
            args.warmup,
            max(args.min_time, 0.01),
        )
        python_calls = {name: profiled(step, 50).total_calls / 50 for name, step in run.items()}
    finally:
        if torch_threads:
            tm.set_threads(torch_threads)
    s = per_call_stats(samples).loc[list(steps)]
    result = {
        "point": PROBE,
        "keras": keras.__version__,
        **s[["median_s", "iqr_s", "min_s"]].to_dict(),
        "python_calls": python_calls,
        "torch_threads": 1 if be.NAME == "torch" else None,
    }
    for stat in ("median_s", "min_s"):
        result[f"attribution_{stat}"] = {
            f"{label} ({a} - {b})" if b else label: s[stat][a] - (s[stat][b] if b else 0)
            for label, (a, b) in ATTRIBUTION.items()
        }
    if args.profile:
        stats = profiled(run["layer()"], 2000)
        stats.sort_stats("tottime").print_stats(25)
        result["profile"] = stats.stream.getvalue()
    if be.NAME == "torch" and any(m.startswith("compiled") for m in args.modes):
        result["dynamo"] = {
            impl: tm.graph_breaks(lambda x, c, fn=fn, k=k: fn(k, x, c), x, c)
            for impl, (fn, k) in forward_fns(be, setup, pure=False).items()
        }
    return result


# --- reporting ---------------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    for scale, unit in ((1, "s"), (1e-3, "ms")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e6:.3g} µs"


def verdicts(results: pd.DataFrame, probe: dict | None) -> dict[str, Any]:
    """The two targets. 1: compiled fwd+bwd, median per-round layer/raw <= 1.05 at every batch >= 4096.
    2: at the probe, eager (layer - raw) <= 1.05 (dense - raw), from the per-call medians (the minima are
    shown too; at large shapes the microseconds at stake are below the noise, so those rows are not judged)."""
    targeted = results.query("mode == 'compiled-fwdbwd' and batch >= @COMPILED_TARGET_MIN_BATCH and impl == 'layer'")
    measured = targeted.dropna(subset=["ratio_to_raw"])
    points = [
        {
            "batch": r.batch,
            "input_dim": r.input_dim,
            "context_dim": r.context_dim,
            "dtype": r.dtype,
            "ratio": r.ratio_to_raw,
            "ratio_iqr": r.ratio_to_raw_iqr,
            "ratio_of_minima": r.min_ratio_to_raw,
            "verdict": "PASS" if r.ratio_to_raw <= COMPILED_RATIO_TARGET else "FAIL",
        }
        for r in measured.itertuples()
    ]
    failed = len(targeted) - len(measured)
    compiled = {
        "points": points,
        "verdict": f"NOT MEASURED ({failed} case(s) failed to run)"
        if failed
        else "n/a (no compiled-fwdbwd row with batch >= 4096)"
        if not points
        else "PASS"
        if all(p["verdict"] == "PASS" for p in points)
        else "FAIL",
    }
    eager = {"verdict": "n/a (no overhead probe run)"}
    if probe is not None:
        keys = {"layer": "layer overhead (layer() - raw)", "dense": "dense overhead (dense() - raw)"}
        eager = {
            f"{impl}_overhead_{stat}_s": probe[f"attribution_{stat}_s"][key]
            for impl, key in keys.items()
            for stat in ("min", "median")
        }
        eager["verdict"] = (
            "PASS" if eager["layer_overhead_median_s"] <= OVERHEAD_SLACK * eager["dense_overhead_median_s"] else "FAIL"
        )
    at_probe = results.query(
        "impl == 'layer' and mode in ('eager-fwd', 'eager-fwdbwd') and batch == @PROBE['batch'] "
        "and input_dim == @PROBE['input_dim'] and context_dim == @PROBE['context_dim']"
    )
    bare_points = [
        {
            "dtype": r.dtype,
            "mode": r.mode,
            "ratio": r.ratio_to_bare,
            "ratio_iqr": r.ratio_to_bare_iqr,
            "verdict": "PASS" if r.ratio_to_bare <= BARE_RATIO_TARGET else "FAIL",
        }
        for r in at_probe.dropna(subset=["ratio_to_bare"]).itertuples()
    ]
    bare = {
        "points": bare_points,
        "verdict": "n/a (no eager row at the probe shape: run --grid probe)"
        if not bare_points
        else "PASS"
        if all(p["verdict"] == "PASS" for p in bare_points)
        else "FAIL",
    }
    return {
        "compiled_fwdbwd_within_1.05x_raw": compiled,
        "eager_overhead_le_dense": eager,
        "eager_within_1.10x_bare": bare,
    }


def markdown(meta: dict, results: pd.DataFrame, probe: dict | None, verdict: dict) -> str:
    lines = [
        f"# HyperZZWOperator benchmark: {meta['backend']} ({meta['grid']} grid)",
        "",
        f"keras {meta['keras']}, hyperzzw {meta['hyperzzw']} (`{meta['layer_file']}`), "
        + ", ".join(f"{k} {v}" for k, v in meta["backend_info"].items())
        + f"; Python {meta['python']}, {meta['machine']}, {meta['cpus']} CPUs; {meta['date']}.",
        "",
        f"Median time per call (IQR) over {meta['repeats']} interleaved rounds of blocks of >= "
        f"{fmt_time(meta['min_time_s'])}, each call synchronised and timed alone, "
        f"after {meta['warmup']} warm-up calls; "
        "ratios are medians over rounds of the ratio of the round's block medians; GFLOP/s and GB/s are the layer's; "
        "`check` is the largest error of the four as a share of the derived bound (method: benchmarks/README.md). "
        f"Load average (1 min) before / after: {meta['loadavg_before']:.2f} / "
        f"{meta['loadavg_after']:.2f} on {meta['cpus']} CPUs (above the CPU count, other processes competed).",
        "",
        f"- FLOP model: {FLOP_MODEL}",
        f"- Byte model: {BYTE_MODEL}",
        "",
    ]
    by = {impl: results[results.impl == impl].set_index(CASE) for impl in IMPLS}
    layer = by["layer"]
    table = pd.DataFrame(
        {impl: by[impl].median_s.map(fmt_time) + " (" + by[impl].iqr_s.map(fmt_time) + ")" for impl in IMPLS}
    )
    for name, (impl, column, fmt) in {
        "layer/bare": ("layer", "ratio_to_bare", "{:.3f}"),
        "layer/raw": ("layer", "ratio_to_raw", "{:.3f}"),
        "dense/raw": ("dense", "ratio_to_raw", "{:.3f}"),
        "layer/dense": ("layer", "ratio_to_dense", "{:.3f}"),
        "GFLOP/s": ("layer", "gflops", "{:.1f}"),
        "GB/s": ("layer", "gbps", "{:.2f}"),
    }.items():
        table[name] = by[impl][column].map(fmt.format)
    table["check"] = layer.check.where(layer.error.isna(), layer.error)
    lines += [
        table.reset_index().to_markdown(index=False, colalign=["right"] * 3 + ["left"] * 2 + ["right"] * 10 + ["left"])
    ]
    firsts = pd.DataFrame({impl: by[impl].first_call_s.map(fmt_time) for impl in IMPLS})
    firsts = firsts[layer.index.get_level_values("mode").str.startswith("compiled") & layer.error.isna()]
    if len(firsts):
        lines += [
            "",
            "First call (compilation included) of the compiled modes:",
            "",
            firsts.reset_index().to_markdown(index=False, colalign=["right"] * 3 + ["left"] * 2 + ["right"] * 4),
        ]
    c, e = verdict["compiled_fwdbwd_within_1.05x_raw"], verdict["eager_overhead_le_dense"]
    lines += [
        "",
        "## Targets",
        "",
        f"1. Compiled forward+backward within {COMPILED_RATIO_TARGET}x of raw at batch >= "
        f"{COMPILED_TARGET_MIN_BATCH} (median per-round ratio): **{c['verdict']}**",
    ]
    lines += [
        f"   - B={p['batch']} D={p['input_dim']} C={p['context_dim']} {p['dtype']}: layer/raw {p['ratio']:.3f} "
        f"(IQR {p['ratio_iqr']:.3f}; ratio of minima {p['ratio_of_minima']:.3f}): {p['verdict']}"
        for p in c["points"]
    ]
    lines.append(
        f"2. Eager per-call overhead (time - raw time) no worse than Dense's ({OVERHEAD_SLACK}x slack), at the "
        f"probe B={PROBE['batch']} D={PROBE['input_dim']} C={PROBE['context_dim']} float32 forward: **{e['verdict']}**"
    )
    b = verdict["eager_within_1.10x_bare"]
    lines.append(
        f"3. Eager, the layer within {BARE_RATIO_TARGET}x of the bare two-input layer at the probe "
        f"B={PROBE['batch']} D={PROBE['input_dim']} C={PROBE['context_dim']} (median per-round ratio): "
        f"**{b['verdict']}**"
    )
    lines += [
        f"   - {p['dtype']} {p['mode']}: layer/bare {p['ratio']:.3f} (IQR {p['ratio_iqr']:.3f}): {p['verdict']}"
        for p in b["points"]
    ]
    if "layer_overhead_min_s" in e:
        lines.append(
            f"   - medians: layer {fmt_time(e['layer_overhead_median_s'])} vs Dense "
            f"{fmt_time(e['dense_overhead_median_s'])} per call (minima: layer {fmt_time(e['layer_overhead_min_s'])} "
            f"vs Dense {fmt_time(e['dense_overhead_min_s'])})."
        )
    if probe is not None:
        lines += [
            "",
            f"## Eager per-call overhead breakdown (B={PROBE['batch']}, D={PROBE['input_dim']}, "
            f"C={PROBE['context_dim']}, float32, forward)",
            "",
        ]
        calls = pd.DataFrame({"median": probe["median_s"], "IQR": probe["iqr_s"], "min": probe["min_s"]}).map(fmt_time)
        calls["function calls per call"] = pd.Series(probe["python_calls"]).map("{:.0f}".format)
        lines += [calls.rename(index="`{}`".format).rename_axis("call").reset_index().to_markdown(index=False)]
        if probe.get("torch_threads") == 1:
            lines += ["", "(torch runs this probe on one thread: it measures Python overhead, not kernels.)"]
        attribution = pd.DataFrame({"by median": probe["attribution_median_s"], "by min": probe["attribution_min_s"]})
        lines += ["", attribution.map(fmt_time).rename_axis("attribution").reset_index().to_markdown(index=False)]
        if "dynamo" in probe:
            lines += ["", "torch.compile (`torch._dynamo.explain` of each forward, float32, probe shape):", ""]
            lines += [f"- {impl}: {info}" for impl, info in probe["dynamo"].items()]
    return "\n".join(lines) + "\n"


def plot(results: pd.DataFrame, path: Path, title: str) -> None:
    """Log-log time per call vs batch: a panel per (shape, dtype), a line per mode (colour) and
    implementation (line style and marker)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    good = results.dropna(subset=["median_s"])
    if good.empty:
        return
    good = good.sort_values(["input_dim", "context_dim"], kind="stable")  # panel rows in ascending shape order
    good = good.assign(
        shape="input_dim=" + good.input_dim.astype(str) + ", context_dim=" + good.context_dim.astype(str)
    )
    grid = sns.relplot(
        good,
        kind="line",
        x="batch",
        y="median_s",
        hue="mode",
        style="impl",
        row="shape",
        col="dtype",
        markers=True,
        hue_order=[m for m in MODES if m in set(good["mode"])],
        style_order=IMPLS,
        col_order=[d for d in DTYPES if d in set(good.dtype)],
        height=3.8,
        aspect=1.45,
        facet_kws={"sharey": False, "margin_titles": True},
    )
    grid.set(yscale="log", xlabel="batch size", ylabel="time per call (s)")
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.figure.suptitle(title, y=1.02)
    grid.savefig(path, dpi=120)


# --- command line ------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.benchmark",
        description=__doc__.split("\n\n")[0],
        epilog="Flop model: " + FLOP_MODEL + ". Byte model: " + BYTE_MODEL + ".",
    )
    add = parser.add_argument
    add("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND)")
    add(
        "--grid",
        choices=tuple(GRIDS),
        default="point",
        help="full: 45 points over the issue's ranges; quick: a "
        "batch sweep at D=512, C=64; point: the headline point B=8192, D=512, C=64 (default)",
    )
    for axis in HEADLINE:
        add(f"--{axis.replace('_', '-')}", type=int, nargs="+", help=f"override the grid's {axis} values")
    add(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        metavar="MODE",
        help=f"from {', '.join(MODES)} (default: all)",
    )
    add(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=["float32", "bfloat16"],
        metavar="DTYPE",
        help=f"dtype policies, from {', '.join(DTYPES)} (default: float32 bfloat16)",
    )
    add("--repeats", type=int, default=20, help="interleaved timing rounds (default 20)")
    add("--warmup", type=int, default=3, help="untimed calls after the first (default 3)")
    add("--min-time", type=float, default=0.005, help="minimum seconds per block of calls (default 0.005)")
    add("--threads", type=int, help="cap intra-op CPU threads (torch, TF: any N; JAX: 1 only)")
    add("--layer-file", type=Path, help="benchmark this single-file copy of hyperzzw/layer.py (vendored, or patched)")
    add("--seed", type=int, default=0)
    add("--no-breakdown", dest="breakdown", action="store_false", help="skip the eager overhead breakdown")
    add("--profile", action="store_true", help="add a cProfile of 2000 eager layer calls (probe shape)")
    add("--no-plot", dest="plot", action="store_false", help="skip the PNG")
    add("--out-dir", type=Path, default=DEFAULT_OUT, help="default: benchmarks/results/")
    add("--tag", help="file-name tag (default: the grid name, '-custom' if overridden)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    name = args.backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    if name not in BACKENDS or ("keras" in sys.modules and sys.modules["keras"].backend.backend() != name):
        print(f"KERAS_BACKEND={name!r}: expected one of {BACKENDS}, set before keras is imported", file=sys.stderr)
        return 2
    os.environ["KERAS_BACKEND"] = name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.threads is not None and name == "jax":
        if args.threads != 1:
            print("--threads: JAX on CPU can only be limited to 1 thread", file=sys.stderr)
            return 2
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    if args.layer_file:
        os.environ["HYPERZZW_TARGET"] = str(args.layer_file.resolve())
    import keras

    global tm
    from benchmarks import timing as tm
    from conformance import backend as be
    from conformance.subjects.hyperzzw import target

    if args.threads is not None:
        tm.set_threads(args.threads)
    grid = {k: tuple(getattr(args, k) or v) for k, v in GRIDS[args.grid].items()}
    points = list(itertools.product(grid["batch"], grid["input_dim"], grid["context_dim"]))
    tag = args.tag or args.grid + ("-custom" if args.batch or args.input_dim or args.context_dim else "")
    meta = {
        "backend": name,
        "grid": tag,
        "points": [dict(zip(("batch", "input_dim", "context_dim"), p)) for p in points],
        "modes": args.modes,
        "dtypes": args.dtypes,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "min_time_s": args.min_time,
        "keras": keras.__version__,
        "hyperzzw": target.module.__version__,
        "layer_file": target.LAYER_FILE,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": sys.argv,
        "env": {k: os.environ.get(k) for k in ("KERAS_BACKEND", "JAX_ENABLE_X64", "XLA_FLAGS", "OMP_NUM_THREADS")},
        "loadavg_before": os.getloadavg()[0],
        "flop_model": FLOP_MODEL,
        "byte_model": BYTE_MODEL,
    }
    records, done, total = [], 0, len(points) * len(args.dtypes) * len(args.modes)
    for point, dtype in itertools.product(points, args.dtypes):
        setup = make_setup(be, target.HyperZZWOperator, point, dtype, args.seed)
        for mode in args.modes:
            start = time.perf_counter()
            records += (case := {r["impl"]: r for r in run_case(be, setup, mode, args)}).values()
            done += 1
            status = case["layer"].get("error") or (
                f"layer/raw {case['layer']['ratio_to_raw']:.3f}, dense/raw "
                f"{case['dense']['ratio_to_raw']:.3f}, {case['layer']['check']}"
            )
            print(
                f"[{done}/{total}] B={point[0]} D={point[1]} C={point[2]} {dtype} {mode}: {status} "
                f"({time.perf_counter() - start:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        del setup
        gc.collect()
    results = pd.DataFrame(records)  # one per (case, impl); a failed case has its error and no timings
    results = results.reindex(columns=[*results.columns, *(c for c in COLUMNS if c not in results.columns)])
    probe = None
    if args.breakdown and any(m.startswith("eager") for m in args.modes):
        print("overhead breakdown at the probe shape...", file=sys.stderr, flush=True)
        probe = breakdown(be, target.HyperZZWOperator, args)
    meta.update(backend_info={name: be.LIBRARY_VERSION, "threads": tm.threads()}, loadavg_after=os.getloadavg()[0])
    verdict = verdicts(results, probe)
    report = markdown(meta, results, probe, verdict)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"benchmark-{name}-{tag}"
    stem.with_suffix(".md").write_text(report, encoding="utf-8")
    payload = {
        "meta": meta,
        "results": json.loads(results.to_json(orient="records", double_precision=15)),
        "targets": verdict,
        "overhead_breakdown": probe,
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    if args.plot:
        plot(results, stem.with_suffix(".png"), f"HyperZZWOperator, {name} backend")
    print(report)
    if probe is not None and "profile" in probe:
        print("cProfile of eager `layer([x, context])` (2000 calls, probe shape):\n", probe["profile"], sep="\n")
    print(f"Wrote {stem}.md, .json" + (", .png" if args.plot else ""), file=sys.stderr)
    return 1 if results.error.notna().any() or not results.check.str.startswith("ok").all() else 0


if __name__ == "__main__":
    sys.exit(main())
