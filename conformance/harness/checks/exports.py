"""exports: the layer in a functional model (the declared shapes, batch included) exported with `model.export` in
each format Keras offers (`tf_saved_model`, `onnx`, `openvino`, `litert`, `torch`), and the artifact run in that
format's own runtime (TensorFlow, ONNX Runtime, OpenVINO asked for f32, the LiteRT interpreter, `torch.export`)
on the subject's inputs, against what the model computed in Keras before export (`exports/reference`, recorded
only as that reference), within the subject's tolerance (which holds for any order of the reduction, so a
runtime that reorders or fuses needs no other bound), and against the other backends' artifacts.

`exports/<format>/any-batch`: the same with the batch size unknown, as `model.export` makes it by default (every
input's batch `None`; for `torch`, one `torch.export.Dim` shared by the inputs), the artifact run on the inputs
stacked twice (the second copy in reverse order: twice the batch, each row away from its place), against the model
on those. A subject whose inputs' batch sizes differ (one broadcast against another) has one SKIP instead
(`exports/any-batch`): one unknown size cannot stand for both.

A format is not applicable (SKIP, with the reason) where its runtime is not installed, or where Keras cannot export
even a one-`Dense` model to it from this backend here (say `litert` from jax, or a converter missing): that is
the environment's or Keras's, not the layer's, and is found out once per process by exporting that model
(`_format_here`). Where no export runtime at all is installed (onnxruntime, openvino, ai-edge-litert) the whole
check is one SKIP. A layer that Keras exports from one backend and not from another, the one-`Dense` model
exporting there, fails on the backend where it raised.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

NAME = "exports"
ROWS = (NAME,)
ANY_BATCH = "any-batch"
UNJUDGED = ("exports/reference", f"exports/reference/{ANY_BATCH}")
FAMILY_DEPTH = 2
# Each format Keras's `Model.export` offers: the module its runtime is, and the artifact's file extension.
FORMATS = {
    "tf_saved_model": ("tensorflow", ""),
    "onnx": ("onnxruntime", ".onnx"),
    "openvino": ("openvino", ".xml"),
    "litert": ("ai_edge_litert", ".tflite"),
    "torch": ("torch", ".pt2"),
}
RUNTIMES = ("onnxruntime", "openvino", "ai_edge_litert")  # none of them installed: the check is not applicable


def observe(run, layer, tensors) -> None:
    if all(importlib.util.find_spec(m) is None for m in RUNTIMES):
        run.text(NAME, f"not applicable: no export runtime is installed here ({', '.join(RUNTIMES)})")
        return
    if any(spec.dtype == "bfloat16" for spec in run.specs):
        run.text(NAME, "not applicable: a bfloat16 input, which NumPy (what the runtimes are fed) has no dtype for")
        return
    model = run.attempt(NAME, lambda: run.model(layer))
    reference = None if model is None else run.attempt(NAME, lambda: model(run.tensors()))
    if reference is None:  # the model around the layer cannot be made or run in Keras: nothing to export
        return
    arrays = [np.asarray(a).astype(spec.dtype) for spec, a in zip(run.specs, run.arrays)]
    _formats(run, model, reference, arrays, "")
    batches = sorted({spec.shape[0] for spec in run.specs if len(spec.shape) > 0})
    if len(batches) != 1:
        run.text(
            f"{NAME}/{ANY_BATCH}",
            f"not applicable: the inputs' batch sizes differ ({', '.join(map(str, batches))}): one unknown batch "
            "size cannot stand for them",
        )
        return
    stacked = [np.concatenate([a, a[::-1]]) for a in arrays]  # twice the batch, each row away from its place
    model = run.attempt(f"{NAME}/{ANY_BATCH}", lambda: run.model(layer, any_batch=True))
    tensors = [run.backend.tensor(a, spec.dtype) for spec, a in zip(run.specs, stacked)]
    reference = None if model is None else run.attempt(f"{NAME}/{ANY_BATCH}", lambda: model(tensors))
    if reference is not None:
        _formats(run, model, reference, stacked, f"/{ANY_BATCH}")


def _formats(run, model, reference, arrays: list, variant: str) -> None:
    """`model` exported in every format and run on `arrays`: `exports/<format><variant>` (the declared shapes for
    variant "", the batch size unknown for "/any-batch"), beside `exports/reference<variant>`, what it computed in
    Keras."""
    run.record_outputs(f"{NAME}/reference{variant}", reference)
    count = len(run.outputs(reference))
    folder = run.out_dir / run.subject.name
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        row = f"{NAME}/{fmt}{variant}"
        unavailable = _format_here(fmt, bool(variant))
        if unavailable:
            run.text(row, f"not applicable: {unavailable}")
            continue
        path = folder / f"export-{run.backend.NAME}{variant.replace('/', '-')}{FORMATS[fmt][1]}"

        def export(fmt=fmt, path=path, row=row):
            outs = _export_and_run(model, fmt, path, arrays, any_batch=bool(variant))
            if len(outs) != count:  # an artifact with an output the model has not (a mask, say), or one fewer
                raise ValueError(f"the {fmt} artifact has {len(outs)} outputs, the model {count}")
            run.record_outputs(row, outs if count > 1 else outs[0])

        run.attempt(row, export)


def _export_and_run(model, fmt: str, path: Path, arrays: list, any_batch: bool = False) -> list:
    """`model` exported to `fmt` at `arrays`' shapes (with `any_batch`, as Keras does by default: the batch size
    unknown), then run in the format's runtime on `arrays`."""
    if not any_batch:
        options = {"input_signature": _signature(arrays)}
    elif fmt == "torch":  # Keras traces torch at a batch of 1, which torch.export fixes, unless told the size varies
        import torch

        batch = torch.export.Dim("batch")
        # Keras models take `forward(*args)`: one spec for the args tuple, whose one item is the list of inputs
        options = {"dynamic_shapes": [([{0: batch} for _ in arrays],)]}
    else:
        options = {}
    with warnings.catch_warnings():  # the converters warn about their own deprecations
        warnings.simplefilter("ignore")
        model.export(str(path), format=fmt, verbose=False, **options)
        return [np.asarray(out) for out in _RUN[fmt](str(path), arrays)]


