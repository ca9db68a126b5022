"""The selective scan of Mamba ("S6") in torch, chunked over time (twin of ``reference.selective_scan``).

For every batch element b, channel d and state n (D channels, N states per channel):

    A_bar[t, d, n], B_bar[t, d, n] = discretize(A[d, n], B[t, n], dt[t, d])     (any rule, fast.DISCRETIZATIONS)
    x[t, d, n] = A_bar[t, d, n] * x[t-1, d, n] + B_bar[t, d, n] * u[t, d]
    y[t, d]    = sum_n C[t, n] x[t, d, n] + D[d] u[t, d]
    y[t, d]   *= SiLU(z[t, d])                                                    (when z is given)

Glossary (code name -> symbol in Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", arXiv 2312.00752, §3.2 and Algorithm 2; reference/README.md §Mamba):

    u       x, the input of the SSM                                        (B, L, D)
    dt      Delta, used as given (softplus and bias belong to the layer)   (B, L, D)
    A       A, one real diagonal per channel                               (D, N)
    B, C    the token's input and output matrices s_B(x), s_C(x)           (B, L, N)
    D       the skip term                                                  (D,)
    z       the gate branch                                                (B, L, D)
    tau     integration_timesteps, the gap before each event (reference/README.md §async)
    T       the chunk size (steps per chunk); h the state carried from one chunk to the next (B, D, N)

Algorithm. The reference discretizes the whole sequence at once, which holds a ``(B, L, D, N)`` tensor.
Here the sequence is cut into chunks of T steps, and each chunk (a Python loop over chunks, never over
steps) is run from the state h carried from the previous one:

* the chunk's systems ``P = A_bar`` and ``X = B_bar u``, ``(B, T, D, N)``: the exponential rules (zoh, dirac,
  mamba, async) written out, a_bar = exp(dt_A lambda), B_bar = gain B (``rule_steps``, ``input_gain``); the
  others (bilinear, registered rules) through ``fast.discretization.diagonal_rule``, the rules of
  ``fast.discretize_diagonal``;
* h folded into the first step, X_0 <- X_0 + P_0 h, and the scan x_t = P_t x_{t-1} + X_t in place, in the
  order of Blelloch's work-efficient scan (``_blelloch_``: about 2 T element updates on strided views).
  Products and sums only: no division by running decays, so the result is exact to rounding for any decay
  range, and no path is chosen from the values (no host synchronization, nothing for torch.compile to
  break on).

The states are contracted with C to ``(B, T, D)`` at once and the last state goes to the next
chunk; the skip term and the gate act on the whole ``(B, L, D)`` output afterwards.

Memory. Forward: O(B L D + B T D N) -- the largest tensors are the ``(B, L, D)`` inputs and output and a
few ``(B, T, D, N)`` tensors of the chunk being computed (tested in
``equivalence_tests/test_fast_selective_scan.py``). Backward: when gradients are needed, each chunk is
one ``torch.autograd.Function`` (``_RecomputedChunk``, activation checkpointing): its forward runs without
building a graph and keeps only the chunk's inputs (views of the full tensors) and the state entering it,
``(B, D, N)`` per chunk, i.e. O(B L D + B (L/T) D N) in all; its backward recomputes the chunk's
``(B, T, D, N)`` systems with autograd on, runs the scan's adjoint by hand (the same in-place scan on the
reversed steps) and lets autograd carry the result back through the discretization; for the mamba and dirac
rules without gaps (Mamba's default) every derivative is written out instead (``_hand_chunk_backward``), into
the forward's reused buffers. The price is one more forward pass of the scan during backward. Plain autograd
would keep every round of every chunk's scan.
Under torch.compile the chunks are recorded by plain autograd (the compiler does not trace the Function).
(``torch.utils.checkpoint`` in its non-reentrant mode keeps the tensors bounded too, but
it records a graph of small nodes per chunk during the forward; on the CPU these fragmented the heap so
that the process grew to ~3 GB at L = 20,000, D = 128, N = 16, against ~0.4 GB with this Function.) The
Function is differentiable once (no double backward).

Differences from the reference: tensors keep their precision (float32 or float64, shared by all
arguments; float16 and bfloat16 run in float32, as mamba_ssm's scan does, and the results are cast back;
``integration_timesteps`` may also be a NumPy array or a list, converted to it); the result is
differentiable in every tensor argument; the rounding order of the scan differs (parallel within a chunk).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fast._checks import (
    HALF,
    common_dtype,
    positive_int,
    real_like,
    records_grad,
    resolve_backend,
    tensor,
    upcast,
    values_ok,
)
from fast.discretization import (
    DISCRETIZATIONS,
    EXPONENTIAL_RULES,
    check_gaps,
    diagonal_rule,
    input_gain,
    rule_steps,
)
from fast.scan import _strided

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SelectiveScanArgs",
    "check_selective_scan_args",
    "default_chunk_size",
    "selective_scan",
]

#: The torch backend's chunk sizes when ``chunk_size`` is None: as many steps as keep one (B, T, D, N) tensor of
#: the chunk near ``CHUNK_STATES`` states (1 MiB in float32: the chunk's products and the backward's tensors stay
#: in this CPU's caches), rounded down to a power of two and clamped to [``DEFAULT_CHUNK_SIZE``,
#: ``MAX_CHUNK_SIZE``]; ``default_chunk_size`` is the rule. Measured 2026-12-03 on the 2-core Intel Xeon (one
#: thread, the selective scan alone with D and z, gradients of all inputs, chunk sizes timed in turn, medians of
#: forward + backward): 512 states a step (B=1, L=8192, D=32, N=16) T=64 177 ms, T=256 88 ms, T=512 85 ms;
#: 2048 (B=1, L=8192, D=128) T=32 432, T=64 342, T=128 305, T=256 297, T=512 339 ms; 4096 (B=2, L=4096, D=128)
#: T=16 359, T=64 261, T=128 284 ms; 8192 (B=4, L=2048, D=128) T=8 400, T=16 285, T=32 295, T=64 304 ms;
#: 16384 (B=8, L=1024, D=128) T=8 230, T=16 233, T=64 258 ms; 32768 (B=8, L=1024, D=256: Mamba's standard size)
#: T=4 475, T=8 468, T=16 470, T=32 514, T=64 609 ms. Fewer, longer chunks save the per-chunk Python overhead
#: (about 0.8 ms a chunk, forward + backward) until the chunk's tensors outgrow the caches.
DEFAULT_CHUNK_SIZE = 8
MAX_CHUNK_SIZE = 256
CHUNK_STATES = 2**18


def default_chunk_size(states_per_step: int) -> int:
    """The torch backend's steps per chunk for steps of ``states_per_step`` = B * D * N states: the largest power
    of two T with T * states_per_step <= ``CHUNK_STATES``, clamped to [``DEFAULT_CHUNK_SIZE``,
    ``MAX_CHUNK_SIZE``] (measured above)."""
    fit = CHUNK_STATES // max(1, states_per_step)
    return min(MAX_CHUNK_SIZE, max(DEFAULT_CHUNK_SIZE, 1 << max(0, fit.bit_length() - 1)))


def _check(name: str, x, shape: tuple, labels: str) -> torch.Tensor:
    x = tensor(x, name, complex_ok=False)
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape} {labels}, got {tuple(x.shape)}")
    return x


def _check_gaps(integration_timesteps, Bsz: int, L: int, dtype, device):
    """Event gaps as ``(B, L)`` (from ``(L,)`` or ``(B, L)``); their values are checked by ``values_ok``."""
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


def _chunk(u, dt, A, B, C, tau, h, method: str, buffers=None):
    """One chunk of T steps from the state ``h (B, D, N)``: ``(C x (B, T, D), last state (B, D, N))`` (module
    docstring, Algorithm). ``buffers``: see ``_Buffers``; used only when autograd records nothing."""
    recording = records_grad(u, dt, A, B, C, tau, h)
    P, X = _systems(u, dt, A, B, tau, method, None if recording else buffers)  # (B, T, D, N) each
    if recording:
        X = torch.cat([torch.addcmul(X[:, :1], P[:, :1], h[:, None]), X[:, 1:]], dim=1)  # fold h into step 0
        x = _pair_scan(P, X)  # (B, T, D, N)
    else:
        X[:, 0].addcmul_(P[:, 0], h)  # fold h into step 0
        x = _blelloch_(P, X)  # (B, T, D, N): X itself, scanned in place
    # (B, T, D): sum_n C x as one row vector times the transposed states a step (no (B, T, D, N) product formed;
    # on the CPU about twice as fast as the matrix times the column C)
    y = torch.matmul(_rows(C[:, :, None, :]), x.transpose(-1, -2))[:, :, 0]
    # a copy: the view x[:, -1] would keep the chunk's whole x (B, T, D, N) (or a buffer) alive with the state
    return y, x[:, -1].clone()


def _systems(u, dt, A, B, tau, method: str, buffers=None):
    """``(P, X)``: the chunk's decays A_bar and inputs B_bar u, ``(B, T, D, N)`` each. The exponential rules are
    written out (A_bar = exp(dt_A A), B_bar = gain B: ``fast.discretization.rule_steps`` / ``input_gain``),
    into ``buffers`` when given; the others (bilinear, registered rules) go through
    ``fast.discretization.diagonal_rule``, the code of ``discretize_diagonal`` without its value checks."""
    Bsz, T, Dch = u.shape
    N = A.shape[-1]
    if method in EXPONENTIAL_RULES:
        dt_A, dt_B = rule_steps(method, dt, None if tau is None else tau[:, :, None])  # (B, T, D) each
        gain = input_gain(method, A, dt_B[..., None])  # (B, T, D, N) zoh/async, (B, T, D, 1) mamba, () dirac
        if buffers is not None and buffers.P.shape == (Bsz, T, Dch, N):
            P = torch.mul(dt_A[..., None], A, out=buffers.P).exp_()  # (B, T, D, N)
            X = torch.mul(gain * u[..., None], B[:, :, None, :], out=buffers.X)  # (B, T, D, N)
            return P, X
        return torch.exp(dt_A[..., None] * A), (gain * u[..., None]) * B[:, :, None, :]
    P, B_bar = diagonal_rule(
        method,
        A[None, None],  # (1, 1, D, N)
        B[:, :, None, :],  # (B, T, 1, N)
        dt[..., None],  # (B, T, D, 1): one step per (token, channel) system
        None if tau is None else tau[:, :, None],  # (B, T, 1): one gap per token
    )  # (B, T, D, N) each (a registered rule may return a broadcastable A_bar)
    X = B_bar * u[..., None]  # (B, T, D, N)
    return P.expand(X.shape).clone() if P.shape != X.shape else P, X


def _blelloch_(P: torch.Tensor, X: torch.Tensor, reverse: bool = False, products=None) -> torch.Tensor:
    """The inclusive scan x_t = P_t x_{t-1} + X_t over axis 1 of ``(B, T, ...)``, in place on ``X`` (and ``P``,
    which it overwrites with partial products; with ``products``, a tensor of P's shape, they go there and P is
    only read), in the order of Blelloch's work-efficient scan ("Prefix sums and
    their applications", 1990): the up-sweep combines element t = 2dm + 2d - 1 with t - d for
    d = 1, 2, 4, ... (X_t then holds the state reached over the 2d steps ending at t from zero, P_t their decay),
    the down-sweep completes t = 2dm + 3d - 1 from the complete t - d for d = ..., 2, 1. Each round reads and
    writes disjoint elements of strided views, so it is one in-place operation; about 2 T element updates in
    all, products and sums only (exact for any decay range). Any T >= 1. ``reverse``: the same on the mirrored
    index, x_t = P_t x_{t+1} + X_t (``fast.scan._strided``)."""
    T = X.shape[1]

    def rounds(t0: int, s0: int, d: int) -> tuple[slice, slice]:  # the later and the earlier elements of a round
        count = len(range(t0, T, 2 * d))
        return _strided(T, t0, 2 * d, count, reverse), _strided(T, s0, 2 * d, count, reverse)

    # the decay of the d steps ending at each element a round reads: P itself for d = 1, else the product made
    # at that element by the round d / 2 of the up-sweep (in P, or in ``products``)
    prod = P if products is None else products
    d = 1
    while 2 * d <= T:  # up-sweep
        t, src = rounds(2 * d - 1, d - 1, d)
        X[:, t].addcmul_(P[:, t] if d == 1 else prod[:, t], X[:, src])
        if 4 * d <= T:  # the decays of the last level are never read
            if d == 1 and products is not None:  # (out= into a strided view, which torch.compile refuses)
                torch.mul(P[:, t], P[:, src], out=prod[:, t])
            else:
                prod[:, t].mul_(prod[:, src])
        d *= 2
    d //= 2
    while d >= 1:  # down-sweep
        if T >= 3 * d:
            t, src = rounds(3 * d - 1, 2 * d - 1, d)
            X[:, t].addcmul_(P[:, t] if d == 1 else prod[:, t], X[:, src])
        d //= 2
    return X


def _states_and_adjoints_(P, x, h, grad_y, C, grad_h, work, out=None) -> torch.Tensor:
    """The two scans of a chunk's backward. In place: ``x (B, T, D, N)`` holding X becomes the chunk's states
    from ``h (B, D, N)``; returns the adjoint states G (in ``out`` when given), G_t = g_t + P_{t+1} G_{t+1} from
    g = grad_y C and the final state's gradient ``grad_h``. ``P`` is kept; ``work`` (its shape) holds the scans'
    partial products."""
    x[:, 0].addcmul_(P[:, 0], h)  # h folded into step 0
    _blelloch_(P, x, products=work)  # x_t = P_t x_{t-1} + X_t
    G = torch.mul(grad_y[..., None], C[:, :, None, :], out=out)  # (B, T, D, N): the gradient reaching the states
    G[:, -1] += grad_h
    _adjoint_scan_(P, G, work)
    return G


def _adjoint_scan_(P: torch.Tensor, G: torch.Tensor, work: torch.Tensor) -> None:
    """In place: ``G (B, T, ...)`` holding g becomes the adjoint states G_t = g_t + P_{t+1} G_{t+1} (the reverse
    scan of a chunk's backward). The last step is complete; it is folded into the one before, and the first T - 1
    steps are scanned on the mirrored index with the decays P_{t+1}, read from P (kept); the scan's partial
    products go to ``work`` (same shape as P)."""
    if G.shape[1] > 1:
        G[:, -2].addcmul_(P[:, -1], G[:, -1])
        # (B, T - 1, ...): the decay of step t is P_{t+1}, read from P; the partial products go to ``work``
        _blelloch_(P[:, 1:], G[:, :-1], reverse=True, products=work[:, :-1])


def _pair_scan(P: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """The scan of ``_blelloch_`` without in-place updates (for autograd): the pairs (2m, 2m+1) combined into one
    step, the half-length scan solved recursively (the odd states), the even states completed from them."""
    T = X.shape[1]
    if T == 1:
        return X
    m = T // 2
    P_e, P_o, X_e, X_o = P[:, 0 : 2 * m : 2], P[:, 1 : 2 * m : 2], X[:, 0 : 2 * m : 2], X[:, 1 : 2 * m : 2]
    x_o = _pair_scan(P_o * P_e, torch.addcmul(X_o, P_o, X_e))  # (B, m, ...): the states at t = 1, 3, ...
    x_e = torch.cat([X_e[:, :1], torch.addcmul(X_e[:, 1:], P_e[:, 1:], x_o[:, :-1])], dim=1)  # t = 0, 2, ...
    x = torch.stack([x_e, x_o], dim=2).flatten(1, 2)  # (B, 2m, ...): interleaved
    if T > 2 * m:  # an odd length: the last step from the one before
        x = torch.cat([x, torch.addcmul(X[:, -1:], P[:, -1:], x[:, -1:])], dim=1)
    return x


class _Buffers(NamedTuple):
    """Storage for a chunk's ``(B, T, D, N)`` decays and states when autograd records nothing, reused from
    chunk to chunk: fresh megabyte-sized tensors in every chunk cost more than the arithmetic on this CPU (the
    allocator hands back new pages, and their first touch is paid in every chunk: a chunk of B=8, T=8, D=256,
    N=16 with the mamba rule and no grad, one thread, took 2.0-2.5 ms on fresh tensors against 0.7-1.0 ms on
    these buffers, the results bit-identical; measured 2026-12-04, timed in turn in one process)."""

    P: torch.Tensor  # (B, T, D, N)
    X: torch.Tensor  # (B, T, D, N)
    spare: dict  # more (B, T, D, N) tensors by name, made on first use (``take``): the hand backward's

    @staticmethod
    def like(u: torch.Tensor, N: int) -> _Buffers:
        Bsz, T, Dch = u.shape
        new = lambda *shape: torch.empty(*shape, dtype=u.dtype, device=u.device)  # noqa: E731
        return _Buffers(new(Bsz, T, Dch, N), new(Bsz, T, Dch, N), {})

    def take(self, name: str, shape: tuple) -> torch.Tensor | None:
        """The buffer ``name`` (``"P"``, ``"X"`` or a spare) if ``shape`` is the buffers' full chunk, else None
        (a shorter last chunk allocates its own)."""
        if tuple(shape) != tuple(self.P.shape):
            return None
        if name in ("P", "X"):
            return getattr(self, name)
        if name not in self.spare:
            self.spare[name] = torch.empty_like(self.P)
        return self.spare[name]


class _RecomputedChunk(torch.autograd.Function):
    """``_chunk`` with its intermediates recomputed in backward (module docstring, Memory)."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, tau, h, method, buffers):
        ctx.method, ctx.buffers = method, buffers
        ctx.save_for_backward(u, dt, A, B, C, tau, h)
        with torch.no_grad():
            return _chunk(u, dt, A, B, C, tau, h, method, buffers)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h):
        """The chunk's systems (P, X) recomputed with autograd, the scan's adjoint by hand: with g the gradient
        reaching the states, G_t = g_t + P_{t+1} G_{t+1} (the same in-place scan on the reversed steps), and
        dL/dX_t = G_t, dL/dP_t = G_t x_{t-1} (x_{-1} = h), dL/dh = P_0 G_0; autograd carries dP and dX back to
        u, dt, A, B and the gaps through the discretization only (no graph of the scan's rounds). The mamba and
        dirac rules without gaps go to ``_hand_chunk_backward`` instead."""
        u, dt, A, B, C, tau, h = ctx.saved_tensors
        grad_y, grad_h = grad_y.to(u.dtype), grad_h.to(u.dtype)
        need = dict(zip(("u", "dt", "A", "B", "C", "tau", "h"), ctx.needs_input_grad))
        if tau is None and ctx.method in HAND_ADJOINT_RULES:
            with torch.no_grad():
                return _hand_chunk_backward(ctx.method, u, dt, A, B, C, h, grad_y, grad_h, ctx.buffers)
        named = {"u": u, "dt": dt, "A": A, "B": B, "tau": tau}
        with torch.enable_grad():
            leaves = {k: x.detach().requires_grad_(need[k]) for k, x in named.items() if x is not None}
            P, X = _systems(leaves["u"], leaves["dt"], leaves["A"], leaves["B"], leaves.get("tau"), ctx.method)
        with torch.no_grad():
            P0 = P.detach()
            x = X.detach().clone()  # (B, T, D, N): X, scanned into the chunk's states
            G = _states_and_adjoints_(P0, x, h, grad_y, C, grad_h, torch.empty_like(P0))  # (B, T, D, N)
            x_prev = torch.cat([h[:, None], x[:, :-1]], dim=1)  # (B, T, D, N)
            grad_P = G * x_prev
            grad_C = torch.einsum("btd,btdn->btn", grad_y, x) if need["C"] else None  # (B, T, N)
            grad_h0 = P0[:, 0] * G[:, 0] if need["h"] else None  # (B, D, N)
        outputs = [(t, gt) for t, gt in ((P, grad_P), (X, G)) if t.requires_grad]
        targets = [k for k, x in leaves.items() if x.requires_grad]
        grads = dict.fromkeys(named)
        if outputs and targets:
            found = torch.autograd.grad(
                [t for t, _ in outputs], [leaves[k] for k in targets], [gt for _, gt in outputs], allow_unused=True
            )
            grads.update(zip(targets, found))
        return grads["u"], grads["dt"], grads["A"], grads["B"], grad_C, grads["tau"], grad_h0, None, None


