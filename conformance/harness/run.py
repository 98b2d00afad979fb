"""One subject on one backend: its inputs drawn, its layer built and called, and what a check records with.

A `Run` is what every check's `observe` gets (`conformance.harness.checks`): the subject's inputs (drawn from
NumPy, the same bytes on every backend), its layer built with NumPy-drawn weights, a call packed by the
subject's convention, its oracle called on the same values, and the record being written (`run.checks`: per
row, the values, a text, or the exception raised, never a verdict). Nothing here knows a check.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import traceback
from pathlib import Path

import numpy as np

from conformance.harness.terms import BACKENDS, POLICIES


def draw(spec, rng: np.random.Generator) -> np.ndarray:
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


def data_sizes(spec) -> tuple:
    """An input's axes before its feature axes (`Input.feature_axes`): the sizes of the data."""
    return tuple(spec.shape[: len(spec.shape) - spec.feature_axes])


def feature_sizes(spec) -> tuple:
    return tuple(spec.shape[len(spec.shape) - spec.feature_axes :])


def grown(sizes: tuple) -> tuple:
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
    """One subject on this backend. Every check writes its rows into `self.checks[row]`; a row whose step raises
    is recorded as raised (`attempt`: the type, the layer's own message, where it came from), and the next runs."""

    def __init__(
        self, subject, out_dir: Path | None = None, fixtures: Path | None = None, backends: tuple[str, ...] = BACKENDS
    ):
        import keras

        from conformance.harness import backends as backend

        # Keras names layers from a per-process counter (`dense_58`): each subject starts from a clear session, so
        # its weights' paths depend on the subject alone, never on what the process ran before
        keras.backend.clear_session()
        self.keras, self.backend, self.subject = keras, backend, subject
        self.checks: dict[str, dict] = {}
        self.out_dir = out_dir  # where the run's files go (the `.keras` files saved and loaded)
        self.fixtures = fixtures  # the folder of the stored fixtures (`checks.fixtures`), or None
        self.backends = backends  # the run's backends (the load phase loads what each of them saved)
        self.sources: dict[str, str] = {}  # the layer's source files (`layer_sources`)
        self.specs = subject.input_list()
        rng = np.random.default_rng([subject.seed, 0])
        self.arrays = [draw(spec, rng) for spec in self.specs]
        self.masks = [None if s.mask is None else rng.random(s.shape[:-1]) < s.mask for s in self.specs]
        self.weight_rng_seed = [subject.seed, 1]

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

    def pack(self, tensors: list, specs: list | None = None):
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

    def oracle_outputs(self, layer, arrays=None, masks=None) -> list:
        """The subject's oracle's outputs as a list (one for a layer with one output)."""
        out = self.call_oracle(self.subject.oracle, layer, arrays=arrays, masks=masks)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def oracle(self, layer, prefix: str = "oracle", arrays=None, masks=None) -> None:
        """The subject's NumPy oracle on the same inputs and weights (float64), recorded beside the outputs."""
        outs = self.oracle_outputs(layer, arrays, masks)
        for i, array in enumerate(outs):
            self.checks[prefix if len(outs) == 1 else f"{prefix}.{i}"] = numeric_entry(array, "float64")

    def model(self, layer, dtype: str | None = None, any_batch: bool = False):
        """A functional model around the layer (its float inputs of `dtype`, else as declared; with `any_batch`,
        every input's batch size unknown)."""
        keras = self.keras

        def input_dtype(spec):
            return dtype if dtype and spec.dtype.startswith(("float", "bfloat")) else spec.dtype

        inputs = [
            keras.Input(
                batch_shape=(None, *spec.shape[1:]) if any_batch else spec.shape, dtype=input_dtype(spec), name=f"in{i}"
            )
            for i, spec in enumerate(self.specs)
        ]
        args, kwargs = self.pack(inputs)
        return keras.Model(inputs, layer(*args, **kwargs, **self.call_kwargs(layer, with_masks=False)))

    def policy_tensors(self, policy: str) -> list:
        """The inputs a model under `policy` feeds the layer: floats in the compute dtype (a float64 model's data
        is float64), except under a mixed policy, whose models take float32 and let layers cast."""
        compute, variable = POLICIES[policy]
        return self.tensors(dtype_of_float=variable if policy.startswith("mixed_") else compute)


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
            out[f"{cls.__module__}.{cls.__qualname__}"] = sha256_of(path)
    return out


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
