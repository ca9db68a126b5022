"""The diagonal linear recurrence as a Triton kernel, forward and backward (twin of ``fast.scan.linear_scan``).

    x_k = a_k * x_{k-1} + b_k,      k = 0 .. L-1,   x_{-1} = initial_state (0 by default)

Used by the models whose state transition is an elementwise decay: S5, LRU, RG-LRU (real or complex).

Glossary (code name -> symbol): ``a`` = a-bar_k (the per-step decay), ``b`` = B-bar_k u_k (the injected
input), ``x`` = the states, ``F`` = the independent lanes (every trailing axis flattened), ``T`` = ``CHUNK``
(steps per chunk), ``BLOCK_F`` = lanes per program. Complex tensors are handled as their real and
imaginary parts (``torch.view_as_real`` layout: element ``e`` has its real part at ``2e`` and its imaginary
part at ``2e + 1``): Triton has no complex dtype.

Forward kernel, one program per (batch row, block of ``BLOCK_F`` lanes), walking along L one chunk at a time:

1. load a ``(T, BLOCK_F)`` tile of ``a`` and ``b`` (rows past L are identity steps: a = 1, b = 0);
2. scan the tile along time with ``tl.associative_scan`` and the operator of reference/README.md §Scan,
   ``(a_i, b_i) • (a_j, b_j) = (a_j a_i, a_j b_i + b_j)``: it gives, for every row, the product of the decays
   since the chunk start ``P_t`` and the state reached from a zero state ``X_t``;
3. ``x_t = X_t + P_t h`` with the state ``h`` carried in registers from the previous chunk; store ``x``;
   the last row becomes the new ``h``. After the last chunk ``h`` is the final state.

Backward (``x`` is the output of the forward pass, so it is kept for the backward; there is nothing else to
store or recompute). With ``G_t = dLoss/dx_t`` (all paths), torch's convention for complex gradients
(the gradient of a real loss with respect to ``z`` is ``dLoss/d conj(z)``) gives

    G_t = dx_t + conj(a_{t+1}) G_{t+1},   G_{L-1} = dx_{L-1} + d final_state,
    db_t = G_t,   da_t = G_t conj(x_{t-1}),   d initial_state = conj(a_0) G_0,

the same recurrence run backwards in time, here with ``tl.associative_scan(..., reverse=True)`` on tiles that
read ``a`` one step ahead, and the chunks visited from last to first.

Triton is imported on first use (``_kernels``), never when this module is imported.
"""

from __future__ import annotations

import functools
import math

import torch

from fast.scan import ScanArgs, check_scan_args
from fast.triton._tiles import next_power_of_2, power_of_two

__all__ = ["linear_scan", "run_checked", "DTYPES", "DEFAULT_CHUNK_SIZE", "DEFAULT_BLOCK_SIZE"]

#: The precisions the kernels run in (complex ones as their real and imaginary parts).
DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)

#: Steps per chunk (rows of a tile). Untuned: no GPU was available when these kernels were written.
DEFAULT_CHUNK_SIZE = 32
#: Lanes per program (columns of a tile). Untuned, as above.
DEFAULT_BLOCK_SIZE = 64

# Bound by _kernels() on first use: Triton is imported lazily (``import fast`` never imports it).
triton = None
tl = None


# ------------------------------------------------------------------------------------------------
# Kernels (plain functions here; _kernels() compiles them with triton.jit on first use)
# ------------------------------------------------------------------------------------------------


def _combine(a1, x1, a2, x2):
    # (a1, x1) summarizes the earlier steps, (a2, x2) the later ones: apply the earlier map first.
    return a1 * a2, a2 * x1 + x2


def _combine_complex(ar1, ai1, xr1, xi1, ar2, ai2, xr2, xi2):
    # the complex version of _combine, on real and imaginary parts
    ar = ar1 * ar2 - ai1 * ai2
    ai = ar1 * ai2 + ai1 * ar2
    xr = ar2 * xr1 - ai2 * xi1 + xr2
    xi = ar2 * xi1 + ai2 * xr1 + xi2
    return ar, ai, xr, xi


