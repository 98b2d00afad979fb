"""What a layer author writes: a `Subject` per layer (or per configuration of one), in a Python file of their own.

A declaration is data. It names the layer, its constructor arguments, its inputs (shapes, dtypes and how their
values are drawn with NumPy from a seed), and, optionally, an exact NumPy oracle, tolerances with their reason,
bad inputs with the error each must raise, and the divergences between backends the author already knows of.
The engine (`conformance.harness.record`, `conformance.harness.compare`) runs the same checks on every subject
and knows no layer; a subject knows no check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.harness.terms import (  # noqa: F401 (the declaration's vocabulary, importable from here)
    BACKENDS,
    POLICIES,
    SAME_ON_EVERY_BACKEND,
    UNIT_ROUNDOFF,
    Tolerance,
    default_tolerance,
)


def __getattr__(name: str):
    """`CHECKS`: the checks' names, in the order the report lists them (`conformance.harness.checks`, imported
    when first asked for: the checks' modules use this one). A subject leaves one out with `skip={check: reason}`."""
    if name == "CHECKS":
        from conformance.harness.checks import NAMES

        return NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of the layer: its shape (batch included), dtype and how its values are drawn.

    `values` is `"normal"` (standard normal), `"uniform"` (in [low, high)), `"integers"` (in [low, high)),
    `"bool"`, or a callable `f(rng, shape) -> np.ndarray` of your own; draws come from NumPy's PCG64 seeded by
    the subject's seed and the input's position, never from a backend's generator. `mask` is the fraction of
    positions kept in a Keras mask of shape `shape[:-1]` passed with the call (`None`: no mask); `name` is the
    keyword the value is passed under when the subject calls with keywords. `feature_axes` is how many trailing
    axes hold features, whose sizes the layer's weights fix; the `unknown-sizes` check varies the others (0 for
    an input all of whose axes are sizes of the data, such as an attention mask).
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    values: str | Callable = "normal"
    low: float = -1.0
    high: float = 1.0
    mask: float | None = None
    name: str | None = None
    feature_axes: int = 1