#: Rules whose chunk backward is written out by hand (``_hand_chunk_backward``) when there are no event gaps; the
#: others let autograd differentiate the discretization (``_RecomputedChunk.backward``).
HAND_ADJOINT_RULES = frozenset({"mamba", "dirac"})


def _hand_chunk_backward(method: str, u, dt, A, B, C, h, grad_y, grad_h, buffers=None):
    """``_RecomputedChunk.backward`` for the mamba and dirac rules without gaps, every derivative written out:
    P = exp(s) with s = dt A, X = w B with w = dt u (mamba) or u (dirac), ``(B, T, D, N)``. With G the adjoint
    states (G_t = g_t + P_{t+1} G_{t+1}, g = grad_y C) and Q = dL/ds = G x_{t-1} P:

        dL/dA_{dn} = sum_{bt} Q dt,   dL/ddt = sum_n Q A + [mamba] u sum_n G B,   dL/du = (dt or 1) sum_n G B,
        dL/dB_{btn} = sum_d G w,      dL/dC_{btn} = sum_d grad_y x,               dL/dh = P_0 G_0.

    The same quantities autograd finds through ``_systems``, without its graph (on the CPU that graph's
    broadcasting products and their reductions were most of Mamba's backward); the sums over n and over
    (b, t) are batched matrix products over views of Q and G. The five ``(B, T, D, N)`` tensors (P, x, the
    scans' partial products, G, Q) go into ``buffers`` (the forward's, ``_Buffers.take``) when given: fresh
    ones page-fault."""
    Bsz, T, Dch = u.shape
    N = A.shape[-1]
    shape = (Bsz, T, Dch, N)
    take = (lambda name: None) if buffers is None else (lambda name: buffers.take(name, shape))
    P = torch.mul(dt[..., None], A, out=take("P")).exp_()  # (B, T, D, N)
    w = dt * u if method == "mamba" else u  # (B, T, D)
    x = torch.mul(w[..., None], B[:, :, None, :], out=take("X"))  # (B, T, D, N): X, scanned into the states
    work = take("work")
    G = _states_and_adjoints_(P, x, h, grad_y, C, grad_h, torch.empty_like(P) if work is None else work, take("G"))
    Q = torch.mul(G, P, out=take("Q"))  # (B, T, D, N): dL/ds = G x_{t-1} P
    Q[:, 1:] *= x[:, :-1]
    Q[:, 0] *= h
    # the sums over n and over (b, t) as batched row vector times matrix products (views of Q and G, no product
    # tensor; the row-vector form measured about twice as fast as matrix times column on this CPU). The row
    # vectors are made contiguous first (``_rows``): they are small, and strided ones make the product slow.
    Q_d = Q.permute(2, 0, 1, 3).flatten(1, 2)  # (D, B T, N): a view, one (B T, N) matrix a channel
    grad_dt = torch.matmul(_rows(A[:, None, :]), Q_d.transpose(-1, -2))  # (D, 1, B T): sum_n Q A
    grad_dt = grad_dt.reshape(Dch, Bsz, T).permute(1, 2, 0)  # (B, T, D)
    grad_A = torch.matmul(_rows(dt.permute(2, 0, 1).reshape(Dch, 1, Bsz * T)), Q_d)[:, 0]  # (D, N): sum_bt Q dt
    GB = torch.matmul(_rows(B[:, :, None, :]), G.transpose(-1, -2))[:, :, 0]  # (B, T, D): sum_n G B
    grad_B = torch.matmul(_rows(w[:, :, None, :]), G)[:, :, 0]  # (B, T, N): sum_d w G
    grad_C = torch.matmul(_rows(grad_y[:, :, None, :]), x)[:, :, 0]  # (B, T, N): sum_d grad_y x
    if method == "mamba":
        grad_dt.addcmul_(GB, u)
        grad_u = GB * dt
    else:
        grad_u = GB
    grad_h0 = P[:, 0] * G[:, 0]  # (B, D, N)
    return grad_u, grad_dt, grad_A, grad_B, grad_C, None, grad_h0, None, None


