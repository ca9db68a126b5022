"""The diagonal linear recurrence as a blocked, work-efficient parallel scan in torch (twin of ``reference.scan``).

On CPU tensors ``linear_scan`` runs the compiled step loop of ``fast.cpu_scan`` instead where it is built (the
recurrence is bound by memory there, and a loop does half the arithmetic of a scan; ``compiled_loop_runs``);
the blocked scan below runs on other devices, under torch.compile, with an explicit ``chunk_size``, and where no
C compiler is found.

    x_k = a_k * x_{k-1} + b_k,      k = 0 .. L-1,   x_{-1} = initial_state (0 by default)

Glossary: ``a`` = a-bar_k (the per-step decay, elementwise), ``b`` = B-bar_k u_k (the injected input),
``x`` = the states; tensors are batch-first ``(B, L, ...)``: axis 1 is time, the trailing axes are
independent lanes. ``F`` is the number of flattened lanes, ``T`` the steps of a block, ``R`` its batch rows.

Algorithm (the operator ``(a_i, b_i) • (a_j, b_j) = (a_j a_i, a_j b_i + b_j)`` of reference/README.md §Scan,
combined in the order of Blelloch's work-efficient scan (its up- and down-sweep; G. E. Blelloch, "Prefix sums
and their applications", 1990), in its inclusive form):

1. the output is written block by block: a block is ``R`` batch rows by ``T`` consecutive steps (about
   ``BLOCK_BYTES`` of the output), small enough to stay in the processor's cache while it is scanned, so the
   sequence is read from and written to memory once. The input ``b`` is copied into the block of the output
   and the state left by the previous block (or the initial state) is folded into its first step,
   x_{t0} <- x_{t0} + a_{t0} x_{t0 - 1}. A block's scan does not depend on the other blocks beyond that carry;
2. inside the block, in place on the output (no copies per round): the up-sweep, for d = 1, 2, 4, ..., combines
   the element at t = 2d m + 2d - 1 with the one at t - d, x_t <- x_t + A_t x_{t-d}, where A_t is the product of
   the d decays a_{t-d+1} .. a_t (a binary tree of products, each level half the size of the one below); the
   down-sweep, for d = ..., 2, 1, completes the elements at t = 2d m + 3d - 1 from the complete one at t - d.
   Each round reads and writes disjoint elements, so it runs as one in-place torch operation on strided views,
   ``2 log2 T`` of them per block, about 2 T elements of work in all (a Hillis-Steele scan does T log2 T);
3. the reverse scan (the backward) is the same on the mirrored index.

Only products and sums appear: no division by running products (which blows up when some a_k is small or
zero, as at RG-LRU's document resets), so the scan is as accurate as the step-by-step recurrence up to rounding
order. One exception, for speed only: a product of 32 or more decays that falls below the smallest normal
number of the type is set to zero (denormal arithmetic is far slower on x86 CPUs, and products of many
decays below 1 reach it: 0.75^512 does in float32); the state it would carry is then below ``finfo.tiny``
times the state, far below the tolerance of the type. A decay broadcast over time (one per lane) needs no tree:
its levels are the powers a^(2^j), one per lane.

Differentiable through ``_LinearScan`` (a ``torch.autograd.Function``, once differentiable): with g the
gradient reaching x, the adjoint is the reverse recurrence G_k = g_k + conj(a_{k+1}) G_{k+1}, run by the same
blocked scan, and dL/db_k = G_k, dL/da_k = G_k conj(x_{k-1}), dL/dx_{-1} = conj(a_0) G_0 (PyTorch's convention
for complex gradients). Memory: the forward keeps a, x and the initial state, O(B L F); the backward adds the
gradients, O(B L F); a block's temporaries are O(R T F).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
from torch.autograd.function import once_differentiable

from fast import cpu_scan
from fast._checks import broadcast, common_dtype, positive_int, resolve_backend, tensor

__all__ = ["linear_scan", "check_scan_args", "compiled_loop_runs", "ScanArgs", "DEFAULT_CHUNK_SIZE", "BLOCK_BYTES"]

#: About the bytes of output one block covers (step 1 of the module docstring): its rounds then run in the caches.
#: Re-measured 2026-12-03 on the 2-core Intel Xeon (1.25 MiB of L2 a core, 48 MiB of L3), B = 8, L = 4096, D = 256
#: float32, one torch thread, idle machine, the settings timed in turn (medians): 256 KiB blocks 66 ms (the Python
#: cost of many more blocks), 1 MiB 52 ms, 4 MiB 51 ms, 16 MiB 57 ms.
BLOCK_BYTES = 1 << 22

#: The fewest steps of a block when ``chunk_size`` is None (batch rows are added up to ``BLOCK_BYTES``; fewer steps
#: mean fewer rounds, 2 log2 T, but more blocks).
DEFAULT_CHUNK_SIZE = 256

#: Tree products of at least this many decays are flushed to zero below the smallest normal number.
_FLUSH_FROM = 32


def _strided(n: int, start: int, step: int, count: int, reverse: bool) -> slice:
    """The slice of the elements ``start, start + step, ...`` (``count`` of them) of an axis of length n; with
    ``reverse`` the same on the mirrored index n - 1 - i, ascending (element order reversed; every slice of one
    round is reversed alike, so the views stay aligned)."""
    if not reverse:
        return slice(start, start + step * (count - 1) + 1, step)
    return slice(n - 1 - start - step * (count - 1), n - start, step)


@functools.lru_cache(maxsize=256)
def _plan(n: int, reverse: bool) -> tuple[tuple, tuple]:
    """The rounds of ``_block_scan_`` for T = n steps, as slices: up-sweep rounds ``(x later, x earlier, decays
    of the later halves in the level below, that level's index, the earlier halves' slice or None when no level
    is built from this one, flush)``; down-sweep rounds ``(x completed, x complete, level, decays)``."""
    up, down = [], []
    sizes = [n]  # the rows of each level of the tree of products
    d, level = 1, 0
    while 2 * d <= n:
        count = n // (2 * d)
        nxt = _strided(sizes[level], 0, 2, count, reverse) if 4 * d <= n else None
        up.append((_strided(n, 2 * d - 1, 2 * d, count, reverse), _strided(n, d - 1, 2 * d, count, reverse),
                   _strided(sizes[level], 1, 2, count, reverse), level, nxt, 2 * d >= _FLUSH_FROM))
        if nxt is not None:
            sizes.append(count)
            level += 1
        d *= 2
    while d > 1:
        d //= 2
        level = d.bit_length() - 1
        if n >= 3 * d:
            count = (n - 3 * d) // (2 * d) + 1
            down.append((_strided(n, 3 * d - 1, 2 * d, count, reverse), _strided(n, 2 * d - 1, 2 * d, count, reverse),
                         level, _strided(sizes[level], 2, 2, count, reverse)))
    return tuple(up), tuple(down)


def _flush_tiny(p: torch.Tensor) -> torch.Tensor:
    """``p`` with entries (real and imaginary parts apart) below the smallest normal number set to zero."""
    if p.is_complex():
        r = torch.view_as_real(p)
        return torch.view_as_complex(nnf.hardshrink(r, torch.finfo(r.dtype).tiny))
    return nnf.hardshrink(p, torch.finfo(p.dtype).tiny)


def _block_scan_(a: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> None:
    """In place: ``x (R, T, F)`` holding b becomes x_t = a_t x_{t-1} + b_t (``reverse``: x_t = a_t x_{t+1} + b_t),
    with ``a (R, T, F)``; a_0 (reverse: a_{T-1}) is not used. Step 2 of the module docstring."""
    up, down = _plan(x.shape[1], reverse)
    # One decay per lane for every step (a broadcast over time, as the LTI lane models pass it): the tree of
    # products is the powers a^(2^j), one (R, 1, F) tensor a level, read by every step through a stride-0 view.
    constant = a.shape[1] == 1 or a.stride(1) == 0
    levels = [a]  # levels[j]: the products of the decays of each block of 2^j steps, (R, T // 2^j, F)
    for later, earlier, decays, level, halves, flush in up:
        upper = levels[level][:, decays]  # (R, count, F)
        x[:, later].addcmul_(upper, x[:, earlier])
        if halves is not None:
            if constant:
                power = levels[level][:, :1] * levels[level][:, :1]  # (R, 1, F)
                power = _flush_tiny(power) if flush else power
                levels.append(power.expand(-1, upper.shape[1], -1))  # (R, count, F), stride 0 along the steps
            else:
                product = upper * levels[level][:, halves]  # (R, count, F)
                levels.append(_flush_tiny(product) if flush else product)
    for completed, complete, level, decays in down:
        x[:, completed].addcmul_(levels[level][:, decays], x[:, complete])


def _blocks(R: int, L: int, F: int, itemsize: int, chunk_size: int | None) -> tuple[int, int]:
    """(batch rows, steps) of a block: about ``BLOCK_BYTES`` of output, as many batch rows as fit in a block of
    ``DEFAULT_CHUNK_SIZE`` steps (fewer steps mean fewer rounds, 2 log2 T, of operations per block), and as many
    steps as the rest of the block holds."""
    row_bytes = max(1, F * itemsize)  # one step of one batch row
    if chunk_size is None:
        rows = min(R, max(1, BLOCK_BYTES // (min(L, DEFAULT_CHUNK_SIZE) * row_bytes)))
        steps = min(L, max(DEFAULT_CHUNK_SIZE, BLOCK_BYTES // (rows * row_bytes)))
    else:
        steps = min(L, chunk_size)
        rows = min(R, max(1, BLOCK_BYTES // (steps * row_bytes)))
    return rows, steps


def _scan_forward(a, b, x0, steps_rows) -> torch.Tensor:
    """The states ``x (B, L, F)`` from ``a, b (B, L, F)`` and ``x0 (B, F)`` or None, block by block."""
    Bsz, L, _ = b.shape
    rows, steps = steps_rows
    x = torch.empty_like(b)  # (B, L, F)
    for r0 in range(0, Bsz, rows):
        r = slice(r0, r0 + rows)
        for t0 in range(0, L, steps):
            block = x[r, t0 : t0 + steps]  # (R, T, F)
            block.copy_(b[r, t0 : t0 + steps])
            carry = (None if x0 is None else x0[r]) if t0 == 0 else x[r, t0 - 1]  # (R, F): the state before
            if carry is not None:
                block[:, 0].addcmul_(a[r, t0], carry)
            _block_scan_(a[r, t0 : t0 + steps], block)
    return x


def _scan_adjoint(a, x, x0, grad_x, steps_rows, want_a: bool):
    """The backward of ``_scan_forward``: ``(G, dL/da or None, dL/dx0)`` with G_k = g_k + conj(a_{k+1}) G_{k+1},
    block by block from the end; dL/da_k = G_k conj(x_{k-1}) is formed in each block while it is in cache."""
    Bsz, L, F = grad_x.shape
    rows, steps = steps_rows
    G = torch.empty_like(grad_x)  # (B, L, F)
    da = torch.empty_like(x) if want_a else None  # (B, L, F)
    ones = None
    for r0 in range(0, Bsz, rows):
        r = slice(r0, r0 + rows)
        for t1 in range(L, 0, -steps):
            t0 = max(0, t1 - steps)
            block = G[r, t0:t1]  # (R, T, F)
            block.copy_(grad_x[r, t0:t1])
            decays = a[r, t0 + 1 : t1 + 1].conj()  # (R, T, F), one short in the last block: conj(a_{k+1})
            if t1 < L:
                block[:, -1].addcmul_(decays[:, -1], G[r, t1])  # the carry from the later block
            else:  # the last step has no later one: its decay is not used, any value will do
                if ones is None:
                    ones = torch.ones_like(a[r, :1]).expand(-1, 1, F)
                decays = torch.cat([decays, ones[: decays.shape[0]]], dim=1)  # (R, T, F)
            _block_scan_(decays, block, reverse=True)
            if want_a:  # dL/da_k = G_k conj(x_{k-1})
                if t0 > 0:
                    torch.mul(block, x[r, t0 - 1 : t1 - 1].conj(), out=da[r, t0:t1])
                else:
                    torch.mul(block[:, 1:], x[r, : t1 - 1].conj(), out=da[r, 1:t1])
                    if x0 is None:
                        da[r, 0] = 0
                    else:
                        torch.mul(block[:, 0], x0[r].conj(), out=da[r, 0])
    d_x0 = a[:, 0].conj() * G[:, 0]  # (B, F)
    return G, da, d_x0


class _LinearScan(torch.autograd.Function):
    """The blocked scan with its adjoint as the backward (module docstring)."""

    @staticmethod
    def forward(ctx, a, b, x0, steps_rows):
        x = _scan_forward(a, b, x0, steps_rows)
        ctx.steps_rows = steps_rows
        ctx.save_for_backward(a, x, x0)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        a, x, x0 = ctx.saved_tensors
        want_a, want_b, want_x0 = ctx.needs_input_grad[:3]
        G, da, d_x0 = _scan_adjoint(a, x, x0, grad_x, ctx.steps_rows, want_a)
        return da, G if want_b else None, d_x0 if (want_x0 and x0 is not None) else None, None


def compiled_loop_runs(b: torch.Tensor, chunk_size: int | None) -> bool:
    """Whether ``linear_scan``'s torch backend runs the compiled step loop of ``fast.cpu_scan`` for states like
    ``b``: CPU tensors of its precisions, no ``chunk_size`` (which asks for the blocked scan), not under
    torch.compile, and the loop built here (``fast.cpu_scan.available()`` says why not)."""
    return (chunk_size is None and b.device.type == "cpu" and b.dtype in cpu_scan.DTYPES
            and not torch.compiler.is_compiling() and cpu_scan.available()[0])


def _scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None, chunk_size: int | None) -> torch.Tensor:
    """States ``(B, L, F)`` of x_k = a_k x_{k-1} + b_k from ``x0 (B, F)`` or None; ``a, b`` are ``(B, L, F)``."""
    if compiled_loop_runs(b, chunk_size):
        return cpu_scan.scan(a, b, x0)
    Bsz, L, F = b.shape
    return _LinearScan.apply(a, b, x0, _blocks(Bsz, L, F, b.element_size(), chunk_size))


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
    """The recurrence x_k = a_k * x_{k-1} + b_k: on CPU tensors a compiled step loop, else a blocked parallel scan.

    Args:
        a: ``(B, L, ...)`` decays (may have size-1 axes that broadcast against ``b``).
        b: ``(B, L, ...)`` inputs; real or complex, of the precision of ``a``.
        initial_state: ``(B, ...)``, the state before step 0 (zeros if omitted).
        backend: ``"auto"`` | ``"torch"`` | ``"triton"``. ``"torch"`` runs this module's code: on CPU tensors
            of float32/float64 (real or complex), without ``chunk_size``, the step loop compiled from C
            (``fast.cpu_scan``: memory-bound, one multiply-add per element), where it is built
            (``compiled_loop_runs``; ``fast.cpu_scan.available()`` says why not); otherwise the blocked scan
            of the module docstring. ``"triton"`` the kernel ``fast.triton.linear_scan`` (an error says why
            when it cannot run here); ``"auto"`` picks Triton for CUDA tensors of a precision the kernel has,
            torch otherwise (``fast._checks.resolve_backend``).
        chunk_size: steps per chunk (torch: per block of the blocked scan, which it then runs, any integer
            >= 2); the result does not depend on it beyond rounding. ``None``: the backend's default (torch:
            the compiled loop, or blocks of about ``BLOCK_BYTES``; Triton: a power of two).

    Returns:
        ``(x, final_state)`` with ``x (B, L, ...)`` and ``final_state = x[:, -1]`` ``(B, ...)``; the dtype
        is the common dtype of the inputs (complex if any is complex).
    """
    args = check_scan_args(a, b, initial_state)
    a, b, initial_state, shape, dtype = args
    if resolve_backend(backend, "linear_scan", (a, b, initial_state), no_kernel=_why_no_kernel(dtype)) == "triton":
        from fast.triton.linear_scan import run_checked

        return run_checked(args, chunk_size=chunk_size)
    T = None if chunk_size is None else positive_int(chunk_size, "chunk_size", minimum=2)

    Bsz, L = b.shape[:2]
    F = math.prod(b.shape[2:])  # independent lanes
    a_flat = a.to(dtype).expand(shape).reshape(Bsz, L, F)  # (B, L, F)
    b_flat = b.to(dtype).reshape(Bsz, L, F)  # (B, L, F)
    x0 = None if initial_state is None else initial_state.to(dtype).reshape(Bsz, F)  # (B, F)
    x = _scan(a_flat, b_flat, x0, T).reshape(shape)  # (B, L, ...)
    return x, x[:, -1]
