"""The selective scan of Mamba ("S6") in torch, chunked over time (twin of ``reference.selective_scan``).

For every batch element b, channel d and state n (D channels, N states per channel):

    A_bar[t, d, n], B_bar[t, d, n] = discretize(A[d, n], B[t, n], dt[t, d])     (any rule, fast.DISCRETIZATIONS)
    x[t, d, n] = A_bar[t, d, n] * x[t-1, d, n] + B_bar[t, d, n] * u[t, d]
    y[t, d]    = sum_n C[t, n] x[t, d, n] + D[d] u[t, d]
    y[t, d]   *= SiLU(z[t, d])                                                    (when z is given)

Glossary (code name -> symbol in Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", arXiv 2312.00752, §3.2 and Algorithm 2; EQUATIONS.md §8):

    u       x, the input of the SSM                                        (B, L, D)
    dt      Delta, used as given (softplus and bias belong to the layer)   (B, L, D)
    A       A, one real diagonal per channel                               (D, N)
    B, C    the token's input and output matrices s_B(x), s_C(x)           (B, L, N)
    D       the skip term                                                  (D,)
    z       the gate branch                                                (B, L, D)
    tau     integration_timesteps, the gap before each event (EQUATIONS.md §1.4)
    T       the chunk size (steps per chunk); h the state carried from one chunk to the next (B, D, N)

Algorithm. The reference discretizes the whole sequence at once, which holds a ``(B, L, D, N)`` tensor.
Here the sequence is cut into chunks of T steps, and each chunk (a Python loop over chunks, never over
steps) is run from the state h carried from the previous one, in one of two exact ways:

* the exponential rules (zoh, dirac, mamba, async: a_bar = exp(dt_A lambda)), whose product over steps is
  the exponential of a sum: with s_t = sum_{k<=t} dt_A[k] (a cumulative sum over the chunk) and
  E_t = exp(lambda s_t),

      x_t = E_t (h + sum_{j<=t} B_bar_j u_j / E_j),

  one exponential, one prefix sum (a batched product with a lower-triangular matrix of ones) and a few
  products. This divides by running decays, which is safe only while they stay inside the range of the
  type, so it is used when the chunk's decay range max |lambda| s_{T-1} is at most ``_REACH`` (24 in
  float32, 128 in float64), where the rounding of the exponent costs at most about 1e-5 (float32, chunks
  of 8 steps; the tests put chunks at the limit);
* otherwise, and for bilinear and registered rules: ``fast.discretize_diagonal`` (the same call and the
  same rules as the reference) gives the chunk's ``(B, T, D, N)`` systems, and ``fast.linear_scan`` (a
  log-depth doubling scan, products and sums only) runs them.

Either way the states are contracted with C to ``(B, T, D)`` at once and the last state goes to the next
chunk; the skip term and the gate act on the whole ``(B, L, D)`` output afterwards.

Memory. Forward: O(B L D + B T D N) -- the largest tensors are the ``(B, L, D)`` inputs and output and a
few ``(B, T, D, N)`` tensors of the chunk being computed (tested in
``equivalence_tests/test_fast_selective_scan.py``). Backward: when gradients are needed, each chunk is
one ``torch.autograd.Function`` (``_RecomputedChunk``, activation checkpointing): its forward runs without
building a graph and keeps only the chunk's inputs (views of the full tensors) and the state entering it,
``(B, D, N)`` per chunk, i.e. O(B L D + B (L/T) D N) in all; its backward recomputes the chunk's
``(B, T, D, N)`` intermediates with autograd on and differentiates them. The price is one more forward
pass of the scan during backward. Plain autograd would keep every doubling round of every chunk,
O(B L D N log T). (``torch.utils.checkpoint`` in its non-reentrant mode keeps the tensors bounded too, but
it records a graph of small nodes per chunk during the forward; on the CPU these fragmented the heap so
that the process grew to ~3 GB at L = 20,000, D = 128, N = 16, against ~0.4 GB with this Function.) The
Function is differentiable once (no double backward).

Differences from the reference: tensors keep their precision (float32 or float64, shared by all
arguments; ``integration_timesteps`` may also be a NumPy array or a list, converted to it); the result is
differentiable in every tensor argument; the rounding order of the scan differs (parallel within a chunk).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fast._checks import (
    common_dtype,
    finite,
    nonnegative,
    positive,
    positive_int,
    real_like,
    records_grad,
    resolve_backend,
    tensor,
)
from fast.discretization import (
    DISCRETIZATIONS,
    EXPONENTIAL_RULES,
    check_gaps,
    discretize_diagonal,
    input_gain,
    rule_steps,
)
from fast.scan import linear_scan

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SelectiveScanArgs",
    "check_selective_scan_args",
    "default_chunk_size",
    "selective_scan",
]

#: Steps per chunk when ``chunk_size`` is None, by the size of one step (B * D * N states). Measured on the 2-core
#: CPU, float32 forward (before the contraction by vecdot, which took ~50 ms off): Mamba at B=8, L=1024,
#: d_model=128, N=16 (32768 states a step): T=8 0.27 s, T=16 0.29 s
#: (when no chunk falls back; at Mamba's initialization a chunk of 16 steps reaches |lambda| sum dt ~ 28, beyond
#: the float32 limit of the cumulative path, and the doubling fallback takes 0.55 s), T=32 1.0 s; at B=1,
#: L=20,000, d_model=64 (2048 states a step), where the per-chunk Python overhead dominates: T=8 1.19 s, T=32
#: 1.11 s, T=64 0.72 s (the doubling scan).
DEFAULT_CHUNK_SIZE = 8
SMALL_STEP_CHUNK_SIZE = 64
SMALL_STEP = 8192


def default_chunk_size(states_per_step: int) -> int:
    """The torch backend's chunk size for steps of ``states_per_step`` = B * D * N states (measured above)."""
    return SMALL_STEP_CHUNK_SIZE if states_per_step < SMALL_STEP else DEFAULT_CHUNK_SIZE


