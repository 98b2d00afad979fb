"""The layer under each backend's distributed engine gives the oracle's numbers, as on one device.

`conformance/distributed.py` runs in a subprocess (fake devices must be configured before the backend
initialises) and records, per configuration, the golden cases' outputs (through `model.predict` and through
a compiled or DDP forward), their gradients, SGD steps from the training reference, and save/load round
trips. Here every recorded array is compared with the oracle's stored values at the golden tolerance: the
bound `gamma(n + 2) * M` holds for any order of the n-term reductions, so a sharded reduction (the kernel's
context_dim axis, the batch sum of the kernel gradient over devices) needs no other bound. Where the
distributed result is bit for bit the one-device result is measured and written to
`reports/distributed-<backend>.json` by the nox session (it is a fact about the engine, not a requirement).

Run by the `distributed-<backend>` nox sessions (tagged `tests`); a plain `pytest conformance/` leaves this
module out (see conftest.py), `pytest conformance/test_distributed.py` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance import assertions, backend, distributed
from conformance.subjects.hyperzzw import cases, golden, tolerance

ROOT = Path(__file__).resolve().parent.parent

# The configurations each engine runs (besides `single`, the one-device run in the same process).
CONFIGS = {
    "jax": ("data_parallel", "model_parallel_input_dim", "model_parallel_context_dim"),
    "tensorflow": ("mirrored",),
    "torch": ("ddp",),
}[backend.NAME]

# What the engine cannot do with this layer, with the reason. Each is a strict xfail: it turns red (XPASS)
# the day it starts working, so the README's table is kept true.
KNOWN_GAPS = {
    "jax": {
        "data_parallel/uneven-batch": "jax arrays shard evenly only: Keras's DataParallel puts a batch of 255 "
        "rows on 2 devices with NamedSharding and jax raises IndivisibleError (no padding)",
    },
    "tensorflow": {
        "mirrored/training-jit_compile": "fit(jit_compile=True) under MirroredStrategy on logical CPU devices: "
        "XLA runs the step on CPU:0 and cannot read replica 1's variables (InvalidArgumentError 'Trying to "
        "access resource ... located in device CPU:1 from device CPU:0'); graph mode (jit_compile=False) works",
        "keras_model_parallel/rank2-float32": "keras.distribution is implemented for jax only in Keras 3.15 "
        "(its TensorFlow distribution_lib is a DTensor prototype): ModelParallel's scope runs, computes the "
        "right output and leaves hyper_kernel an unsharded variable",
    },
    "torch": {
        "keras_model_parallel/rank2-float32": "keras.distribution is implemented for jax only in Keras 3.15: "
        "hyper_kernel cannot be sharded through Keras on torch",
    },
}[backend.NAME]

TIMEOUT = 900  # seconds; measured 50-100 s per engine on the 2-core CI machine


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed") / "results.npz"
    env = dict(os.environ)
    if backend.NAME == "jax":
        # 4 host CPU devices, set before jax initialises (the subprocess's first import).
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    # Its own process group, so a hung run is killed with every rank it spawned.
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.distributed", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"conformance.distributed did not finish in {TIMEOUT} s:\n{log[-4000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"conformance.distributed failed ({proc.returncode}):\n{log[-6000:]}"
    with np.load(out) as data:
        arrays = {name: data[name] for name in data.files}
    gaps = {name.removeprefix("gaps/"): str(v) for name, v in arrays.items() if name.startswith("gaps/")}
    return {name: v for name, v in arrays.items() if not name.startswith("gaps/")}, gaps


def _expected(case: cases.Case, data: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, context, kernel, g = data["x"], data["context"], data["kernel"], data["cotangent"]
    out_atol = tolerance.forward_atol(x, context, kernel, case.dtype, backend.NAME)
    atols = dict(
        zip(("dx", "dcontext", "dkernel"), tolerance.gradient_atols(x, context, kernel, g, case.dtype, backend.NAME))
    )
    expected = {"output": (data["output"], out_atol), "output-predict": (data["output"], out_atol)}
    expected.update({name: (data[name], atols[name]) for name in ("dx", "dcontext", "dkernel") if name in data})
    return expected


def test_no_unexpected_failure(run):
    _, gaps = run
    unexpected = {name: text for name, text in gaps.items() if name not in KNOWN_GAPS}
    assert not unexpected, "\n\n".join(f"{name}: {text}" for name, text in unexpected.items())


@pytest.mark.parametrize("gap", sorted(KNOWN_GAPS))
def test_known_gap(run, gap, request):
    request.node.add_marker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_GAPS[gap]))
    _, gaps = run
    assert gap not in gaps, gaps[gap]


@pytest.mark.parametrize("config", ("single", *CONFIGS, *(("ddp-uneven",) if backend.NAME == "torch" else ())))
def test_golden_cases_match_the_oracle(run, config):
    results, gaps = run
    compared = 0
    for case in cases.CASES:
        if f"{config}/{case.id}" in gaps:
            continue
        data = None
        for quantity in ("output-predict", "output", "dx", "dcontext", "dkernel"):
            key = f"{config}/{case.id}/{quantity}"
            if key not in results:
                continue
            data = data or golden.load_case(case)
            expected, atol = _expected(case, data)[quantity]
            assertions.assert_close(results[key], expected, atol, f"{case.id} {config}", what=quantity)
            compared += 1
    # Not vacuous: every eligible case gave its output and kernel gradient in this configuration.
    wanted = [c.id for c in cases.CASES if distributed.eligible(c)] if config != "ddp-uneven" else ["batch-large"]
    if config == "model_parallel_context_dim":
        wanted = [i for i in wanted if cases.by_id(i).context_dim % 2 == 0]
    elif config == "model_parallel_input_dim":
        wanted = [i for i in wanted if cases.by_id(i).input_dim % 2 == 0]
    missing = [f"{config}/{i}/{q}" for i in wanted for q in ("output", "dkernel") if f"{config}/{i}/{q}" not in results]
    assert not missing, f"not recorded: {missing}"
    assert compared >= 2 * len(wanted)


@pytest.mark.parametrize("config", ("single", *CONFIGS))
def test_sgd_steps_match_the_oracle(run, config):
    results, _ = run
    if config == "model_parallel_context_dim":
        pytest.skip("the training kernel is (3, 6): its context_dim axis of 3 does not split over 2 devices")
    data = golden.load_npz("training.npz")
    steps = distributed.STEPS
    where = f"training {config}"
    assertions.assert_close(
        results[f"{config}/training/losses"], data["losses"][:steps], data["loss_atol"][:steps], where, what="loss"
    )
    assertions.assert_close(
        results[f"{config}/training/kernels"],
        data["kernels"][1 : steps + 1],
        data["kernel_atol"][:steps],
        where,
        what="hyper_kernel",
    )
    assertions.assert_close(
        results[f"{config}/training/ws"], data["ws"][1 : steps + 1], data["w_atol"][:steps], where, what="Dense kernel"
    )


EXPECTED_LAYOUT = {
    "data_parallel": "P(None, None)",  # replicated on the data-parallel devices
    "model_parallel_input_dim": "P(None, 'model')",
    "model_parallel_context_dim": "P('model', None)",
    "mirrored": "MirroredVariable",
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("where", ("loaded-on-one-device", "loaded-distributed"))
def test_save_and_load_between_distributed_and_one_device(run, config, where):
    results, _ = run
    case = cases.by_id("rank2-float32")
    data = golden.load_case(case)
    np.testing.assert_array_equal(
        results[f"{config}/saved/kernel-{where}"], data["kernel"], err_msg=f"{config} {where}"
    )
    expected, atol = _expected(case, data)["output"]
    assertions.assert_close(results[f"{config}/saved/output-{where}"], expected, atol, f"{case.id} {config} {where}")
    layout = f"{config}/saved/kernel-layout-{where}"
    if where == "loaded-distributed" and config in EXPECTED_LAYOUT:
        assert str(results[layout]) == EXPECTED_LAYOUT[config], f"{config}: loaded as {results[layout]}"


def test_uneven_batch_matches_the_oracle(run):
    """A batch that does not divide over the devices, where the engine allows it (jax: a known gap)."""
    results, gaps = run
    key = {"jax": "data_parallel", "tensorflow": "mirrored", "torch": None}[backend.NAME]
    if key is None:
        pytest.skip("torch: the uneven shards (129 and 127 rows) are the `ddp-uneven` configuration above")
    if f"{key}/uneven-batch" in gaps:
        pytest.xfail(KNOWN_GAPS[f"{key}/uneven-batch"])
    case = cases.by_id("batch-large")
    expected, atol = _expected(case, golden.load_case(case))["output"]
    assertions.assert_close(
        results[f"{key}/uneven-batch/output-predict"], expected, atol, f"{case.id} {key} batches of 255"
    )


def _reference(rest: str):
    """The oracle's value and tolerance for `<case>/<quantity>` or `training/<quantity>`."""
    name, quantity = rest.rsplit("/", 1)
    if name == "training":
        data, steps = golden.load_npz("training.npz"), distributed.STEPS
        return {
            "losses": (data["losses"][:steps], data["loss_atol"][:steps]),
            "kernels": (data["kernels"][1 : steps + 1], data["kernel_atol"][:steps]),
            "ws": (data["ws"][1 : steps + 1], data["w_atol"][:steps]),
        }[quantity]
    case = cases.by_id(name)
    return _expected(case, golden.load_case(case))[quantity]


