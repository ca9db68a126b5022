"""lrnn-reference: linear RNNs / state-space models written once, in NumPy/SciPy, from the equations.

The building blocks (discretization, scans, convolution, responses) live in their own modules;
the models in ``reference.models`` (LTI: S4, S4D, S5, LRU, Centaurus; LTV: Mamba, RGLRU, S7).
Everything computes in float64 / complex128. Nothing here imports torch.
"""

from reference.convolution import causal_conv, fft_conv
from reference.discretization import (
    DISCRETIZATIONS,
    TIME_VARYING_ONLY,
    discretize,
    discretize_diagonal,
    register_discretization,
    unregister_discretization,
)
from reference.response import DiscreteSSM, frequency_response, impulse_response, kernel, to_dlti
from reference.scan import associative_scan, linear_scan

__all__ = [
    "DISCRETIZATIONS",
    "TIME_VARYING_ONLY",
    "DiscreteSSM",
    "associative_scan",
    "causal_conv",
    "discretize",
    "discretize_diagonal",
    "fft_conv",
    "frequency_response",
    "impulse_response",
    "kernel",
    "linear_scan",
    "register_discretization",
    "unregister_discretization",
    "to_dlti",
]


def __getattr__(name):
    # selective_scan lives with the LTV models; imported lazily to keep this module light.
    if name == "selective_scan":
        from reference.models.ltv.selective_scan import selective_scan

        return selective_scan
    raise AttributeError(f"module 'reference' has no attribute {name!r}")
