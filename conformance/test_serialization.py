"""get_config/from_config, the files users save (.keras, .weights.h5, legacy .h5, pickle) round-tripped, and the
.keras files each backend saved into golden/ (and the .weights.h5 inside each) loaded here."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import keras
import numpy as np
import pytest

from conformance import assertions, backend, expected, upstream
from conformance.subjects.hyperzzw import cases, golden, tolerance
from conformance.subjects.hyperzzw.target import HyperZZWOperator

FULL_KWARGS = dict(
    input_dim=6,
    context_dim=3,
    kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=7),
    kernel_regularizer=keras.regularizers.L1L2(l1=0.01, l2=0.02),
    kernel_constraint=keras.constraints.MaxNorm(2.0),
    name="zzw",
    dtype="float64",
    trainable=False,
)


def test_config_round_trip_is_symmetric():
    layer = HyperZZWOperator(**FULL_KWARGS)
    config = layer.get_config()
    json.dumps(config)  # a config must be JSON-serialisable
    clone = HyperZZWOperator.from_config(config)
    assert clone.get_config() == config
    for key, value in {"input_dim": 6, "context_dim": 3, "name": "zzw", "trainable": False}.items():
        assert config[key] == value
    assert isinstance(clone.kernel_initializer, keras.initializers.RandomNormal)
    assert clone.kernel_initializer.stddev == 0.3
    assert clone.kernel_regularizer.get_config() == {"l1": 0.01, "l2": 0.02}
    assert clone.kernel_constraint.get_config() == {"max_value": 2.0, "axis": 0}
    assert clone.dtype_policy.name == "float64"


def test_inferred_context_dim_is_in_the_config_after_build():
    layer = HyperZZWOperator(4)
    assert layer.get_config()["context_dim"] is None
    layer([np.ones((2, 4), "float32"), np.ones((2, 5), "float32")])
    clone = HyperZZWOperator.from_config(layer.get_config())
    assert clone.context_dim == 5


def test_serialize_deserialize_by_registered_name():
    layer = HyperZZWOperator(4, context_dim=2)
    blob = keras.saving.serialize_keras_object(layer)
    assert blob["registered_name"] == "hyperzzw>HyperZZWOperator"
    clone = keras.saving.deserialize_keras_object(blob)
    assert type(clone) is HyperZZWOperator and clone.get_config() == layer.get_config()


def _model():
    x, context = keras.Input((5, 6), name="x"), keras.Input((3,), name="context")
    return keras.Model([x, context], HyperZZWOperator(**{**FULL_KWARGS, "trainable": True})([x, context]))


def test_keras_file_round_trip(tmp_path):
    model = _model()
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 3))]
    before = model.predict(inputs, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the registration finds the class
    layer = loaded.layers[-1]
    assert type(layer) is HyperZZWOperator and layer.get_config() == model.layers[-1].get_config()
    np.testing.assert_array_equal(backend.to_numpy(layer.hyper_kernel), backend.to_numpy(model.layers[-1].hyper_kernel))
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), before)


@pytest.mark.observes(lambda saved_by: [expected.keras_file(saved_by)])
@pytest.mark.parametrize("saved_by", golden.KERAS_BACKENDS)
def test_golden_keras_file_from_each_backend(saved_by, tmp_path, golden_manifest, observer, request):
    """A .keras file saved on `saved_by` loads here and reproduces the oracle's output.

    Known gap, on a Keras older than the one that wrote the file (the oldest version set): Keras reads the
    files of its own and older releases, not newer ones. Keras 3.15 writes `input_axes`/`output_axes` into
    every VarianceScaling initializer's config (GlorotUniform here, and in Dense too); 3.12-3.14 reject them
    with a TypeError. Strict: if an older Keras starts reading the file, this turns red."""
    path = golden.keras_path(saved_by)
    data = golden.verified_bytes(path, golden_manifest)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "config.json" in archive.namelist()
        written_by = json.loads(archive.read("metadata.json"))["keras_version"]
    if upstream.release(keras.__version__) < upstream.release(written_by):
        reason = (
            f"Keras {keras.__version__} cannot read a .keras file written by Keras {written_by}: "
            "GlorotUniform's config now holds input_axes/output_axes"
        )
        observer.gap(expected.keras_file(saved_by), reason)
        request.applymarker(pytest.mark.xfail(raises=TypeError, strict=True, reason=reason))
    (tmp_path / "model.keras").write_bytes(data)
    model = keras.saving.load_model(tmp_path / "model.keras")
    case = cases.by_id(golden.KERAS_CASE)
    arrays = golden.load_case(case, golden_manifest)
    np.testing.assert_array_equal(backend.to_numpy(model.get_layer("zzw").hyper_kernel), arrays["kernel"])
    out = model([backend.tensor(arrays["x"], "float32"), backend.tensor(arrays["context"], "float32")])
    actual = backend.to_numpy(out)
    observer.numeric(expected.keras_file(saved_by), actual, backend.dtype_of(out))
    atol = tolerance.forward_atol(arrays["x"], arrays["context"], arrays["kernel"], case.dtype, backend.NAME)
    assertions.assert_close(actual, arrays["output"], atol, f"{path} loaded on {backend.NAME}")


def _golden_inputs(golden_manifest):
    case = cases.by_id(golden.KERAS_CASE)
    arrays = golden.load_case(case, golden_manifest)
    return case, arrays, [backend.tensor(arrays["x"], "float32"), backend.tensor(arrays["context"], "float32")]


def _check_golden_model(model, observer, observation, golden_manifest, what):
    """`model` holds KERAS_CASE's kernel, bit for bit, and gives the oracle's output on its inputs."""
    __tracebackhide__ = True
    case, arrays, inputs = _golden_inputs(golden_manifest)
    np.testing.assert_array_equal(backend.to_numpy(model.get_layer("zzw").hyper_kernel), arrays["kernel"], err_msg=what)
    out = model(inputs)
    observer.numeric(observation, backend.to_numpy(out), backend.dtype_of(out))
    atol = tolerance.forward_atol(arrays["x"], arrays["context"], arrays["kernel"], case.dtype, backend.NAME)
    assertions.assert_close(backend.to_numpy(out), arrays["output"], atol, f"{what} on {backend.NAME}")


def _fresh_model():
    """The golden model's architecture with another kernel (zeros), for loading weights into."""
    return golden.keras_model(HyperZZWOperator, kernel=np.zeros(cases.by_id(golden.KERAS_CASE).kernel_shape))


