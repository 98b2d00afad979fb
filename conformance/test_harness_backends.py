"""What the harness records on this backend is what the layer does: an error raised in `call()` as the layer
raised it, and a layer traced with unknown sizes called as it is called eagerly (its mask included). Run in
every tests-<backend> session."""

from __future__ import annotations

import json

import keras
import numpy as np
from keras import ops

from conformance.harness import BadInput, Input, Subject, selftest
from conformance.harness.checks import NAMES, errors, unknown_sizes
from conformance.harness.run import Run
from conformance.test_harness_pytest import run_pytest

MESSAGE = "Expected the last axis to be 5. Received: shape=(3, 4)"


class Checked(keras.layers.Layer):
    """A correct layer that checks its input in `call()`, as layers do."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(5, 2), name="kernel")

    def call(self, x):
        if x.shape[-1] != 5:
            raise ValueError(f"Expected the last axis to be 5. Received: shape={tuple(x.shape)}")
        return ops.einsum("...i,ij->...j", x, self.kernel)


def test_a_planted_layer_takes_arguments_named_as_the_planting_parameters():
    """The self-test's planted factory passes a layer every argument it declares, whatever its name: Rescaling's
    `offset` is not the planted offset (the self-test once failed to make it)."""
    subject = Subject(
        "rescaling", layer="keras.layers:Rescaling", args={"scale": 0.5, "offset": 1.0}, inputs=Input((3, 4))
    )
    planted = next(s for s in selftest.planted([subject]) if "output-off" in s.name)
    layer = planted.make_layer(dtype="float32")
    assert (layer.scale, layer.offset) == (0.5, 1.0) and type(layer).__name__ == "Rescaling"


def test_an_error_raised_in_call_is_recorded_as_the_layer_raised_it():
    bad = BadInput("narrow", inputs=Input((3, 4)), message=MESSAGE)
    run = Run(Subject("checked", layer=Checked, inputs=Input((3, 5)), bad_inputs=[bad]))
    errors.observe_one(run, bad)
    entry = run.checks["errors/narrow"]
    assert (entry["type"], entry["own"], entry["origin"]) == ("ValueError", MESSAGE, "layer"), entry
    assert entry["wrapper"].startswith("Exception encountered when calling Checked.call();"), entry["wrapper"]


class Masked(keras.layers.Layer):
    """Zeroes the masked steps; its call leaves torch.compile's graph for a moment, as Keras's RNN loops do."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        if keras.backend.backend() == "torch":
            import torch

            torch._dynamo.graph_break()
        return x if mask is None else x * ops.expand_dims(ops.cast(mask, x.dtype), -1)


def test_a_masked_layer_traced_with_unknown_sizes_gets_its_mask():
    """The trace with unknown sizes computes what the eager call does, the mask included: on torch the harness
    once traced layers whose call breaks the graph without their mask (`i in masked`, a captured list of ints,
    is False under torch.compile(dynamic=True): pytorch/pytorch#153366; Bidirectional(GRU) was 0.47 off)."""
    keras.utils.set_random_seed(0)
    run = Run(Subject("masked", layer=Masked, inputs=Input((2, 6, 4), mask=0.5)))
    layer = run.built_layer()
    unknown_sizes.observe(run, layer, run.tensors())
    assert unknown_sizes.NAME not in run.checks, run.checks[unknown_sizes.NAME]  # the step did not raise
    for sizes, eager in (("declared", run.call(layer, run.tensors())), ("grown", None)):
        entry = run.checks[f"unknown-sizes/{sizes}"]
        want = (
            run.checks["unknown-sizes/eager-grown"]
            if eager is None
            else {"values": run.backend.to_numpy(eager).ravel()}
        )
        # one product per element, the same kernel eagerly and traced: equal
        np.testing.assert_array_equal(entry["values"], want["values"], err_msg=f"unknown-sizes/{sizes}")
    assert 0.0 in run.checks["unknown-sizes/declared"]["values"]  # the mask was applied


def test_weight_paths_do_not_depend_on_what_the_process_made_before():
    """Keras names sublayers from a per-process counter: a subject's weights read the same whatever ran before."""
    subject = Subject(
        "pair", layer=lambda **kwargs: keras.Sequential([keras.layers.Dense(2)], **kwargs), inputs=Input((3, 4))
    )
    first = Run(subject)
    paths = [v.path for v in first.built_layer().weights]
    keras.layers.Dense(3)  # another layer made in between, as another subject's checks would
    assert [v.path for v in Run(subject).built_layer().weights] == paths


