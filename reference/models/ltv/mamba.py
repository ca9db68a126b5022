"""The Mamba block: a gated, selective state-space layer.

Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752
(§3.2 and Algorithm 2 for the selection mechanism, §3.4 and Figure 3 for the block).
Official code followed: state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py`` (``Mamba.__init__``,
``forward`` without the fused path, ``step`` without the Triton update) and
``mamba_ssm/ops/selective_scan_interface.py::selective_scan_ref``. reference/README.md §Mamba.

For an input u (B, L, H), with D = expand * H inner channels, N states, R = dt_rank and W = d_conv:

    x, z   = split(u @ in_proj_weight.T)                        # (B, L, D) each
    x      = SiLU(causal depthwise conv1d of x, width W)       # (B, L, D)
    delta, B_t, C_t = split(x @ x_proj_weight.T)                # (B, L, R), (B, L, N), (B, L, N)
    dt     = softplus(delta @ dt_proj_weight.T + dt_proj_bias) # (B, L, D)
    A      = -exp(A_log)                                        # (D, N)
    y      = selective_scan(x, dt, A, B_t, C_t, D, z)           # (B, L, D); includes D x and * SiLU(z)
    out    = y @ out_proj_weight.T                              # (B, L, H)

Glossary (code name -> paper symbol): ``x`` = x (SSM input), ``z`` = the gate branch, ``dt`` = Delta,
``A_log`` = log(-A), ``x_proj`` = s_B, s_C and the low-rank part of s_Delta, ``dt_proj`` = the
broadcast of s_Delta to D channels (tau_Delta = softplus), ``D`` = the skip parameter.

Parameters (``model.params``, a ``MambaParams``; names are the torch module's with "." -> "_", torch
layouts ``(out, in)``; ``conv1d_weight`` drops torch's singleton axis: ``(D, W)``):

    in_proj_weight (2D, H)   torch Linear default init, U[-1/sqrt(H), 1/sqrt(H)]
    in_proj_bias (2D,)       with ``bias=True`` only (official default False; None otherwise): U[-1/sqrt(H), 1/sqrt(H)];
                             entries :D are added to x, D: to z
    conv1d_weight (D, W), conv1d_bias (D,)   torch Conv1d default init, U[-1/sqrt(W), 1/sqrt(W)]; the bias
                             with ``conv_bias=True`` only (the official default; None otherwise)
    x_proj_weight (R + 2N, D)   U[-1/sqrt(D), 1/sqrt(D)]
    dt_proj_weight (D, R)       U[-R^{-1/2} dt_scale, +R^{-1/2} dt_scale] ("random") or the constant
    dt_proj_bias (D,)           softplus^{-1}(dt0), dt0 = exp(U[log dt_min, log dt_max]) clamped >= dt_init_floor
    A_log (D, N)                log(n + 1), n = 0..N-1, for every channel (S4D-real)
    D (D,)                      ones
    out_proj_weight (H, D)      U[-1/sqrt(D), 1/sqrt(D)]
    out_proj_bias (H,)          with ``bias=True`` only (None otherwise): U[-1/sqrt(D), 1/sqrt(D)]

``bias`` and ``conv_bias`` are the official constructor's flags (``nn.Linear(..., bias=bias)`` for in_proj and
out_proj, ``nn.Conv1d(..., bias=conv_bias)``), with its defaults. Neither flag changes the other parameters' draws:
the projection biases are drawn after every other parameter, and the convolution bias is drawn (and dropped
with ``conv_bias=False``) in its place.

The random draws follow the official distributions, from NumPy's generator (``seed``): the values differ
from torch's. To compare with a torch module, copy its parameters into ``model.params``.

State (``MambaState``): ``conv_state (B, D, W)``, the last W inputs of the convolution (newest last), as the
official ``step`` keeps it; ``ssm_state (B, D, N)``, the SSM state. ``forward`` with ``return_state`` returns
the same two, so that a sequence can be continued by ``forward`` or by ``step``.

Discretization: ``"mamba"`` (default; A_bar = exp(dt A), B_bar = dt B, as the official code) or any of
``"zoh"``, ``"bilinear"``, ``"dirac"``, ``"async"`` (reference/README.md §zoh to §async). ``integration_timesteps``
(tau) scales each token's step to dt * tau; ``"async"`` needs it and uses dt * tau for the decay only.

Deliberate deviations: the official code caps D at 256 with a printed warning in some versions; the
reference does not. lrnnx's event
mode (a separate, input-independent dtA_proj, reference/README.md §Other-libraries) is not reproduced:
integration_timesteps scale the selective step itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reference._checks import as_array, positive_int
from reference.discretization import discretize_diagonal
from reference.init import log_uniform, softplus, softplus_inverse
from reference.models.ltv._base import (
    LTVModel,
    causal_depthwise_conv1d,
    check_frozen_token,
    check_sequence,
    check_step_input,
    check_timesteps,
    silu,
)
from reference.models.ltv.selective_scan import selective_scan
from reference.response import DiscreteSSM

__all__ = ["Mamba", "MambaParams", "MambaState"]


@dataclass
class MambaParams:
    """Parameters of a Mamba block (shapes in the module docstring)."""

    in_proj_weight: np.ndarray
    conv1d_weight: np.ndarray
    conv1d_bias: np.ndarray | None  # None with conv_bias=False
    x_proj_weight: np.ndarray
    dt_proj_weight: np.ndarray
    dt_proj_bias: np.ndarray
    A_log: np.ndarray
    D: np.ndarray
    out_proj_weight: np.ndarray
    in_proj_bias: np.ndarray | None = None  # (2D,) with bias=True
    out_proj_bias: np.ndarray | None = None  # (H,) with bias=True


def _linear(x, weight, bias):
    """x @ weight.T (+ bias): torch's ``nn.Linear`` on the last axis, ``weight (out, in)``, ``bias (out,)`` or None."""
    y = x @ weight.T  # (..., out)
    return y if bias is None else y + bias


