"""The suite's backend adapters are the harness's (`conformance.harness.backends`): one definition, used by the
hyperzzw suite and by every harness subject."""

from conformance.harness.backends import (  # noqa: F401
    COMPILERS,
    FAST_COMPILER,
    LIBRARY_VERSION,
    NAME,
    UNKNOWN_ONES,
    compile_with_unknown_sizes,
    dtype_of,
    gradient_step,
    gradients,
    output_and_gradients,
    tensor,
    to_numpy,
    trace_with_unknown_dims,
)
