"""Every entry of the bad-input catalogue raises exactly its documented (type, message) on this backend."""

from __future__ import annotations

import builtins

import pytest

from conformance import assertions, expected
from conformance.subjects.hyperzzw import bad_inputs, target

PAIRS = [(case, mode) for case in bad_inputs.CATALOGUE for mode in case.modes]


@pytest.fixture(scope="module")
def expected_errors(golden_manifest):
    from conformance.subjects.hyperzzw import golden

    return golden.load_errors(golden_manifest)


@pytest.mark.observes(lambda case, mode: [expected.error_check(case, mode)])
@pytest.mark.parametrize("case,mode", PAIRS, ids=[expected.error_check(c, m).key for c, m in PAIRS])
def test_bad_input(case, mode, expected_errors, observer):
    exc = bad_inputs.run(case, mode, target.HyperZZWOperator)
    check = expected.error_check(case, mode)
    observer.error(check, exc)
    expected_type, expected_message = expected_errors[check.key]
    assertions.assert_error(exc, getattr(builtins, expected_type), expected_message, f"{case.id}/{mode}")


def test_catalogue_is_large_and_covers_every_mode():
    assert len(bad_inputs.CATALOGUE) >= 40
    assert {mode for _, mode in PAIRS} == {"construct", *bad_inputs.INPUT_MODES}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"input_dim": 0}, r"expected a positive integer\. Received: input_dim=0$"),
        ({"input_dim": 4, "context_dim": -1}, r"Received: context_dim=-1$"),
    ],
)
def test_messages_read_like_keras(kwargs, match):
    """The wording users grep for, pinned the way Keras's own tests do."""
    with pytest.raises(ValueError, match=match):
        target.HyperZZWOperator(**kwargs)


def test_keras_still_honours_the_private_call_info_marker():
    """The layer keeps its error text identical on every backend by setting Keras's private
    `_keras_call_info_injected` on its errors: without it Keras appends "Arguments received by ..." with
    the arguments formatted by the backend. If a Keras release stops honouring the attribute, this says so."""
    import keras
    import numpy as np

    layer = target.HyperZZWOperator(4)
    layer.build([(2, 4), (2, 3)])
    with pytest.raises(ValueError) as info:
        layer([np.ones((2, 5), "float32"), np.ones((2, 3), "float32")])
    assert "Arguments received by" not in str(info.value), (
        f"Keras {keras.__version__} no longer honours `_keras_call_info_injected`: it appended the call's "
        f"arguments to the layer's error, so the text now differs per backend:\n{info.value}"
    )
