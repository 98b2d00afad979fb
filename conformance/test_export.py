"""`model.export` in every format Keras 3.15 offers from this backend, reloaded in the format's own runtime
(no Keras), gives the oracle's numbers at two batch sizes, as Keras's own `keras/src/export/*_test.py` do.

A functional model holding the layer (batch dimension unknown), for three golden float32 cases: rank 2,
rank 3 with a rank-2 context, rank 3 with a rank-3 context. It is called once, exported with the default
input signature (taken from the model's inputs: `None` batch), reloaded, and run on the case's full batch
and on its first 3 rows. The tolerance is the golden one, `gamma(n + 2) * M`, which holds for any order of
the reduction, so a runtime that reorders or fuses the matmul needs no other bound; OpenVINO is asked for
f32 inference explicitly (its CPU plugin may otherwise pick bf16 on CPUs that have it: a machine-dependent
precision).

Which backend exports which format is Keras's: `keras/src/models/model.py::Model.export` and
`keras/src/export/`. `litert` needs the tensorflow or torch backend, `torch` needs torch; the others are
offered from all three. Run by the `export-<backend>` nox sessions (the `export` extra holds the runtimes);
a plain `pytest conformance/` leaves this module out (conftest.py).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from conformance import assertions, backend, runner
from conformance.subjects.hyperzzw import cases, golden, tolerance

FORMATS = {
    "jax": ("tf_saved_model", "onnx", "openvino"),
    "tensorflow": ("tf_saved_model", "onnx", "openvino", "litert"),
    "torch": ("tf_saved_model", "onnx", "openvino", "litert", "torch"),
}[backend.NAME]


# Format -> (reason, the exception it fails with). Strict xfails: each turns red when it starts working.
def _openvino_conversion_failure() -> type:
    try:
        from openvino._pyopenvino import OpConversionFailure  # not re-exported by the openvino package
    except ImportError:  # pragma: no cover - the export extra is not installed
        return Exception
    return OpConversionFailure


KNOWN_GAPS = {
    "jax": {
        "openvino": (
            "Keras converts a jax model for OpenVINO through jax2tf, whose native serialization leaves the "
            "computation in one XlaCallModule op, and OpenVINO's TensorFlow frontend has no conversion rule "
            "for it (OpConversionFailure: 'No conversion rule found for operations: XlaCallModule')",
            _openvino_conversion_failure() if backend.NAME == "jax" else Exception,
        ),
    },
    "torch": {
        "tf_saved_model": (
            "Keras exports a SavedModel from torch through torch_xla, whose releases pin their own torch "
            "(torch-xla 2.9.0 needs torch 2.9); this project's CPU torch is 2.13.0, so torch_xla is not "
            "installed and Keras raises ImportError",
            ImportError,
        ),
        "litert": (
            "Keras converts torch to LiteRT with litert-torch, whose releases need torch<2.13 (0.9.3) or "
            "newer wheels not on this registry; with torch 2.13.0 it is not installed and Keras raises "
            "ImportError",
            ImportError,
        ),
    },
}.get(backend.NAME, {})

CASE_IDS = ("rank2-float32", "rank3-ctx2-float32", "rank3-ctx3-float32")
EXTENSION = {"tf_saved_model": "", "onnx": ".onnx", "openvino": ".xml", "litert": ".tflite", "torch": ".pt2"}


def _model(case: cases.Case, kernel: np.ndarray) -> keras.Model:
    model, layer = runner.functional_model(case)
    layer.hyper_kernel.assign(kernel.astype(np.float32))
    return model


def _run_tf_saved_model(path, x, context):
    import tensorflow as tf

    reloaded = tf.saved_model.load(path)  # held: the function needs the object's variables alive
    return reloaded.serve([tf.constant(x), tf.constant(context)]).numpy()


def _run_onnx(path, x, context):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {spec.name: value for spec, value in zip(session.get_inputs(), (x, context))}
    return session.run(None, feed)[0]


def _run_openvino(path, x, context):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled([x, context])[compiled.output(0)]


def _run_litert(path, x, context):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    details = interpreter.get_input_details()
    by_role = {("context" if "context" in d["name"] else "x"): d for d in details}
    assert len(by_role) == 2, f"input names: {[d['name'] for d in details]}"
    for role, value in (("x", x), ("context", context)):
        interpreter.resize_tensor_input(by_role[role]["index"], value.shape)
    interpreter.allocate_tensors()
    for role, value in (("x", x), ("context", context)):
        interpreter.set_tensor(by_role[role]["index"], value)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _run_torch(path, x, context):
    import torch

    module = torch.export.load(path).module()
    return module([torch.from_numpy(x), torch.from_numpy(context)]).detach().numpy()


def _export_options(fmt: str) -> dict:
    """Keras exports `torch` with static shapes unless given `dynamic_shapes` (it traces a batch of 1, and
    torch.export specializes sizes of 1): one shared `Dim` for the batch of x and of the context."""
    if fmt != "torch":
        return {}
    import torch

    batch = torch.export.Dim("batch")
    # Keras models take `forward(*args)`: one spec for the args tuple, whose one item is the [x, context] list
    return {"dynamic_shapes": [([{0: batch}, {0: batch}],)]}


RUNTIMES = {
    "tf_saved_model": _run_tf_saved_model,
    "onnx": _run_onnx,
    "openvino": _run_openvino,
    "litert": _run_litert,
    "torch": _run_torch,
}


@pytest.mark.filterwarnings("ignore")  # the converters warn about their own deprecations; not ours to act on
@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_model_matches_the_oracle(fmt, case_id, tmp_path, request):
    if fmt in KNOWN_GAPS:
        reason, error = KNOWN_GAPS[fmt]
        request.applymarker(pytest.mark.xfail(strict=True, raises=error, reason=reason))
    case = cases.by_id(case_id)
    data = golden.load_case(case)
    x, context = data["x"].astype(np.float32), data["context"].astype(np.float32)
    atol = tolerance.forward_atol(data["x"], data["context"], data["kernel"], case.dtype)
    model = _model(case, data["kernel"])
    model([x[:1], context[:1]])  # Keras's exporters want a called model
    path = str(tmp_path / f"{case_id}{EXTENSION[fmt]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(path, format=fmt, verbose=False, **_export_options(fmt))
    # The full batch, then 3 rows: the artifact's batch dimension is dynamic.
    for rows in (case.x_shape[0], 3):
        out = np.asarray(RUNTIMES[fmt](path, x[:rows], context[:rows]))
        assertions.assert_shape(out.shape, data["output"][:rows].shape, f"{case_id} {fmt} batch {rows}")
        assertions.assert_dtype(str(out.dtype), "float32", f"{case_id} {fmt}")
        assertions.assert_close(out, data["output"][:rows], atol[:rows], f"{case_id} {fmt} batch {rows}")


def test_keras_refuses_the_formats_it_does_not_offer_here():
    """The matrix above is Keras's: the formats it leaves out for this backend raise its ValueError."""
    missing = [f for f in ("tf_saved_model", "onnx", "openvino", "litert", "torch") if f not in FORMATS]
    case = cases.by_id("rank2-float32")
    data = golden.load_case(case)
    model = _model(case, data["kernel"])
    model([data["x"][:1].astype(np.float32), data["context"][:1].astype(np.float32)])
    messages = {
        "litert": "LiteRT export requires TensorFlow or PyTorch backend.",
        "torch": "Torch export requires PyTorch backend.",
    }
    for fmt in missing:
        with pytest.raises(ValueError) as info:
            model.export("unused", format=fmt)
        assert str(info.value) == messages[fmt]
