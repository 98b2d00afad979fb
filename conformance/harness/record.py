"""One backend's run of the checks over every subject of a declaration file: what it observed, as a record.

Run in a process of its own with `KERAS_BACKEND` set (`python -m conformance.harness` starts one per backend):

    python -m conformance.harness.record SUBJECTS.py --out DIR --phase record   # every check but loading
    python -m conformance.harness.record SUBJECTS.py --out DIR --phase load     # the .keras files of every backend

Each phase writes `DIR/<phase>-<backend>.json`: the backend, the versions, the declaration file's sha256, a
run id and, per subject and check, what was observed (values, a dtype, a text, or the exception raised),
never a verdict. The file is written once, at the end: a process that dies leaves none, and the report says
so. `conformance.harness.compare` reads the records and judges.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import re
import socket
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from conformance.harness import declaration
from conformance.harness.declaration import POLICIES, Input, Subject

FORMAT = "conformance.harness/1"


def draw(spec: Input, rng: np.random.Generator) -> np.ndarray:
    """The values of one input, from NumPy's PCG64 (the same bytes on every machine and backend)."""
    if callable(spec.values):
        return np.asarray(spec.values(rng, spec.shape))
    if spec.values == "normal":
        values = rng.standard_normal(spec.shape)
    elif spec.values == "uniform":
        values = rng.uniform(spec.low, spec.high, spec.shape)
    elif spec.values == "integers":
        values = rng.integers(int(spec.low), int(spec.high), spec.shape)
    elif spec.values == "bool":
        values = rng.random(spec.shape) < 0.5
    else:
        raise ValueError(
            f"Input values must be normal, uniform, integers, bool or a callable. Received: {spec.values!r}"
        )
    if spec.dtype in ("float16", "bfloat16", "float32"):  # values the dtype holds exactly: float64 runs see the same
        values = values.astype(np.float32 if spec.dtype != "float16" else np.float16).astype(np.float64)
        if spec.dtype == "bfloat16":
            values = (values.view(np.uint64) & ~np.uint64((1 << 45) - 1)).view(np.float64)  # truncate to 8 bits
    return values


def _sizes(spec: Input) -> tuple:
    """An input's axes before its feature axes (`Input.feature_axes`): the sizes of the data."""
    return tuple(spec.shape[: len(spec.shape) - spec.feature_axes])


def _features(spec: Input) -> tuple:
    return tuple(spec.shape[len(spec.shape) - spec.feature_axes :])


def _grown(sizes: tuple) -> tuple:
    """The same pattern of sizes, larger: every size above 1 one larger (equal sizes stay equal)."""
    return tuple(n + 1 if n > 1 else n for n in sizes)


def numeric_entry(array, dtype: str) -> dict:
    """A record's numeric observation: its dtype, shape and values (float64, flattened: JSON holds them exactly)."""
    array = np.asarray(array)
    return {
        "kind": "numeric",
        "dtype": dtype,
        "shape": list(array.shape),
        "values": array.astype(np.float64).ravel().tolist(),
    }


