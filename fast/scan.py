"""The diagonal linear recurrence as a chunked parallel scan in torch (twin of ``reference.scan``).

    x_k = a_k * x_{k-1} + b_k,      k = 0 .. L-1,   x_{-1} = initial_state (0 by default)

Glossary: ``a`` = a-bar_k (the per-step decay, elementwise), ``b`` = B-bar_k u_k (the injected input),
``x`` = the states; tensors are batch-first ``(B, L, ...)``: axis 1 is time, the trailing axes are
independent lanes. ``T`` is the chunk size, ``C`` the number of chunks, ``F`` the flattened lanes.

Algorithm (the operator of EQUATIONS.md §0.5, ``(a_i, b_i) • (a_j, b_j) = (a_j a_i, a_j b_i + b_j)``):

1. pad L up to a multiple of T with identity steps (a = 1, b = 0), which leave the state unchanged,
   and view the sequence as C chunks of T steps: ``(B, C, T, F)``;
2. inside every chunk at once, a Hillis-Steele doubling scan (log2 T rounds, vectorized over all
   chunks) gives the running decay ``P_t = a_t ... a_0`` and the state ``X_t`` reached from a zero
   state at the chunk's start;
3. the chunk summaries ``(P_{T-1}, X_{T-1})`` form a recurrence of length C over chunks, solved by the
   same function (recursively, so the whole scan has depth O(log L) and no Python loop over steps or
   chunks); it gives the state ``h_c`` entering each chunk;
4. x = X + P * h_c for every step of chunk c.

Only products and sums appear: no division by cumulative products (which would blow up when some a_k
is small), so the scan is as accurate as the step-by-step recurrence up to rounding order, and autograd
differentiates it directly. Memory is O(B L F) per doubling round.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from fast._checks import broadcast, common_dtype, positive_int, resolve_backend, tensor

__all__ = ["linear_scan", "check_scan_args", "ScanArgs", "DEFAULT_CHUNK_SIZE"]

#: Steps per chunk of the intra-chunk doubling scan (log2(64) = 6 rounds per level).
DEFAULT_CHUNK_SIZE = 64


def _doubling_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive Hillis-Steele scan over axis -2 of ``(..., T, F)`` tensors: (running decay, state from 0).

    After the round with offset s, element t holds the combination of elements t-2s+1 .. t.
    """
    T = a.shape[-2]
    P, X = a, b  # (..., T, F)
    offset = 1
    while offset < T:
        # element t absorbs the earlier element t - offset; the first `offset` elements are done
        X = torch.cat([X[..., :offset, :], P[..., offset:, :] * X[..., :-offset, :] + X[..., offset:, :]], dim=-2)
        P = torch.cat([P[..., :offset, :], P[..., offset:, :] * P[..., :-offset, :]], dim=-2)  # (..., T, F)
        offset *= 2
    return P, X


