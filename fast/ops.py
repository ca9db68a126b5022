"""The building blocks the fast models run on, one call signature each, with a ``backend`` switch.

* ``fft_conv(u, K, *, backend="auto")``: causal convolution with an SSM kernel through the FFT
  (``fast.convolution``);
* ``linear_scan(a, b, initial_state=None, *, backend="auto") -> (x, final_state)``: the diagonal
  recurrence x_k = a_k * x_{k-1} + b_k, real or complex, as a chunked parallel scan (``fast.scan``);
* ``selective_scan(u, dt, A, B, C, D=None, z=None, *, method="mamba", integration_timesteps=None,
  initial_state=None, return_state=False, backend="auto")``: the selective SSM of Mamba with the
  reference's arguments plus ``backend``, chunked over time (``fast.selective_scan``).

Backends (``fast._checks.resolve_backend``): ``"torch"`` runs the torch code; ``"triton"`` runs the Triton
kernels of ``fast.triton`` (``linear_scan``, ``selective_scan``), and raises a ``RuntimeError`` that says why and
what to install where they cannot run, or a ``ValueError`` where the call has no kernel (``fft_conv``; a
precision or discretization the kernel lacks); ``"auto"`` picks Triton for CUDA tensors the kernel can take and
torch otherwise. There is no silent fallback from a requested backend to another.

This module never imports triton: the kernels import it lazily, inside the function that launches them.
"""

from __future__ import annotations

from fast._checks import BACKENDS
from fast.convolution import fft_conv
from fast.scan import linear_scan
from fast.selective_scan import selective_scan

__all__ = ["BACKENDS", "fft_conv", "linear_scan", "selective_scan"]
