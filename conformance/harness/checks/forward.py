"""forward: the layer called eagerly on the declared inputs, as a user calls it (`layer(x)`, its masks and
`training=False` when its call takes them), against the subject's NumPy oracle when it has one (recorded beside
it as `oracle`, float64, the same weights and inputs), else against the backend's own float64 run
(`policies/float64`), and against every other backend."""

from __future__ import annotations

NAME = "forward"
ROWS = (NAME, "oracle")
ALWAYS = True  # the eager call is what the other checks' outputs are held against


def observe(run, layer, tensors) -> None:
    if run.subject.oracle is not None:
        run.attempt("oracle", lambda: run.oracle(layer))
    eager = run.attempt(NAME, lambda: run.call(layer, tensors))
    if eager is not None:
        run.record_outputs(NAME, eager)


def judge(judge, row: str) -> None:
    """A row of outputs (`forward`, `compiled`, `unknown-sizes/declared`, `.i` for the i-th of several) against
    the oracle, else the backend's float64 run, within the subject's tolerance."""
    suffix = judge.suffix(row)
    judge.numeric(row, judge.oracle_of(suffix) or judge.own("policies/float64" + suffix), judge.tolerance)
