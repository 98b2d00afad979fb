"""The checks, each one unit: what a backend observes and how the report judges it, side by side in one module.

A check module defines:

- `NAME`: the check as `skip=`, `Divergence` and the report name it;
- `ROWS`: the heads of the rows it records (the part of a row's name before `/` and `.`), `NAME` first, then
  its references (`"oracle-mask"`): the report hands it every row with one of those heads;
- `observe(run, layer, tensors)`: the record phase, on one backend. `run` is a `conformance.harness.run.Run`
  (the subject's inputs, a built layer, calls packed by the subject's convention, the record being written);
  each step goes through `run.attempt(row, fn)`, so a step that raises is recorded as raised and the next runs;
- `judge(judge, row)`: one of its rows on every backend, with the primitives of `conformance.harness.judge`
  (`judge.numeric` against a reference and between backends, `judge.same_text`, `judge.set`).

And where it needs them: `load(run)` (the load phase, once every backend's record phase has run: `run.out_dir`),
`finish(judge, rows)` (after its rows), `scale_family(row)` (rows whose tolerance scales with the largest of
them, as a weight's gradients do), `UNJUDGED` (rows recorded only as another row's reference), `ALWAYS = True`
(observed even when the subject skips it: the other checks need it), `FAMILY_DEPTH = 2` (the report's matrix
groups its rows by two levels, `policies/float16`). A backend is an adapter the checks call
(`conformance.harness.backends`), never a branch inside them.

A new check is a module here and its place in `CHECKS`, the order the report lists them in.
"""

from __future__ import annotations

from conformance.harness.checks import (
    compiled,
    config,
    errors,
    exports,
    fixtures,
    forward,
    gradients,
    mask,
    policies,
    saved,
    symbolic,
    training,
    unknown_sizes,
    weights,
)

CHECKS = (
    weights,
    forward,
    fixtures,
    compiled,
    unknown_sizes,
    symbolic,
    gradients,
    mask,
    policies,
    config,
    saved,
    exports,
    training,
    errors,
)
NAMES = tuple(check.NAME for check in CHECKS)
_OWNERS = {row: check for check in CHECKS for row in check.ROWS}
ALWAYS = tuple(check.NAME for check in CHECKS if getattr(check, "ALWAYS", False))  # observed even when skipped
UNJUDGED = tuple(row for check in CHECKS for row in getattr(check, "UNJUDGED", ()))
# the heads a Divergence may name: every check's rows but its oracles' (an oracle is never a backend's)
DIVERGING = tuple(row for row in _OWNERS if not row.startswith("oracle"))


def head(row: str) -> str:
    """The head of a row's name: `gradients` for `gradients/kernel`, `forward` for `forward.1`."""
    return row.split("/")[0].split(".")[0]


def owner(row: str):
    """The check that records `row` (None for a row no check declares)."""
    return _OWNERS.get(head(row))


def family(row: str) -> str:
    """The report's matrix row a row is counted in: its head, or its first two levels for a check that groups
    by two (`policies/float16` for `policies/float16.1`)."""
    check = owner(row)
    if getattr(check, "FAMILY_DEPTH", 1) == 2:
        return "/".join(row.split("/")[:2]).split(".")[0]
    return head(row)


def scale_family(row: str) -> str | None:
    """The rows `row`'s tolerance scales with (a weight's gradient with every gradient of the subject), or None."""
    check = owner(row)
    return check.scale_family(row) if hasattr(check, "scale_family") else None


def order(family_name: str):
    """Where a matrix row goes in the report: its check's place in `CHECKS`."""
    check = owner(family_name)
    return (CHECKS.index(check) if check is not None else len(CHECKS), family_name)
