"""weights: the layer's weights after it is built on the declared inputs (each one's path without the layer's
name, shape, dtype, trainability), the same on every backend. A weight named or shaped differently on one
backend breaks every checkpoint and `.keras` file that crosses backends."""

from __future__ import annotations

import json

NAME = "weights"
ROWS = (NAME,)
ALWAYS = True  # the layer every other check runs on is built here


def observe(run, layer, tensors) -> None:
    run.text(
        NAME,
        json.dumps(
            [[v.path.split("/", 1)[-1], list(v.shape), run.backend.dtype_of(v), v.trainable] for v in layer.weights]
        ),
    )


def judge(judge, row: str) -> None:
    judge.same_text(row)
