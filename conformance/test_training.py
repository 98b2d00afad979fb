"""SGD training steps against the exact oracle: the layer under `Dense(1, use_bias=False)`, Keras's mean
squared error and `keras.optimizers.SGD`, eager and with Keras's `jit_compile=True`.

Each step starts from the stored reference state `(kernels[k], ws[k])` and must land on `kernels[k + 1]`,
`ws[k + 1]` (the exact step rounded once to float32) within the per-step bound `oracle.sgd_step` derives,
and report `losses[k]` within `loss_atol[k]`. Starting every step from the reference keeps each bound a
single step's rounding (a few float32 ulps of the update), so a drifted gradient shows at once instead of
hiding in an error that compounds over steps.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conformance import assertions, backend, cases, golden
from conformance.target import HyperZZWOperator


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "jit_compile"])
def test_sgd_steps_match_the_oracle(jit_compile, golden_manifest, observer):
    t = cases.TRAINING
    data = golden.load_npz("training.npz", golden_manifest)
    keras.utils.set_random_seed(0)
    x = keras.Input((t.input_dim,), name="x")
    context = keras.Input((t.context_dim,), name="context")
    layer = HyperZZWOperator(t.input_dim, name="zzw", dtype=t.dtype)
    head = keras.layers.Dense(1, use_bias=False, name="head", dtype=t.dtype)
    model = keras.Model([x, context], head(layer([x, context])))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=t.learning_rate),
        loss=keras.losses.MeanSquaredError(),
        jit_compile=jit_compile,
    )
    inputs = [data["x"].astype(t.dtype), data["context"].astype(t.dtype)]
    target = data["y"].astype(t.dtype)
    mode = "jit" if jit_compile else "eager"
    losses, kernels, ws = [], [], []
    for k in range(t.steps):
        layer.hyper_kernel.assign(data["kernels"][k].astype(t.dtype))
        head.kernel.assign(data["ws"][k].astype(t.dtype))
        # One epoch of one full batch is one SGD step, through the same `fit` users call.
        history = model.fit(inputs, target, batch_size=t.batch, epochs=1, shuffle=False, verbose=0)
        losses.append(float(history.history["loss"][0]))
        kernels.append(backend.to_numpy(layer.hyper_kernel))
        ws.append(backend.to_numpy(head.kernel))
    losses, kernels, ws = np.asarray(losses), np.stack(kernels), np.stack(ws)
    observer.numeric(f"training/losses/{mode}", losses, t.dtype)
    observer.numeric(f"training/kernels/{mode}", kernels, backend.dtype_of(layer.hyper_kernel))
    observer.numeric(f"training/ws/{mode}", ws, backend.dtype_of(head.kernel))

    where = f"training {mode}"
    assertions.assert_close(losses, data["losses"], data["loss_atol"], where, what="loss before each step")
    assertions.assert_close(kernels, data["kernels"][1:], data["kernel_atol"], where, what="hyper_kernel after each step")
    assertions.assert_close(ws, data["ws"][1:], data["w_atol"], where, what="Dense kernel after each step")
    assert data["losses"][-1] < data["losses"][0] / 2, f"the reference run should learn: {data['losses'].tolist()}"