def test_a_fixture_written_here_is_read_back_here_and_a_changed_declaration_is_stale(tmp_path):
    """`python -m conformance.harness fixtures` then a run, on this backend alone: the stored outputs (the
    oracle's, rounded to float32) within float32 tolerance of the layer's, the layer's own weights put back after;
    other arguments than the fixture's: stale, saying which."""
    import dataclasses

    from conformance.harness import record
    from conformance.harness.checks import fixtures
    from conformance.harness.declaration import BACKENDS

    subject = Subject(
        "dense",
        layer=keras.layers.Dense,
        args={"units": 2},
        inputs=Input((3, 4)),
        oracle=lambda w, x: x @ w["kernel"] + w["bias"],
    )
    writer = Run(subject, fixtures=tmp_path)
    fixtures.record_candidate(writer)
    made = {"subjects": {"dense": {"checks": writer.checks, "meta": record.meta(subject)}}}
    lines, ok = fixtures.write(dict.fromkeys(BACKENDS, made), tmp_path)
    assert ok, lines
    run = Run(subject, fixtures=tmp_path)
    layer = run.built_layer()
    own = [run.backend.to_numpy(v.value) for v in layer.weights]
    fixtures.observe(run, layer, run.tensors())
    got, stored = run.checks["fixtures"], run.checks["fixtures-stored"]
    # Dense over 4 features plus the bias, in float32, and the stored rounding: gamma(6) * max|y| at most
    scale = float(np.max(np.abs(stored["values"])))
    assert np.max(np.abs(np.subtract(got["values"], stored["values"]))) <= 6 * 2.0**-24 * scale / (1 - 6 * 2.0**-24)
    for variable, value in zip(layer.weights, own):
        np.testing.assert_array_equal(run.backend.to_numpy(variable.value), value)
    other = Run(dataclasses.replace(subject, args={"units": 3}), fixtures=tmp_path)
    fixtures.observe(other, other.built_layer(), other.tensors())
    assert other.checks["fixtures"]["value"].startswith("stale:"), other.checks["fixtures"]
    assert "the arguments are {'units': '3'}" in other.checks["fixtures"]["value"]


PYTEST_SUBJECTS = """
import keras
from keras import ops

from conformance.harness import Input, Subject


class Scaled(keras.layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")

    def call(self, x):
        return ops.matmul(x, self.kernel) * self.factor


def oracle(weights, x):
    return x @ weights["kernel"]


SKIP = dict.fromkeys(
    ("compiled", "unknown-sizes", "symbolic", "gradients", "mask", "policies", "config", "saved", "training"),
    "not what this test is about",
)
SUBJECTS = [
    Subject("right", layer=Scaled, inputs=Input((3, 5)), oracle=oracle, skip=SKIP),
    Subject("wrong", layer=Scaled, args={"factor": 1.001}, inputs=Input((3, 5)), oracle=oracle, skip=SKIP),
    Subject("deselected", layer=Scaled, inputs=Input((3, 5)), oracle=oracle, skip=SKIP),
]
"""


def test_the_harness_as_pytest_items_on_this_backend_alone(tmp_path):
    """`pytest --harness FILE --harness-backend <this one>`: an item per subject, check and backend, its verdict
    the report's cell (the layer off its oracle fails `forward`, a skipped check is SKIP with its reason), the
    `report` item SKIP (one backend is not a cross-backend verdict), and only the subjects `-k` selects run."""
    backend = keras.backend.backend()
    (tmp_path / "my_subjects.py").write_text(PYTEST_SUBJECTS)
    done, items = run_pytest(
        tmp_path, "--harness", "my_subjects.py", f"--harness-backend={backend}", "-k", "right or wrong or report"
    )
    assert done.returncode == 1, done.stdout + done.stderr  # `wrong` fails
    assert set(items) == {
        "my_subjects::report",
        *(f"my_subjects.{s}::{c}[{backend}]" for s in ("right", "wrong") for c in NAMES),
    }, sorted(items)
    assert items[f"my_subjects.right::forward[{backend}]"] == ("passed", "")
    status, text = items[f"my_subjects.wrong::forward[{backend}]"]
    assert status == "failure" and f"max |{backend} - the oracle|" in text, (status, text)
    assert items[f"my_subjects.right::policies[{backend}]"] == ("skipped", "SKIP policies: not what this test is about")
    status, text = items["my_subjects::report"]
    # one backend, two of the three subjects: not a PASS, on either count
    assert status == "skipped" and f"not a PASS: {backend} only; 2 of the declaration's 3 subjects" in text, text
    record = json.loads((tmp_path / "reports" / "harness" / "my_subjects" / f"record-{backend}.json").read_text())
    assert sorted(record["subjects"]) == ["right", "wrong"]  # `deselected` did not run