@pytest.mark.observes(lambda fmt: [expected.saved_format(fmt)])
@pytest.mark.parametrize("fmt", golden.SAVED_FORMATS)
def test_saved_formats_round_trip(fmt, tmp_path, golden_manifest, observer):
    """`model.save_weights`/`load_weights` (.weights.h5), the legacy HDF5 `model.save("m.h5")` and
    `pickle`, as users save a model holding the layer: the kernel comes back bit for bit and the model
    gives the oracle's output."""
    model = golden.keras_model(HyperZZWOperator)
    if fmt == "weights.h5":
        model.save_weights(tmp_path / "m.weights.h5")
        loaded = _fresh_model()
        loaded.load_weights(tmp_path / "m.weights.h5")
    elif fmt == "legacy h5":
        model.save(tmp_path / "m.h5")  # (Keras logs its advice to use .keras instead)
        loaded = keras.saving.load_model(tmp_path / "m.h5")  # no custom_objects: the registration finds it
        assert type(loaded.get_layer("zzw")) is HyperZZWOperator
        assert loaded.get_layer("zzw").get_config() == model.get_layer("zzw").get_config()
    else:
        loaded = pickle.loads(pickle.dumps(model))
    _check_golden_model(loaded, observer, expected.saved_format(fmt), golden_manifest, fmt)


