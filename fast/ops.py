"""The building blocks the fast models run on, one call signature each, with a ``backend`` switch.

* ``fft_conv(u, K, *, backend="auto")``: causal convolution with an SSM kernel through the FFT
  (``fast.convolution``);
* ``linear_scan(a, b, initial_state=None, *, backend="auto") -> (x, final_state)``: the diagonal
  recurrence x_k = a_k * x_{k-1} + b_k, real or complex, as a chunked parallel scan (``fast.scan``);
* ``selective_scan``: the selective SSM of Mamba with the reference's arguments plus ``backend`` -- not
  part of this build yet; it arrives with the LTV models (asking for it raises an ``AttributeError``
  that says so).

Backends: ``"torch"`` runs the torch code; ``"triton"`` will run the Triton kernels, which are not part
of this build yet, so asking for it raises ``NotImplementedError`` (with the install command when
Triton itself is missing); ``"auto"`` runs torch today and, once the kernels exist, will choose Triton
for CUDA tensors and torch otherwise. There is no silent fallback from one backend to another.

This module never imports triton: kernels will import it lazily, inside the function that launches them.
"""

from __future__ import annotations

from fast._checks import BACKENDS
from fast.convolution import fft_conv
from fast.scan import linear_scan

__all__ = ["BACKENDS", "fft_conv", "linear_scan"]


def __getattr__(name):
    # The place of fast.ops.selective_scan (Mamba's selective scan, torch and Triton): a later issue.
    if name == "selective_scan":
        raise AttributeError(
            "fast.ops.selective_scan is not part of this build yet (it arrives with the LTV models); "
            "use reference.selective_scan for the definition"
        )
    raise AttributeError(f"module 'fast.ops' has no attribute {name!r}")