def _row(tile, rows, r):
    # row r of a (T, BLOCK) register tile, as a (BLOCK,) vector (Triton cannot index a register tile)
    return tl.sum(tl.where(rows[:, None] == r, tile, 0.0), axis=0)


def _linear_scan_fwd_kernel(
    A, Bx, H0, X, HN,  # a, b (B, L, F); initial state (B, F); x (B, L, F); final state (B, F)
    L, F,
    IS_COMPLEX: tl.constexpr, HAS_H0: tl.constexpr, CHUNK: tl.constexpr, BLOCK_F: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_f = tl.program_id(1)
    lanes = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)  # (BLOCK_F,)
    lane_ok = lanes < F
    rows = tl.arange(0, CHUNK)  # (T,)
    seq = pid_b.to(tl.int64) * L * F  # offset of this batch row
    state = pid_b.to(tl.int64) * F + lanes  # (BLOCK_F,) element index into (B, F)

    h_re = tl.zeros([BLOCK_F], dtype=X.dtype.element_ty)  # (BLOCK_F,) carried state
    h_im = tl.zeros([BLOCK_F], dtype=X.dtype.element_ty)
    if HAS_H0:
        if IS_COMPLEX:
            h_re = tl.load(H0 + 2 * state, mask=lane_ok, other=0.0)
            h_im = tl.load(H0 + 2 * state + 1, mask=lane_ok, other=0.0)
        else:
            h_re = tl.load(H0 + state, mask=lane_ok, other=0.0)

    for start in range(0, L, CHUNK):
        t = start + rows  # (T,)
        ok = (t < L)[:, None] & lane_ok[None, :]  # (T, BLOCK_F)
        idx = seq + t[:, None] * F + lanes[None, :]  # (T, BLOCK_F)
        if IS_COMPLEX:
            a_re = tl.load(A + 2 * idx, mask=ok, other=1.0)  # (T, BLOCK_F); padding = identity step
            a_im = tl.load(A + 2 * idx + 1, mask=ok, other=0.0)
            b_re = tl.load(Bx + 2 * idx, mask=ok, other=0.0)
            b_im = tl.load(Bx + 2 * idx + 1, mask=ok, other=0.0)
            p_re, p_im, s_re, s_im = tl.associative_scan((a_re, a_im, b_re, b_im), 0, _combine_complex)
            x_re = s_re + p_re * h_re[None, :] - p_im * h_im[None, :]  # (T, BLOCK_F)
            x_im = s_im + p_re * h_im[None, :] + p_im * h_re[None, :]
            tl.store(X + 2 * idx, x_re, mask=ok)
            tl.store(X + 2 * idx + 1, x_im, mask=ok)
            h_re = _row(x_re, rows, CHUNK - 1)  # padded rows carry the last state through
            h_im = _row(x_im, rows, CHUNK - 1)
        else:
            a = tl.load(A + idx, mask=ok, other=1.0)  # (T, BLOCK_F)
            b = tl.load(Bx + idx, mask=ok, other=0.0)
            p, s = tl.associative_scan((a, b), 0, _combine)
            x = s + p * h_re[None, :]  # (T, BLOCK_F)
            tl.store(X + idx, x, mask=ok)
            h_re = _row(x, rows, CHUNK - 1)

    if IS_COMPLEX:
        tl.store(HN + 2 * state, h_re, mask=lane_ok)
        tl.store(HN + 2 * state + 1, h_im, mask=lane_ok)
    else:
        tl.store(HN + state, h_re, mask=lane_ok)