class Run:
    """The checks of one subject on this backend. Every check writes into `self.checks[check_id]`; a check
    that raises is recorded as raised (type, message, where it came from), and the next check runs."""

    def __init__(self, subject: Subject):
        import keras

        from conformance.harness import backends as backend

        # Keras names layers from a per-process counter (`dense_58`): each subject starts from a clear session, so
        # its weights' paths depend on the subject alone, never on what the process ran before
        keras.backend.clear_session()
        self.keras, self.backend, self.subject = keras, backend, subject
        self.checks: dict[str, dict] = {}
        self.sources: dict[str, str] = {}  # the layer's source files (`layer_sources`)
        self.specs = subject.input_list()
        rng = np.random.default_rng([subject.seed, 0])
        self.arrays = [draw(spec, rng) for spec in self.specs]
        self.masks = [None if s.mask is None else rng.random(s.shape[:-1]) < s.mask for s in self.specs]
        self.weight_rng_seed = [subject.seed, 1]

    # --- helpers ---------------------------------------------------------------------------------------------

    def numeric(self, check: str, value) -> None:
        self.checks[check] = numeric_entry(self.backend.to_numpy(value), self.backend.dtype_of(value))

    def text(self, check: str, value: str) -> None:
        self.checks[check] = {"kind": "text", "value": value}

    def raised(self, check: str, exc: BaseException) -> None:
        self.checks[check] = {"kind": "raised", **describe_exception(exc)}

    def attempt(self, check: str, fn) -> object:
        try:
            return fn()
        except Exception as exc:  # a check that cannot run is an observation too
            self.raised(check, exc)
            return None

    def tensors(self, dtype_of_float: str | None = None) -> list:
        out = []
        for spec, array in zip(self.specs, self.arrays):
            dtype = (
                spec.dtype
                if dtype_of_float is None or not spec.dtype.startswith(("float", "bfloat"))
                else dtype_of_float
            )
            out.append(self.backend.tensor(array, dtype))
        return out

    def pack(self, tensors: list, specs: list[Input] | None = None):
        """(args, kwargs) of a call, by the subject's convention (`specs`: the inputs' names, if not the subject's;
        a bad input of several tensors for a one-input layer is passed as a list)."""
        if self.subject.convention == "single" and len(tensors) == 1:
            return (tensors[0],), {}
        if self.subject.convention == "keywords":
            names = [spec.name or f"input{i}" for i, spec in enumerate(specs or self.specs)]
            return (), dict(zip(names, tensors))
        return (list(tensors),), {}

    def mask_argument(self, masks: list):
        """The masks, one per input (None where an input has none), as the layer's `mask` argument takes them."""
        return masks[0] if self.subject.convention == "single" else list(masks)

    def call_kwargs(self, layer, with_masks: bool = True, masks: list | None = None) -> dict:
        """The keyword arguments of a call: the declared ones, `training=False`, and the masks (the subject's, or
        `masks`, NumPy arrays) when the layer's call takes them."""
        masks = self.masks if masks is None else masks
        kwargs = dict(self.subject.call_kwargs)
        parameters = inspect.signature(layer.call).parameters
        if "training" in parameters:
            kwargs.setdefault("training", False)
        if with_masks and "mask" in parameters and any(m is not None for m in masks):
            kwargs["mask"] = self.mask_argument([None if m is None else self.backend.tensor(m, "bool") for m in masks])
        return kwargs

    def call(self, layer, tensors):
        args, kwargs = self.pack(tensors)
        return layer(*args, **kwargs, **self.call_kwargs(layer))

    def built_layer(self, **overrides):
        """A layer of the subject, built by a first call on the inputs, its float weights set from NumPy."""
        layer = self.subject.make_layer(**overrides)
        self.call(layer, self.tensors())
        rng = np.random.default_rng(self.weight_rng_seed)
        for variable in layer.weights:
            dtype = self.backend.dtype_of(variable)
            if not dtype.startswith(("float", "bfloat")):
                continue
            shape = tuple(variable.shape)
            if self.subject.weights is not None:
                values = np.asarray(self.subject.weights(variable.name, shape, rng), np.float64)
            elif variable.trainable:
                values = rng.uniform(-1.0, 1.0, shape)
            else:
                values = rng.uniform(0.5, 1.5, shape)  # variances, scales: positive
            values = values.astype(np.float32).astype(np.float64)  # float32-exact: every policy reads the same
            variable.assign(self.backend.tensor(values, dtype))
        return layer

    def autocast(self, layer, tensors: list) -> list:
        """What `layer(...)` makes of float inputs before its `call` (Keras's autocasting), for the paths that go
        around `__call__` (`stateless_call`)."""
        if not layer.autocast:
            return tensors
        keras = self.keras
        return [
            keras.ops.cast(t, layer.compute_dtype)
            if keras.backend.is_float_dtype(self.backend.dtype_of(t))
            and self.backend.dtype_of(t) != layer.compute_dtype
            else t
            for t in tensors
        ]

    def outputs(self, value) -> list:
        return list(self.keras.tree.flatten(value))

    def record_outputs(self, prefix: str, value) -> None:
        outs = self.outputs(value)
        for i, out in enumerate(outs):
            self.numeric(prefix if len(outs) == 1 else f"{prefix}.{i}", out)

    # --- the checks ------------------------------------------------------------------------------------------

    def run_record_phase(self, out_dir: Path) -> None:
        backend, subject = self.backend, self.subject
        layer = self.attempt("weights", self.built_layer)
        if layer is None:
            return
        self.sources = layer_sources(layer)
        self.text(
            "weights",
            json.dumps(
                [[v.path.split("/", 1)[-1], list(v.shape), backend.dtype_of(v), v.trainable] for v in layer.weights]
            ),
        )
        tensors = self.tensors()
        if subject.oracle is not None:
            self.attempt("oracle", lambda: self.oracle(layer))
        eager = self.attempt("forward", lambda: self.call(layer, tensors))
        if eager is not None:
            self.record_outputs("forward", eager)
        if "compiled" not in subject.skip:
            self.attempt("compiled", lambda: self.record_outputs("compiled", self.compiled(layer, tensors)))
        if "unknown-sizes" not in subject.skip:
            self.attempt("unknown-sizes", lambda: self.unknown_sizes(layer))
        if "symbolic" not in subject.skip:
            self.attempt("symbolic", lambda: self.symbolic(layer))
        if "gradients" not in subject.skip:
            self.attempt("gradients", lambda: self.gradients(layer, "gradients"))
        if "mask" not in subject.skip:
            self.attempt("mask", lambda: self.mask(layer, tensors))
        if "policies" not in subject.skip:
            for policy in POLICIES:
                self.attempt(f"policies/{policy}", lambda policy=policy: self.policy(policy))
        if "config" not in subject.skip:
            self.attempt("config", lambda: self.config(layer, tensors))
        if "saved" not in subject.skip:
            self.attempt("saved", lambda: self.save(layer, out_dir))
        if "training" not in subject.skip:
            for policy in ("float32", "float64"):
                self.attempt(f"training/{policy}", lambda policy=policy: self.training(policy))
        if "errors" not in subject.skip:
            for bad in subject.bad_inputs:
                self.bad_input(bad)

    def call_oracle(self, oracle, layer, *leading, arrays=None, masks=None):
        """`oracle(weights, *leading, *inputs)` (inputs as keywords for a subject that takes keywords; `mask=`
        and `args=` when the oracle takes them), the weights by name as float64 arrays; the subject's inputs
        and masks unless `arrays` and `masks` are given."""
        arrays = self.arrays if arrays is None else arrays
        masks = self.masks if masks is None else masks
        weights = {v.path.split("/", 1)[-1]: self.backend.to_numpy(v.value) for v in layer.weights}
        kwargs = {}
        parameters = inspect.signature(oracle).parameters
        if "mask" in parameters:  # the masks passed with the call
            kwargs["mask"] = self.mask_argument(masks)
        if "args" in parameters:  # the constructor's arguments (drawn ones, say)
            kwargs["args"] = dict(self.subject.args)
        if self.subject.convention == "keywords":
            return oracle(weights, *leading, **{s.name: a for s, a in zip(self.specs, arrays)}, **kwargs)
        return oracle(weights, *leading, *arrays, **kwargs)

    def oracle(self, layer, prefix: str = "oracle", arrays=None, masks=None) -> None:
        """The subject's NumPy oracle on the same inputs and weights (float64), recorded beside the outputs."""
        out = self.call_oracle(self.subject.oracle, layer, arrays=arrays, masks=masks)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        for i, array in enumerate(outs):
            self.checks[prefix if len(outs) == 1 else f"{prefix}.{i}"] = numeric_entry(array, "float64")

    def compiled(self, layer, tensors):
        """The layer's stateless call, compiled as each backend compiles: `jax.jit`, `tf.function(jit_compile=True)`,
        `torch.compile(backend="aot_eager")`."""
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        kwargs = self.call_kwargs(layer)

        def fn(trainable, non_trainable, *xs):
            args, call_kwargs = self.pack(list(xs))
            out, _ = layer.stateless_call(trainable, non_trainable, *args, **call_kwargs, **kwargs)
            return out

        return self.backend.COMPILERS["jit"][1](fn)(trainable, non_trainable, *self.autocast(layer, tensors))

    def unknown_sizes(self, layer) -> None:
        """The layer's stateless call compiled with the sizes of every input's data axes (all but its
        `feature_axes`) unknown until it runs (`jax.export` with symbolic sizes, `tf.function` with `None` in its
        signature, `torch.compile(dynamic=True)`; one unknown per distinct size, so axes of equal size stay
        equal, and 1s that broadcast known except on TensorFlow), traced once, then run at the declared sizes
        and at grown ones (every size above 1 one larger), with new inputs and masks drawn for those. Recorded
        beside the eager call at the grown sizes and the oracle there: a decision the layer takes while tracing
        must hold when it runs."""
        backend = self.backend
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        kwargs = self.call_kwargs(layer, with_masks=False)
        masked = [i for i, m in enumerate(self.masks) if m is not None]
        takes_mask = "mask" in inspect.signature(layer.call).parameters and masked

        def unknown(shape):
            return tuple(f"d{n}" if n > 1 or backend.UNKNOWN_ONES else n for n in shape)

        specs = [(unknown(_sizes(s)) + _features(s), s.dtype) for s in self.specs]
        specs += [(unknown(self.specs[i].shape[:-1]), "bool") for i in masked] if takes_mask else []

        # Which inputs' masks are arguments, worked out before tracing: torch.compile(dynamic=True) makes a
        # captured list of ints symbolic, and `i in masked` is then False while tracing (pytorch/pytorch#153366;
        # docs/findings.md#torch-compile-dynamic-in): the layer was traced without its mask.
        slots = tuple(bool(takes_mask) and i in masked for i in range(len(self.specs)))

        def fn(*xs):
            tensors, given = list(xs[: len(self.specs)]), iter(xs[len(self.specs) :])
            args, call_kwargs = self.pack(tensors)
            extra = {"mask": self.mask_argument([next(given) if has else None for has in slots])} if any(slots) else {}
            out, _ = layer.stateless_call(trainable, non_trainable, *args, **call_kwargs, **kwargs, **extra)
            return out

        program = backend.compile_with_unknown_sizes(fn, specs)
        grown_specs = [dataclasses.replace(s, shape=_grown(_sizes(s)) + _features(s)) for s in self.specs]
        rng = np.random.default_rng([self.subject.seed, 5])
        grown = [draw(s, rng) for s in grown_specs]
        grown_masks = [
            None if m is None else rng.random(s.shape[:-1]) < s.mask for s, m in zip(grown_specs, self.masks)
        ]
        for name, arrays, masks in (("declared", self.arrays, self.masks), ("grown", grown, grown_masks)):
            tensors = [backend.tensor(a, s.dtype) for a, s in zip(arrays, self.specs)]
            mask_tensors = [backend.tensor(masks[i], "bool") for i in masked] if takes_mask else []
            self.record_outputs(f"unknown-sizes/{name}", program(*tensors, *mask_tensors))
        # the references at the grown sizes: the eager call, and the oracle when there is one
        args, call_kwargs = self.pack([backend.tensor(a, s.dtype) for a, s in zip(grown, self.specs)])
        eager = layer(*args, **call_kwargs, **self.call_kwargs(layer, masks=grown_masks))
        self.record_outputs("unknown-sizes/eager-grown", eager)
        if self.subject.oracle is not None:
            self.oracle(layer, "oracle-grown", arrays=grown, masks=grown_masks)

    def symbolic(self, layer) -> None:
        keras = self.keras
        symbolic_inputs = [keras.KerasTensor(spec.shape, dtype=spec.dtype) for spec in self.specs]
        args, kwargs = self.pack(symbolic_inputs)
        kwargs = {**kwargs, **self.call_kwargs(layer, with_masks=False)}
        spec = layer.compute_output_spec(*args, **kwargs)
        outs = keras.tree.flatten(spec)
        self.text(
            "symbolic", json.dumps([[list(o.shape), self.keras.backend.standardize_dtype(o.dtype)] for o in outs])
        )

    def gradients(self, layer, prefix: str) -> None:
        """The gradients of `sum(output * cotangent)` with respect to each float input and each trainable weight,
        by the backend's autodiff through the layer's stateless call."""
        backend = self.backend
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        tensors = self.autocast(layer, self.tensors(dtype_of_float=layer.variable_dtype))
        kwargs = self.call_kwargs(layer)
        float_inputs = [i for i, s in enumerate(self.specs) if s.dtype.startswith(("float", "bfloat"))]
        out = self.outputs(self.call(layer, tensors))
        rng = np.random.default_rng([self.subject.seed, 2])
        # float32-exact: the float32 and float64 runs (and the gradient oracle) take the same cotangents
        arrays = [rng.standard_normal(tuple(o.shape)).astype(np.float32).astype(np.float64) for o in out]
        cotangents = [backend.tensor(a, backend.dtype_of(o)) for a, o in zip(arrays, out)]

        def loss(*diff):
            ws, xs = list(diff[: len(trainable)]), list(tensors)
            for i, x in zip(float_inputs, diff[len(trainable) :]):
                xs[i] = x
            args, call_kwargs = self.pack(xs)
            y, _ = layer.stateless_call(ws, non_trainable, *args, **call_kwargs, **kwargs)
            ops = self.keras.ops
            return sum(
                ops.sum(ops.cast(a, "float32") * ops.cast(c, "float32"))
                for a, c in zip(self.keras.tree.flatten(y), cotangents)
            )

        grads = backend.gradients(loss, trainable + [tensors[i] for i in float_inputs])
        names = [v.path.split("/", 1)[-1] for v in layer.trainable_variables]
        names += [self.specs[i].name or f"input{i}" for i in float_inputs]
        for name, grad in zip(names, grads):
            self.numeric(f"{prefix}/{name}", grad)
        if prefix == "gradients" and self.subject.gradient_oracle is not None:
            self.attempt("oracle-gradients", lambda: self.gradient_oracle(layer, arrays))

    def gradient_oracle(self, layer, cotangents: list) -> None:
        """The subject's gradient oracle on the same weights, inputs and cotangents (float64), by name."""
        cotangent = cotangents[0] if len(cotangents) == 1 else cotangents
        grads = self.call_oracle(self.subject.gradient_oracle, layer, cotangent)
        for name, array in grads.items():
            self.checks[f"oracle-gradients/{name}"] = numeric_entry(array, "float64")

    def mask(self, layer, tensors) -> None:
        if self.subject.convention == "keywords":
            return self.text("mask", "not applicable: the layer takes keyword inputs")
        masks = [None if m is None else self.backend.tensor(m, "bool") for m in self.masks]
        args, _ = self.pack(tensors)
        result = layer.compute_mask(args[0], self.mask_argument(masks) if any(m is not None for m in masks) else None)
        if self.subject.mask_oracle is not None:
            extra = (
                {"args": dict(self.subject.args)}
                if "args" in inspect.signature(self.subject.mask_oracle).parameters
                else {}
            )
            want = self.subject.mask_oracle(list(self.masks), *self.arrays, **extra)
            if want is None:
                self.text("oracle-mask", "none")
            else:
                self.checks["oracle-mask"] = numeric_entry(np.asarray(want, bool), "bool")
        if result is None:
            return self.text("mask", "none")
        for i, m in enumerate(self.keras.tree.flatten(result)):
            self.numeric("mask" if i == 0 and not isinstance(result, (list, tuple)) else f"mask.{i}", m)
        return None

    def policy_tensors(self, policy: str) -> list:
        """The inputs a model under `policy` feeds the layer: floats in the compute dtype (a float64 model's data
        is float64), except under a mixed policy, whose models take float32 and let layers cast."""
        compute, variable = POLICIES[policy]
        return self.tensors(dtype_of_float=variable if policy.startswith("mixed_") else compute)

    def policy(self, policy: str) -> None:
        layer = self.built_layer(dtype=policy)
        self.record_outputs(f"policies/{policy}", self.call(layer, self.policy_tensors(policy)))
        if policy == "float64" and "gradients" not in self.subject.skip:
            self.attempt("gradients-float64", lambda: self.gradients(layer, "gradients-float64"))

    def config(self, layer, tensors) -> None:
        config = layer.get_config()
        text = json.dumps(config, sort_keys=True, default=repr)
        clone = type(layer).from_config(json.loads(json.dumps(config, default=repr)))
        self.call(clone, tensors)
        clone.set_weights(layer.get_weights())
        same_config = json.dumps(clone.get_config(), sort_keys=True, default=repr) == text
        before = [self.backend.to_numpy(o) for o in self.outputs(self.call(layer, tensors))]
        after = [self.backend.to_numpy(o) for o in self.outputs(self.call(clone, tensors))]
        same_outputs = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after))
        problems = [
            p for p, ok in (("its config differs", same_config), ("its outputs differ", same_outputs)) if not ok
        ]
        self.text("config", text)
        self.text("config/round-trip", "ok" if not problems else "the clone from get_config(): " + ", ".join(problems))

    def model(self, layer, dtype: str | None = None):
        """A functional model around the layer (its float inputs of `dtype`, else as declared)."""
        keras = self.keras

        def input_dtype(spec):
            return dtype if dtype and spec.dtype.startswith(("float", "bfloat")) else spec.dtype

        inputs = [
            keras.Input(batch_shape=spec.shape, dtype=input_dtype(spec), name=f"in{i}")
            for i, spec in enumerate(self.specs)
        ]
        args, kwargs = self.pack(inputs)
        return keras.Model(inputs, layer(*args, **kwargs, **self.call_kwargs(layer, with_masks=False)))

    def save(self, layer, out_dir: Path) -> None:
        path = out_dir / self.subject.name / f"saved-{self.backend.NAME}.keras"
        path.parent.mkdir(parents=True, exist_ok=True)
        model = self.model(layer)
        self.record_outputs("saved/reference", model(self.tensors()))  # what its loads are compared with
        model.save(path)

    def load(self, out_dir: Path) -> None:
        # Made once first, so that the module defining the layer (and registering it with Keras) is imported.
        layer = self.attempt("saved/layer", self.subject.make_layer)
        self.sources = layer_sources(layer) if layer is not None else {}
        for saved_by in declaration.BACKENDS:
            path = out_dir / self.subject.name / f"saved-{saved_by}.keras"
            check = f"saved/{saved_by}"
            if not path.is_file():
                self.text(check, f"missing: {saved_by} saved no file")
                continue

            def run(path=path, check=check):
                model = self.keras.saving.load_model(path)
                self.record_outputs(check, model(self.tensors()))

            self.attempt(check, run)

    def training(self, policy: str) -> None:
        """One step of SGD (learning rate 1/8, a power of two: the same in every float dtype; mean squared error to
        a NumPy-drawn target) by `train_on_batch`, as `model.fit` takes it; each trainable weight's update."""
        keras, backend = self.keras, self.backend
        layer = self.built_layer(dtype=policy)
        model = self.model(layer, dtype=POLICIES[policy][1])
        tensors = self.policy_tensors(policy)
        outs = self.outputs(model(tensors))
        if len(outs) != 1 or not backend.dtype_of(outs[0]).startswith(("float", "bfloat")):
            return self.text(f"training/{policy}", "not applicable: the layer has no single float output")
        if not layer.trainable_variables:
            return self.text(f"training/{policy}", "not applicable: the layer has no trainable weights")
        rng = np.random.default_rng([self.subject.seed, 3])
        target = rng.standard_normal(tuple(outs[0].shape))
        # the loss in the layer's compute dtype (a Keras loss computes in float32 unless told otherwise)
        loss = keras.losses.MeanSquaredError(dtype=layer.compute_dtype if policy == "float64" else None)
        model.compile(optimizer=keras.optimizers.SGD(0.125), loss=loss)
        before = [backend.to_numpy(v.value) for v in layer.trainable_variables]
        model.train_on_batch(tensors, backend.tensor(target, backend.dtype_of(outs[0])))
        for variable, old in zip(layer.trainable_variables, before):  # the update, exact in float64
            update = backend.to_numpy(variable.value) - old
            self.checks[f"training/{policy}/{variable.path.split('/', 1)[-1]}"] = numeric_entry(
                update, backend.dtype_of(variable)
            )
        return None

    def bad_input(self, bad) -> None:
        check = f"errors/{bad.id}"
        try:
            layer = self.subject.make_layer(**bad.args)
            if bad.inputs is None:
                tensors = self.tensors()
                self.call(layer, tensors)
            else:
                specs = declaration.input_list(bad.inputs)
                rng = np.random.default_rng([self.subject.seed, 4])
                args, kwargs = self.pack([self.backend.tensor(draw(s, rng), s.dtype) for s in specs], specs)
                layer(*args, **kwargs, **self.call_kwargs(layer, with_masks=False))
        except Exception as exc:
            self.raised(check, exc)
            return
        self.text(check, "accepted: nothing raised")


