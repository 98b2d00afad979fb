"""Benchmark ``HyperZZWOperator`` against the raw backend expression and ``keras.layers.Dense``.

For every grid point (batch, input_dim, context_dim), dtype and mode (eager / compiled, forward /
forward+backward) three implementations of ``output = x * (context @ kernel)`` are timed side by side, in one
process, interleaved round by round: ``layer`` (as a user calls it), ``raw`` (the backend's own ops) and
``dense`` (``Dense(input_dim, use_bias=False)`` on the context, times ``x``). Backend plumbing (tensors,
autodiff, compilation, synchronisation, native ops) is the suite's (``conformance/backend.py``), and so are
the layer under test (``conformance/target.py``) and the result check's tolerance (``conformance/tolerance.py``).

    nox -s benchmark-jax -- --grid quick                  # or, from the repository root:
    KERAS_BACKEND=torch python -m benchmarks.benchmark --grid point

Results (Markdown, JSON, PNG) go to ``benchmarks/results/``; ``benchmarks/README.md`` explains them.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
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
from pathlib import Path
from typing import Any, Callable

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
BACKENDS = ("jax", "torch", "tensorflow")
MODES = ("eager-fwd", "eager-fwdbwd", "compiled-fwd", "compiled-fwdbwd")
IMPLS = ("layer", "raw", "dense")
DTYPES = ("float32", "bfloat16", "mixed_bfloat16")  # mixed_bfloat16: float32 inputs, bfloat16 compute
HEADLINE = {"batch": 8192, "input_dim": 512, "context_dim": 64}
GRIDS = {
    "full": {"batch": (256, 1024, 4096, 16384, 65536), "input_dim": (64, 256, 1024), "context_dim": (8, 64, 256)},
    "quick": {"batch": (256, 1024, 4096, 16384), "input_dim": (512,), "context_dim": (64,)},
    "point": {key: (value,) for key, value in HEADLINE.items()},
}
PROBE = {"batch": 256, "input_dim": 64, "context_dim": 8}  # where compute is negligible: per-call overhead
COMPILED_RATIO_TARGET, COMPILED_TARGET_MIN_BATCH, OVERHEAD_SLACK = 1.05, 4096, 1.05
FLOP_MODEL = (
    "forward: 2*B*C*D (context @ kernel) + B*D (multiply by x); "
    "forward+backward: 3 * 2*B*C*D (forward matmul, d_context = g @ kernel^T, d_kernel = context^T @ g) "
    "+ 4*B*D (forward multiply, the sum, d_x = dy * w, g = dy * x). B = batch, D = input_dim, C = context_dim."
)
BYTE_MODEL = (
    "compulsory traffic, each tensor touched once: forward reads x (B*D), context (B*C) and the kernel (C*D) "
    "and writes the output (B*D); forward+backward reads x, context and the kernel and writes their three "
    "gradients (same sizes). Intermediates (context @ kernel, the upstream gradient) are not counted, so "
    "GB/s is a lower bound on the traffic actually moved."
)
# Bytes per element of (inputs and kernel, output) under each dtype policy.
ELEMENT_BYTES = {"float32": (4, 4), "bfloat16": (2, 2), "mixed_bfloat16": (4, 2)}


def flops(b: int, d: int, c: int, forward_only: bool) -> int:
    return 2 * b * c * d + b * d if forward_only else 3 * 2 * b * c * d + 4 * b * d


def bytes_moved(b: int, d: int, c: int, dtype: str, forward_only: bool) -> int:
    s_in, s_out = ELEMENT_BYTES[dtype]
    inputs = s_in * (b * d + b * c + c * d)
    return inputs + s_out * b * d if forward_only else 2 * inputs


# --- timing --------------------------------------------------------------------------------------------


def time_interleaved(runners: dict[str, Callable], sync: Callable, repeats: int, warmup: int,
                     min_time: float) -> dict[str, list[np.ndarray]]:
    """Per-call times, `{name: [block of one round, ...]}`: after `warmup` untimed calls each, `repeats`
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
    names, blocks = list(runners), {name: [] for name in runners}
    for r in range(repeats):
        gc.collect()
        gc.disable()
        try:
            for name in names[r % len(names):] + names[: r % len(names)]:
                run, block = runners[name], np.empty(calls[name])
                for i in range(calls[name]):
                    start = time.perf_counter()
                    sync(run())
                    block[i] = time.perf_counter() - start
                blocks[name].append(block)
        finally:
            gc.enable()
    return blocks


