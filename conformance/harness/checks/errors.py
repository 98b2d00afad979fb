"""errors: each declared bad input (`BadInput`: constructor arguments, or inputs, the layer must reject) raises
the layer's own exception (Keras's wrapper around an error raised in `call()` removed) of the declared type, with
the declared text, or, declared `SAME_ON_EVERY_BACKEND`, with the same text on every backend. A declared text is
the reference: a backend that raises it is never blamed. What Keras added around the layer's message (its name,
the call's arguments as each backend prints tensors) is shown as a note, never judged: the layer did not write
it."""

from __future__ import annotations

import itertools

import numpy as np

from conformance.harness.run import draw
from conformance.harness.terms import SAME_ON_EVERY_BACKEND

NAME = "errors"
ROWS = (NAME,)


def observe(run, layer, tensors) -> None:
    for bad in run.subject.bad_inputs:
        observe_one(run, bad)


def observe_one(run, bad) -> None:
    row = f"{NAME}/{bad.id}"
    try:
        layer = run.subject.make_layer(**bad.args)
        if bad.inputs is None:
            run.call(layer, run.tensors())
        else:
            specs = bad.input_list()
            rng = np.random.default_rng([run.subject.seed, 4])
            args, kwargs = run.pack([run.backend.tensor(draw(s, rng), s.dtype) for s in specs], specs)
            layer(*args, **kwargs, **run.call_kwargs(layer, with_masks=False))
    except Exception as exc:
        run.raised(row, exc)
        return
    run.text(row, "accepted: nothing raised")


def judge(judge, row: str) -> None:
    expected = judge.meta["bad_inputs"].get(row.split("/", 1)[1], {"error": "?", "message": SAME_ON_EVERY_BACKEND})
    seen, exact = {}, expected["message"] != SAME_ON_EVERY_BACKEND
    for backend in judge.backends:
        entry = judge.obs[backend].get(row)
        if entry is None:
            judge.set(row, backend, judge.MISSING, "not observed")
        elif entry["kind"] != "raised":
            judge.set(row, backend, judge.FAIL, f"expected {expected['error']}, {entry.get('value', 'no error')}")
        else:
            seen[backend] = entry
            if entry["type"] != expected["error"]:
                text = f"{entry['origin']} error {judge.raised_text(entry)}; expected {expected['error']}"
                judge.set(row, backend, judge.FAIL, text)
            elif exact and entry["own"] != expected["message"]:
                judge.set(row, backend, judge.FAIL, f"message {entry['own']!r}, expected {expected['message']!r}")
            if entry.get("wrapper"):
                wrapped = judge.notes.setdefault(NAME, {"checks": [], "example": judge.wrapper_line(entry)})
                if row not in wrapped["checks"]:
                    wrapped["checks"].append(row)
    if not exact:
        for a, b in itertools.combinations(seen, 2):
            ea, eb = seen[a], seen[b]
            if ea["type"] != eb["type"]:
                judge.pair(
                    row, a, b, False, f"{a} raised {ea['type']} ({ea['origin']}), {b} {eb['type']} ({eb['origin']})"
                )
            elif ea["own"] != eb["own"]:
                judge.pair(row, a, b, False, f"the layer's message differs: {a}: {ea['own']!r}; {b}: {eb['own']!r}")
            else:
                judge.pair(row, a, b, True, "")
        judge.blame_pairs(row)
    for backend in seen:
        judge.set(row, backend, judge.PASS)