_KERAS_CALL = re.compile(
    r"\AException encountered when calling (?P<name>[^\n]*)\.\n\n\x1b\[1m(?P<own>.*)\x1b\[0m\n\n"
    r"(?P<arguments>Arguments received by .*)\Z",
    re.DOTALL,
)


def keras_call_error(exc: BaseException) -> tuple[BaseException, str, str]:
    """The exception the layer raised and the part Keras added, for an error raised inside a layer's `call()`:
    Keras re-raises it with "Exception encountered when calling X.call()", the message in bold (ANSI codes),
    and the call's arguments, printed as each backend prints tensors. Those are Keras's words, not the layer's:
    the layer's own exception is the one Keras re-raised (`__context__`), else the bold part of the text.
    Returns that exception, its own text and Keras's part; for any other exception, itself, its text and ""."""
    match = _KERAS_CALL.match(str(exc))
    if match is None:
        return exc, _text(exc), ""
    keras_part = f"Exception encountered when calling {match['name']}; {match['arguments']}"
    inner = exc.__context__
    if getattr(exc, "_keras_call_info_injected", False) and inner is not None and _text(inner) == match["own"]:
        return inner, match["own"], keras_part
    return exc, match["own"], keras_part  # the same type, Keras's text around it


def _text(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # TensorFlow's OpError keeps its text there
    return message if isinstance(message, str) and message and not str(exc).strip() else str(exc)


def describe_exception(exc: BaseException) -> dict:
    """The exception's type and text as the layer raised them, and what else a reader needs:

    - `own`: the layer's own message, whole (Keras's wrapper around an error raised in `call()` removed);
    - `wrapper`: what Keras added around it (the layer's name, the call's arguments), shown, never judged;
    - `origin`: whether the type is a backend library's, Keras's or the layer's (anything else);
    - `causes`: the exceptions it was raised from (`raise ... from`), innermost last, each "Type: text";
    - `where`: the file and line it was raised at (the innermost frame)."""
    layer_exc, own, wrapper = keras_call_error(exc)
    module = type(layer_exc).__module__.split(".")[0]
    origin = (
        "backend" if module in ("jax", "jaxlib", "torch", "tensorflow") else "keras" if module == "keras" else "layer"
    )
    causes, seen, cause = [], {id(layer_exc)}, layer_exc.__cause__
    while cause is not None and id(cause) not in seen and len(causes) < 5:
        seen.add(id(cause))
        causes.append(f"{type(cause).__name__}: {_text(cause)}")
        cause = cause.__cause__
    frames = traceback.extract_tb(layer_exc.__traceback__ or exc.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)), "")
    return {
        "type": _type_name(layer_exc, origin),
        "message": str(exc),
        "own": own,
        "wrapper": wrapper,
        "origin": origin,
        "causes": causes,
        "where": where,
    }