def _rows(v: torch.Tensor) -> torch.Tensor:
    """``v``, the row vectors of a batched product (``(..., 1, K)``), as a contiguous tensor. torch's CPU batched
    product multiplies a batch whose rows are strided (a permuted view such as dt's ``(D, 1, B T)``, or the
    stride-0 gradient of ``y.sum()``) one matrix at a time through a copy of each row: measured 2026-12-03 (one
    thread) 1.0 ms against 0.14 ms contiguous for a chunk's dL/dA at B = 8, T = 8, D = 256, N = 16, and about a
    sixth of the whole backward at B = 1, L = 8192, D = 128 (where dt's chunk reshapes to a view). Rows are small
    (no ``N`` axis), so the copy is cheap; a contiguous ``v`` is returned as is."""
    return v.contiguous()


def _differentiable_chunk(u, dt, A, B, C, tau, h, method, buffers=None):
    """One chunk when gradients are needed: ``_chunk`` through ``_RecomputedChunk`` (the forward may use the
    buffers, and so may the hand-written backward; the autograd backward records a graph and allocates its
    own)."""
    return _RecomputedChunk.apply(u, dt, A, B, C, tau, h, method, buffers)


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
    u, dt, A, B, C, D, z, method, integration_timesteps, initial_state, *, values: bool = True
) -> SelectiveScanArgs:
    """Check the arguments of ``selective_scan``: shapes, one precision and one device, a known method, gaps
    of shape ``(L,)`` or ``(B, L)`` (returned as ``(B, L)``), finite values, dt > 0, gaps >= 0, gaps present
    and nonzero where the rule needs them (``fast.discretization.check_gaps``). A ``ValueError`` names the
    argument and what was expected. The value checks run while ``fast.validation`` is on; ``values=False``
    skips those of the tensors (not of the gaps) for a caller that computed them (Mamba: a softplus step that
    underflowed to 0 is a valid step there)."""
    u = tensor(u, "u", complex_ok=False)
    if u.ndim != 3 or 0 in u.shape:
        raise ValueError(f"u: expected shape (B, L, D) with B, L, D >= 1, got {tuple(u.shape)}")
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
    if values:
        values_ok({k: v for k, v in named.items() if k != "dt"}, {"dt": dt}, {"integration_timesteps": tau})
    else:
        values_ok({}, None, {"integration_timesteps": tau})
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
    return run(args, method, return_state=return_state, backend=backend, chunk_size=chunk_size)