#: The largest decay range |lambda| * (sum of the steps) of a chunk run by cumulative sums, per precision: exp of
#: it stays far inside the range of the type, and its rounding (about range x chunk size ulps of the exponent in the
#: worst case) inside the tolerance table. A wider chunk runs the doubling scan.
_REACH = {torch.float32: 24.0, torch.float64: 128.0}


def _check(name: str, x, shape: tuple, labels: str) -> torch.Tensor:
    x = tensor(x, name, complex_ok=False)
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape} {labels}, got {tuple(x.shape)}")
    return x


def _check_values(finite_args: dict, dt: torch.Tensor, tau: torch.Tensor | None) -> None:
    """Every tensor finite, dt > 0, gaps >= 0: one reduction and one host sync for all of them (a sync is
    also where torch.compile breaks the graph); the per-argument checks name the culprit on failure."""
    # A sum is finite only if every term is (an inf or a NaN propagates), so finite sums clear the tensors in
    # one pass each; a sum that overflows from finite terms only sends them to the exact checks below.
    flags = [torch.isfinite(x.sum()) for x in finite_args.values()] + [dt.min() > 0]  # () booleans
    if tau is not None:
        flags.append(tau.min() >= 0)
    if bool(torch.stack(flags).all()):
        return
    for name, x in finite_args.items():
        finite(x, name)
    positive(dt, "dt")
    if tau is not None:
        nonnegative(tau, "integration_timesteps")


def _check_gaps(integration_timesteps, Bsz: int, L: int, dtype, device):
    """Event gaps as ``(B, L)`` (from ``(L,)`` or ``(B, L)``); their values are checked by ``_check_values``."""
    if integration_timesteps is None:
        return None
    tau = real_like(integration_timesteps, "integration_timesteps", dtype, device)
    if tuple(tau.shape) == (L,):
        return tau.expand(Bsz, L)  # (B, L)
    if tuple(tau.shape) != (Bsz, L):
        raise ValueError(
            f"integration_timesteps: expected shape ({L},) (L,) or ({Bsz}, {L}) (B, L), got {tuple(tau.shape)}"
        )
    return tau