def stats(blocks: list[np.ndarray]) -> dict[str, float]:
    calls = np.concatenate(blocks)
    q1, median, q3 = np.percentile(calls, [25, 50, 75])
    return {"median_s": median, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "min_s": calls.min(),
            "calls": calls.size, "rounds": len(blocks)}


def paired(a: list[np.ndarray], b: list[np.ndarray], op: Callable) -> tuple[float, float]:
    """Median and IQR over rounds of `op(a_r, b_r)`, the medians of round r's blocks: blocks that ran back
    to back are paired, which cancels most of the drift between rounds."""
    q1, median, q3 = np.percentile([op(np.median(x), np.median(y)) for x, y in zip(a, b)], [25, 50, 75])
    return float(median), float(q3 - q1)


def count_python_calls(run: Callable, n: int = 50) -> float:
    """Function calls per call of `run`, by cProfile: a measure of overhead that does not depend on load."""
    run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        run()
    profiler.disable()
    return pstats.Stats(profiler).total_calls / n


# --- the three implementations ---------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    """What the runners of one (point, dtype) share; the layer, Dense and raw kernel hold the same values."""

    dims: tuple[int, int, int]  # batch, input_dim, context_dim
    dtype: str
    compute_dtype: str
    x: Any
    context: Any
    kernel: Any  # raw's kernel: an array (jax), a leaf tensor (torch), a tf.Variable as the layer's is (TF)
    layer: Any
    dense: Any


def make_setup(be, layer_cls, dims: tuple[int, int, int], dtype: str, seed: int) -> Setup:
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
    x, context, raw_kernel = be.timing_inputs(be.tensor(x, input_dtype), be.tensor(context, input_dtype),
                                              be.tensor(kernel, policy.variable_dtype))
    return Setup(dims, dtype, policy.compute_dtype, x, context, raw_kernel, layer, dense)


def forward_fns(be, setup: Setup, pure: bool) -> dict[str, tuple[Callable, Any]]:
    """`{impl: (fn(kernel, x, context), kernel)}`. Pure (jax, for jax.grad and jax.jit): the layer and Dense
    run by `stateless_call` on the kernel passed in. Otherwise they call themselves as users do, and the
    kernel passed is their own variable's (for the autodiff to differentiate w.r.t. it)."""
    cast, multiply, mixed = be.NATIVE["cast"], be.NATIVE["multiply"], setup.dtype.startswith("mixed_")

    def compute(v):  # a mixed policy computes in its compute dtype: raw and Dense cast as Keras does
        return cast(v, setup.compute_dtype) if mixed else v
    layer, dense = setup.layer, setup.dense

    # Named functions, not lambdas: TF's autograph reads their source.
    def raw(k, x, c):
        return multiply(compute(x), be.NATIVE["matmul"](compute(c), compute(k)))

    def layer_pure(k, x, c):
        return layer.stateless_call([k], [], [x, c])[0]

    def dense_pure(k, x, c):
        return multiply(compute(x), dense.stateless_call([k], [], c)[0])

    def layer_call(k, x, c):
        return layer([x, c])

    def dense_call(k, x, c):
        return multiply(compute(x), dense(c))

    return {"layer": (layer_pure if pure else layer_call, layer.hyper_kernel.value), "raw": (raw, setup.kernel),
            "dense": (dense_pure if pure else dense_call, dense.kernel.value)}