def run(args: SelectiveScanArgs, method: str, *, return_state=False, backend="auto", chunk_size: int | None = None):
    """``selective_scan`` on arguments checked by ``check_selective_scan_args``. Half-precision (float16,
    bfloat16) arguments run in float32, as mamba_ssm's scan does (it upcasts u, delta, A, B, C and keeps the
    state in float32); ``y`` and the state are cast back to the arguments' dtype."""
    if args.dtype in HALF:
        half = args.dtype
        args = SelectiveScanArgs(*(upcast(x) for x in args[:-1]), torch.float32)
        out = run(args, method, return_state=return_state, backend=backend, chunk_size=chunk_size)
        return (out[0].to(half), out[1].to(half)) if return_state else out.to(half)
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
    # Under torch.compile plain autograd records the chunks (the Function's backward calls autograd.grad, which
    # the compiler does not trace), and no buffers are reused.
    inputs = (u, dt, A, B, C, h) + (() if tau is None else (tau,))
    compiling = torch.compiler.is_compiling()
    keep_bounded = records_grad(*inputs) and not compiling
    # torch.split (not slicing in the loop): its backward assembles the chunks' gradients in one pass,
    # where each slice's backward would write a full-length tensor (O(L^2 / T) work).
    pieces = [x.split(T, dim=1) for x in (u, dt, B, C)]  # each: chunks of (B, T, ...)
    tau_pieces = [None] * len(pieces[0]) if tau is None else tau.split(T, dim=1)
    buffers = None if compiling else _Buffers.like(pieces[0][0], N)  # the first chunk is a full one
    with torch.autocast(u.device.type, enabled=False):  # the scan runs in the arguments' dtype (mamba_ssm's too)
        y = _chunks(pieces, tau_pieces, A, h, method, buffers, keep_bounded)  # (B, L, D), (B, D, N)
    y, h = y
    if D is not None:
        y = torch.addcmul(y, D, u)  # (B, L, D): y + D u in one pass
    if z is not None:
        y = y * F.silu(z)  # (B, L, D)
    return (y, h) if return_state else y


def _chunks(pieces, tau_pieces, A, h, method: str, buffers, keep_bounded: bool):
    """The loop over chunks of ``run``: ``(y (B, L, D) before the skip and the gate, the final state)``."""
    ys = []
    for u_c, dt_c, B_c, C_c, tau_c in zip(*pieces, tau_pieces):
        chunk_args = (u_c, dt_c, A, B_c, C_c, tau_c, h, method, buffers)
        if keep_bounded:
            y_c, h = _differentiable_chunk(*chunk_args)  # (B, T, D), (B, D, N)
        else:
            y_c, h = _chunk(*chunk_args)  # (B, T, D), (B, D, N)
        ys.append(y_c)
    return (ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)), h  # (B, L, D), (B, D, N)