def _chunk(u, dt, A, B, C, tau, h, method: str, cumulative: bool, buffers=None):
    """One chunk of T steps from the state ``h (B, D, N)``: ``(C x (B, T, D), last state (B, D, N))``, by
    cumulative sums (an exponential rule whose chunk ``fits_cumulative``) or by the doubling scan (module
    docstring, Algorithm). ``buffers``: see ``_cumulative_chunk``."""
    if cumulative:
        dt_A, dt_B = rule_steps(method, dt, None if tau is None else tau[:, :, None])  # (B, T, D) each
        return _cumulative_chunk(u, dt_A.cumsum(1), dt_B, A, B, C, h, method, buffers)
    A_bar, B_bar = discretize_diagonal(
        A[None, None],  # (1, 1, D, N)
        B[:, :, None, :],  # (B, T, 1, N)
        dt,  # (B, T, D): one step per (token, channel) system
        method,
        integration_timesteps=None if tau is None else tau[:, :, None],  # (B, T, 1)
        aligned_timesteps=True,
    )  # A_bar, B_bar: (B, T, D, N)
    Bu = B_bar * u[..., None]  # (B, T, D, N)
    x, h_last = linear_scan(A_bar, Bu, h, backend="torch", chunk_size=max(u.shape[1], 2))  # (B, T, D, N), (B, D, N)
    y = torch.linalg.vecdot(x, C[:, :, None, :])  # (B, T, D)
    # a copy: the view h_last would keep the chunk's whole x (B, T, D, N) alive with the carried state
    return y, h_last.clone()


class _Buffers(NamedTuple):
    """Storage for the ``(B, T, D, N)`` intermediates of ``_cumulative_chunk``, reused from chunk to chunk.

    Fresh megabyte-sized tensors in every chunk cost more than the arithmetic on this CPU: the allocator
    hands back new pages, and their first touch (page faults) made each elementwise operation of a chunk of
    B=8, T=8, D=256, N=16 about 10x slower than on reused memory (measured: 3.1 ms a chunk against 0.6 ms
    for its operations on warm buffers)."""

    E: torch.Tensor  # (B, T, D, N)
    w: torch.Tensor  # (B, T, D, N)
    S: torch.Tensor  # (B, T, D * N)

    @staticmethod
    def like(u: torch.Tensor, N: int) -> _Buffers:
        Bsz, T, Dch = u.shape
        new = lambda *shape: torch.empty(*shape, dtype=u.dtype, device=u.device)  # noqa: E731
        return _Buffers(new(Bsz, T, Dch, N), new(Bsz, T, Dch, N), new(Bsz, T, Dch * N))