def _linear_scan_bwd_kernel(
    A, X, H0, DX, DHN,  # a, x (B, L, F); initial state (B, F); dLoss/dx (B, L, F); dLoss/d final (B, F)
    DA, DB, DH0,  # outputs: (B, L, F), (B, L, F), (B, F)
    L, F, NUM_CHUNKS,
    IS_COMPLEX: tl.constexpr, HAS_H0: tl.constexpr, CHUNK: tl.constexpr, BLOCK_F: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_f = tl.program_id(1)
    lanes = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)  # (BLOCK_F,)
    lane_ok = lanes < F
    rows = tl.arange(0, CHUNK)  # (T,)
    seq = pid_b.to(tl.int64) * L * F
    state = pid_b.to(tl.int64) * F + lanes  # (BLOCK_F,)

    # g = G_{t+1} entering a chunk from the later one; at the end it is d final_state
    if IS_COMPLEX:
        g_re = tl.load(DHN + 2 * state, mask=lane_ok, other=0.0)  # (BLOCK_F,)
        g_im = tl.load(DHN + 2 * state + 1, mask=lane_ok, other=0.0)
    else:
        g_re = tl.load(DHN + state, mask=lane_ok, other=0.0)
        g_im = tl.zeros([BLOCK_F], dtype=g_re.dtype)
    if HAS_H0:
        if IS_COMPLEX:
            h0_re = tl.load(H0 + 2 * state, mask=lane_ok, other=0.0)
            h0_im = tl.load(H0 + 2 * state + 1, mask=lane_ok, other=0.0)
        else:
            h0_re = tl.load(H0 + state, mask=lane_ok, other=0.0)
            h0_im = tl.zeros([BLOCK_F], dtype=h0_re.dtype)
    else:
        h0_re = tl.zeros([BLOCK_F], dtype=g_re.dtype)
        h0_im = tl.zeros([BLOCK_F], dtype=g_re.dtype)

    for i in range(0, NUM_CHUNKS):
        c = NUM_CHUNKS - 1 - i  # last chunk first
        t = c * CHUNK + rows  # (T,)
        ok = (t < L)[:, None] & lane_ok[None, :]  # (T, BLOCK_F)
        next_ok = (t + 1 < L)[:, None] & lane_ok[None, :]  # a_{t+1} exists
        prev_ok = ((t >= 1) & (t < L))[:, None] & lane_ok[None, :]  # x_{t-1} is a stored state
        idx = seq + t[:, None] * F + lanes[None, :]  # (T, BLOCK_F)
        first = (t == 0)[:, None]  # (T, 1): x_{-1} is the initial state
        if IS_COMPLEX:
            # G_t = dx_t + conj(a_{t+1}) G_{t+1}; a_L = 1 and padded rows are identity steps
            n_re = tl.load(A + 2 * (idx + F), mask=next_ok, other=1.0)  # (T, BLOCK_F)
            n_im = -tl.load(A + 2 * (idx + F) + 1, mask=next_ok, other=0.0)
            e_re = tl.load(DX + 2 * idx, mask=ok, other=0.0)
            e_im = tl.load(DX + 2 * idx + 1, mask=ok, other=0.0)
            p_re, p_im, s_re, s_im = tl.associative_scan(
                (n_re, n_im, e_re, e_im), 0, _combine_complex, reverse=True
            )
            G_re = s_re + p_re * g_re[None, :] - p_im * g_im[None, :]  # (T, BLOCK_F)
            G_im = s_im + p_re * g_im[None, :] + p_im * g_re[None, :]
            xp_re = tl.load(X + 2 * (idx - F), mask=prev_ok, other=0.0)  # (T, BLOCK_F): x_{t-1}
            xp_im = tl.load(X + 2 * (idx - F) + 1, mask=prev_ok, other=0.0)
            xp_re = tl.where(first, h0_re[None, :], xp_re)
            xp_im = tl.where(first, h0_im[None, :], xp_im)
            tl.store(DB + 2 * idx, G_re, mask=ok)
            tl.store(DB + 2 * idx + 1, G_im, mask=ok)
            tl.store(DA + 2 * idx, G_re * xp_re + G_im * xp_im, mask=ok)  # G conj(x_{t-1})
            tl.store(DA + 2 * idx + 1, G_im * xp_re - G_re * xp_im, mask=ok)
            g_re = _row(G_re, rows, 0)
            g_im = _row(G_im, rows, 0)
        else:
            nxt = tl.load(A + idx + F, mask=next_ok, other=1.0)  # (T, BLOCK_F): a_{t+1}
            e = tl.load(DX + idx, mask=ok, other=0.0)
            p, s = tl.associative_scan((nxt, e), 0, _combine, reverse=True)
            G = s + p * g_re[None, :]  # (T, BLOCK_F)
            xp = tl.load(X + idx - F, mask=prev_ok, other=0.0)  # (T, BLOCK_F): x_{t-1}
            xp = tl.where(first, h0_re[None, :], xp)
            tl.store(DB + idx, G, mask=ok)
            tl.store(DA + idx, G * xp, mask=ok)
            g_re = _row(G, rows, 0)

    # d initial_state = conj(a_0) G_0
    if IS_COMPLEX:
        a0_re = tl.load(A + 2 * (seq + lanes), mask=lane_ok, other=0.0)  # (BLOCK_F,)
        a0_im = tl.load(A + 2 * (seq + lanes) + 1, mask=lane_ok, other=0.0)
        tl.store(DH0 + 2 * state, a0_re * g_re + a0_im * g_im, mask=lane_ok)
        tl.store(DH0 + 2 * state + 1, a0_re * g_im - a0_im * g_re, mask=lane_ok)
    else:
        a0 = tl.load(A + seq + lanes, mask=lane_ok, other=0.0)
        tl.store(DH0 + state, a0 * g_re, mask=lane_ok)