def _signature(arrays: list) -> list:
    """The declared shapes, batch included (Keras's default signature makes every input's batch `None`: inputs
    of different batch sizes that broadcast, `(2, ...)` against `(1, ...)`, then trace as equal unknowns), for
    the model's one argument, the list of its inputs (`Run.model`)."""
    import keras

    return [[keras.InputSpec(shape=a.shape, dtype=str(a.dtype), name=f"in{i}") for i, a in enumerate(arrays)]]


@functools.cache
def _format_here(fmt: str, any_batch: bool = False) -> str | None:
    """Why `fmt` cannot be checked in this process (its runtime missing, or Keras unable to export and run a
    one-`Dense` model to it from this backend; with `any_batch`, exported with the batch size unknown and run at
    another), or None."""
    import keras

    module = FORMATS[fmt][0]
    if importlib.util.find_spec(module) is None:
        return f"{fmt}'s runtime ({module}) is not installed here"
    x = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)
    inputs = keras.Input(batch_shape=(None if any_batch else 4, 3), name="in0")
    # every name given: Keras's counters of automatic names (which later layers' names come from) stay as they were
    model = keras.Model([inputs], keras.layers.Dense(2, name="dense")(inputs), name="exports_control")
    try:
        want = np.asarray(keras.ops.convert_to_numpy(model([x])))
        with tempfile.TemporaryDirectory() as folder:
            got = _export_and_run(model, fmt, Path(folder) / f"control{FORMATS[fmt][1]}", [x], any_batch)[0]
    except Exception as exc:  # noqa: BLE001 - any failure here is the environment's: say which
        text = " ".join(str(exc).split())
        how = " with an unknown batch size" if any_batch else ""
        return (
            f"Keras does not export a one-Dense model to {fmt}{how} from {keras.backend.backend()} here "
            f"({type(exc).__name__}: {text[:300]})"
        )
    # far above float32's roundoff in 3 products and a bias (gamma(4) ~ 5e-7 relative): this says whether the
    # format works at all, and judges no layer
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
        return f"a one-Dense model exported to {fmt} from {keras.backend.backend()} here computes other numbers"
    return None