def _cumulative_chunk(u, s, dt_B, A, B, C, h, method: str, buffers: _Buffers | None = None):
    """A chunk of an exponential rule from the cumulative step sums ``s (B, T, D)``: with
    E_t = exp(A s_t) = a_bar_0 ... a_bar_t (the decay since the chunk's start),

        x_t = E_t (h + sum_{j<=t} B_bar_j u_j / E_j),

    one exponential, one cumulative sum and a few products over ``(B, T, D, N)``. The caller bounds
    |A| s_{T-1} by ``_REACH``, so E_t and 1 / E_j stay far from overflow and underflow, and the quotient
    E_t / E_j = exp(A (s_t - s_j)) is accurate to about |A s| ulps of the exponent.

    ``buffers`` (``_Buffers`` of this chunk's shape, or None): where the intermediates are written when
    autograd records nothing (the same operations, in place); the results never alias them."""
    Bsz, T, Dch = u.shape
    N = A.shape[-1]
    gain = input_gain(method, A, dt_B[..., None])  # (B, T, D, N) zoh/async, (B, T, D, 1) mamba, () dirac
    ones = torch.ones(T, T, dtype=u.dtype, device=u.device).tril().expand(Bsz, T, T)  # (B, T, T): t >= j
    h_flat = h.reshape(Bsz, 1, Dch * N)  # (B, 1, D*N)
    recording = records_grad(u, s, dt_B, A, B, C, h)
    if buffers is not None and buffers.E.shape == (Bsz, T, Dch, N) and not recording:
        E = torch.mul(s[..., None], A, out=buffers.E).exp_()  # (B, T, D, N)
        w = torch.mul(gain * u[..., None], B[:, :, None, :], out=buffers.w).div_(E)  # (B, T, D, N)
        S = torch.baddbmm(h_flat, ones, w.view(Bsz, T, Dch * N), out=buffers.S)  # (B, T, D*N)
        x = S.view(Bsz, T, Dch, N).mul_(E)  # (B, T, D, N)
        y = torch.mul(x, C[:, :, None, :], out=buffers.w).sum(-1)  # (B, T, D): w is free again
    else:
        E = torch.exp(s[..., None] * A)  # (B, T, D, N)
        w = (gain * u[..., None]) * B[:, :, None, :] / E  # (B, T, D, N): B_bar_j u_j / E_j
        # h + sum_{j<=t} w_j as one batched product (torch's cumsum along a middle axis is several times slower)
        S = torch.baddbmm(h_flat, ones, w.reshape(Bsz, T, Dch * N))  # (B, T, D*N)
        x = E * S.reshape(Bsz, T, Dch, N)  # (B, T, D, N)
        y = torch.linalg.vecdot(x, C[:, :, None, :])  # (B, T, D): faster than einsum's batched matrix-vector product
    return y, x[:, -1].clone()


