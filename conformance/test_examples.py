"""The seed examples: every code example of KerasFactory's HyperZZWOperator page, and this project's
hypernetwork example, run on the current backend with only the import line changed.

Each file in `seed_examples/` (see its README) is run as a script in a fresh namespace; the test then checks
what it printed and what it left behind. The examples import `from hyperzzw import HyperZZWOperator`; while one
runs, `hyperzzw` resolves to the layer under test (`conformance.subjects.hyperzzw.target`), so a vendored copy
is checked too.
"""

from __future__ import annotations

import math
import re
import runpy
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from conformance import assertions, backend
from conformance.subjects.hyperzzw import oracle, target, tolerance

EXAMPLES = Path(__file__).resolve().parent / "seed_examples"


@pytest.fixture
def run_example(monkeypatch, capsys):
    """`run_example(name) -> (namespace, stdout)`: runs `seed_examples/<name>.py` with Keras seeded."""

    def run(name):
        monkeypatch.setitem(sys.modules, "hyperzzw", target.module)
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        capsys.readouterr()
        namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
        used = namespace["HyperZZWOperator"]
        assert used is target.HyperZZWOperator, f"{name} did not use the layer under test"
        return namespace, capsys.readouterr().out

    return run


def _ints(line):
    """The integers in a printed line: '(32, 16)' and 'torch.Size([32, 16])' both give (32, 16)."""
    return tuple(int(v) for v in re.findall(r"\d+", line))


def _printed(out, label):
    """The shape printed after `label` in the example's output."""
    lines = [line for line in out.splitlines() if line.startswith(label)]
    assert len(lines) == 1, f"expected one line starting {label!r} in the example's output, got:\n{out}"
    return _ints(lines[0][len(label) :])


def _zzw_layers(model):
    return [layer for layer in model.layers if isinstance(layer, target.HyperZZWOperator)]


def _kernel_shapes(model):
    return [tuple(layer.hyper_kernel.shape) for layer in _zzw_layers(model)]


def _random_inputs(model, batch, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]


def test_basic_usage(run_example):
    ns, out = run_example("basic_usage")
    assert _printed(out, "Input shape:") == (32, 16)
    assert _printed(out, "Context shape:") == (32, 8)
    assert _printed(out, "Output shape:") == (32, 16)
    # The printed output is the layer's formula applied to the example's own tensors.
    x, context = backend.to_numpy(ns["inputs"]), backend.to_numpy(ns["context"])
    kernel = backend.to_numpy(ns["zzw_op"].hyper_kernel)
    assert kernel.shape == (8, 16)
    assertions.assert_close(
        backend.to_numpy(ns["output"]),
        oracle.forward(x, context, kernel),
        tolerance.forward_atol(x, context, kernel, "float32"),
        case="seed basic_usage",
    )


def test_sequential_model(run_example):
    # The page's "In a Sequential Model" snippet is two imports and a comment pointing to the functional API.
    ns, out = run_example("sequential_model")
    assert out == ""
    assert {name for name in ns if not name.startswith("__")} == {"keras", "HyperZZWOperator"}


def test_functional_model(run_example):
    ns, _ = run_example("functional_model")
    model = ns["model"]
    assert [tuple(t.shape) for t in model.inputs] == [(None, 20), (None, 10)]
    assert tuple(model.outputs[0].shape) == (None, 1)
    assert _kernel_shapes(model) == [(10, 20)]
    predictions = backend.to_numpy(model(_random_inputs(model, 4)))
    assert predictions.shape == (4, 1)
    assert np.all((predictions > 0) & (predictions < 1))


def test_advanced_configuration(run_example):
    ns, _ = run_example("advanced_configuration")
    model = ns["model"]
    assert model.output_names == ["classification", "regression"]
    assert [tuple(t.shape) for t in model.outputs] == [(None, 3), (None, 1)]
    assert _kernel_shapes(model) == [(12, 25), (12, 64), (12, 32)]

    # The page compiles the model; fitting it (one epoch, one batch of generated data) is this test's.
    batch = 64
    rng = np.random.default_rng(1)
    x = _random_inputs(model, batch)
    y = {
        "classification": np.eye(3, dtype="float32")[rng.integers(0, 3, batch)],
        "regression": rng.normal(size=(batch, 1)).astype("float32"),
    }
    history = model.fit(x, y, epochs=1, batch_size=batch, verbose=0).history
    assert set(history) == {"loss", "classification_loss", "regression_loss"}
    assert all(len(values) == 1 and math.isfinite(values[0]) for values in history.values())
    # The compiled loss weights are in force: loss = 1.0 * classification + 0.5 * regression.
    expected = history["classification_loss"][0] + 0.5 * history["regression_loss"][0]
    assert history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_example_1_context_aware(run_example):
    ns, out = run_example("example_1_context_aware")
    assert _printed(out, "Context-aware predictions shape:") == (100, 1)
    model = ns["model"]
    assert _kernel_shapes(model) == [(8, 20), (8, 32)]
    assert model.loss == "binary_crossentropy"
    predictions = backend.to_numpy(ns["predictions"])
    assert predictions.shape == (100, 1)
    assert np.all((predictions > 0) & (predictions < 1))


def test_example_2_specialized_transformation(run_example):
    ns, _ = run_example("example_2_specialized_transformation")
    model = ns["model"]
    assert [tuple(t.shape) for t in model.inputs] == [(None, 15), (None, 6)]
    assert tuple(model.outputs[0].shape) == (None, 1)
    assert _kernel_shapes(model) == [(6, 15), (6, 24)]
    assert model.loss == "binary_crossentropy"
    predictions = backend.to_numpy(model(_random_inputs(model, 4)))
    assert predictions.shape == (4, 1)
    assert np.all((predictions > 0) & (predictions < 1))


def test_example_3_context_analysis(run_example, capsys):
    ns, out = run_example("example_3_context_analysis")
    assert out == ""  # the page leaves the call commented out
    model = ns["analyze_context_behavior"]()
    out = capsys.readouterr().out
    assert isinstance(model, keras.Model)
    assert _kernel_shapes(model) == [(6, 12)]
    lines = out.splitlines()
    assert lines[:2] == ["Context Behavior Analysis:", "=" * 40]
    pattern = r"Context {}: Prediction mean = (\d\.\d{{4}})"
    means = [re.fullmatch(pattern.format(i), line) for i, line in enumerate(lines[2:], 1)]
    assert len(means) == 3 and all(means), f"expected three 'Context i: Prediction mean = x' lines, got:\n{out}"
    assert all(0 < float(m.group(1)) < 1 for m in means)


def test_hypernetwork(run_example):
    ns, out = run_example("hypernetwork")
    model, loss = ns["model"], ns["history"].history["loss"]
    assert _kernel_shapes(model) == [(8, 32)]  # context_dim inferred from the embedding
    assert "target variance:" in out and "MSE: epoch 1" in out
    # It learns the task-dependent rule: the MSE falls far below both its start and the target's variance.
    assert loss[-1] < 0.01 * loss[0]
    assert loss[-1] < 0.01 * float(np.var(ns["y"]))
    # And the context matters: the same features with another task id give other predictions.
    x = ns["x"][:32]
    task_0 = np.eye(3, dtype="float32")[np.zeros(32, dtype=int)]
    task_1 = np.eye(3, dtype="float32")[np.ones(32, dtype=int)]
    p0 = backend.to_numpy(model([x, task_0]))
    p1 = backend.to_numpy(model([x, task_1]))
    assert np.mean(np.abs(p0 - p1)) > 0.1
