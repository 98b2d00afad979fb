"""symbolic: `compute_output_spec` on inputs of the declared sizes, every size known: each output's shape and
dtype exactly the eager call's (a `None` where the eager output has a size is a size lost: the layer after it
cannot build), as many outputs, and the same on every backend."""

from __future__ import annotations

import json

NAME = "symbolic"
ROWS = (NAME,)


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: _observe(run, layer))


def _observe(run, layer) -> None:
    keras = run.keras
    symbolic_inputs = [keras.KerasTensor(spec.shape, dtype=spec.dtype) for spec in run.specs]
    args, kwargs = run.pack(symbolic_inputs)
    kwargs = {**kwargs, **run.call_kwargs(layer, with_masks=False)}
    outs = keras.tree.flatten(layer.compute_output_spec(*args, **kwargs))
    run.text(NAME, json.dumps([[list(o.shape), keras.backend.standardize_dtype(o.dtype)] for o in outs]))


def judge(judge, row: str) -> None:
    for backend in judge.backends:
        entry = judge.obs[backend].get(row)
        eager = [judge.obs[backend].get(c) for c in judge.outputs_of("forward", backend)]
        if not entry or entry["kind"] != "text" or not eager or any(e is None or e["kind"] != "numeric" for e in eager):
            continue  # no spec, or no eager output to hold it against (that row fails on its own)
        specs = json.loads(entry["value"])
        if len(specs) != len(eager):
            judge.set(row, backend, judge.FAIL, f"{len(specs)} symbolic outputs, {len(eager)} eager ones")
            continue
        for i, ((shape, dtype), e) in enumerate(zip(specs, eager)):
            which = f"output {i}: " if len(eager) > 1 else ""
            if tuple(shape) != tuple(e["shape"]):
                lost = (
                    [a for a, (s, n) in enumerate(zip(shape, e["shape"])) if s is None]
                    if len(shape) == len(e["shape"])
                    else []
                )
                why = f" (size lost on axis {', '.join(map(str, lost))}: every input size was known)" if lost else ""
                judge.set(
                    row, backend, judge.FAIL, f"{which}symbolic shape {tuple(shape)}, eager {tuple(e['shape'])}{why}"
                )
            if dtype != e["dtype"]:
                judge.set(row, backend, judge.FAIL, f"{which}symbolic dtype {dtype}, eager {e['dtype']}")
    judge.same_text(row)
