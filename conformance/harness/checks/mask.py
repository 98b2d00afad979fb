"""mask: the output mask `compute_mask` gives for the declared input masks: exactly the mask oracle's when the
subject has one (recorded as `oracle-mask`), and the same on every backend."""

from __future__ import annotations

import inspect

import numpy as np

from conformance.harness.run import numeric_entry
from conformance.harness.terms import Tolerance

NAME = "mask"
ROWS = (NAME, "oracle-mask")
EXACT = Tolerance(0, "masks are exact")


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: _observe(run, layer, tensors))


def _observe(run, layer, tensors) -> None:
    if run.subject.convention == "keywords":
        return run.text(NAME, "not applicable: the layer takes keyword inputs")
    masks = [None if m is None else run.backend.tensor(m, "bool") for m in run.masks]
    args, _ = run.pack(tensors)
    result = layer.compute_mask(args[0], run.mask_argument(masks) if any(m is not None for m in masks) else None)
    oracle = run.subject.mask_oracle
    if oracle is not None:
        extra = {"args": dict(run.subject.args)} if "args" in inspect.signature(oracle).parameters else {}
        want = oracle(list(run.masks), *run.arrays, **extra)
        if want is None:
            run.text("oracle-mask", "none")
        else:
            run.checks["oracle-mask"] = numeric_entry(np.asarray(want, bool), "bool")
    if result is None:
        return run.text(NAME, "none")
    for i, m in enumerate(run.keras.tree.flatten(result)):
        run.numeric(NAME if i == 0 and not isinstance(result, (list, tuple)) else f"{NAME}.{i}", m)
    return None


def judge(judge, row: str) -> None:
    oracle = judge.first("oracle-mask")
    if oracle is None:
        judge.numeric(row, lambda b: None, EXACT)
        return
    want = "none" if oracle["kind"] == "text" else f"shape {tuple(oracle['shape'])}"
    if row != NAME:  # mask.0, mask.1: the layer returned a list of masks, the oracle one (or none)
        for backend in judge.backends:
            if judge.obs[backend].get(row) is not None:
                one = "none" if oracle["kind"] == "text" else f"one of {want}"
                judge.set(row, backend, judge.FAIL, f"the layer returns a list of masks; the mask oracle gives {one}")
        return
    for backend in judge.backends:
        entry = judge.obs[backend].get(row)
        got = "none" if entry is None or entry["kind"] == "text" else f"shape {tuple(entry['shape'])}"
        if entry is not None and entry["kind"] != "raised" and (got == "none") != (want == "none"):
            judge.set(row, backend, judge.FAIL, f"the output mask: {got}, the mask oracle's: {want}")
    if oracle["kind"] == "text":
        judge.same_text(row, must_be=oracle["value"])
    else:
        reference = {**oracle, "oracle": True}
        judge.numeric(row, lambda b: reference, EXACT)