@functools.cache
def _kernels():
    """Import Triton and compile the kernels of this module (once). As in ``fast.triton.selective_scan``, the
    small device function ``_row`` runs as plain Python under the interpreter (a nested jit call is slow there)."""
    global triton, tl, _combine, _combine_complex, _row, _linear_scan_fwd_kernel, _linear_scan_bwd_kernel
    from fast.triton import import_triton, interpreting

    triton, tl = import_triton()
    _combine = triton.jit(_combine)  # tl.associative_scan takes jit functions
    _combine_complex = triton.jit(_combine_complex)
    _row = _row if interpreting() else triton.jit(_row)
    _linear_scan_fwd_kernel = triton.jit(_linear_scan_fwd_kernel)
    _linear_scan_bwd_kernel = triton.jit(_linear_scan_bwd_kernel)
    return _linear_scan_fwd_kernel, _linear_scan_bwd_kernel


# ------------------------------------------------------------------------------------------------
# Launchers and autograd
# ------------------------------------------------------------------------------------------------


def _real_view(x: torch.Tensor | None) -> torch.Tensor | None:
    # the kernels see complex tensors as (..., 2) real tensors (interleaved real and imaginary parts)
    if x is None or not x.is_complex():
        return x
    return torch.view_as_real(x)


def _forward(a, b, h0, chunk: int, block: int):
    fwd, _ = _kernels()
    Bsz, L, F = b.shape
    x = torch.empty_like(b)  # (B, L, F)
    hN = torch.empty((Bsz, F), dtype=b.dtype, device=b.device)  # (B, F)
    grid = (Bsz, triton.cdiv(F, block))
    fwd[grid](
        _real_view(a), _real_view(b), _real_view(h0), _real_view(x), _real_view(hN), L, F,
        IS_COMPLEX=b.is_complex(), HAS_H0=h0 is not None, CHUNK=chunk, BLOCK_F=block,
    )  # fmt: skip
    return x, hN