def runners(be, setup: Setup, mode: str) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per implementation, each one call of `mode`. Compiled: `jax.jit`,
    `torch.compile` (inductor, dynamic=False, a fresh Dynamo cache per case) or `tf.function(jit_compile=True)`
    around the forward, or the loss `sum(output)` and its gradient w.r.t. (kernel, x, context)."""
    compiled, backward = mode.startswith("compiled"), mode.endswith("fwdbwd")
    compiler = be.FAST_COMPILER if compiled else None
    if compiled:
        be.reset_compile_cache()  # torch: never hit Dynamo's recompile limit (a silent fall back to eager)
    out = {}
    for impl, (fn, kernel) in forward_fns(be, setup, pure=be.NAME == "jax" and mode != "eager-fwd").items():
        x, c = setup.x, setup.context
        if backward:
            step = be.gradient_step(lambda k, x, c, fn=fn: be.NATIVE["sum"](fn(k, x, c)), 3, compiler)
            out[impl] = lambda step=step, k=kernel: step(k, x, c)
        else:
            step = be.COMPILERS[compiler][1](fn) if compiler else fn

            def run(step=step, k=kernel):
                with be.no_grad():
                    return step(k, x, c)

            out[impl] = run
    return out


def check(be, setup: Setup, mode: str, results: dict[str, Any]) -> str:
    """Each implementation's output (or its three gradients) against a float64 reference on the values the
    backend holds, within the suite's derived bound gamma(n + 2) * M (`conformance.tolerance`, with BLAS
    sums: these shapes are too large to sum in a fixed order; nothing here is stored)."""
    from conformance import oracle, tolerance

    dt = setup.compute_dtype
    x, c, k = (oracle.round_to(be.to_numpy(v), dt) for v in (setup.x, setup.context, setup.kernel))
    if mode.endswith("-fwd"):
        expected = [oracle.forward_formula(x, c, k, np.matmul)]
        atols = [tolerance.forward_atol(x, c, k, dt, be.NAME, sums=tolerance.BLAS)]
    else:
        g = np.ones(x.shape)
        dx, dc, dk = oracle.gradient_formulas(x, c, k, g, *tolerance.BLAS)
        expected = [dk, dx, dc]
        tx, tc, tk = tolerance.gradient_atols(x, c, k, g, dt, be.NAME, sums=tolerance.BLAS)
        atols = [tk, tx, tc]
    worst = 0.0
    for impl, result in results.items():
        got = result if isinstance(result, (list, tuple)) else [result]
        for value, want, atol in zip(got, expected, atols):
            with np.errstate(divide="ignore", invalid="ignore"):
                worst = max(worst, float(np.max(np.abs(be.to_numpy(value) - want) / atol)))
    return f"ok ({worst:.2g} of the bound)" if worst <= 1 else f"MISMATCH ({worst:.3g} times the bound)"


def run_case(be, setup: Setup, mode: str, args) -> dict[str, Any]:
    """Times one (point, dtype, mode), the three implementations interleaved: one JSON row."""
    b, d, c = setup.dims
    fwd = mode.endswith("-fwd")
    row = {"batch": b, "input_dim": d, "context_dim": c, "dtype": setup.dtype, "mode": mode,
           "flops": flops(b, d, c, fwd), "bytes": bytes_moved(b, d, c, setup.dtype, fwd)}
    try:
        run = runners(be, setup, mode)
        first, results = {}, {}
        for impl, call in run.items():  # the first call compiles, in the compiled modes
            start = time.perf_counter()
            results[impl] = call()
            be.sync(results[impl])
            first[impl] = time.perf_counter() - start
        row["check"] = check(be, setup, mode, results)
        del results
        blocks = time_interleaved(run, be.sync, args.repeats, args.warmup, args.min_time)
    except Exception as error:  # noqa: BLE001 - one failing case (say torch.compile) must not end the run
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        return row
    row["impls"] = {}
    for impl in IMPLS:
        s = stats(blocks[impl])
        ratio, ratio_iqr = paired(blocks[impl], blocks["raw"], lambda p, q: p / q)
        over, over_iqr = paired(blocks[impl], blocks["raw"], lambda p, q: p - q)
        row["impls"][impl] = {**s, "first_call_s": first[impl], "gflops": row["flops"] / s["median_s"] / 1e9,
                              "gbps": row["bytes"] / s["median_s"] / 1e9, "ratio_to_raw": ratio,
                              "ratio_to_raw_iqr": ratio_iqr, "overhead_vs_raw_s": over, "overhead_vs_raw_iqr_s": over_iqr}
    row["layer_to_dense"], row["layer_to_dense_iqr"] = paired(blocks["layer"], blocks["dense"], lambda p, q: p / q)
    return row


def breakdown(be, layer_cls, args) -> dict[str, Any]:
    """Where the eager layer's per-call time goes at the probe shape (float32, forward, no grad): the native
    expression; the same ops through `keras.ops` (matmul, and the layer's einsum); the layer's body
    (`layer.call`) and the layer as called; the same for Dense; the shape checks alone."""
    import keras
    from keras import ops

    setup = make_setup(be, layer_cls, tuple(PROBE.values()), "float32", args.seed)
    layer, dense, x, c, kernel = setup.layer, setup.dense, setup.x, setup.context, setup.layer.hyper_kernel
    shapes, multiply = (tuple(x.shape), tuple(c.shape)), be.NATIVE["multiply"]
    steps = {
        "raw": lambda: multiply(x, be.NATIVE["matmul"](c, setup.kernel)),
        "keras.ops": lambda: ops.multiply(x, ops.matmul(c, kernel)),
        "keras.ops einsum": lambda: ops.multiply(x, ops.einsum("...c,ci->...i", c, kernel)),
        "layer.call": lambda: layer.call([x, c]),
        "layer()": lambda: layer([x, c]),
        "dense.call": lambda: multiply(x, dense.call(c)),
        "dense()": lambda: multiply(x, dense(c)),
        "layer._check_shapes": lambda: layer._check_shapes(*shapes),
    }

    def without_grad(step):
        def run():
            with be.no_grad():
                return step()
        return run

    run = {name: without_grad(step) for name, step in steps.items()}
    torch_threads = be.threads() if be.NAME == "torch" else None
    if torch_threads:  # tiny ops gain nothing from threads; one isolates the Python overhead
        be.set_threads(1)
    try:
        blocks = time_interleaved(run, lambda r: r is None or isinstance(r, tuple) or be.sync(r),
                                  max(args.repeats, 15), args.warmup, max(args.min_time, 0.01))
        python_calls = {name: count_python_calls(step) for name, step in run.items()}
    finally:
        if torch_threads:
            be.set_threads(torch_threads)

    def attribute(t):
        return {"keras.ops dispatch (keras.ops - raw)": t["keras.ops"] - t["raw"],
                "einsum instead of matmul (keras.ops einsum - keras.ops)": t["keras.ops einsum"] - t["keras.ops"],
                "layer body beyond matmul + multiply (layer.call - keras.ops)": t["layer.call"] - t["keras.ops"],
                "  of which _check_shapes": t["layer._check_shapes"],
                "Layer.__call__ for [x, context] (layer() - layer.call)": t["layer()"] - t["layer.call"],
                "Layer.__call__ for Dense (dense() - dense.call)": t["dense()"] - t["dense.call"],
                "layer overhead (layer() - raw)": t["layer()"] - t["raw"],
                "dense overhead (dense() - raw)": t["dense()"] - t["raw"]}

    s = {name: stats(b) for name, b in blocks.items()}
    median, minimum = ({n: v[key] for n, v in s.items()} for key in ("median_s", "min_s"))
    result = {"point": PROBE, "keras": keras.__version__, "median_s": median,
              "iqr_s": {n: v["iqr_s"] for n, v in s.items()}, "min_s": minimum, "python_calls": python_calls,
              "torch_threads": 1 if be.NAME == "torch" else None,
              "attribution_median_s": attribute(median), "attribution_min_s": attribute(minimum)}
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(2000):
            run["layer()"]()
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
        result["profile"] = stream.getvalue()
    if be.NAME == "torch" and any(m.startswith("compiled") for m in args.modes):
        fns = forward_fns(be, setup, pure=False)
        result["dynamo"] = {impl: be.graph_breaks(lambda x, c, fn=fn, k=k: fn(k, x, c), x, c)
                            for impl, (fn, k) in fns.items()}
    return result


# --- reporting ---------------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    for scale, unit in ((1, "s"), (1e-3, "ms")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e6:.3g} µs"


def verdicts(rows: list[dict], probe: dict | None) -> dict[str, Any]:
    """The two targets. 1: compiled fwd+bwd, median per-round layer/raw <= 1.05 at every batch >= 4096.
    2: at the probe, eager (layer - raw) <= 1.05 (dense - raw), from the per-call medians (the minima are
    shown too; at large shapes the microseconds at stake are below the noise, so those rows are not judged)."""
    targeted = [r for r in rows if r["mode"] == "compiled-fwdbwd" and r["batch"] >= COMPILED_TARGET_MIN_BATCH]
    points = [{"batch": r["batch"], "input_dim": r["input_dim"], "context_dim": r["context_dim"], "dtype": r["dtype"],
               "ratio": r["impls"]["layer"]["ratio_to_raw"], "ratio_iqr": r["impls"]["layer"]["ratio_to_raw_iqr"],
               "ratio_of_minima": r["impls"]["layer"]["min_s"] / r["impls"]["raw"]["min_s"],
               "verdict": "PASS" if r["impls"]["layer"]["ratio_to_raw"] <= COMPILED_RATIO_TARGET else "FAIL"}
              for r in targeted if "impls" in r]
    failed = len(targeted) - len(points)
    compiled = {"points": points, "verdict": f"NOT MEASURED ({failed} case(s) failed to run)" if failed
                else "n/a (no compiled-fwdbwd row with batch >= 4096)" if not points
                else "PASS" if all(p["verdict"] == "PASS" for p in points) else "FAIL"}
    if probe is None:
        return {"compiled_fwdbwd_within_1.05x_raw": compiled, "eager_overhead_le_dense": {"verdict": "n/a (no overhead probe run)"}}
    keys = {"layer": "layer overhead (layer() - raw)", "dense": "dense overhead (dense() - raw)"}
    eager = {f"{impl}_overhead_{stat}_s": probe[f"attribution_{stat}_s"][key]
             for impl, key in keys.items() for stat in ("min", "median")}
    eager["verdict"] = "PASS" if eager["layer_overhead_median_s"] <= OVERHEAD_SLACK * eager["dense_overhead_median_s"] else "FAIL"
    return {"compiled_fwdbwd_within_1.05x_raw": compiled, "eager_overhead_le_dense": eager}


def table(header: list[str], rows: list[list], align: str) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
            *("| " + " | ".join(str(v) for v in row) + " |" for row in rows)]


def markdown(meta: dict, rows: list[dict], probe: dict | None, verdict: dict) -> str:
    lines = [
        f"# HyperZZWOperator benchmark: {meta['backend']} ({meta['grid']} grid)", "",
        f"keras {meta['keras']}, hyperzzw {meta['hyperzzw']} (`{meta['layer_file']}`), "
        + ", ".join(f"{k} {v}" for k, v in meta["backend_info"].items())
        + f"; Python {meta['python']}, {meta['machine']}, {meta['cpus']} CPUs; {meta['date']}.", "",
        f"Median time per call (IQR in brackets) over {meta['repeats']} interleaved rounds, each timing a block of "
        f"calls (>= {fmt_time(meta['min_time_s'])}, at least one) per implementation, every call synchronised and "
        f"timed on its own; after {meta['warmup']} warm-up calls (and the first, compiling, call). Ratios are medians "
        "over rounds of the ratio of the round's block medians. `layer/raw` and `dense/raw` compare with the raw "
        "backend expression; GFLOP/s and GB/s are the layer's. `check`: the largest error of the three, as a share "
        f"of the derived bound. Load average (1 min) before / after: {meta['loadavg_before']:.2f} / "
        f"{meta['loadavg_after']:.2f} on {meta['cpus']} CPUs (above the CPU count, other processes competed).", "",
        f"- FLOP model: {FLOP_MODEL}", f"- Byte model: {BYTE_MODEL}", *(f"- {note}" for note in meta["notes"]), "",
    ]
    head = ["batch", "input_dim", "context_dim", "dtype", "mode"]
    body, firsts = [], []
    for r in rows:
        key = [r[k] for k in head]
        if "impls" not in r:
            body.append(key + [r["error"]] + [""] * 8)
            continue
        im = r["impls"]
        body.append(key + [f"{fmt_time(im[i]['median_s'])} ({fmt_time(im[i]['iqr_s'])})" for i in IMPLS] + [
            f"{im['layer']['ratio_to_raw']:.3f}", f"{im['dense']['ratio_to_raw']:.3f}", f"{r['layer_to_dense']:.3f}",
            f"{im['layer']['gflops']:.1f}", f"{im['layer']['gbps']:.2f}", r["check"]])
        if r["mode"].startswith("compiled"):
            firsts.append(key + [fmt_time(im[i]["first_call_s"]) for i in IMPLS])
    lines += table(head + list(IMPLS) + ["layer/raw", "dense/raw", "layer/dense", "GFLOP/s", "GB/s", "check"],
                   body, "rrr" + "ll" + "r" * 8 + "l")
    if firsts:
        lines += ["", "First call (compilation included) of the compiled modes:", ""]
        lines += table(head + list(IMPLS), firsts, "rrrll" + "rrr")
    c, e = verdict["compiled_fwdbwd_within_1.05x_raw"], verdict["eager_overhead_le_dense"]
    lines += ["", "## Targets", "", f"1. Compiled forward+backward within {COMPILED_RATIO_TARGET}x of raw at batch >= "
              f"{COMPILED_TARGET_MIN_BATCH} (median per-round ratio): **{c['verdict']}**"]
    lines += [f"   - B={p['batch']} D={p['input_dim']} C={p['context_dim']} {p['dtype']}: layer/raw {p['ratio']:.3f} "
              f"(IQR {p['ratio_iqr']:.3f}; ratio of minima {p['ratio_of_minima']:.3f}): {p['verdict']}" for p in c["points"]]
    lines.append(f"2. Eager per-call overhead (time - raw time) no worse than Dense's ({OVERHEAD_SLACK}x slack), at the "
                 f"probe B={PROBE['batch']} D={PROBE['input_dim']} C={PROBE['context_dim']} float32 forward: **{e['verdict']}**")
    if "layer_overhead_min_s" in e:
        lines.append(f"   - medians: layer {fmt_time(e['layer_overhead_median_s'])} vs Dense "
                     f"{fmt_time(e['dense_overhead_median_s'])} per call (minima: layer {fmt_time(e['layer_overhead_min_s'])} "
                     f"vs Dense {fmt_time(e['dense_overhead_min_s'])}).")
    if probe is not None:
        lines += ["", f"## Eager per-call overhead breakdown (B={PROBE['batch']}, D={PROBE['input_dim']}, "
                  f"C={PROBE['context_dim']}, float32, forward)", ""]
        lines += table(["call", "median", "IQR", "min", "function calls per call"],
                       [[f"`{n}`", fmt_time(t), fmt_time(probe["iqr_s"][n]), fmt_time(probe["min_s"][n]),
                         f"{probe['python_calls'][n]:.0f}"] for n, t in probe["median_s"].items()], "lrrrr")
        if probe.get("torch_threads") == 1:
            lines += ["", "(torch runs this probe on one thread: it measures Python overhead, not kernels.)"]
        lines += [""] + table(["attribution", "by median", "by min"],
                              [[n, fmt_time(t), fmt_time(probe["attribution_min_s"][n])]
                               for n, t in probe["attribution_median_s"].items()], "lrr")
        if "dynamo" in probe:
            lines += ["", "torch.compile (`torch._dynamo.explain` of each forward, float32, probe shape):", ""]
            lines += [f"- {impl}: {info}" for impl, info in probe["dynamo"].items()]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Log-log time per call vs batch: a panel per (dtype, input_dim, context_dim), a line per mode and impl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [r for r in rows if "impls" in r]
    dtypes = sorted({r["dtype"] for r in good}, key=DTYPES.index)
    shapes = sorted({(r["input_dim"], r["context_dim"]) for r in good})
    if not good:
        return
    fig, axes = plt.subplots(len(shapes), len(dtypes), figsize=(5.5 * len(dtypes), 3.8 * len(shapes)), squeeze=False)
    colours = dict(zip(MODES, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    styles = {"layer": ("-", "o"), "raw": ("--", "s"), "dense": (":", "^")}
    for (i, (d, c)), (j, dtype) in itertools.product(enumerate(shapes), enumerate(dtypes)):
        ax = axes[i][j]
        for mode, impl in itertools.product(MODES, IMPLS):
            points = sorted((r["batch"], r["impls"][impl]["median_s"]) for r in good
                            if (r["dtype"], r["input_dim"], r["context_dim"], r["mode"]) == (dtype, d, c, mode))
            if points:
                ax.plot(*zip(*points), styles[impl][0], marker=styles[impl][1], color=colours[mode], label=f"{mode} {impl}")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="time per call (s)")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{dtype}, input_dim={d}, context_dim={c}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               fontsize=8, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# --- command line ------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.benchmark", description=__doc__.split("\n\n")[0],
                                     epilog="Flop model: " + FLOP_MODEL + "\n\nByte model: " + BYTE_MODEL)
    add = parser.add_argument
    add("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND)")
    add("--grid", choices=tuple(GRIDS), default="point", help="full: 45 points over the issue's ranges; quick: a "
        "batch sweep at D=512, C=64; point: the headline point B=8192, D=512, C=64 (default)")
    add("--batch", type=int, nargs="+", help="override the grid's batch sizes")
    add("--input-dim", type=int, nargs="+", help="override the grid's input_dim values")
    add("--context-dim", type=int, nargs="+", help="override the grid's context_dim values")
    add("--modes", nargs="+", choices=MODES, default=list(MODES), metavar="MODE", help=f"from {', '.join(MODES)} (default: all)")
    add("--dtypes", nargs="+", choices=DTYPES, default=["float32", "bfloat16"], metavar="DTYPE",
        help=f"dtype policies, from {', '.join(DTYPES)} (default: float32 bfloat16)")
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

    from conformance import backend as be
    from conformance import target

    if args.threads is not None:
        be.set_threads(args.threads)
    grid = {k: tuple(getattr(args, k) or v) for k, v in GRIDS[args.grid].items()}
    points = list(itertools.product(grid["batch"], grid["input_dim"], grid["context_dim"]))
    tag = args.tag or args.grid + ("-custom" if args.batch or args.input_dim or args.context_dim else "")
    meta = {"backend": name, "grid": tag, "points": [dict(zip(("batch", "input_dim", "context_dim"), p)) for p in points],
            "modes": args.modes, "dtypes": args.dtypes, "repeats": args.repeats, "warmup": args.warmup,
            "min_time_s": args.min_time, "keras": keras.__version__, "hyperzzw": target.module.__version__,
            "layer_file": target.LAYER_FILE, "python": platform.python_version(),
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}", "cpus": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "argv": sys.argv,
            "env": {k: os.environ.get(k) for k in ("KERAS_BACKEND", "JAX_ENABLE_X64", "XLA_FLAGS", "OMP_NUM_THREADS")},
            "loadavg_before": os.getloadavg()[0], "flop_model": FLOP_MODEL, "byte_model": BYTE_MODEL}
    rows, total = [], len(points) * len(args.dtypes) * len(args.modes)
    for point, dtype in itertools.product(points, args.dtypes):
        setup = make_setup(be, target.HyperZZWOperator, point, dtype, args.seed)
        for mode in args.modes:
            start = time.perf_counter()
            rows.append(row := run_case(be, setup, mode, args))
            status = row.get("error") or (f"layer/raw {row['impls']['layer']['ratio_to_raw']:.3f}, "
                                          f"dense/raw {row['impls']['dense']['ratio_to_raw']:.3f}, {row['check']}")
            print(f"[{len(rows)}/{total}] B={point[0]} D={point[1]} C={point[2]} {dtype} {mode}: {status} "
                  f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
        del setup
        gc.collect()
    notes = ["Sync: jax.block_until_ready on every result; torch CPU and TensorFlow CPU ops complete before they "
             "return, so no extra op is timed (a GPU would get an explicit barrier).",
             "layer path: `layer([x, context])` for eager forward; on JAX `layer.stateless_call` inside jax.grad / "
             "jax.jit; on torch / TF the layer call is wrapped as is (torch.compile / tf.function). Forward modes "
             "run under torch.no_grad on torch."]
    compiled = [r for r in rows if r["mode"].startswith("compiled")]
    if name == "torch" and compiled:
        failures = [r for r in compiled if "error" in r]
        firsts = [r["impls"][i]["first_call_s"] for r in compiled if "impls" in r for i in IMPLS]
        notes.append("torch.compile: " + (f"works (inductor, CPU); first call incl. compilation {min(firsts):.1f}-"
                                          f"{max(firsts):.1f} s" if firsts and not failures else
                                          f"failed in {len(failures)}/{len(compiled)} cases: {failures[0]['error'] if failures else ''}") + ".")
    probe = None
    if args.breakdown and any(m.startswith("eager") for m in args.modes):
        print("overhead breakdown at the probe shape...", file=sys.stderr, flush=True)
        probe = breakdown(be, target.HyperZZWOperator, args)
    meta.update(backend_info={name: be.LIBRARY_VERSION, "threads": be.threads()}, notes=notes,
                loadavg_after=os.getloadavg()[0])
    verdict = verdicts(rows, probe)
    report = markdown(meta, rows, probe, verdict)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"benchmark-{name}-{tag}"
    stem.with_suffix(".md").write_text(report, encoding="utf-8")
    payload = {"meta": meta, "results": rows, "targets": verdict, "overhead_breakdown": probe}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    if args.plot:
        plot(rows, stem.with_suffix(".png"), f"HyperZZWOperator, {name} backend")
    print(report)
    if probe is not None and "profile" in probe:
        print("cProfile of eager `layer([x, context])` (2000 calls, probe shape):\n", probe["profile"], sep="\n")
    print(f"Wrote {stem}.md, .json" + (", .png" if args.plot else ""), file=sys.stderr)
    return 1 if any("error" in r or not r.get("check", "").startswith("ok") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
