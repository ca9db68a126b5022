"""The building blocks the fast models run on, one call signature each, with a ``backend`` switch.

* ``fft_conv(u, K, *, backend="auto")``: causal convolution with an SSM kernel through the FFT
  (``fast.convolution``);
* ``linear_scan(a, b, initial_state=None, *, backend="auto") -> (x, final_state)``: the diagonal
  recurrence x_k = a_k * x_{k-1} + b_k, real or complex, as a blocked work-efficient scan (``fast.scan``);
* ``selective_scan(u, dt, A, B, C, D=None, z=None, *, method="mamba", integration_timesteps=None,
  initial_state=None, return_state=False, backend="auto")``: the selective SSM of Mamba with the
  reference's arguments plus ``backend``, chunked over time (``fast.selective_scan``).

Backends (``fast._checks.resolve_backend``): ``"torch"`` runs the torch code; ``"triton"`` runs the Triton
kernels of ``fast.triton`` (``linear_scan``, ``selective_scan``), and raises a ``RuntimeError`` that says why and
what to install where they cannot run, or a ``ValueError`` where the call has no kernel (``fft_conv``; a
precision or discretization the kernel lacks); ``"auto"`` picks Triton for CUDA tensors the kernel can take and
torch otherwise. There is no silent fallback from a requested backend to another.

Value checks (finite tensors, steps > 0, gaps >= 0) run in every entry point alike while ``fast.validation``
is on and never while it is off or under torch.compile. Half precision (float16, bfloat16) is accepted by the
real-valued ops and computed in float32, the results cast back; complex half precision is refused.

This module never imports triton: the kernels import it lazily, inside the function that launches them.
"""

from __future__ import annotations

import functools

import torch

from fast import scan as _scan
from fast._checks import BACKENDS, HALF, no_half, upcast, values_ok
from fast.convolution import fft_conv
from fast.selective_scan import selective_scan

__all__ = ["BACKENDS", "fft_conv", "linear_scan", "selective_scan"]


@functools.wraps(_scan.linear_scan)
def linear_scan(a, b, initial_state=None, *, backend: str = "auto", chunk_size: int | None = None):
    # The public entry of fast.scan.linear_scan (its docstring above): the argument checks, then the value
    # checks while fast.validation is on (a, b and initial_state finite; the models call fast.scan.linear_scan
    # on the decays and inputs they computed, which are not the user's arguments). Real float16 / bfloat16
    # tensors are scanned in float32 and the results cast back; complex half precision is refused.
    args = _scan.check_scan_args(a, b, initial_state)
    if args.b.shape[0] == 0:
        raise ValueError(f"b: expected shape (B, L, ...) with B, L >= 1, got {tuple(args.b.shape)}")
    if args.dtype == torch.complex32:
        no_half(args.dtype, "linear_scan with complex inputs")
    values_ok({"a": args.a, "b": args.b, "initial_state": args.initial_state})
    if args.dtype in HALF:
        x, final = _scan.linear_scan(
            upcast(args.a), upcast(args.b), upcast(args.initial_state), backend=backend, chunk_size=chunk_size
        )
        return x.to(args.dtype), final.to(args.dtype)
    return _scan.linear_scan(a, b, initial_state, backend=backend, chunk_size=chunk_size)