@pytest.mark.observes(lambda saved_by: [expected.weights_file(saved_by)])
@pytest.mark.parametrize("saved_by", golden.KERAS_BACKENDS)
def test_weights_saved_by_each_backend_load_here(saved_by, tmp_path, golden_manifest, observer, request):
    """The `model.weights.h5` inside the .keras file `saved_by` wrote is what `save_weights` writes there; a
    model built here loads it with `load_weights` (the cross-backend .weights.h5 round trip)."""
    data = golden.verified_bytes(golden.keras_path(saved_by), golden_manifest)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        (tmp_path / "m.weights.h5").write_bytes(archive.read("model.weights.h5"))
    model = _fresh_model()
    model.load_weights(tmp_path / "m.weights.h5")
    _check_golden_model(
        model, observer, expected.weights_file(saved_by), golden_manifest, f".weights.h5 written on {saved_by}"
    )


# --- dtype policies through saving ---------------------------------------------------------------------------

# Every policy the layer supports, by name and as a `keras.DTypePolicy` object (what `dtype=` also takes).
SAVED_POLICIES = [*cases.POLICIES, "DTypePolicy(mixed_float16)", "DTypePolicy(mixed_bfloat16)", "DTypePolicy(float64)"]


def _policy(spec: str):
    return keras.DTypePolicy(spec[len("DTypePolicy(") : -1]) if spec.startswith("DTypePolicy(") else spec


def _policy_model(policy):
    x, context = keras.Input((5, 6), name="x"), keras.Input((3,), name="context")
    layer = HyperZZWOperator(6, dtype=_policy(policy), kernel_initializer="zeros", name="zzw")
    model = keras.Model([x, context], layer([x, context]))
    # A kernel of values exact in every dtype (multiples of 1/8 below 4), drawn from a fixed NumPy seed.
    kernel = np.random.default_rng(5).integers(-32, 32, (3, 6)) / 8
    layer.hyper_kernel.assign(backend.tensor(kernel, backend.dtype_of(layer.hyper_kernel)))
    return model


def _assert_same_policy(layer, reference, what):
    __tracebackhide__ = True
    got = (layer.dtype_policy.name, layer.compute_dtype, layer.variable_dtype, backend.dtype_of(layer.hyper_kernel))
    want = (
        reference.dtype_policy.name,
        reference.compute_dtype,
        reference.variable_dtype,
        backend.dtype_of(reference.hyper_kernel),
    )
    assert got == want, f"{what} on {backend.NAME}: (policy, compute, variable, kernel dtype) {got}, expected {want}"


@pytest.mark.parametrize("how", ["config", ".keras"])
@pytest.mark.parametrize("policy", SAVED_POLICIES)
def test_dtype_policy_survives_saving(policy, how, tmp_path):
    """A layer of any dtype policy (mixed ones and `DTypePolicy` objects included), saved and loaded (its
    config, or a `.keras` file of its model), comes back with the same policy, compute and variable dtypes,
    kernel, and outputs (bit for bit: the same computation on the same backend)."""
    model = _policy_model(policy)
    layer = model.get_layer("zzw")
    compute, variable = cases.POLICIES[layer.dtype_policy.name]
    assert (layer.compute_dtype, layer.variable_dtype) == (compute, variable), policy
    rng = np.random.default_rng(6)
    inputs = [
        backend.tensor(rng.integers(-8, 8, (2, 5, 6)) / 4, "float32"),
        backend.tensor(rng.random((2, 3)) < 0.5, "float32"),
    ]
    before = backend.to_numpy(model(inputs))
    if how == "config":
        loaded_layer = HyperZZWOperator.from_config(json.loads(json.dumps(layer.get_config())))
        loaded_layer.build([tuple(t.shape) for t in inputs])
        loaded_layer.hyper_kernel.assign(layer.hyper_kernel)  # the config holds no weights
        out = loaded_layer(inputs)
    else:
        model.save(tmp_path / "model.keras")
        loaded = keras.saving.load_model(tmp_path / "model.keras")
        loaded_layer = loaded.get_layer("zzw")
        out = loaded(inputs)
    what = f"{policy} through {how}"
    _assert_same_policy(loaded_layer, layer, what)
    np.testing.assert_array_equal(
        backend.to_numpy(loaded_layer.hyper_kernel), backend.to_numpy(layer.hyper_kernel), err_msg=what
    )
    assertions.assert_dtype(backend.dtype_of(out), compute, what)
    np.testing.assert_array_equal(backend.to_numpy(out), before, err_msg=f"{what} on {backend.NAME}")
