"""The harness's vocabulary, shared by the declaration, the checks and the report: the backends, Keras's dtype
policies, each dtype's unit roundoff, `Tolerance`, and the word for an error text that must only agree. Imports
nothing of the harness."""

from __future__ import annotations

import dataclasses
import math

# Every dtype policy Keras offers for floating-point layers: (compute dtype, variable dtype).
POLICIES = {
    "float16": ("float16", "float16"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "mixed_float16": ("float16", "float32"),
    "mixed_bfloat16": ("bfloat16", "float32"),
}
BACKENDS = ("jax", "torch", "tensorflow")
# What a backend process writes (conformance.harness.record) and the report reads: another format is not judged.
RECORD_FORMAT = "conformance.harness/2"
# Half the distance from 1 to the next float: the most one rounding to nearest can be off, relatively.
UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}
SAME_ON_EVERY_BACKEND = "the same on every backend"


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a result may be from its reference, and why: elementwise
    `atol = (gamma(reduction, u) + ulps * u) * scale`, with `u` the unit roundoff of the dtype compared,
    `gamma(n, u) = n u / (1 - n u)` (the bound on a sum of n rounded terms), and `scale` the largest magnitude
    of the reference (`max |reference|`). `reduction` is the longest chain of roundings behind one output
    element (for Dense, its input features plus one); `ulps` an allowance for functions that are not
    correctly rounded (exp, tanh: a few units each). The reason is printed in the report."""

    reduction: int
    reason: str
    ulps: float = 0.0

    def atol(self, dtype: str, scale: float) -> float:
        u = UNIT_ROUNDOFF.get(dtype, 0.0)
        nu = self.reduction * u
        gamma = math.inf if nu >= 1 else nu / (1 - nu)
        return (gamma + self.ulps * u) * scale

    def plus(self, extra: int, why: str) -> Tolerance:
        """This tolerance with `extra` more roundings in the chain, `why` added to its reason."""
        return dataclasses.replace(self, reduction=self.reduction + extra, reason=f"{self.reason}; {why}")

    def describe(self) -> str:
        extra = f" + {self.ulps:g} u" if self.ulps else ""
        return f"(gamma({self.reduction}){extra}) * max|reference|: {self.reason}"


def default_tolerance(shapes) -> Tolerance:
    """The tolerance of a subject that declares none: the inputs' last axes summed, plus 2, as the reduction."""
    n = sum(int(shape[-1]) for shape in shapes if len(shape)) + 2
    return Tolerance(n, "default: the inputs' last axes summed, plus 2 (declare `tolerance=`)")


def declared_tolerance(meta: dict) -> Tolerance:
    """A subject's tolerance from what its record says of it (`record.meta`): the declared one, else the default."""
    t = meta.get("tolerance")
    if t:
        return Tolerance(t["reduction"], f"declared: {t['reason']}", t["ulps"])
    return default_tolerance([s["shape"] for s in meta["inputs"]])
