"""Every entry of the bad-input catalogue raises exactly its documented (type, message) on this backend."""

from __future__ import annotations

import builtins

import pytest

from conformance import assertions, bad_inputs, target

PAIRS = [(case, mode) for case in bad_inputs.CATALOGUE for mode in case.modes]


@pytest.fixture(scope="module")
def expected_errors(golden_manifest):
    from conformance import golden

    return golden.load_errors(golden_manifest)


@pytest.mark.parametrize("case,mode", PAIRS, ids=[f"{c.id}/{m}" for c, m in PAIRS])
def test_bad_input(case, mode, expected_errors, observer):
    exc = bad_inputs.run(case, mode, target.HyperZZWOperator)
    observer.error(f"{case.id}/{mode}", exc)
    expected_type, expected_message = expected_errors[f"{case.id}/{mode}"]
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
