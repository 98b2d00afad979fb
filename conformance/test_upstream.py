"""Upstream canaries: each `keras.ops` behaviour the layer relies on, per backend and dtype (see `upstream.py`)."""

from __future__ import annotations

import keras
import pytest

from conformance import backend, upstream


@pytest.mark.parametrize("probe_id", upstream.probe_ids())
def test_keras_op_dtype_is_the_one_the_layer_relies_on(probe_id, observer):
    got = upstream.probe(probe_id)
    observer.upstream(probe_id, got)
    want, reference = upstream.expected(backend.NAME, keras.__version__, probe_id)
    versions = f"keras {keras.__version__}, {backend.NAME} {backend.LIBRARY_VERSION}"
    if reference and got != want:
        pytest.fail(
            f"{probe_id} on {backend.NAME} gives {got} ({versions}); the layer works around it giving "
            f"{want}: {reference}. The workaround can go (or must change): update upstream.DEVIATIONS."
        )
    assert got == want, f"keras.ops {probe_id} on {backend.NAME} gives {got}, expected {want} ({versions})"


def test_the_layer_works_around_each_deviation_it_meets():
    """Where `multiply` computes float64 in float32 (a known deviation), the layer takes its einsum path; where
    it does not, it multiplies: the layer's probe and the canary table agree."""
    from conformance.subjects.hyperzzw.target import HyperZZWOperator

    layer = HyperZZWOperator(3, dtype="float64")
    layer.build([(2, 3), (2, 4)])
    want, _ = upstream.expected(backend.NAME, keras.__version__, "multiply/float64")
    assert layer._multiply_by_einsum == (want != "float64")