def judge(judge, row: str) -> None:
    """An artifact's outputs against the model it was exported from (in Keras, on the same backend), and between
    backends; a format not applicable on a backend is SKIP there with the reason, and judged on the others."""
    base = row.split(".")[0]
    variant = f"/{ANY_BATCH}" if base.endswith(f"/{ANY_BATCH}") else ""
    fmt_row = base[: len(base) - len(variant)]  # exports/<format>
    skipped = {}
    for backend in judge.backends:
        for name in (NAME, fmt_row, base):  # the whole check, this format, or this export of it not applicable there
            entry = judge.obs[backend].get(name)
            if entry is not None and entry["kind"] == "text" and entry["value"].startswith("not applicable"):
                skipped.setdefault(backend, (name, entry["value"]))
    for backend, (name, text) in skipped.items():
        if not (variant and name != base):  # an any-batch row skipped with its format: the format's SKIP says why
            judge.set(row, backend, judge.SKIP, text)
    for backend in judge.backends:  # the model with an unknown batch size raised there: that row fails, not this
        entry = judge.obs[backend].get(f"{NAME}/{ANY_BATCH}")
        if variant and entry is not None and entry["kind"] == "raised":
            skipped.setdefault(backend, (f"{NAME}/{ANY_BATCH}", ""))
    if base in (NAME, f"{NAME}/{ANY_BATCH}"):  # the model around the layer could not be made or run in Keras
        for backend in judge.backends:
            entry = judge.obs[backend].get(row)
            if entry is not None and entry["kind"] == "raised":
                judge.set(row, backend, judge.FAIL, judge.summary(entry))
        return
    if len(skipped) < len(judge.backends):
        with judge.among([b for b in judge.backends if b not in skipped]):
            reference = judge.own(f"{NAME}/reference{variant}{judge.suffix(row)}", "model before export")
            judge.numeric(row, reference, judge.tolerance, trusted=True)


# --- each format's runtime: the artifact run on NumPy arrays (the model's inputs in order: `Run.model` takes a
# list, the control too), its outputs in order ---


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _flat(value) -> list:
    if isinstance(value, dict):
        return [v for _, v in sorted(value.items(), key=lambda item: _natural(str(item[0])))]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [value]


def _run_tf_saved_model(path: str, arrays: list) -> list:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # held: the function needs the object's variables alive
    return [t.numpy() for t in _flat(loaded.serve([tf.constant(a) for a in arrays]))]


def _by_model_input(names: list[str], arrays: list) -> dict:
    """The arrays by a runtime's input names: the model's inputs are `in0`, `in1`, ... (`Run.model`); a runtime
    that renamed them gets them in order."""
    index = {}
    for name in names:
        match = re.search(r"in(\d+)", name)
        if match is not None:
            index[name] = int(match.group(1))
    if sorted(index.values()) != list(range(len(arrays))):
        index = {name: i for i, name in enumerate(names)}
    return {name: arrays[i] for name, i in index.items()}


def _run_onnx(path: str, arrays: list) -> list:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, _by_model_input([i.name for i in session.get_inputs()], arrays))


def _run_openvino(path: str, arrays: list) -> list:
    import openvino as ov

    core = ov.Core()
    # f32 asked for: the CPU plugin may otherwise pick bf16 on CPUs that have it (a machine-dependent precision)
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(arrays)
    return [result[output] for output in compiled.outputs]


def _run_litert(path: str, arrays: list) -> list:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    names = list(runner.get_input_details())
    return _flat(runner(**_by_model_input(names, arrays)))


def _run_torch(path: str, arrays: list) -> list:
    import torch

    module = torch.export.load(path).module()
    out = module([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
    return [t.detach().numpy() for t in _flat(out)]


_RUN = {
    "tf_saved_model": _run_tf_saved_model,
    "onnx": _run_onnx,
    "openvino": _run_openvino,
    "litert": _run_litert,
    "torch": _run_torch,
}