class MambaState(NamedTuple):
    """``conv_state (B, D, W)``: the last W convolution inputs, newest last; ``ssm_state (B, D, N)``."""

    conv_state: np.ndarray
    ssm_state: np.ndarray


class Mamba(LTVModel):
    """The Mamba block (module docstring): ``Mamba(d_model, d_state=16, *, discretization="mamba", seed=0,
    d_conv=4, expand=2, dt_rank="auto", dt_min=1e-3, dt_max=1e-1, dt_init="random", dt_scale=1.0,
    dt_init_floor=1e-4, conv_bias=True, bias=False)``."""

    discretizations = ("mamba", "zoh", "bilinear", "dirac", "async")
    default_discretization = "mamba"

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        *,
        discretization: str | None = None,
        seed: int = 0,
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
        super().__init__(d_model, discretization, seed)
        for name, flag in (("conv_bias", conv_bias), ("bias", bias)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {flag!r}")
        self.conv_bias, self.bias = bool(conv_bias), bool(bias)
        self.d_state = positive_int(d_state, "d_state")
        self.d_conv = positive_int(d_conv, "d_conv")
        if isinstance(expand, bool) or not isinstance(expand, (int, float, np.integer, np.floating)):
            raise ValueError(f"expand: expected a positive number, got {expand!r}")
        d_inner = expand * self.d_model
        if not (expand > 0 and math.isfinite(expand) and float(d_inner).is_integer() and d_inner >= 1):
            raise ValueError(
                f"expand: expected a number > 0 with expand * d_model a positive integer, got {expand!r} "
                f"(d_model = {self.d_model})"
            )
        self.expand = expand
        self.d_inner = int(d_inner)
        if dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        else:
            self.dt_rank = positive_int(dt_rank, "dt_rank")
        if not (0 < dt_min <= dt_max and math.isfinite(dt_max)):
            raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max < inf, got {dt_min!r}, {dt_max!r}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init: expected 'random' or 'constant', got {dt_init!r}")
        if not (dt_scale > 0 and dt_init_floor > 0):
            raise ValueError("dt_scale, dt_init_floor: expected values > 0")
        self.dt_min, self.dt_max, self.dt_init = dt_min, dt_max, dt_init
        self.dt_scale, self.dt_init_floor = dt_scale, dt_init_floor

        H, D, N, R, W = self.d_model, self.d_inner, self.d_state, self.dt_rank, self.d_conv
        rng = np.random.default_rng(self.seed)

        def torch_linear(out_features, in_features):  # torch's default: U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
            bound = 1.0 / math.sqrt(in_features)
            return rng.uniform(-bound, bound, size=(out_features, in_features))

        in_proj_weight = torch_linear(2 * D, H)  # (2D, H)
        conv_bound = 1.0 / math.sqrt(W)  # depthwise: fan_in = (in_channels / groups) * W = W
        conv1d_weight = rng.uniform(-conv_bound, conv_bound, size=(D, W))  # (D, W)
        conv1d_bias = rng.uniform(-conv_bound, conv_bound, size=D)  # (D,)
        if not self.conv_bias:  # drawn all the same: the other parameters are those of conv_bias=True
            conv1d_bias = None
        x_proj_weight = torch_linear(R + 2 * N, D)  # (R + 2N, D)
        dt_init_std = R**-0.5 * dt_scale
        if dt_init == "constant":
            dt_proj_weight = np.full((D, R), dt_init_std)  # (D, R)
        else:
            dt_proj_weight = rng.uniform(-dt_init_std, dt_init_std, size=(D, R))  # (D, R)
        dt0 = np.maximum(log_uniform(rng, dt_min, dt_max, D), dt_init_floor)  # (D,)
        dt_proj_bias = softplus_inverse(dt0)  # (D,): softplus(bias) = dt0
        A_log = np.log(np.tile(np.arange(1, N + 1, dtype=np.float64), (D, 1)))  # (D, N): A = -(n + 1)
        self.params = MambaParams(
            in_proj_weight=in_proj_weight,
            conv1d_weight=conv1d_weight,
            conv1d_bias=conv1d_bias,
            x_proj_weight=x_proj_weight,
            dt_proj_weight=dt_proj_weight,
            dt_proj_bias=dt_proj_bias,
            A_log=A_log,
            D=np.ones(D),
            out_proj_weight=torch_linear(H, D),  # (H, D)
        )
        if self.bias:  # drawn last: the other parameters are those of bias=False
            self.params.in_proj_bias = rng.uniform(-1.0 / math.sqrt(H), 1.0 / math.sqrt(H), size=2 * D)  # (2D,)
            self.params.out_proj_bias = rng.uniform(-1.0 / math.sqrt(D), 1.0 / math.sqrt(D), size=H)  # (H,)

    # -- pieces shared by forward and step ------------------------------------------------------
    def _selection(self, x):
        """Delta, B_t, C_t from the convolved input x (..., D): (..., D), (..., N), (..., N)."""
        p, R, N = self.params, self.dt_rank, self.d_state
        x_dbl = x @ p.x_proj_weight.T  # (..., R + 2N)
        delta, B_t, C_t = x_dbl[..., :R], x_dbl[..., R : R + N], x_dbl[..., R + N :]
        dt = softplus(delta @ p.dt_proj_weight.T + p.dt_proj_bias)  # (..., D)
        return dt, B_t, C_t

    def initial_state(self, batch_size: int) -> MambaState:
        """Zeros: ``MambaState(conv_state (B, D, W), ssm_state (B, D, N))``."""
        B = positive_int(batch_size, "batch_size")
        return MambaState(np.zeros((B, self.d_inner, self.d_conv)), np.zeros((B, self.d_inner, self.d_state)))

    def _check_state(self, state, batch: int, name: str) -> MambaState:
        if state is None:
            return self.initial_state(batch)
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"{name}: expected a MambaState (conv_state, ssm_state), got {type(state).__name__}")
        conv = as_array(state[0], f"{name}.conv_state", complex_ok=False)
        ssm = as_array(state[1], f"{name}.ssm_state", complex_ok=False)
        conv_shape, ssm_shape = (batch, self.d_inner, self.d_conv), (batch, self.d_inner, self.d_state)
        if conv.shape != conv_shape:
            raise ValueError(f"{name}.conv_state: expected shape {conv_shape} (B, D, W), got {conv.shape}")
        if ssm.shape != ssm_shape:
            raise ValueError(f"{name}.ssm_state: expected shape {ssm_shape} (B, D, N), got {ssm.shape}")
        return MambaState(conv, ssm)

    # -- running it ------------------------------------------------------------------------------
    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False):
        """Run the block on ``u (B, L, H)`` or ``(L, H)``.

        ``integration_timesteps``: ``(L,)`` or ``(B, L)`` event gaps (required by "async").
        ``initial_state``: a ``MambaState`` to continue from. Returns ``y`` (the input's rank), or
        ``(y, MambaState)`` when ``return_state``.
        """
        u, unbatched = check_sequence(u, self.d_model)
        if unbatched and initial_state is not None:
            initial_state = tuple(np.asarray(s)[None] for s in initial_state)
        if unbatched and integration_timesteps is not None and np.ndim(integration_timesteps) == 2:
            raise ValueError("integration_timesteps: expected shape (L,) for an unbatched input (L, H)")
        Bsz, L, _ = u.shape
        state = self._check_state(initial_state, Bsz, "initial_state")
        tau = check_timesteps(integration_timesteps, Bsz, L, allow_zero=True)
        p, D = self.params, self.d_inner

        xz = _linear(u, p.in_proj_weight, p.in_proj_bias)  # (B, L, 2D)
        x, z = xz[..., :D], xz[..., D:]  # (B, L, D) each
        history = state.conv_state[:, :, 1:].transpose(0, 2, 1)  # (B, W-1, D): inputs before x[:, 0]
        x_conv, _ = causal_depthwise_conv1d(x, p.conv1d_weight.T, p.conv1d_bias, history)  # (B, L, D)
        x_conv = silu(x_conv)  # (B, L, D)
        dt, B_t, C_t = self._selection(x_conv)  # (B, L, D), (B, L, N), (B, L, N)
        A = -np.exp(p.A_log)  # (D, N)
        y, ssm_state = selective_scan(
            x_conv,
            dt,
            A,
            B_t,
            C_t,
            p.D,
            z,
            method=self.discretization,
            integration_timesteps=tau,
            initial_state=state.ssm_state,
            return_state=True,
        )  # (B, L, D), (B, D, N)
        out = _linear(y, p.out_proj_weight, p.out_proj_bias)  # (B, L, H)
        everything = np.concatenate([state.conv_state, x.transpose(0, 2, 1)], axis=2)  # (B, D, W + L)
        new_state = MambaState(everything[:, :, -self.d_conv :].copy(), ssm_state)  # (B, D, W), (B, D, N)
        if unbatched:
            out, new_state = out[0], MambaState(new_state.conv_state[0], new_state.ssm_state[0])
        return (out, new_state) if return_state else out

    def frozen_system(self, u, t: int, *, integration_timesteps=None) -> DiscreteSSM:
        """The SSM core as it acts at token ``t`` of ``u``, frozen into an LTI system (for plots, teaching).

        The selection makes Mamba time-varying: dt, B_t and C_t change with every token. Holding token t's
        values fixed for all time gives the LTI system
            s_k = A_bar_t s_{k-1} + B_bar_t x_k,    y_k = C_t s_k + D x_k
        from the SSM input x (after the convolution and SiLU, D channels) to the SSM output before the
        SiLU(z) gate and out_proj, with (A_bar_t, B_bar_t) = discretize(A, B_t, dt_t) by the model's rule
        (and token t's gap). Its first step is exactly what ``forward`` does at token t.

        ``u (L, H)`` is one sequence, run from the zero state (as ``forward`` without ``initial_state``);
        ``integration_timesteps (L,)`` its gaps. Returns a ``DiscreteSSM`` with a diagonal A_bar of D*N
        entries (entry d*N + n is state n of channel d, the layout of ``ssm_state``), B_bar ``(D*N, D)``,
        C ``(D, D*N)`` (channel d reads its own N states with C_t), D = diag(D), readout "plain".
        """
        u, t, tau = check_frozen_token(u, self.d_model, t, integration_timesteps, allow_zero=True)  # u (1, L, H)
        p, D, N = self.params, self.d_inner, self.d_state
        x = _linear(u, p.in_proj_weight, p.in_proj_bias)[..., :D]  # (1, L, D)
        x_conv, _ = causal_depthwise_conv1d(x, p.conv1d_weight.T, p.conv1d_bias)  # (1, L, D): zero history
        dt, B_t, C_t = self._selection(silu(x_conv[0, t]))  # (D,), (N,), (N,)
        A = -np.exp(p.A_log)  # (D, N)
        A_bar, B_bar = discretize_diagonal(
            A,  # (D, N)
            np.broadcast_to(B_t, (D, N)),  # (D, N): B_t is shared by the channels
            dt,  # (D,): one step per channel
            self.discretization,
            integration_timesteps=None if tau is None else tau[0, t : t + 1],  # (1,): token t's gap
            aligned_timesteps=True,
        )  # (D, N) each
        eye = np.eye(D)
        B_full = (B_bar[:, :, None] * eye[:, None, :]).reshape(D * N, D)  # (D*N, D): state (d, n) reads x_d
        C_full = (eye[:, :, None] * C_t).reshape(D, D * N)  # (D, D*N): y_d reads the states of channel d
        return DiscreteSSM(A_bar.reshape(D * N), B_full, C_full, np.diag(p.D), "plain")

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state`` a ``MambaState``, ``integration_timesteps (B,)``.

        As the official ``Mamba.step``: roll the convolution cache, convolve, then one SSM update.
        Returns ``(y_t (B, H), new MambaState)``.
        """
        u_t = check_step_input(u_t, self.d_model)
        Bsz = u_t.shape[0]
        state = self._check_state(state, Bsz, "state")
        tau = check_timesteps(integration_timesteps, Bsz, None, allow_zero=True)
        p, D = self.params, self.d_inner

        xz = _linear(u_t, p.in_proj_weight, p.in_proj_bias)  # (B, 2D)
        x, z = xz[:, :D], xz[:, D:]  # (B, D) each
        conv_state = np.concatenate([state.conv_state[:, :, 1:], x[:, :, None]], axis=2)  # (B, D, W)
        x = np.sum(conv_state * p.conv1d_weight, axis=-1)  # (B, D)
        x = silu(x if p.conv1d_bias is None else x + p.conv1d_bias)  # (B, D)
        dt, B_t, C_t = self._selection(x)  # (B, D), (B, N), (B, N)
        A = -np.exp(p.A_log)  # (D, N)
        A_bar, B_bar = discretize_diagonal(
            A[None],  # (1, D, N)
            B_t[:, None, :],  # (B, 1, N)
            dt,  # (B, D): one step per channel
            self.discretization,
            integration_timesteps=None if tau is None else tau[:, None],  # (B, 1)
            aligned_timesteps=True,
        )  # (B, D, N) each
        ssm_state = A_bar * state.ssm_state + B_bar * x[:, :, None]  # (B, D, N)
        y = np.einsum("bdn,bn->bd", ssm_state, C_t) + p.D * x  # (B, D)
        y = y * silu(z)  # (B, D)
        return _linear(y, p.out_proj_weight, p.out_proj_bias), MambaState(conv_state, ssm_state)  # (B, H)
