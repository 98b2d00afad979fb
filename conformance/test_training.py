"""SGD training steps against the exact oracle: the layer under `Dense(1, use_bias=False)`, Keras's mean
squared error and `keras.optimizers.SGD`, eager and with Keras's `jit_compile=True`.

Each step starts from the stored reference state `(kernels[k], ws[k])` and must land on `kernels[k + 1]`,
`ws[k + 1]` (the exact step rounded once to float32) within the per-step bound `tolerance.sgd_step_atols` derives,
and report `losses[k]` within `loss_atol[k]`. Starting every step from the reference keeps each bound a
single step's rounding (a few float32 ulps of the update), so a drifted gradient shows at once instead of
hiding in an error that compounds over steps.
"""

from __future__ import annotations

import keras
import pytest

from conformance import assertions, backend, expected, runner
from conformance.subjects.hyperzzw import cases, golden


def _mode(jit_compile: bool) -> str:
    return expected.COMPILED_MODE if jit_compile else "eager"


@pytest.mark.observes(
    lambda jit_compile: [expected.training(q, _mode(jit_compile)) for q in expected.TRAINING_QUANTITIES]
)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "jit_compile"])
def test_sgd_steps_match_the_oracle(jit_compile, golden_manifest, observer):
    t = cases.TRAINING
    data = golden.load_npz("training.npz", golden_manifest)
    keras.utils.set_random_seed(0)
    model, layer, head = runner.training_model()
    runner.compile_for_training(model, jit_compile)
    mode = _mode(jit_compile)
    losses, kernels, ws = runner.sgd_steps(model, layer, head, data, t.steps)
    observer.numeric(expected.training("losses", mode), losses, t.dtype)
    observer.numeric(expected.training("kernels", mode), kernels, backend.dtype_of(layer.hyper_kernel))
    observer.numeric(expected.training("ws", mode), ws, backend.dtype_of(head.kernel))

    where = f"training {mode}"
    assertions.assert_close(losses, data["losses"], data["loss_atol"], where, what="loss before each step")
    assertions.assert_close(
        kernels, data["kernels"][1:], data["kernel_atol"], where, what="hyper_kernel after each step"
    )
    assertions.assert_close(ws, data["ws"][1:], data["w_atol"], where, what="Dense kernel after each step")
    assert data["losses"][-1] < data["losses"][0] / 2, f"the reference run should learn: {data['losses'].tolist()}"
