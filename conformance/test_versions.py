"""The versions under test are the ones the session's version set installed (see `requirements/`)."""

from __future__ import annotations

import importlib.metadata
import os

import keras

from conformance import observed


def test_the_keras_module_comes_from_the_distribution_the_version_set_installs():
    """`keras-nightly` and `keras` ship the same `keras` module: a nightly session that also holds the release
    would test whichever pip wrote last while its name says nightly. Exactly one distribution must provide
    the module, the one the set names, and `keras.__version__` must be that distribution's."""
    version_set = os.environ.get(observed.VERSION_SET_VAR, "unnamed")
    want = "keras-nightly" if version_set == "nightly" else "keras"
    assert observed.keras_distributions() == [want], (
        f"version set {version_set!r}: the keras module comes from {observed.keras_distributions()}, expected "
        f"{want} alone"
    )
    assert keras.__version__ == importlib.metadata.version(want)
