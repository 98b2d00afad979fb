"""Construction: arguments stored, base-layer keyword arguments honoured, context_dim inferred on build."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conformance import backend
from conformance.subjects.hyperzzw import strategies
from conformance.subjects.hyperzzw.target import HyperZZWOperator


def test_defaults():
    layer = HyperZZWOperator(16)
    assert (layer.input_dim, layer.context_dim) == (16, None)
    assert isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform)
    assert layer.kernel_regularizer is None and layer.kernel_constraint is None
    assert not layer.built


@pytest.mark.parametrize("value", [16, np.int64(16), np.int32(16)])
def test_integer_like_dims_are_python_ints(value):
    layer = HyperZZWOperator(value, context_dim=value)
    assert (layer.input_dim, layer.context_dim) == (16, 16)
    assert type(layer.input_dim) is int and type(layer.context_dim) is int


def test_base_layer_kwargs_reach_keras():
    layer = HyperZZWOperator(4, name="zzw", dtype="float64", trainable=False)
    assert layer.name == "zzw"
    assert layer.dtype_policy.name == "float64"
    layer([np.ones((2, 4)), np.ones((2, 3))])
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 1


@pytest.mark.parametrize(
    "x_shape,context_shape",
    [((2, 4), (2, 3)), ((2, 5, 4), (2, 3)), ((2, 5, 4), (2, 5, 3)), ((2, 5, 6, 4), (2, 1, 6, 3))],
)
def test_context_dim_inferred_on_build(x_shape, context_shape):
    layer = HyperZZWOperator(4)
    layer([np.ones(x_shape, "float32"), np.ones(context_shape, "float32")])
    assert layer.context_dim == context_shape[-1]
    assert layer.get_config()["context_dim"] == context_shape[-1]
    assert tuple(layer.hyper_kernel.shape) == (context_shape[-1], 4)


def test_context_dim_inferred_symbolically():
    layer = HyperZZWOperator(4)
    out = layer([keras.Input((7, 4)), keras.Input((3,))])
    assert layer.context_dim == 3
    assert tuple(out.shape) == (None, 7, 4)


def test_weight_name_shape_and_initializer_match_kerasfactory():
    """Same name, shape and default initializer as KerasFactory's layer, so its weights load into ours."""
    layer = HyperZZWOperator(6, context_dim=3)
    layer.build([(None, 6), (None, 3)])
    assert [w.name for w in layer.weights] == ["hyper_kernel"]
    assert tuple(layer.hyper_kernel.shape) == (3, 6)
    values = backend.to_numpy(layer.hyper_kernel)
    limit = np.sqrt(6 / (3 + 6))  # glorot_uniform's bound
    assert np.all(np.abs(values) <= limit) and np.std(values) > 0


def test_initializer_regularizer_constraint_are_used():
    layer = HyperZZWOperator(
        3,
        kernel_initializer=keras.initializers.Constant(0.5),
        kernel_regularizer=keras.regularizers.L2(0.1),
        kernel_constraint=keras.constraints.NonNeg(),
    )
    layer([np.ones((2, 3), "float32"), np.ones((2, 2), "float32")])
    np.testing.assert_array_equal(backend.to_numpy(layer.hyper_kernel), np.full((2, 3), 0.5))
    # L2(0.1) of a (2, 3) kernel of 0.5s: 0.1 * 6 * 0.25.
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(backend.to_numpy(layer.losses[0])), 0.15, rtol=1e-6)
    assert isinstance(layer.hyper_kernel.constraint, keras.constraints.NonNeg)


def test_default_layers_draw_fresh_kernels_that_the_global_seed_reproduces():
    """Unseeded (the default), every layer draws its own kernel; keras.utils.set_random_seed reproduces them."""

    def kernel():
        layer = HyperZZWOperator(6)
        layer.build([(None, 6), (None, 3)])
        return backend.to_numpy(layer.hyper_kernel)

    keras.utils.set_random_seed(7)
    first, second = kernel(), kernel()
    assert not np.array_equal(first, second)
    keras.utils.set_random_seed(7)
    np.testing.assert_array_equal(kernel(), first)
    np.testing.assert_array_equal(kernel(), second)


RANDOM_INITIALIZERS = sorted(name for name, (_, random) in strategies.INITIALIZERS.items() if random)


def _kernel(initializer, dtype="float32"):
    layer = HyperZZWOperator(6, kernel_initializer=initializer, dtype=dtype)
    layer.build([(None, 6), (None, 3)])
    return backend.to_numpy(layer.hyper_kernel)


@pytest.mark.parametrize("given_as", ["name", "unseeded instance"])
@pytest.mark.parametrize("family", RANDOM_INITIALIZERS)
def test_unseeded_initializers_draw_fresh_kernels_that_the_global_seed_reproduces(family, given_as):
    """Without a seed, each layer starts from a kernel of its own; `keras.utils.set_random_seed` reproduces
    the sequence, and another global seed gives another one. (One unseeded initializer object shared by two
    layers gives both the same kernel: Keras fixes an unseeded object's seed when it is made, and warns.)"""
    make = (lambda: family) if given_as == "name" else (lambda: getattr(keras.initializers, family)())

    def two():
        return _kernel(make()), _kernel(make())

    keras.utils.set_random_seed(11)
    first = two()
    assert not np.array_equal(*first), f"{family} ({given_as}) on {backend.NAME}: two unseeded layers, one kernel"
    keras.utils.set_random_seed(11)
    again = two()
    for got, want in zip(again, first):
        np.testing.assert_array_equal(got, want, err_msg=f"{family} ({given_as}): set_random_seed(11) twice")
    keras.utils.set_random_seed(12)
    assert not np.array_equal(two()[0], first[0]), f"{family} ({given_as}): seeds 11 and 12 gave one kernel"


@pytest.mark.parametrize("family", RANDOM_INITIALIZERS)
def test_a_seeded_initializer_gives_its_seeds_kernel(family):
    """A seeded initializer's kernel is the one that initializer draws for `(context_dim, input_dim)`,
    whatever the global seed; the seed survives the config; another seed gives another kernel."""
    cls = getattr(keras.initializers, family)
    want = backend.to_numpy(cls(seed=21)((3, 6), "float32"))
    keras.utils.set_random_seed(1)
    np.testing.assert_array_equal(_kernel(cls(seed=21)), want, err_msg=f"{family}(seed=21) on {backend.NAME}")
    keras.utils.set_random_seed(2)
    np.testing.assert_array_equal(_kernel(cls(seed=21)), want, err_msg=f"{family}(seed=21), another global seed")
    clone = HyperZZWOperator.from_config(HyperZZWOperator(6, kernel_initializer=cls(seed=21)).get_config())
    clone.build([(None, 6), (None, 3)])
    np.testing.assert_array_equal(backend.to_numpy(clone.hyper_kernel), want, err_msg=f"{family}: through config")
    assert not np.array_equal(_kernel(cls(seed=22)), want), f"{family}: seeds 21 and 22 gave one kernel"


def test_layer_is_registered_under_the_hyperzzw_package():
    assert keras.saving.get_registered_name(HyperZZWOperator) == "hyperzzw>HyperZZWOperator"
    assert keras.saving.get_registered_object("hyperzzw>HyperZZWOperator") is HyperZZWOperator
