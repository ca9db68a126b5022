"""The Mamba block in torch (twin of ``reference.models.ltv.mamba``).

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752
(§3.2, Algorithm 2; §3.4, Figure 3). Official code followed (through the reference): state-spaces/mamba
``mamba_ssm/modules/mamba_simple.py`` (``Mamba.forward`` without the fused path, ``Mamba.step``) and
``selective_scan_interface.py::selective_scan_ref``. reference/README.md §Mamba.

For an input u (B, L, H), with D = expand * H inner channels, N states, R = dt_rank and W = d_conv:

    x, z   = split(u @ in_proj_weight.T)                        # (B, L, D) each
    x      = SiLU(causal depthwise conv1d of x, width W)       # (B, L, D)
    delta, B_t, C_t = split(x @ x_proj_weight.T)                # (B, L, R), (B, L, N), (B, L, N)
    dt     = softplus(delta @ dt_proj_weight.T + dt_proj_bias) # (B, L, D)
    A      = -exp(A_log)                                        # (D, N)
    y      = selective_scan(x, dt, A, B_t, C_t, D, z)           # (B, L, D); includes D x and * SiLU(z)
    out    = y @ out_proj_weight.T                              # (B, L, H)

Glossary (code name -> paper symbol): ``x`` = x (SSM input), ``z`` = the gate branch, ``dt`` = Delta,
``A_log`` = log(-A), ``x_proj`` = s_B, s_C and the low-rank part of s_Delta, ``dt_proj`` = the broadcast
of s_Delta to D channels (tau_Delta = softplus), ``D`` = the skip.

Parameters: the reference's (``MambaParams``; names, torch layouts ``(out, in)``, ``conv1d_weight (D, W)``),
as ``nn.Parameter``s copied from the reference twin (``fast.models._base.FastModel``).

State (``MambaState``, tensors): ``conv_state (B, D, W)``, the last W convolution inputs (newest last), and
``ssm_state (B, D, N)``, as in the reference.

Discretization: ``"mamba"`` (default) or ``"zoh"``, ``"bilinear"``, ``"dirac"``, ``"async"``, through
``fast.ops.selective_scan`` (chunked over time: no ``(B, L, D, N)`` tensor) in ``forward`` and
``fast.discretize_diagonal`` in ``step``; ``integration_timesteps`` (tau) scales each token's step to
dt * tau (``"async"``: the decay only). The attribute ``scan_chunk_size`` (default None: the backend's own
default) sets the chunk of the selective scan; results do not depend on it beyond rounding. ``backend="triton"``
runs the fused kernel ``fast.triton.selective_scan`` in ``forward``. Deviations from the official code: those of
the reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from fast import selective_scan as _scan
from fast._checks import upcast
from fast.discretization import check_gaps, diagonal_rule
from fast.models.ltv._base import LTVFastModel, causal_depthwise_conv1d, softplus
from reference.models.ltv.mamba import Mamba as ReferenceMamba

__all__ = ["Mamba", "MambaState"]


class MambaState(NamedTuple):
    """``conv_state (B, D, W)``: the last W convolution inputs, newest last; ``ssm_state (B, D, N)``."""

    conv_state: torch.Tensor
    ssm_state: torch.Tensor


class Mamba(LTVFastModel):
    """The Mamba block (module docstring), with mamba_ssm's argument names and defaults.

    Args:
        d_model: H, the model width. d_state: N (default 16).
        discretization: "mamba" (default), "zoh", "bilinear", "dirac", "async" or a rule registered in both
            packages (keyword-only, as everything after d_state).
        seed: None (default): the initialization is drawn from torch's global generator (``torch.manual_seed``
            makes it reproducible); an int: exactly ``reference.models.Mamba(..., seed=seed)``'s parameters.
        backend: "auto" | "torch" | "triton". device, dtype: where and in which precision the parameters live
            (``dtype=None``: ``torch.get_default_dtype()``).
        d_conv, expand, dt_rank, dt_min, dt_max, dt_init, dt_scale, dt_init_floor, conv_bias, bias: as
            ``mamba_ssm.modules.mamba_simple.Mamba`` (``bias``: in_proj and out_proj biases, default False).

    ``Mamba.from_reference(ref)`` copies a reference model exactly; ``to_reference()`` copies back."""

    reference_class = ReferenceMamba

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
        d_conv: int = 4,
        expand: float = 2,
        dt_rank="auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
    ):
        super().__init__(
            d_model, d_state, discretization=discretization, seed=seed, backend=backend, device=device, dtype=dtype,
            d_conv=d_conv, expand=expand, dt_rank=dt_rank, dt_min=dt_min, dt_max=dt_max, dt_init=dt_init,
            dt_scale=dt_scale, dt_init_floor=dt_init_floor, conv_bias=conv_bias, bias=bias,
        )

    def setup(self, reference_model) -> None:
        self.conv_bias = reference_model.conv_bias
        self.bias = reference_model.bias
        self.d_inner = reference_model.d_inner
        self.d_conv = reference_model.d_conv
        self.dt_rank = reference_model.dt_rank
        self.expand = reference_model.expand
        #: steps per chunk of the selective scan in ``forward`` (a setting, not a parameter; see fast.selective_scan)
        self.scan_chunk_size = None

    # -- pieces shared by forward and step ------------------------------------------------------
    def _selection(self, x):
        """Delta, B_t, C_t from the convolved input x (..., D): (..., D), (..., N), (..., N)."""
        R, N = self.dt_rank, self.d_state
        W = self.x_proj_weight  # (R + 2N, D): the rows of delta, B_t, C_t (one product each; see forward)
        delta = F.linear(x, W[:R])  # (..., R)
        B_t = F.linear(x, W[R : R + N])  # (..., N)
        C_t = F.linear(x, W[R + N :])  # (..., N)
        dt = softplus(F.linear(delta, self.dt_proj_weight, self.dt_proj_bias))  # (..., D)
        return dt, B_t, C_t

    def initial_state(self, batch_size: int) -> MambaState:
        """Zeros: ``MambaState(conv_state (B, D, W), ssm_state (B, D, N))`` in the module's dtype and device."""
        B = self.batch_size(batch_size)
        like = dict(dtype=self.dtype, device=self.device)
        return MambaState(
            torch.zeros(B, self.d_inner, self.d_conv, **like), torch.zeros(B, self.d_inner, self.d_state, **like)
        )

    def _check_state(self, state, batch: int, name: str) -> MambaState:
        if state is None:
            return self.initial_state(batch)
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"{name}: expected a MambaState (conv_state, ssm_state), got {type(state).__name__}")
        conv = self.check_state_tensor(state[0], f"{name}.conv_state", (batch, self.d_inner, self.d_conv))
        ssm = self.check_state_tensor(state[1], f"{name}.ssm_state", (batch, self.d_inner, self.d_state))
        return MambaState(conv, ssm)

    # -- running it ------------------------------------------------------------------------------
    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False):
        """Run the block on ``u (B, L, H)`` or ``(L, H)`` (a tensor of the module's dtype and device).

        ``integration_timesteps``: ``(L,)`` or ``(B, L)`` event gaps (required by "async").
        ``initial_state``: a ``MambaState`` to continue from. Returns ``y`` (the input's rank), or
        ``(y, MambaState)`` when ``return_state``.
        """
        u, initial_state, unbatched = self.sequence(
            u, initial_state, {"integration_timesteps": integration_timesteps}
        )
        Bsz, L, _ = u.shape
        state = self._check_state(initial_state, Bsz, "initial_state")
        tau = self.check_timesteps(integration_timesteps, Bsz, L, allow_zero=True)
        self.values_ok({"u": u, "initial_state.conv_state": initial_state and state.conv_state,
                        "initial_state.ssm_state": initial_state and state.ssm_state})
        D, W = self.d_inner, self.d_conv

        # in_proj (and x_proj in _selection) as one product per output block rather than slices of one
        # product: torch.compile (torch 2.13, training mode) failed to rebuild such slices when a graph break
        # made them graph outputs ("shape [...] is invalid" from aot_autograd's view replay)
        b_x, b_z = (None, None) if self.in_proj_bias is None else (self.in_proj_bias[:D], self.in_proj_bias[D:])
        x = F.linear(u, self.in_proj_weight[:D], b_x)  # (B, L, D)
        z = F.linear(u, self.in_proj_weight[D:], b_z)  # (B, L, D)
        history = state.conv_state[:, :, 1:].transpose(1, 2)  # (B, W-1, D): inputs before x[:, 0]
        x_conv, _ = causal_depthwise_conv1d(x, self.conv1d_weight.T, self.conv1d_bias, history)  # (B, L, D)
        x_conv = F.silu(x_conv)  # (B, L, D)
        dt, B_t, C_t = self._selection(x_conv)  # (B, L, D), (B, L, N), (B, L, N)
        A = -torch.exp(self.A_log)  # (D, N)
        # the selective scan on the steps computed here: no value checks (a softplus step that underflowed to 0 is
        # a valid step); a half-precision module's scan runs in float32 (mamba_ssm's), y cast back to its dtype
        # (in float32 also under torch.autocast, whose projections hand over bfloat16 activations)
        cd = self.compute_dtype
        x_s, dt, A, B_t, C_t, D_skip, z, h0 = (t.to(cd) for t in (x_conv, dt, A, B_t, C_t, self.D, z, state.ssm_state))
        args = _scan.check_selective_scan_args(
            x_s, dt, A, B_t, C_t, D_skip, z, self.discretization, upcast(tau), h0, values=False
        )
        y, ssm_state = _scan.run(
            args, self.discretization, return_state=True, backend=self.backend, chunk_size=self.scan_chunk_size
        )  # (B, L, D), (B, D, N)
        y, ssm_state = y.to(u.dtype), ssm_state.to(self.dtype)
        out = F.linear(y, self.out_proj_weight, self.out_proj_bias)  # (B, L, H)
        recent = torch.cat([state.conv_state, x[:, -W:].transpose(1, 2)], dim=2)  # (B, D, W + min(L, W))
        new_state = MambaState(recent[:, :, -W:], ssm_state)  # (B, D, W), (B, D, N)
        if unbatched:
            out, new_state = out[0], MambaState(new_state.conv_state[0], new_state.ssm_state[0])
        return (out, new_state) if return_state else out

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state`` a ``MambaState``, ``integration_timesteps (B,)``.
        Returns ``(y_t (B, H), new MambaState)``."""
        u_t, state, integration_timesteps, unbatched = self.step_inputs(u_t, state, integration_timesteps)
        Bsz = u_t.shape[0]
        state = self._check_state(state, Bsz, "state")
        tau = self.check_timesteps(integration_timesteps, Bsz, None, allow_zero=True)
        self.values_ok({"u_t": u_t, "state.conv_state": state.conv_state, "state.ssm_state": state.ssm_state})
        check_gaps(self.discretization, tau)  # async needs gaps; a zero gap would drop an input (zoh, bilinear, mamba)
        D = self.d_inner

        xz = F.linear(u_t, self.in_proj_weight, self.in_proj_bias)  # (B, 2D)
        x, z = xz[:, :D], xz[:, D:]  # (B, D) each
        conv_state = torch.cat([state.conv_state[:, :, 1:], x[:, :, None]], dim=2)  # (B, D, W)
        x = torch.sum(conv_state * self.conv1d_weight, dim=-1)  # (B, D)
        x = F.silu(x if self.conv1d_bias is None else x + self.conv1d_bias)  # (B, D)
        dt, B_t, C_t = self._selection(x)  # (B, D), (B, N), (B, N)
        A = -torch.exp(self.A_log)  # (D, N)
        # the rule on the computed step, without value checks; in float32 for a half-precision module
        A, B_t, C_t, dt, x, z, h = (upcast(t) for t in (A, B_t, C_t, dt, x, z, state.ssm_state))
        A_bar, B_bar = diagonal_rule(
            self.discretization,
            A[None],  # (1, D, N)
            B_t[:, None, :],  # (B, 1, N)
            dt[..., None],  # (B, D, 1): one step per channel
            None if tau is None else upcast(tau)[:, None],  # (B, 1)
        )  # (B, D, N) each
        ssm_state = A_bar * h + B_bar * x[:, :, None]  # (B, D, N)
        y = torch.einsum("bdn,bn->bd", ssm_state, C_t) + upcast(self.D) * x  # (B, D)
        y = (y * F.silu(z)).to(u_t.dtype)  # (B, D)
        out = F.linear(y, self.out_proj_weight, self.out_proj_bias)  # (B, H)
        return self.unbatch(out, MambaState(conv_state, ssm_state.to(u_t.dtype)), unbatched)