def test_bitwise_against_one_device(run):
    """Measures, per configuration and quantity, how many results are the one-device result bit for bit,
    and the largest error against the oracle as a fraction of the tolerance; every distributed array must
    have its one-device counterpart. Written to reports/distributed-<backend>.json by the nox session."""
    results, _ = run
    summary: dict[str, dict] = {}
    for key, value in sorted(results.items()):
        config, rest = key.split("/", 1)
        if config in ("single", "keras_model_parallel") or rest.startswith(("saved/", "uneven-batch/")):
            continue
        single = results.get(f"single/{rest}")
        assert single is not None, f"no one-device result for {key}"
        expected, atol = _reference(rest)
        entry = summary.setdefault(config, {}).setdefault(
            rest.rsplit("/", 1)[1], {"bitwise": 0, "differ": 0, "max_error_over_atol": 0.0}
        )
        entry["bitwise" if np.array_equal(value, single, equal_nan=True) else "differ"] += 1
        finite = np.isfinite(expected)
        atol = np.broadcast_to(atol, expected.shape)[finite]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(atol > 0, np.abs(value[finite] - expected[finite]) / atol, 0.0)
        entry["max_error_over_atol"] = max(entry["max_error_over_atol"], float(np.max(ratio, initial=0.0)))
    assert summary
    text = json.dumps(summary, indent=1, sort_keys=True)
    path = os.environ.get("HYPERZZW_DISTRIBUTED_SUMMARY")  # the nox session: reports/distributed-<backend>.json
    if path:
        Path(path).write_text(text + "\n")
    print(text)