@dataclasses.dataclass(frozen=True)
class BadInput:
    """An input (or constructor argument) the layer must reject. `inputs` replaces the subject's inputs
    (`Input`s, drawn as theirs are) and `args` updates its constructor arguments. `error` is the exception
    type expected and `message` its exact text, or `SAME_ON_EVERY_BACKEND`: the type and text must agree
    across backends, whatever they are."""

    id: str
    error: type = ValueError
    message: str = SAME_ON_EVERY_BACKEND
    inputs: Sequence[Input] | Mapping[str, Input] | Input | None = None
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def input_list(self) -> list[Input] | None:
        """Its inputs as a list (None: the subject's own)."""
        return None if self.inputs is None else input_list(self.inputs)


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A difference between backends the author knows of: `check` (as the report names it, e.g.
    `"policies/float64"` or `"forward"`) differs on `backend`, for `reason` (an upstream issue, say). Strict:
    the report fails the day the check stops diverging there, so the entry is removed when upstream fixes it."""

    check: str
    backend: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Subject:
    """A layer under test.

    Args:
        name: what the report calls it (letters, digits, `-`, `_`, `.`).
        layer: the layer class, a factory `f(**args) -> Layer`, or an import path `"package.module:Name"`.
        args: the constructor's keyword arguments: a dict, or a hypothesis strategy of dicts
            (`st.fixed_dictionaries({"units": st.integers(1, 8)})`), from which `examples` distinct dicts are
            drawn, reproducibly (hypothesis seeded by `seed`): the subject then stands for one subject per draw,
            named `name.0`, `name.1`, ..., each with its arguments in the report. Every backend draws in its own
            process; the report fails if their draws differ (another hypothesis version, say).
        examples: how many argument dicts to draw when `args` is a strategy.
        inputs: one `Input`, a list (passed as a list, `layer([a, b])`), or a dict (passed as keywords,
            `layer(query=..., value=...)`); or a function of the arguments returning one of those, when the
            shapes depend on them (`lambda args: Input((3, args["input_dim"]))`).
        oracle: optional exact reference in NumPy: `oracle(weights, *inputs)` (or `**inputs` for a dict) returns
            the float64 output, `weights` the layer's weights by name (`"kernel"`), as float64 arrays. An oracle
            with a `mask` parameter gets the call's masks; one with an `args` parameter, the constructor's
            arguments (the same for `mask_oracle`'s and `gradient_oracle`'s).
        mask_oracle: optional `mask_oracle(masks, *inputs)`: the output mask the layer must compute from the
            declared input masks (a list, one per input, None where an input has none), or None for no mask.
        gradient_oracle: optional `gradient_oracle(weights, cotangent, *inputs)` (or `**inputs`; `mask=` as for
            `oracle`): the exact float64 gradients of `sum(output * cotangent)` as a dict, keyed by trainable
            weight name (`"kernel"`) and by float input (its `name`, else `"input0"`, `"input1"`, ...), every one
            the layer has; `cotangent` has the output's shape (a list of them for a layer with several outputs).
            With it, the float32 and float64 gradients are both judged against it; without it, the float32 ones
            against the backend's float64 run, and the float64 ones are not judged.
        tolerance: how results are compared with their reference (the oracle, else the float64 run); or a
            function of the arguments returning it.
        bad_inputs: inputs and arguments the layer must reject, with the error.
        divergences: known differences between backends, each with its reason (strict); or a function of the
            arguments returning them (a divergence of some drawn configurations only).
        skip: checks left out, `{check: reason}`; the report lists them with the reason.
        call_kwargs: fixed keyword arguments of every call (`training=False` is always passed when the layer's
            call takes it).
        weights: optional `f(name, shape, rng) -> np.ndarray` for the values the harness gives each float
            weight (default: uniform in [-1, 1), and [0.5, 1.5) for non-trainable ones such as variances).
        seed: the seed of every NumPy draw.
    """

    name: str
    layer: type | Callable | str
    inputs: Input | Sequence[Input] | Mapping[str, Input] | Callable
    args: Mapping[str, Any] | Any = dataclasses.field(default_factory=dict)
    oracle: Callable | None = None
    mask_oracle: Callable | None = None
    gradient_oracle: Callable | None = None
    tolerance: Tolerance | Callable | None = None
    bad_inputs: Sequence[BadInput] = ()
    divergences: Sequence[Divergence] | Callable = ()
    skip: Mapping[str, str] = dataclasses.field(default_factory=dict)
    call_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weights: Callable | None = None
    seed: int = 0
    examples: int = 3

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(not (c.isalnum() or c in "-_.") for c in self.name):
            raise ValueError(f"Subject name must be letters, digits, '-', '_' or '.'. Received: name={self.name!r}")
        _check_layer(self.name, self.layer)
        _check_inputs(self.name, self.inputs)
        for field in ("oracle", "mask_oracle", "gradient_oracle", "weights"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise ValueError(f"Subject {self.name!r}: {field}= takes a function or None. Received: {value!r}")
        if not (self.tolerance is None or isinstance(self.tolerance, Tolerance) or _is_function(self.tolerance)):
            raise ValueError(
                f"Subject {self.name!r}: tolerance= takes a Tolerance(reduction, reason), a function of the "
                f"arguments returning one, or None. Received: {self.tolerance!r}"
            )
        if isinstance(self.bad_inputs, BadInput) or not all(isinstance(b, BadInput) for b in self.bad_inputs):
            raise ValueError(
                f"Subject {self.name!r}: bad_inputs= takes a list of BadInput. Received: {self.bad_inputs!r}"
            )
        ids = [b.id for b in self.bad_inputs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"Subject {self.name!r}: every BadInput needs an id of its own. Received: {ids}")
        from conformance.harness.checks import DIVERGING
        from conformance.harness.checks import NAMES as CHECKS

        unknown = sorted(set(self.skip) - set(CHECKS))
        if unknown:
            raise ValueError(f"Subject {self.name!r}: unknown checks in skip: {unknown}; the checks are {CHECKS}")
        for divergence in () if _is_function(self.divergences) else self.divergences:
            if not isinstance(divergence, Divergence):
                raise ValueError(
                    f"Subject {self.name!r}: divergences= takes Divergence(check, backend, reason) objects. "
                    f"Received: {divergence!r}"
                )
            if divergence.backend not in BACKENDS:
                raise ValueError(
                    f"Subject {self.name!r}: divergence on unknown backend {divergence.backend!r}; the backends are "
                    f"{BACKENDS}"
                )
            head = divergence.check.split("/")[0].split(".")[0]
            if head not in DIVERGING:
                raise ValueError(
                    f"Subject {self.name!r}: divergence on unknown check {divergence.check!r}: a check is named as "
                    f"the report names it, starting with one of {CHECKS} (e.g. 'policies/float64', 'gradients/kernel')"
                )
        if not isinstance(self.examples, int) or self.examples < 1:
            raise ValueError(f"Subject {self.name!r}: examples must be an integer >= 1. Received: {self.examples!r}")

    @property
    def drawn(self) -> bool:
        """Whether the arguments are a strategy to draw from (the subject is expanded by `load` first)."""
        return not isinstance(self.args, Mapping)

    def expand(self) -> list[Subject]:
        """The concrete subjects this one stands for: itself, or one per drawn argument dict (see `args`), with
        `inputs` and `tolerance` given as functions of the arguments resolved."""
        if not self.drawn:
            drawn = [dict(self.args)]
        else:
            drawn = draw_arguments(self.args, self.examples, self.seed)
        out = []
        for i, args in enumerate(drawn):
            if not isinstance(args, Mapping):
                raise ValueError(f"Subject {self.name!r}: args must draw dicts. Received: {args!r}")
            out.append(
                dataclasses.replace(
                    self,
                    name=f"{self.name}.{i}" if self.drawn else self.name,
                    args=dict(args),
                    inputs=self.inputs(dict(args)) if _is_function(self.inputs) else self.inputs,
                    tolerance=self.tolerance(dict(args)) if _is_function(self.tolerance) else self.tolerance,
                    divergences=self.divergences(dict(args)) if _is_function(self.divergences) else self.divergences,
                )
            )
        return out

    def make_layer(self, **overrides):
        """A new layer of this subject, with `overrides` on top of its arguments."""
        factory = self.layer
        if isinstance(factory, str):
            module_name, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module_name), attribute)
        return factory(**{**self.args, **overrides})

    def input_list(self) -> list[Input]:
        return input_list(self.inputs)

    @property
    def convention(self) -> str:
        """How the inputs reach the layer: one tensor, a list, or keywords."""
        if isinstance(self.inputs, Input):
            return "single"
        return "keywords" if isinstance(self.inputs, Mapping) else "list"


def _check_layer(name: str, layer) -> None:
    """`layer=` is a class, a factory or an import path; a layer *instance* is the usual slip."""
    if isinstance(layer, str):
        if ":" not in layer:
            raise ValueError(
                f"Subject {name!r}: layer= as a string is an import path 'package.module:Name'. Received: {layer!r}"
            )
        return
    if not isinstance(layer, type) and hasattr(layer, "get_config") and hasattr(layer, "built"):
        raise ValueError(
            f"Subject {name!r}: layer= takes the layer's class, a factory f(**args) or 'package.module:Name', not a "
            f"layer instance (the harness makes a new layer for every check, with the dtype policy it checks). "
            f"Received: {layer!r}. Write layer={type(layer).__name__}, args={{...}} (the constructor's arguments)."
        )
    if not callable(layer):
        raise ValueError(
            f"Subject {name!r}: layer= takes the layer's class, a factory f(**args) or 'package.module:Name'. "
            f"Received: {layer!r}"
        )


def _check_inputs(name: str, inputs) -> None:
    if isinstance(inputs, Input) or _is_function(inputs):
        return
    values = list(inputs.values()) if isinstance(inputs, Mapping) else inputs
    if (
        isinstance(values, (str, bytes))
        or not isinstance(values, Sequence)
        or not values
        or not all(isinstance(i, Input) for i in values)
    ):
        raise ValueError(
            f"Subject {name!r}: inputs= takes an Input(shape), a list or dict of them, or a function of the "
            f"arguments returning one of those. Received: {inputs!r}"
        )


def check_constructible(subject: Subject) -> None:
    """Makes the subject's layer once, as every check will (a backend imported): the import path resolves, the
    class or factory takes the arguments, and the base-layer `dtype=` the policy checks pass. Raises ValueError
    saying what to change."""
    try:
        layer = subject.make_layer()
    except Exception as exc:
        raise ValueError(
            f"Subject {subject.name!r}: making the layer ({_describe_factory(subject.layer)}) with "
            f"args={dict(subject.args)!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(layer, "compute_output_spec") or not hasattr(layer, "weights"):
        raise ValueError(f"Subject {subject.name!r}: layer= made {layer!r}, not a Keras layer")
    try:
        subject.make_layer(dtype="float64")
    except TypeError as exc:
        raise ValueError(
            f"Subject {subject.name!r}: the layer's factory does not take `dtype=` ({exc}); the policy and training "
            f"checks make it with `dtype=` (e.g. 'float16'): write the factory as `lambda **kwargs: ...(..., **kwargs)`"
        ) from exc


def _describe_factory(layer) -> str:
    if isinstance(layer, str):
        return layer
    return getattr(layer, "__qualname__", repr(layer))


def _is_function(value) -> bool:
    return callable(value) and not isinstance(value, (Input, Tolerance, type))


def draw_arguments(strategy, examples: int, seed: int) -> list:
    """Up to `examples` distinct values of the hypothesis `strategy`, the same ones in every process with the
    same hypothesis version (seeded, no example database): of up to 10 x `examples` distinct draws, evenly
    spaced ones, the first (hypothesis starts from the simplest values) and the last among them."""
    try:
        import hypothesis
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis.strategies import SearchStrategy
    except ImportError as exc:  # only a subject whose args is a strategy needs it
        raise ImportError(
            "a Subject whose args is a hypothesis strategy needs hypothesis: pip install hypothesis"
        ) from exc
    if not isinstance(strategy, SearchStrategy):
        raise TypeError(f"Subject args must be a dict or a hypothesis strategy. Received: {strategy!r}")
    drawn = []

    @hypothesis.seed(seed)
    @settings(
        database=None,
        max_examples=10 * examples,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(value):
        if value not in drawn:
            drawn.append(value)

    collect()
    if len(drawn) <= examples:
        return drawn
    step = (len(drawn) - 1) / (examples - 1) if examples > 1 else 0
    return [drawn[round(i * step)] for i in range(examples)]


def input_list(inputs: Input | Sequence[Input] | Mapping[str, Input]) -> list[Input]:
    """One `Input`, a list of them, or a dict of them (each named by its key) as a list."""
    if isinstance(inputs, Input):
        return [inputs]
    if isinstance(inputs, Mapping):
        return [dataclasses.replace(i, name=i.name or k) for k, i in inputs.items()]
    return list(inputs)


class DeclarationError(ValueError):
    """A declaration file that cannot be run: what is wrong and how to fix it, said before any backend starts."""


def load(path: str | Path) -> list[Subject]:
    """The subjects a declaration file defines: its `SUBJECTS` list, else every module-level `Subject`. Raises
    DeclarationError when the file is missing, defines no subject, or two subjects share a name."""
    path = Path(path).resolve()
    if not path.is_file():
        raise DeclarationError(f"no declaration file at {path}: give the path of a Python file that defines SUBJECTS")
    # the same name in every process (str's hash is salted per process): the records name the layer's classes
    module_name = "_conformance_subjects_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or path.suffix != ".py":
        raise DeclarationError(f"{path} is not a Python file (.py): a declaration is Python that defines SUBJECTS")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    subjects = getattr(module, "SUBJECTS", None)
    if subjects is None:
        subjects = [v for v in vars(module).values() if isinstance(v, Subject)]
    if isinstance(subjects, Subject) or not all(isinstance(s, Subject) for s in subjects):
        raise DeclarationError(f"{path}: SUBJECTS must be a list of Subject. Received: {subjects!r}")
    if not subjects:
        raise DeclarationError(
            f'{path} defines no Subject: add `SUBJECTS = [Subject("name", layer=MyLayer, inputs=Input((2, 3)))]` '
            "(from conformance.harness import Input, Subject)"
        )
    subjects = [concrete for subject in subjects for concrete in subject.expand()]
    names = [s.name for s in subjects]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DeclarationError(f"{path}: two subjects share a name: {duplicates}; give each its own")
    return list(subjects)