def _type_name(exc: BaseException, origin: str) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}" if origin == "backend" else type(exc).__name__


def versions() -> dict:
    import importlib.metadata

    import keras

    out = {"keras": keras.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    for name in ("jax", "torch", "tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("subjects", help="the declaration file")
    parser.add_argument("--out", required=True, help="the folder for records and saved files")
    parser.add_argument("--phase", choices=["record", "load", "check"], default="record")
    parser.add_argument("--only", action="append", help="only this subject (repeatable)")
    parser.add_argument(
        "--run",
        help="the run's id, the same for every backend and phase of one run (the report fails on records of "
        "several runs); default: a new one (a record alone)",
    )
    parser.add_argument("--plant", action="store_true", help="the self-test's planted subjects instead")
    args = parser.parse_args(argv)
    import keras

    backend_name = keras.backend.backend()
    if backend_name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 is float64: jax computes it in float32 otherwise
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT,
        "backend": backend_name,
        "phase": args.phase,
        "run": args.run or f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}",
        "declaration": {"path": str(Path(args.subjects).resolve()), "sha256": _sha256(args.subjects)},
        "versions": versions(),
        "subjects": {},
    }
    target = out_dir / f"{args.phase}-{backend_name}.json"
    target.unlink(missing_ok=True)
    try:
        subjects = load_subjects(args.subjects, args.only, args.plant)
        if args.phase == "check":
            for subject in subjects:
                declaration.check_constructible(subject)
    except Exception as exc:  # the declaration cannot be run here: say so, in the record too
        text = str(exc) if isinstance(exc, ValueError) else "".join(traceback.format_exception(exc)).rstrip()
        print(f"harness: the declaration {args.subjects}: {text}", file=sys.stderr, flush=True)
        if args.phase != "check":
            record["error"] = f"the declaration could not be loaded: {text}"
            _write(target, record)
        return 2
    if args.phase == "check":
        print(f"harness: {args.subjects}: {len(subjects)} subjects, each constructible", flush=True)
        return 0
    for subject in subjects:
        keras.utils.set_random_seed(subject.seed)
        if backend_name == "torch":
            # torch.compile keeps at most 8 compilations per code object (the checks' functions, Keras's own), then
            # runs the frame eagerly without a word: past the 8th subject, `compiled` would not be compiled
            import torch

            torch._dynamo.reset()
        if args.plant:
            from conformance.harness import selftest

            selftest.FIRED.clear()
        run = Run(subject)
        started = time.perf_counter()
        if args.phase == "record":
            run.run_record_phase(out_dir)
        elif "saved" not in subject.skip:
            run.load(out_dir)
        record["subjects"][subject.name] = {
            "checks": run.checks,
            "meta": meta(subject),
            "sources": run.sources,
            "seconds": time.perf_counter() - started,
        }
        if args.plant:  # which planted defects took effect in this process
            record["subjects"][subject.name]["planted_fired"] = sorted(selftest.FIRED)
        print(f"{backend_name} {args.phase}: {subject.name}: {len(run.checks)} observations", flush=True)
    record["complete"] = True
    _write(target, record)
    return 0