def fits_cumulative(dt, tau, lam_max, method: str, T: int) -> list[bool]:
    """For each chunk of ``T`` steps, whether it can run by cumulative sums (an exponential rule whose decay
    range max |lambda| sum_k dt_A[k] over the chunk is at most ``_REACH`` of the precision); every chunk at
    once, with one host sync. ``dt (B, L, D)``, ``tau (B, L)`` or None, ``lam_max (D,)`` the largest |lambda|
    of each channel."""
    Bsz, L, Dch = dt.shape
    chunks = -(-L // T)
    if method not in EXPONENTIAL_RULES:
        return [False] * chunks
    dt_A, _ = rule_steps(method, dt.detach(), None if tau is None else tau.detach()[:, :, None])  # (B, L, D)
    dt_A = F.pad(dt_A, (0, 0, 0, chunks * T - L))  # (B, chunks * T, D): the short last chunk padded with zeros
    sums = dt_A.reshape(Bsz, chunks, T, Dch).sum(2)  # (B, chunks, D)
    ranges = (sums.amax(0) * lam_max).amax(-1)  # (chunks,)
    return (ranges <= _REACH[dt.dtype]).tolist()


class _RecomputedChunk(torch.autograd.Function):
    """``_chunk`` with its intermediates recomputed in backward (module docstring, Memory)."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, tau, h, method, cumulative, buffers):
        ctx.method, ctx.cumulative = method, cumulative
        ctx.save_for_backward(u, dt, A, B, C, tau, h)
        with torch.no_grad():
            return _chunk(u, dt, A, B, C, tau, h, method, cumulative, buffers)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h):
        saved = ctx.saved_tensors  # u, dt, A, B, C, tau (or None), h
        wanted = [need and x is not None for need, x in zip(ctx.needs_input_grad, saved)]
        with torch.enable_grad():
            inputs = [None if x is None else x.detach().requires_grad_(w) for x, w in zip(saved, wanted)]
            y, h_last = _chunk(*inputs, ctx.method, ctx.cumulative)  # recomputed: (B, T, D), (B, D, N)
            targets = [x for x, w in zip(inputs, wanted) if w]
            grads = iter(torch.autograd.grad((y, h_last), targets, (grad_y, grad_h), allow_unused=True))
        return (*(next(grads) if w else None for w in wanted), None, None, None)


def _differentiable_chunk(u, dt, A, B, C, tau, h, method, cumulative, buffers=None):
    """One chunk when gradients are needed: ``_chunk`` through ``_RecomputedChunk`` (the forward may use the
    buffers; the backward's recomputation records a graph and allocates its own)."""
    return _RecomputedChunk.apply(u, dt, A, B, C, tau, h, method, cumulative, buffers)


class SelectiveScanArgs(NamedTuple):
    """The arguments of ``selective_scan`` once checked (shared with the Triton kernel's entry point)."""

    u: torch.Tensor  # (B, L, D)
    dt: torch.Tensor  # (B, L, D)
    A: torch.Tensor  # (D, N)
    B: torch.Tensor  # (B, L, N)
    C: torch.Tensor  # (B, L, N)
    D: torch.Tensor | None  # (D,)
    z: torch.Tensor | None  # (B, L, D)
    initial_state: torch.Tensor | None  # (B, D, N)
    tau: torch.Tensor | None  # (B, L): the event gaps
    dtype: torch.dtype  # the precision shared by all of them


def check_selective_scan_args(
    u, dt, A, B, C, D, z, method, integration_timesteps, initial_state
) -> SelectiveScanArgs:
    """Check the arguments of ``selective_scan``: shapes, one precision and one device, a known method, gaps
    of shape ``(L,)`` or ``(B, L)`` (returned as ``(B, L)``), finite values, dt > 0, gaps >= 0, gaps present
    and nonzero where the rule needs them (``fast.discretization.check_gaps``). A ``ValueError`` names the
    argument and what was expected."""
    u = tensor(u, "u", complex_ok=False)
    if u.ndim != 3 or u.shape[1] == 0 or u.shape[2] == 0:
        raise ValueError(f"u: expected shape (B, L, D) with L >= 1, got {tuple(u.shape)}")
    Bsz, L, Dch = u.shape
    A = tensor(A, "A", complex_ok=False)
    if A.ndim != 2 or A.shape[0] != Dch or A.shape[1] == 0:
        raise ValueError(f"A: expected shape ({Dch}, N) (D, N) with N >= 1, got {tuple(A.shape)}")
    N = A.shape[1]
    dt = _check("dt", dt, (Bsz, L, Dch), "(B, L, D)")
    B = _check("B", B, (Bsz, L, N), "(B, L, N)")
    C = _check("C", C, (Bsz, L, N), "(B, L, N)")
    D = None if D is None else _check("D", D, (Dch,), "(D,)")
    z = None if z is None else _check("z", z, (Bsz, L, Dch), "(B, L, D)")
    h = None if initial_state is None else _check("initial_state", initial_state, (Bsz, Dch, N), "(B, D, N)")
    named = {"u": u, "A": A, "dt": dt, "B": B, "C": C, "D": D, "z": z, "initial_state": h}
    dtype = common_dtype(named, "selective_scan")
    devices = {x.device for x in named.values() if x is not None}
    if len(devices) > 1:
        raise ValueError(f"selective_scan: the tensors must be on one device, got {sorted(map(str, devices))}")
    if method not in DISCRETIZATIONS:
        raise ValueError(f"method: unknown discretization {method!r}; expected one of {DISCRETIZATIONS}")
    tau = _check_gaps(integration_timesteps, Bsz, L, dtype, u.device)  # (B, L) or None
    if tau is not None and tau.device != u.device:
        raise ValueError(f"integration_timesteps: device {tau.device} does not match u's {u.device}")
    _check_values({k: v for k, v in named.items() if v is not None}, dt, tau)
    check_gaps(method, tau)  # async needs gaps; a zero gap would drop an input under zoh, bilinear, mamba
    return SelectiveScanArgs(u, dt, A, B, C, D, z, h, tau, dtype)


def _why_no_kernel(dtype: torch.dtype, method: str) -> str | None:
    """Why the fused Triton kernel cannot take this call, or None (``fast.triton.selective_scan.unsupported``)."""
    from fast.triton.selective_scan import unsupported

    why = unsupported(dtype, method)
    return None if why is None else why[1]


def selective_scan(
    u,
    dt,
    A,
    B,
    C,
    D=None,
    z=None,
    *,
    method="mamba",
    integration_timesteps=None,
    initial_state=None,
    return_state=False,
    backend="auto",
    chunk_size: int | None = None,
):
    """Run Mamba's selective SSM (module docstring) over a batch of sequences, chunk by chunk.

    Args:
        u: ``(B, L, D)`` input tensor.
        dt: ``(B, L, D)`` steps > 0, used as given.
        A: ``(D, N)`` real continuous-time eigenvalues.
        B, C: ``(B, L, N)`` input and output matrices of each token.
        D: ``(D,)`` skip, or None.
        z: ``(B, L, D)`` gate (the output is multiplied by SiLU(z)), or None.
        method: a name in ``fast.DISCRETIZATIONS``.
        integration_timesteps: event gaps ``(L,)`` or ``(B, L)``, >= 0 (> 0 for zoh, bilinear, mamba);
            required by ``"async"``.
        initial_state: ``(B, D, N)`` state before the first token (zeros when omitted).
        return_state: also return the final state.
        backend: ``"auto"`` | ``"torch"`` | ``"triton"``. ``"torch"`` runs this module's code; ``"triton"``
            the fused kernel ``fast.triton.selective_scan`` (an error says why when it cannot run here, or
            when the call is outside what the kernel implements: another discretization or precision);
            ``"auto"`` picks Triton for CUDA tensors the kernel can take, torch otherwise.
        chunk_size: steps per chunk; the result does not depend on it beyond rounding. ``None``: the
            backend's default (torch: ``default_chunk_size(B * D * N)``, any integer >= 1; Triton: a power
            of two).

    Returns:
        ``y (B, L, D)``, or ``(y, state (B, D, N))`` when ``return_state``; in the precision of the inputs.
    """
    args = check_selective_scan_args(u, dt, A, B, C, D, z, method, integration_timesteps, initial_state)
    u, dt, A, B, C, D, z, h, tau, dtype = args
    Bsz, L, Dch = u.shape
    N = A.shape[1]
    if resolve_backend(backend, "selective_scan", (u,), no_kernel=_why_no_kernel(dtype, method)) == "triton":
        from fast.triton.selective_scan import run_checked

        return run_checked(args, method, return_state=return_state, chunk_size=chunk_size)
    T = positive_int(default_chunk_size(Bsz * Dch * N) if chunk_size is None else chunk_size, "chunk_size")
    if h is None:
        h = torch.zeros(Bsz, Dch, N, dtype=dtype, device=u.device)  # (B, D, N)

    # Recompute each chunk in backward only when autograd would otherwise keep its (B, T, D, N) intermediates.
    inputs = (u, dt, A, B, C, h) + (() if tau is None else (tau,))
    keep_bounded = records_grad(*inputs)
    # torch.split (not slicing in the loop): its backward assembles the chunks' gradients in one pass,
    # where each slice's backward would write a full-length tensor (O(L^2 / T) work).
    pieces = [x.split(T, dim=1) for x in (u, dt, B, C)]  # each: chunks of (B, T, ...)
    tau_pieces = [None] * len(pieces[0]) if tau is None else tau.split(T, dim=1)
    paths = fits_cumulative(dt, tau, A.detach().abs().amax(-1), method, T)  # per chunk: cumulative or doubling
    buffers = _Buffers.like(pieces[0][0], N) if any(paths) else None  # the first chunk is a full one
    ys = []
    for u_c, dt_c, B_c, C_c, tau_c, cumulative in zip(*pieces, tau_pieces, paths):
        chunk_args = (u_c, dt_c, A, B_c, C_c, tau_c, h, method, cumulative, buffers)
        if keep_bounded:
            y_c, h = _differentiable_chunk(*chunk_args)  # (B, T, D), (B, D, N)
        else:
            y_c, h = _chunk(*chunk_args)  # (B, T, D), (B, D, N)
        ys.append(y_c)
    y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)  # (B, L, D)
    if D is not None:
        y = torch.addcmul(y, D, u)  # (B, L, D): y + D u in one pass
    if z is not None:
        y = y * F.silu(z)  # (B, L, D)
    return (y, h) if return_state else y