def _backward(a, x, h0, dx, dhN, chunk: int, block: int):
    _, bwd = _kernels()
    Bsz, L, F = x.shape
    da = torch.empty_like(x)  # (B, L, F)
    db = torch.empty_like(x)  # (B, L, F)
    dh0 = torch.empty((Bsz, F), dtype=x.dtype, device=x.device)  # (B, F)
    grid = (Bsz, triton.cdiv(F, block))
    bwd[grid](
        _real_view(a), _real_view(x), _real_view(h0), _real_view(dx), _real_view(dhN),
        _real_view(da), _real_view(db), _real_view(dh0), L, F, triton.cdiv(L, chunk),
        IS_COMPLEX=x.is_complex(), HAS_H0=h0 is not None, CHUNK=chunk, BLOCK_F=block,
    )  # fmt: skip
    return da, db, dh0


class LinearScanFunction(torch.autograd.Function):
    """``(x, final_state) = scan(a, b, h0)`` on contiguous ``(B, L, F)`` tensors of one dtype, with the
    Triton backward. ``h0`` is ``(B, F)`` or None."""

    @staticmethod
    def forward(ctx, a, b, h0, chunk, block):
        x, hN = _forward(a, b, h0, chunk, block)
        ctx.save_for_backward(a, x, h0)
        ctx.chunk, ctx.block = chunk, block
        return x, hN

    @staticmethod
    def backward(ctx, dx, dhN):
        a, x, h0 = ctx.saved_tensors
        da, db, dh0 = _backward(a, x, h0, dx.contiguous(), dhN.contiguous(), ctx.chunk, ctx.block)
        return da, db, (dh0 if h0 is not None else None), None, None


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------


def linear_scan(a, b, initial_state=None, *, chunk_size: int | None = None, block_size: int | None = None):
    """The recurrence x_k = a_k * x_{k-1} + b_k with the Triton kernels (module docstring).

    Same arguments and result as ``fast.scan.linear_scan`` / ``reference.linear_scan``, checked by the same
    code (``fast.scan.check_scan_args``):

    Args:
        a: ``(B, L, ...)`` decays (size-1 axes broadcast against ``b``).
        b: ``(B, L, ...)`` inputs, float32/float64 or complex64/complex128, of the precision of ``a``.
        initial_state: ``(B, ...)`` state before step 0 (zeros if omitted).
        chunk_size: steps per chunk (a power of two >= 2); the result does not depend on it beyond rounding.
        block_size: lanes per program (a power of two).

    Returns:
        ``(x, final_state)``: ``x (B, L, ...)`` and ``final_state (B, ...)`` (= ``x[:, -1]``); differentiable
        in ``a``, ``b`` and ``initial_state``.
    """
    return run_checked(check_scan_args(a, b, initial_state), chunk_size=chunk_size, block_size=block_size)


def run_checked(args: ScanArgs, *, chunk_size: int | None = None, block_size: int | None = None):
    """``linear_scan`` on arguments already checked by ``fast.scan.check_scan_args`` (the entry point of
    ``fast.ops.linear_scan(..., backend="triton")``): only what is particular to the kernel is checked here."""
    from fast.triton import check_runnable

    a, b, initial_state, shape, dtype = args
    chunk = power_of_two(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, "chunk_size", 2)
    if dtype not in DTYPES:
        raise ValueError(
            f"linear_scan: the Triton kernels run in float32, float64, complex64 or complex128, got {dtype}"
        )
    check_runnable({"a": a, "b": b, "initial_state": initial_state}, "linear_scan")

    Bsz, L = b.shape[:2]
    F = math.prod(b.shape[2:])  # independent lanes
    block = power_of_two(
        min(DEFAULT_BLOCK_SIZE, next_power_of_2(F)) if block_size is None else block_size, "block_size", 1
    )
    a_flat = a.to(dtype).expand(shape).reshape(Bsz, L, F).contiguous()  # (B, L, F)
    b_flat = b.to(dtype).reshape(Bsz, L, F).contiguous()  # (B, L, F)
    h0 = None if initial_state is None else initial_state.to(dtype).reshape(Bsz, F).contiguous()  # (B, F)
    x, final = LinearScanFunction.apply(a_flat, b_flat, h0, chunk, block)  # (B, L, F), (B, F)
    return x.reshape(shape), final.reshape((Bsz,) + tuple(shape[2:]))
