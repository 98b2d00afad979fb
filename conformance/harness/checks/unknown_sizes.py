"""unknown-sizes: the layer's stateless call compiled with the sizes of every input's data axes (all but its
`feature_axes`) unknown until it runs (`jax.export` with symbolic sizes, `tf.function` with `None` in its
signature, `torch.compile(dynamic=True)`; one unknown per distinct size, so axes of equal size stay equal, and 1s
that broadcast known except on TensorFlow), traced once, then run at the declared sizes and at grown ones (every
size above 1 one larger), with new inputs and masks drawn for those. Judged at the declared sizes as `forward`
is; at the grown sizes against the oracle there, else the backend's eager call there (`eager-grown`, recorded
only as that reference): a decision the layer takes while tracing must hold when it runs."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

from conformance.harness.checks import forward
from conformance.harness.run import data_sizes, draw, feature_sizes, grown

NAME = "unknown-sizes"
ROWS = (NAME, "oracle-grown")
UNJUDGED = ("unknown-sizes/eager-grown",)


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: _observe(run, layer))


def _observe(run, layer) -> None:
    backend = run.backend
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    kwargs = run.call_kwargs(layer, with_masks=False)
    masked = [i for i, m in enumerate(run.masks) if m is not None]
    takes_mask = "mask" in inspect.signature(layer.call).parameters and masked

    def unknown(shape):
        return tuple(f"d{n}" if n > 1 or backend.UNKNOWN_ONES else n for n in shape)

    specs = [(unknown(data_sizes(s)) + feature_sizes(s), s.dtype) for s in run.specs]
    specs += [(unknown(run.specs[i].shape[:-1]), "bool") for i in masked] if takes_mask else []

    # Which inputs' masks are arguments, worked out before tracing: torch.compile(dynamic=True) makes a
    # captured list of ints symbolic, and `i in masked` is then False while tracing (pytorch/pytorch#153366;
    # docs/findings.md#torch-compile-dynamic-in): the layer was traced without its mask.
    slots = tuple(bool(takes_mask) and i in masked for i in range(len(run.specs)))

    def fn(*xs):
        tensors, given = list(xs[: len(run.specs)]), iter(xs[len(run.specs) :])
        args, call_kwargs = run.pack(tensors)
        extra = {"mask": run.mask_argument([next(given) if has else None for has in slots])} if any(slots) else {}
        out, _ = layer.stateless_call(trainable, non_trainable, *args, **call_kwargs, **kwargs, **extra)
        return out

    program = backend.compile_with_unknown_sizes(fn, specs)
    grown_specs = [dataclasses.replace(s, shape=grown(data_sizes(s)) + feature_sizes(s)) for s in run.specs]
    rng = np.random.default_rng([run.subject.seed, 5])
    grown_arrays = [draw(s, rng) for s in grown_specs]
    grown_masks = [None if m is None else rng.random(s.shape[:-1]) < s.mask for s, m in zip(grown_specs, run.masks)]
    for name, arrays, masks in (("declared", run.arrays, run.masks), ("grown", grown_arrays, grown_masks)):
        tensors = [backend.tensor(a, s.dtype) for a, s in zip(arrays, run.specs)]
        mask_tensors = [backend.tensor(masks[i], "bool") for i in masked] if takes_mask else []
        run.record_outputs(f"{NAME}/{name}", program(*tensors, *mask_tensors))
    # the references at the grown sizes: the eager call, and the oracle when there is one
    args, call_kwargs = run.pack([backend.tensor(a, s.dtype) for a, s in zip(grown_arrays, run.specs)])
    eager = layer(*args, **call_kwargs, **run.call_kwargs(layer, masks=grown_masks))
    run.record_outputs(f"{NAME}/eager-grown", eager)
    if run.subject.oracle is not None:
        run.oracle(layer, "oracle-grown", arrays=grown_arrays, masks=grown_masks)


def judge(judge, row: str) -> None:
    which = row.split(".")[0]
    if which == NAME:  # raised on every backend: each fails with its exception
        judge.same_text(row)
    elif which == f"{NAME}/declared":
        forward.judge(judge, row)
    elif which == f"{NAME}/grown":
        suffix = judge.suffix(row)
        oracle = judge.first("oracle-grown" + suffix) if judge.meta.get("has_oracle") else None
        reference = (
            (lambda b: {**oracle, "oracle": True})
            if oracle
            else judge.own(f"{NAME}/eager-grown" + suffix, "eager call at those sizes")
        )
        judge.numeric(row, reference, judge.tolerance)
    else:
        judge.same_text(row)