def load_subjects(path: str, only: list[str] | None = None, plant: bool = False) -> list[Subject]:
    """The declaration's subjects (`only` these names; a drawn subject's name selects all its draws), or, with
    `plant`, the self-test's subjects made from them (`conformance.harness.selftest`)."""
    subjects = declaration.load(path)
    if only:
        subjects = [s for s in subjects if any(re.fullmatch(rf"{re.escape(o)}(\.\d+)?", s.name) for o in only)]
    if plant:
        from conformance.harness import selftest

        subjects = selftest.planted(subjects)
    return subjects


def _write(target: Path, record: dict) -> None:
    """The record, whole or not at all (a process that dies leaves none)."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(target)


def layer_sources(layer) -> dict:
    """sha256 of the source file of every class the layer is made of (itself and its sublayers), Keras's own
    excepted (its version is recorded): a layer edited between two backends' runs fails the report."""
    out = {}
    for sub in [layer, *getattr(layer, "_flatten_layers", lambda **_: [])(include_self=False)]:
        cls = type(sub)
        if cls.__module__.split(".")[0] == "keras":
            continue
        try:
            path = inspect.getsourcefile(cls)
        except TypeError:
            path = None
        if path and Path(path).is_file():
            out[f"{cls.__module__}.{cls.__qualname__}"] = _sha256(path)
    return out


def meta(subject: Subject) -> dict:
    """What the report needs of the declaration (the report's process imports neither keras nor the file)."""
    tolerance = subject.tolerance
    return {
        "has_oracle": subject.oracle is not None,
        "has_mask_oracle": subject.mask_oracle is not None,
        "has_gradient_oracle": subject.gradient_oracle is not None,
        "tolerance": None
        if tolerance is None
        else {"reduction": tolerance.reduction, "ulps": tolerance.ulps, "reason": tolerance.reason},
        "args": {k: repr(v) for k, v in sorted(subject.args.items())},
        "inputs": [{"shape": list(s.shape), "dtype": s.dtype} for s in subject.input_list()],
        "bad_inputs": {b.id: {"error": b.error.__name__, "message": b.message} for b in subject.bad_inputs},
        "divergences": [[d.check, d.backend, d.reason] for d in subject.divergences],
        "skip": dict(subject.skip),
    }


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
