"""lrnn-reference, fast: the torch twin of ``reference`` (same names, arguments and layouts), for real use.

The building blocks mirror the reference modules: ``fast.discretization`` (``discretize``,
``discretize_diagonal``), ``fast.scan`` (``linear_scan`` as a blocked work-efficient scan; on CPU
tensors the compiled step loop of ``fast.cpu_scan``),
``fast.convolution`` (``fft_conv``) and ``fast.response`` (``kernel``, ``impulse_response``,
``frequency_response``). ``fast.ops`` gathers the blocks the models run on, each with a
``backend="auto" | "torch" | "triton"`` switch; the models live in ``fast.models``.

Tensors keep their precision (float32 / complex64 or float64 / complex128; Mamba, RGLRU, S7 and the real-valued
ops also take float16 / bfloat16, with the scan state in float32); all tensors of one call must share it.
Everything is differentiable by autograd. ``import fast`` works without Triton: triton is only ever imported
inside a function that launches a kernel.

Validation: shape, dtype and device checks always run; value checks (NaN, dt > 0, gaps >= 0), which read tensor
values on the host, run while ``fast.validation`` is on (the default) and never while it is off
(``fast.set_validation(False)``, ``with fast.validation(False): ...``) or under ``torch.compile``.
"""

from fast import ops
from fast._checks import set_validation, validating, validation
from fast.convolution import fft_conv
from fast.discretization import (
    DISCRETIZATIONS,
    TIME_VARYING_ONLY,
    discretize,
    discretize_diagonal,
    register_discretization,
    unregister_discretization,
)
from fast.ops import linear_scan  # the checked entry (value checks, half precision) of fast.scan.linear_scan
from fast.response import frequency_response, impulse_response, kernel

__all__ = [
    "DISCRETIZATIONS",
    "TIME_VARYING_ONLY",
    "discretize",
    "discretize_diagonal",
    "fft_conv",
    "frequency_response",
    "impulse_response",
    "kernel",
    "linear_scan",
    "ops",
    "register_discretization",
    "unregister_discretization",
    "set_validation",
    "validating",
    "validation",
]
