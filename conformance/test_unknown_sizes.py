"""Compiled with sizes unknown until the program runs, at every rank the contract states (2-8): `tf.function`
with `None` for every leading dim (the 1s that broadcast included), `jax.export` with symbolic sizes, and
`torch.compile(dynamic=True)` (`backend.compile_with_unknown_sizes`). A decision the layer takes while tracing
(which kernel broadcasts, whether the mask needs broadcasting) must hold for the sizes it meets when it runs:
each program is traced once and run at two sets of sizes, and its output and output mask are compared with
the oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from conformance import assertions, backend
from conformance.subjects.hyperzzw import oracle, strategies, tolerance
from conformance.subjects.hyperzzw.target import HyperZZWOperator


def _specs(x_shape, context_shape):
    """Each input's shape with its leading dims unknown: named `d<axis>`, so x and the context share a size
    where they are equal; a 1 that broadcasts stays known where the backend needs it (`backend.UNKNOWN_ONES`)."""

    def spec(shape):
        lead = tuple(1 if n == 1 and not backend.UNKNOWN_ONES else f"d{i}" for i, n in enumerate(shape[:-1]))
        return lead + shape[-1:]

    return spec(x_shape), spec(context_shape)


def _grown(shape):
    """The same pattern at other sizes: every dim above 1 one larger (the last, the features, unchanged)."""
    return tuple(n + 1 if n > 1 else n for n in shape[:-1]) + shape[-1:]


@settings(max_examples=max(4, settings.default.max_examples // 4))  # one trace and two runs per example
@given(
    pair=strategies.every_rank_shape_pairs(),
    masked=st.sampled_from(["x", "both", "context", "neither"]),
    seed=st.integers(0, 2**32 - 1),
)
# rank 8 with 1s alternating: past TensorFlow's five broadcast runs, so the product and the mask's AND must take
# the einsum when no size is known; a one-sided mask that must be broadcast to the output's shape
@example(pair=((2, 1, 2, 1, 2, 1, 2, 3), (1, 2, 1, 2, 1, 2, 1, 2)), masked="x", seed=0)
@example(pair=((2, 1, 3, 1, 2, 1, 4), (2, 3, 1, 2, 1, 3, 2)), masked="both", seed=1)
def test_traced_with_unknown_sizes_matches_the_oracle(pair, masked, seed):
    x_shape, context_shape = pair
    same_rank = len(context_shape) == len(x_shape)
    masked = masked if same_rank or masked in ("x", "neither") else "x"
    event(f"masked: {masked}")
    x_spec, c_spec = _specs(x_shape, context_shape)
    with_x_mask, with_c_mask = masked in ("x", "both"), masked in ("context", "both")
    specs = [(x_spec, "float32"), (c_spec, "float32")]
    specs += [(x_spec[:-1], "bool")] * with_x_mask + [(c_spec[:-1], "bool")] * with_c_mask
    kernel = strategies.random_values(seed, (context_shape[-1], x_shape[-1]), "float32", zeros=0.02)
    layer = HyperZZWOperator(x_shape[-1])
    layer.build([x_shape, context_shape])
    layer.hyper_kernel.assign(backend.tensor(kernel, "float32"))

    def fn(x, context, *masks):
        given_masks = list(masks)
        full = [given_masks.pop(0) if with_x_mask else None, given_masks.pop(0) if with_c_mask else None]
        out = layer([x, context])
        mask = layer.compute_mask([x, context], full) if masked != "neither" else None
        return (out, mask) if mask is not None else (out,)

    program = backend.compile_with_unknown_sizes(fn, specs)
    for run, (xs, cs) in enumerate([(x_shape, context_shape), (_grown(x_shape), _grown(context_shape))]):
        rng = np.random.default_rng([seed, run])
        x = strategies.random_values(seed + 1 + run, xs, "float32")
        context = strategies.random_values(seed + 3 + run, cs, "float32")
        x_mask = rng.random(xs[:-1]) < 0.6 if with_x_mask else None
        c_mask = rng.random(cs[:-1]) < 0.6 if with_c_mask else None
        arrays = [x.astype(np.float32), context.astype(np.float32)] + [m for m in (x_mask, c_mask) if m is not None]
        got = program(*arrays)
        what = f"{xs}/{cs}, traced as {x_spec}/{c_spec}, {masked} masked"
        assertions.assert_close(
            backend.to_numpy(got[0]),
            oracle.forward(x, context, kernel, "float32"),
            tolerance.forward_atol(x, context, kernel, "float32", backend.NAME),
            what,
        )
        want_mask = oracle.output_mask(x_mask, c_mask, xs, cs)
        if want_mask is None:
            assert len(got) == 1, f"{what} on {backend.NAME}: a mask where the output carries none"
            continue
        got_mask = backend.to_numpy(got[1])
        assert got_mask.shape == want_mask.shape, (
            f"{what} on {backend.NAME}: output mask of shape {got_mask.shape}, expected {want_mask.shape}"
        )
        np.testing.assert_array_equal(got_mask, want_mask, err_msg=f"{what} on {backend.NAME}")
