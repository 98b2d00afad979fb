"""A short training run from stored weights and data: the loss trajectory and final weights of a few SGD
steps match the float64 oracle within the forward error bound the oracle derives (see
`oracle.train_sgd_error_bounds`; the bounds are stored beside the data in golden/training.npz)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conformance import backend, cases, golden
from conformance.target import HyperZZWOperator


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "jit_compile"])
def test_sgd_trajectory_matches_the_oracle(jit_compile, golden_manifest, observer):
    t = cases.TRAINING
    data = golden.load_npz("training.npz", golden_manifest)
    keras.utils.set_random_seed(0)
    x = keras.Input((t.input_dim,), name="x")
    context = keras.Input((t.context_dim,), name="context")
    hidden = HyperZZWOperator(t.input_dim, name="zzw", dtype=t.dtype)([x, context])
    head = keras.layers.Dense(1, use_bias=False, name="head", dtype=t.dtype)
    model = keras.Model([x, context], head(hidden))
    model.get_layer("zzw").hyper_kernel.assign(data["kernel"].astype(t.dtype))
    head.kernel.assign(data["w"].astype(t.dtype))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=t.learning_rate),
        loss=keras.losses.MeanSquaredError(),
        jit_compile=jit_compile if backend.NAME != "torch" or not jit_compile else True,
    )
    history = model.fit(
        [data["x"].astype(t.dtype), data["context"].astype(t.dtype)],
        data["y"].astype(t.dtype),
        batch_size=t.batch,
        epochs=t.steps,
        shuffle=False,
        verbose=0,
    )
    losses = np.asarray(history.history["loss"], dtype=np.float64)
    final_kernel = backend.to_numpy(model.get_layer("zzw").hyper_kernel)
    final_w = backend.to_numpy(head.kernel)
    mode = "jit" if jit_compile else "eager"
    observer.numeric(f"training/losses/{mode}", losses, t.dtype)
    observer.numeric(f"training/final_kernel/{mode}", final_kernel, t.dtype)

    where = f"[training, backend {backend.NAME}, {mode}]"
    loss_err = np.abs(losses - data["losses"])
    assert np.all(loss_err <= data["loss_atol"]), (
        f"{where} losses {losses.tolist()} vs oracle {data['losses'].tolist()}: "
        f"errors {loss_err.tolist()} exceed bounds {data['loss_atol'].tolist()}"
    )
    assert losses[-1] < losses[0] / 2, f"{where} the loss should fall: {losses.tolist()}"
    for name, actual in (("final_kernel", final_kernel), ("final_w", final_w)):
        err = float(np.max(np.abs(actual - data[name])))
        assert err <= float(data["weight_atol"]), f"{where} {name}: max error {err:.3g} > bound {float(data['weight_atol']):.3g}"
