"""The cross-backend conformance harness: declare a Keras layer once, run the same checks on jax, torch and
TensorFlow (each in its own process), and get one report that compares every backend with a reference and with
the others.

    from conformance.harness import Input, Subject

    SUBJECTS = [Subject("dense", layer="keras.layers:Dense", args={"units": 4}, inputs=Input((2, 3)))]

then `python -m conformance.harness my_subjects.py`. The declaration's reference is `docs/harness.md`.
"""

from conformance.harness.declaration import (
    BACKENDS,
    CHECKS,
    POLICIES,
    SAME_ON_EVERY_BACKEND,
    BadInput,
    Divergence,
    Input,
    Subject,
    Tolerance,
)

__all__ = [
    "BACKENDS",
    "CHECKS",
    "POLICIES",
    "SAME_ON_EVERY_BACKEND",
    "BadInput",
    "Divergence",
    "Input",
    "Subject",
    "Tolerance",
]
