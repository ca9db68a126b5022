"""The building blocks the fast models run on, one call signature each, with a ``backend`` switch.

* ``fft_conv(u, K, *, backend="auto")``: causal convolution with an SSM kernel through the FFT
  (``fast.convolution``);
* ``linear_scan(a, b, initial_state=None, *, backend="auto") -> (x, final_state)``: the diagonal
  recurrence x_k = a_k * x_{k-1} + b_k, real or complex, as a chunked parallel scan (``fast.scan``);
* ``selective_scan(u, dt, A, B, C, D=None, z=None, *, method="mamba", integration_timesteps=None,
  initial_state=None, return_state=False, backend="auto")``: the selective SSM of Mamba with the
  reference's arguments plus ``backend``, chunked over time (``fast.selective_scan``).

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
from fast.selective_scan import selective_scan

__all__ = ["BACKENDS", "fft_conv", "linear_scan", "selective_scan"]
