"""config: `get_config()` (as JSON, the same on every backend), and its round trip: a clone made by
`from_config`, given the layer's weights, has the same config and computes the same outputs, bit for bit
(`config/round-trip` must be "ok")."""

from __future__ import annotations

import json

import numpy as np

NAME = "config"
ROWS = (NAME,)


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: _observe(run, layer, tensors))


def _observe(run, layer, tensors) -> None:
    config = layer.get_config()
    text = json.dumps(config, sort_keys=True, default=repr)
    clone = type(layer).from_config(json.loads(json.dumps(config, default=repr)))
    run.call(clone, tensors)
    clone.set_weights(layer.get_weights())
    same_config = json.dumps(clone.get_config(), sort_keys=True, default=repr) == text
    before = [run.backend.to_numpy(o) for o in run.outputs(run.call(layer, tensors))]
    after = [run.backend.to_numpy(o) for o in run.outputs(run.call(clone, tensors))]
    same_outputs = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after))
    problems = [p for p, ok in (("its config differs", same_config), ("its outputs differ", same_outputs)) if not ok]
    run.text(NAME, text)
    run.text(f"{NAME}/round-trip", "ok" if not problems else "the clone from get_config(): " + ", ".join(problems))


def judge(judge, row: str) -> None:
    judge.same_text(row, must_be="ok" if row == f"{NAME}/round-trip" else None)
