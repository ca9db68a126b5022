"""S7 in torch (twin of ``reference.models.ltv.s7``): an S5-style diagonal complex SSM whose step, input and
output matrices depend on the token.

Paper: Soydan, Zubić, Messikommer, Mishra, Scaramuzza, "S7: Selective and Simplified State Space Layers
for Sequence Modeling", arXiv 2410.03464. Official code followed (through the reference, which follows the
code rather than the paper's equations): TaylanSoydan/S7 ``event_ssm/ssm.py::S7SSM`` with
``input_dependent=True``. reference/README.md §S7.

For an input u (B, L, H), P_loc stored complex modes, R = ceil(H / 16):

    delta, B_raw, C_raw = split(u @ x_proj_kernel + x_proj_bias)                (R, 2 P_loc H, 2 P_loc H)
    dt_t  = step_rescale * softplus(delta @ step_proj_kernel + step_proj_bias)   (B, L, P_loc)
    B_t (P_loc, H), C_t (H, P_loc): complex, from (re, im) pairs of B_raw, C_raw
    a_bar_t, gamma_t = discretize(Lambda, dt_t, tau_t)         (fast.discretize_diagonal, per state)
    x_t = a_bar_t * x_{t-1} + gamma_t * (B_t u_t)              (fast.scan.linear_scan over (B, L, P_loc))
    y_t = 2 Re(C_t x_t) + D * u_t     (conj_sym; Re(C_t x_t) + D u_t without it)

Memory. The per-token B_t and C_t are 4 P_loc H numbers per token, the size of a ``(B, L, H, P_loc)`` state
tensor. ``forward`` therefore projects the tokens in chunks of T (``selection_chunk``): a chunk's B_t u_t is
formed and its projection dropped before the next chunk's is made; the scan runs over the small ``(B, L,
P_loc)`` inputs; the readout projects each chunk's C_t columns. The attribute ``selection_chunk_size`` (a
setting, default None) fixes T; results do not depend on it beyond rounding. Memory: O(B L (H + P_loc) +
B T P_loc H). B_t u_t and C_t x_t are each one ``_ProjectedContraction`` (an autograd Function): the chunk's
projection is made into one scratch tensor reused by every chunk, contracted at once, and formed again in
backward, so that autograd keeps only the chunks' inputs and the weights (under torch.compile and
torch.autocast the plain ops instead, each chunk a checkpoint, ``torch.utils.checkpoint``). B_t u_t and
Re(C_t x_t) are formed from the real and imaginary parts of the projection directly (real products, no complex
matrices).

Glossary (code name -> symbol): ``Lambda`` = Lambda (continuous-time eigenvalues, stored as the real
parameters ``Lambda_re``, ``Lambda_im``), ``dt`` = Delta_t, ``B_t``, ``C_t`` = the token's B and C, ``D`` =
the skip, ``tau`` = integration_timesteps, ``a_bar``, ``gamma`` = discretized A and the input normalizer.

Parameters: the reference's (``S7Params``, flax layouts ``kernel (in, out)``), as ``nn.Parameter``s copied
from the reference twin. State: the complex SSM state ``(B, P_loc)`` (complex128 for a float64 module,
complex64 for float32), a tensor, as in the reference. Discretizations: ``"zoh"`` (default), ``"bilinear"``,
``"dirac"``, ``"async"``; without ``integration_timesteps`` every gap is 1. Scope and deviations: the
reference's (the SSM core only; the options it does not build are not built here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from fast._checks import complex_dtype, positive_int, records_grad, upcast
from fast.discretization import check_gaps, diagonal_rule
from fast.models.ltv._base import LTVFastModel, scan_states, softplus
from reference.models.ltv.s7 import S7 as ReferenceS7

__all__ = ["S7"]

#: numbers in one chunk's projection (B * T * (R + 4 P_loc H)): 16 MiB in float32
_SELECTION_BLOCK = 2**22


def _linear_rows(u2, kernel, bias, out=None):
    """u2 @ kernel + bias for ``u2 (n, H)``, ``kernel (H, c)``, ``bias (c,)``: ``(n, c)``, into ``out`` when given
    (the projection of a chunk's tokens; one place to count them)."""
    return torch.addmm(bias, u2, kernel, out=out)


class _Scratch:
    """One ``(rows, columns)`` tensor reused by every chunk of a forward call and by their backward (a fresh
    projection-sized tensor per chunk page-faulted on the CPU: a chunk's product took about twice as long
    as the same product into warm memory); a shorter chunk uses its first rows."""

    def __init__(self):
        self.tensor = None

    def take(self, rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
        t = self.tensor
        if t is None or t.shape[0] < rows or t.shape[1] != columns or t.dtype != like.dtype or t.device != like.device:
            t = self.tensor = torch.empty(rows, columns, dtype=like.dtype, device=like.device)
        return t[:rows]


class _ProjectedContraction(torch.autograd.Function):
    """``out[n, j] = sum_i M_n[j, i] v_n[i]`` with the token's matrix ``M_n = (u_n K + b)`` viewed ``(k, m)``:
    S7's B_t u_t (v = u, k = 2 P) and C_t x_t (v = [Re x, -Im x], k = H). The ``(n, k m)`` projection goes into
    a reused scratch tensor and is formed again in backward, never kept (autograd keeps u, v and the weights:
    O(n (H + m)) a chunk, where a checkpoint kept the same but recomputed the whole chunk). Backward, with g
    the gradient of out and G = g v^T the projection's gradient (written over the recomputed projection):
    dL/dv = g^T M, dL/du = G K^T, dL/dK = u^T G, dL/db = sum_n G. Eager mode without autocast only (the model
    takes the plain ops under torch.compile and torch.autocast). Differentiable once."""

    @staticmethod
    def forward(ctx, u2, v2, kernel, bias, k: int, scratch: _Scratch):
        n, m = u2.shape[0], v2.shape[1]
        proj = _linear_rows(u2, kernel, bias, out=scratch.take(n, kernel.shape[1], u2))  # (n, k m)
        out = torch.bmm(proj.view(n, k, m), v2[:, :, None])[:, :, 0]  # (n, k)
        ctx.k, ctx.scratch = k, scratch
        ctx.save_for_backward(u2, v2, kernel, bias)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        u2, v2, kernel, bias = ctx.saved_tensors
        n, m, k = u2.shape[0], v2.shape[1], ctx.k
        want_u, want_v, want_kernel, want_bias = ctx.needs_input_grad[:4]
        proj = _linear_rows(u2, kernel, bias, out=ctx.scratch.take(n, kernel.shape[1], u2))  # (n, k m), again
        grad_v = torch.bmm(g[:, None, :], proj.view(n, k, m))[:, 0] if want_v else None  # (n, m)
        G = torch.mul(g[:, :, None], v2[:, None, :], out=proj.view(n, k, m)).view(n, k * m)  # over the projection
        grad_u = torch.mm(G, kernel.t()) if want_u else None  # (n, H)
        grad_kernel = torch.mm(u2.t(), G) if want_kernel else None  # (H, k m)
        grad_bias = G.sum(0) if want_bias else None  # (k m,)
        return grad_u, grad_v, grad_kernel, grad_bias, None, None


class S7(LTVFastModel):
    """The S7 SSM (module docstring): ``S7(d_model, d_state=16, *, discretization="zoh", seed=None,
    backend="auto", device=None, dtype=None, block_size=None, conj_sym=True, clip_eigs=False, dt_min=1e-3,
    dt_max=1e-1, step_rescale=1.0)``: the options of ``reference.models.S7`` plus
    ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype)
    and ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    Parameters initialized by the reference twin; ``from_reference`` / ``to_reference`` copy them exactly."""

    reference_class = ReferenceS7

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        *,
        discretization: str | None = None,
        seed: int | None = None,
        backend: str = "auto",
        device=None,
        dtype=None,
        block_size: int | None = None,
        conj_sym: bool = True,
        clip_eigs: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        step_rescale: float = 1.0,
    ):
        super().__init__(
            d_model, d_state, discretization=discretization, seed=seed, backend=backend, device=device, dtype=dtype,
            block_size=block_size,
            conj_sym=conj_sym, clip_eigs=clip_eigs, dt_min=dt_min, dt_max=dt_max, step_rescale=step_rescale,
        )

    def setup(self, reference_model) -> None:
        self.block_size = reference_model.block_size
        self.conj_sym = reference_model.conj_sym
        self.clip_eigs = reference_model.clip_eigs
        self.step_rescale = reference_model.step_rescale
        self.dt_rank = reference_model.dt_rank
        self.local_P = reference_model.local_P
        #: tokens per chunk of forward's projections (a setting, not a parameter; None: ``selection_chunk``)
        self.selection_chunk_size = None

    @property
    def readout_scale(self) -> float:
        """2 (conj_sym: the stored half stands for the conjugate pairs) or 1 (Re only)."""
        return 2.0 if self.conj_sym else 1.0

    @property
    def state_dtype(self) -> torch.dtype:
        """The complex dtype of the state, of the module's precision."""
        return complex_dtype(self.dtype)

    def Lambda(self) -> torch.Tensor:
        """The continuous-time eigenvalues (P_loc,), clipped to Re <= -1e-4 when clip_eigs."""
        Lambda_re, Lambda_im = upcast(self.Lambda_re), upcast(self.Lambda_im)  # float32 for half precision
        re = torch.clamp(Lambda_re, max=-1e-4) if self.clip_eigs else Lambda_re  # (P_loc,)
        return torch.complex(re, Lambda_im)  # (P_loc,)

    def _project(self, u, kernel, bias):
        """u @ kernel + bias as one fused product (``kernel (H, n)``, ``bias (n,)``): ``(..., n)``, compute dtype."""
        x = nnf.linear(upcast(u), upcast(kernel).t(), upcast(bias))  # (..., n)
        return x.to(self.compute_dtype)  # float32 for half precision, also under torch.autocast (bfloat16 products)

    def _B_columns(self):
        """The B_t columns of the token projection with each state's (re, im) rows outermost: ``(kernel (H, 2 P H),
        bias (2 P H,))`` ordered (p, r, h) instead of the stored (p, h, r), so that B_t u is one batched
        matrix-vector product on the projection as it comes out (no copy of it, forward or backward)."""
        R, P, H = self.dt_rank, self.local_P, self.d_model
        cols = slice(R, R + 2 * P * H)
        kernel = self.x_proj_kernel[:, cols].unflatten(1, (P, H, 2)).transpose(2, 3).flatten(1)  # (H, 2 P H)
        bias = self.x_proj_bias[cols].unflatten(0, (P, H, 2)).transpose(1, 2).flatten()  # (2 P H,)
        return kernel, bias

    def _contract(self, u, v, kernel, bias, k: int, scratch):
        """``sum_i M[..., j, i] v[..., i]`` with the tokens' matrices ``M = (u kernel + bias)`` viewed ``(k, m)``:
        ``(..., k)``, compute dtype. With a ``scratch`` (``_Scratch``), as one ``_ProjectedContraction``; without,
        the plain ops (torch.compile, torch.autocast, one step)."""
        m = v.shape[-1]
        if scratch is None:
            proj = self._project(u, kernel, bias).unflatten(-1, (k, m))  # (..., k, m)
            return torch.matmul(proj, v.to(proj.dtype)[..., None])[..., 0].to(proj.dtype)  # (..., k)
        lead = u.shape[:-1]
        u2 = upcast(u).reshape(-1, u.shape[-1]).to(self.compute_dtype)  # (n, H)
        v2 = v.reshape(-1, m).to(self.compute_dtype)  # (n, m)
        kernel, bias = upcast(kernel).to(self.compute_dtype), upcast(bias).to(self.compute_dtype)
        return _ProjectedContraction.apply(u2, v2, kernel, bias, k, scratch).reshape(*lead, k)  # (..., k)

    def _inputs(self, u, tau, B_kernel, B_bias, scratch=None):
        """``(a_bar, gamma * B_t u)`` of tokens ``u (..., H)`` with gaps ``tau (...)`` or None: ``(..., P_loc)``
        each, from the projection's delta and B_t columns (``B_kernel``, ``B_bias``: ``_B_columns``). B_t u in
        real arithmetic, from the real and imaginary parts of B_t as projected: [Re, Im](B_t u)_p =
        sum_h B_raw[p, :, h] u_h (``_contract``; ``scratch`` as there)."""
        R, P = self.dt_rank, self.local_P
        delta = self._project(u, self.x_proj_kernel[:, :R], self.x_proj_bias[:R])  # (..., R)
        dt = softplus((delta @ upcast(self.step_proj_kernel)).to(delta.dtype) + upcast(self.step_proj_bias))
        dt = self.step_rescale * dt  # (..., P)
        Bu = self._contract(u, upcast(u), B_kernel, B_bias, 2 * P, scratch)  # (..., 2 P): rows (p, r)
        Bu = torch.view_as_complex(Bu.unflatten(-1, (P, 2)))  # (..., P)
        return self._discretize(dt, Bu, tau)

    def _readout(self, u, x, scratch=None):
        """y = scale Re(C_t x) + D u of tokens ``u (..., H)`` and states ``x (..., P_loc)``: ``(..., H)``, from the
        projection's C_t columns, with Re(c x) = Re c Re x - Im c Im x on the parts of C_t as projected
        (``_contract``; ``scratch`` as there)."""
        R, P, H = self.dt_rank, self.local_P, self.d_model
        cols = slice(R + 2 * P * H, R + 4 * P * H)
        x_real = torch.view_as_real(x)  # (..., P, 2)
        sign = torch.tensor([1.0, -1.0], dtype=x_real.dtype, device=u.device)  # (2,)
        x_parts = (x_real * sign).flatten(-2)  # (..., 2 P): [Re x, -Im x] of each state
        y = self._contract(u, x_parts, self.x_proj_kernel[:, cols], self.x_proj_bias[cols], H, scratch)  # (..., H)
        y = self.readout_scale * y
        y = y + upcast(self.D) * upcast(u)  # (..., H)
        return y.to(u.dtype)  # (..., H): back to a half-precision module's dtype

    def selection_chunk(self, batch: int) -> int:
        """Tokens per chunk of ``forward``'s projections: ``selection_chunk_size`` if set, else as many as keep
        one chunk's projection near ``_SELECTION_BLOCK`` numbers."""
        if self.selection_chunk_size is not None:
            return positive_int(self.selection_chunk_size, "selection_chunk_size")
        return max(1, _SELECTION_BLOCK // (batch * (self.dt_rank + 4 * self.local_P * self.d_model)))

    def _discretize(self, dt, Bu, tau):
        """a_bar and gamma * Bu for per-state steps dt (..., P_loc); tau (...) or None. The rule on the computed
        steps, without value checks: a softplus that underflowed to a step of exactly 0 is a valid step
        (a_bar = 1, and gamma = 0 under zoh and bilinear)."""
        Lambda = self.Lambda()  # (P_loc,)
        return diagonal_rule(
            self.discretization,
            Lambda.reshape((1,) * (dt.ndim - 1) + Lambda.shape),  # (1.., P_loc)
            Bu,  # (..., P_loc)
            dt,  # (..., P_loc): one step per state
            upcast(tau),  # (...) aligned with the token axes
        )

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zeros ``(batch_size, P_loc)``, complex."""
        return torch.zeros(self.batch_size(batch_size), self.local_P, dtype=self.state_dtype, device=self.device)

    def _check_state(self, state, batch: int, name: str) -> torch.Tensor:
        if state is None:
            return self.initial_state(batch)
        if isinstance(state, torch.Tensor) and state.dtype == self.dtype:  # a real state of the same precision
            state = state.to(self.state_dtype)
        return self.check_state_tensor(state, name, (batch, self.local_P), dtype=self.state_dtype)

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False):
        """Run the SSM on ``u (B, L, H)`` or ``(L, H)``; ``integration_timesteps`` ``(L,)`` or ``(B, L)``
        (required by "async"); ``initial_state (B, P_loc)``. Returns ``y``, or ``(y, state)``."""
        u, initial_state, unbatched = self.sequence(
            u, initial_state, {"integration_timesteps": integration_timesteps}
        )
        Bsz, L, _ = u.shape
        x0 = self._check_state(initial_state, Bsz, "initial_state")
        tau = self.check_timesteps(integration_timesteps, Bsz, L, allow_zero=True)
        self.values_ok({"u": u, "initial_state": x0})
        check_gaps(self.discretization, tau)  # async needs gaps; a zero gap would drop an input (zoh, bilinear, mamba)

        T = self.selection_chunk(Bsz)
        u_chunks = u.split(T, dim=1)  # (B, T, H) each
        tau_chunks = [None] * len(u_chunks) if tau is None else tau.split(T, dim=1)  # (B, T) each
        records = records_grad(u, x0, tau, *self.parameters())
        starts = range(0, L, T)
        B_columns = self._B_columns()
        # the projections through _ProjectedContraction and one scratch tensor (eager mode, no autocast); else
        # the plain ops, with each chunk a checkpoint while autograd records
        fused = not torch.compiler.is_compiling() and not torch.is_autocast_enabled(u.device.type)
        scratch = _Scratch() if fused else None
        if records:  # the results joined by cat (writing them into slices of one tensor would make every
            # chunk's backward copy the whole gradient: O(L^2 / T) work)
            inputs = [
                self._inputs(u_c, tau_c, *B_columns, scratch) if fused
                else checkpoint(self._inputs, u_c, tau_c, *B_columns, use_reentrant=False)
                for u_c, tau_c in zip(u_chunks, tau_chunks)
            ]
            a_bar = torch.cat([a for a, _ in inputs], dim=1)  # (B, L, P)
            Bu_bar = torch.cat([b for _, b in inputs], dim=1)  # (B, L, P)
        else:  # the chunks' results written into tensors made before the loop: every chunk then reuses the
            # memory the previous one freed (kept results between freed projections fragment the heap:
            # measured 2.3 GB of resident memory at L = 16,384 against 0.3 GB of live tensors)
            a_bar = torch.empty(Bsz, L, self.local_P, dtype=self.state_dtype, device=u.device)  # (B, L, P)
            Bu_bar = torch.empty_like(a_bar)  # (B, L, P)
            for t0, u_c, tau_c in zip(starts, u_chunks, tau_chunks):
                a_bar[:, t0 : t0 + T], Bu_bar[:, t0 : t0 + T] = self._inputs(u_c, tau_c, *B_columns, scratch)
        x, final_state = scan_states(a_bar, Bu_bar, x0, self.backend)  # (B, L, P), (B, P)
        x_chunks = x.split(T, dim=1)  # (B, T, P) each
        if records:
            y = torch.cat(
                [self._readout(u_c, x_c, scratch) if fused else checkpoint(self._readout, u_c, x_c, use_reentrant=False)
                 for u_c, x_c in zip(u_chunks, x_chunks)],
                dim=1,
            )  # (B, L, H)
        else:
            y = torch.empty_like(u)  # (B, L, H)
            for t0, u_c, x_c in zip(starts, u_chunks, x_chunks):
                y[:, t0 : t0 + T] = self._readout(u_c, x_c, scratch)
        if unbatched:
            y, final_state = y[0], final_state[0]
        return (y, final_state) if return_state else y

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state (B, P_loc)``, ``integration_timesteps (B,)``.
        Returns ``(y_t (B, H), state)``."""
        u_t, state, integration_timesteps, unbatched = self.step_inputs(u_t, state, integration_timesteps)
        Bsz = u_t.shape[0]
        x = self._check_state(state, Bsz, "state")
        tau = self.check_timesteps(integration_timesteps, Bsz, None, allow_zero=True)
        self.values_ok({"u_t": u_t, "state": x})
        check_gaps(self.discretization, tau)  # async needs gaps; a zero gap would drop an input (zoh, bilinear, mamba)
        a_bar, Bu_bar = self._inputs(u_t, tau, *self._B_columns())  # (B, P) each
        x = a_bar * x + Bu_bar  # (B, P)
        return self.unbatch(self._readout(u_t, x), x, unbatched)  # (B, H), (B, P)