def _scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor, T: int) -> torch.Tensor:
    """States ``(B, L, F)`` of x_k = a_k x_{k-1} + b_k from ``x0 (B, F)``; ``a, b`` are ``(B, L, F)``."""
    Bsz, L, F = b.shape
    if L <= T:
        # one chunk: fold the initial state into the first input, b_0 <- a_0 x0 + b_0
        b = torch.cat([a[:, :1] * x0[:, None] + b[:, :1], b[:, 1:]], dim=1)  # (B, L, F)
        return _doubling_scan(a, b)[1]
    C = -(-L // T)  # number of chunks
    pad = C * T - L
    if pad:
        a = torch.cat([a, torch.ones(Bsz, pad, F, dtype=a.dtype, device=a.device)], dim=1)  # (B, C T, F)
        b = torch.cat([b, torch.zeros(Bsz, pad, F, dtype=b.dtype, device=b.device)], dim=1)  # (B, C T, F)
    P, X = _doubling_scan(a.reshape(Bsz, C, T, F), b.reshape(Bsz, C, T, F))  # (B, C, T, F) each
    ends = _scan(P[:, :, -1], X[:, :, -1], x0, T)  # (B, C, F): the state after each chunk
    h = torch.cat([x0[:, None], ends[:, :-1]], dim=1)  # (B, C, F): the state entering each chunk
    x = X + P * h[:, :, None]  # (B, C, T, F)
    return x.reshape(Bsz, C * T, F)[:, :L]


class ScanArgs(NamedTuple):
    """The arguments of ``linear_scan`` once checked (shared with the Triton kernel's entry point)."""

    a: torch.Tensor  # (B, L, ...) or with size-1 axes that broadcast against b
    b: torch.Tensor  # (B, L, ...)
    initial_state: torch.Tensor | None  # (B, ...)
    shape: torch.Size  # the shape of b, and of the states
    dtype: torch.dtype  # the common dtype of the three


def check_scan_args(a, b, initial_state) -> ScanArgs:
    """Check the arguments of ``linear_scan``: a ``ValueError`` names the argument and what was expected."""
    a = tensor(a, "a")
    b = tensor(b, "b")
    if b.ndim < 2 or b.shape[1] == 0:
        raise ValueError(f"b: expected shape (B, L, ...) with L >= 1, got {tuple(b.shape)}")
    if a.ndim != b.ndim:
        raise ValueError(
            f"a: expected {b.ndim} axes to broadcast against b {tuple(b.shape)}, got shape {tuple(a.shape)}"
        )
    shape = broadcast({"a": a.shape, "b": b.shape}, "linear_scan")
    if shape != b.shape:
        raise ValueError(f"a: shape {tuple(a.shape)} would enlarge b {tuple(b.shape)}; give b its full shape")
    state_shape = (b.shape[0],) + tuple(b.shape[2:])
    if initial_state is not None:
        initial_state = tensor(initial_state, "initial_state")
        if tuple(initial_state.shape) != state_shape:
            raise ValueError(f"initial_state: expected shape {state_shape} (B, ...), got {tuple(initial_state.shape)}")
    dtype = common_dtype({"a": a, "b": b, "initial_state": initial_state}, "linear_scan")
    return ScanArgs(a, b, initial_state, shape, dtype)


def _why_no_kernel(dtype: torch.dtype) -> str | None:
    """Why the Triton kernel cannot take this call, or None (its precisions: ``fast.triton.linear_scan.DTYPES``)."""
    from fast.triton.linear_scan import DTYPES

    return None if dtype in DTYPES else f"its kernel runs in float32/float64 (real or complex), got {dtype}"


def linear_scan(a, b, initial_state=None, *, backend: str = "auto", chunk_size: int | None = None):
    """The recurrence x_k = a_k * x_{k-1} + b_k as a chunked parallel scan (module docstring).

    Args:
        a: ``(B, L, ...)`` decays (may have size-1 axes that broadcast against ``b``).
        b: ``(B, L, ...)`` inputs; real or complex, of the precision of ``a``.
        initial_state: ``(B, ...)``, the state before step 0 (zeros if omitted).
        backend: ``"auto"`` | ``"torch"`` | ``"triton"``. ``"torch"`` runs the scan of this module;
            ``"triton"`` the kernel ``fast.triton.linear_scan`` (an error says why when it cannot run here);
            ``"auto"`` picks Triton for CUDA tensors of a precision the kernel has, torch otherwise
            (``fast._checks.resolve_backend``).
        chunk_size: steps per chunk; the result does not depend on it beyond rounding. ``None``: the
            backend's default (torch: ``DEFAULT_CHUNK_SIZE``, any integer >= 2; Triton: a power of two).

    Returns:
        ``(x, final_state)`` with ``x (B, L, ...)`` and ``final_state = x[:, -1]`` ``(B, ...)``; the dtype
        is the common dtype of the inputs (complex if any is complex).
    """
    args = check_scan_args(a, b, initial_state)
    a, b, initial_state, shape, dtype = args
    if resolve_backend(backend, "linear_scan", (a, b, initial_state), no_kernel=_why_no_kernel(dtype)) == "triton":
        from fast.triton.linear_scan import run_checked

        return run_checked(args, chunk_size=chunk_size)
    T = positive_int(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, "chunk_size", minimum=2)

    Bsz, L = b.shape[:2]
    F = math.prod(b.shape[2:])  # independent lanes
    a_flat = a.to(dtype).expand(shape).reshape(Bsz, L, F)  # (B, L, F)
    b_flat = b.to(dtype).reshape(Bsz, L, F)  # (B, L, F)
    if initial_state is None:
        x0 = torch.zeros(Bsz, F, dtype=dtype, device=b.device)  # (B, F)
    else:
        x0 = initial_state.to(dtype).reshape(Bsz, F)  # (B, F)
    x = _scan(a_flat, b_flat, x0, T).reshape(shape)  # (B, L, ...)
    return x, x[:, -1]
