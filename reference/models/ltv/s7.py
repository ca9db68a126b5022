"""S7: an S5-style diagonal complex SSM whose step, input and output matrices depend on the token.

Paper: Soydan, Zubić, Messikommer, Mishra, Scaramuzza, "S7: Selective and Simplified State Space Layers
for Sequence Modeling", arXiv 2410.03464 (Unverified: the paper's equations have not been checked; this
file follows the official code). Official code followed: TaylanSoydan/S7 ``event_ssm/ssm.py::S7SSM`` with
``input_dependent=True``, ``separate_dbc=False``, ``bidirectional=False``, ``stride=1``,
``log_a=False``, ``stablessm_a=False``; inits from ``event_ssm/ssm_init.py``. reference/README.md §S7.

For an input u (B, L, H) (H_in = H_out = H), P_loc stored complex modes, R = ceil(H / 16):

    delta, B_raw, C_raw = split(u @ x_proj_kernel + x_proj_bias)                (R, 2 P_loc H, 2 P_loc H)
    dt_t  = step_rescale * softplus(delta @ step_proj_kernel + step_proj_bias)   (B, L, P_loc): one per state
    B_t   = B_raw as (P_loc, H, re/im) -> complex (P_loc, H);  C_t = C_raw as (H, P_loc, re/im) -> complex
    Lambda = Lambda_re + i Lambda_im                                              (P_loc,) HiPPO-N eigenvalues
    a_bar_t, gamma_t = discretize(Lambda, dt_t, tau_t)                           (reference/README.md §zoh to §async)
    x_t = a_bar_t * x_{t-1} + gamma_t * (B_t u_t)                                (P_loc,) complex
    y_t = 2 Re(C_t x_t) + D * u_t     (conj_sym; Re(C_t x_t) + D u_t without it)

Glossary (code name -> symbol): ``Lambda`` = Lambda (continuous-time eigenvalues), ``dt`` = Delta_t (the
selective step), ``B_t``, ``C_t`` = the token's B and C (complex), ``D`` = the skip, ``tau`` =
integration_timesteps (the event gap), ``a_bar``, ``gamma`` = discretized A and the input normalizer.

Parameters (``model.params``, an ``S7Params``; flax layouts ``kernel (in, out)`` so that weights can be moved
from the official code):

    Lambda_re, Lambda_im (P_loc,)   HiPPO-N eigenvalues of one block of size ``block_size`` (``nplr_legs``),
                                    the half with Im <= 0 when conj_sym, tiled d_state/block_size times
    x_proj_kernel (H, R + 4 P_loc H), x_proj_bias (R + 4 P_loc H,)   lecun-normal (truncated, variance 1/H), zeros
    step_proj_kernel (R, P_loc)     U[-R^{-1/2} step_rescale, +R^{-1/2} step_rescale]
    step_proj_bias (P_loc,)         softplus^{-1}(dt0), dt0 log-uniform in [dt_min, dt_max], clipped >= 1e-4
    D (H,)                          N(0, 1)

``d_state`` is the full state size P (the official ``P``); with ``conj_sym=True`` (default) P_loc = P/2
complex modes are stored and read out as 2 Re (reference/README.md §Conventions), without it P_loc = P and Re.
The random draws follow the official distributions from NumPy's generator (values differ from JAX's).

Discretizations: ``"zoh"`` (default), ``"dirac"`` and ``"async"`` as the official ``discretize_zoh``,
``discretize_dirac``, ``discretize_async`` (with gaps: the step is dt * tau; async uses dt * tau for the
decay only, reference/README.md §async); ``"bilinear"`` is an extension through ``reference.discretize_diagonal``
(not in the official S7 code). Without ``integration_timesteps`` every gap is 1, as for a regular sequence
(the official model is always called with its gaps).

State: the complex SSM state ``(B, P_loc)`` (complex128), an array.

Scope and deviations: the layer around the SSM (norm, GELU, GLU-style gate, residual;
``event_ssm/layers.py::SequenceLayer``) is not part of this model, as for the LTI models: ``forward`` is the
SSM core. The options log_a, stablessm_a, bidirectional, separate_dbc, event pooling (stride)
and H_in != H_out are not built; ``clip_eigs`` is.

lrnnx's ``S7`` (reference/README.md §Other-libraries) is a different model: real-valued, no step size and no
discretization (a_bar_t = 1 - 1/(w_t^2 + 1/2) from an input-dependent w_t around a constant -0.5, because
its HiPPO base keeps only the real part of the eigenvalues), an input-dependent bias beta_t in the state
update (so zero input does not give a zero state), input-dependent D_t, an input projection W_in and a
gated output with a residual. None of that is reproduced here; comparisons with lrnnx's S7 are not
expected to match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reference._checks import as_array, finite_params, positive_int
from reference.discretization import discretize_diagonal
from reference.init import log_uniform, nplr_legs, softplus, softplus_inverse
from reference.models.ltv._base import (
    LTVModel,
    check_frozen_token,
    check_sequence,
    check_step_input,
    check_timesteps,
)
from reference.response import DiscreteSSM
from reference.scan import linear_scan

__all__ = ["S7", "S7Params"]

# flax's lecun_normal: a normal truncated to +-2 standard deviations, rescaled to keep the variance 1/fan_in
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def _lecun_normal(rng: np.random.Generator, shape: tuple, fan_in: int) -> np.ndarray:
    z = rng.standard_normal(size=shape)
    outside = np.abs(z) > 2.0
    while np.any(outside):  # rejection sampling of the truncated normal
        z[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(z) > 2.0
    return z * math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD


@dataclass
class S7Params:
    """Parameters of the S7 SSM (shapes in the module docstring)."""

    Lambda_re: np.ndarray
    Lambda_im: np.ndarray
    x_proj_kernel: np.ndarray
    x_proj_bias: np.ndarray
    step_proj_kernel: np.ndarray
    step_proj_bias: np.ndarray
    D: np.ndarray


class S7(LTVModel):
    """The S7 SSM of the official code (module docstring): ``S7(d_model, d_state=16, discretization="zoh",
    *, seed=0, block_size=None, conj_sym=True, clip_eigs=False, dt_min=1e-3, dt_max=1e-1, step_rescale=1.0)``.
    ``block_size`` (default d_state) is the HiPPO block size; it must divide d_state (and be even with
    conj_sym)."""

    discretizations = ("zoh", "bilinear", "dirac", "async")
    default_discretization = "zoh"

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        *,
        discretization: str | None = None,
        seed: int = 0,
        block_size: int | None = None,
        conj_sym: bool = True,
        clip_eigs: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        step_rescale: float = 1.0,
    ):
        super().__init__(d_model, discretization, seed)
        self.d_state = positive_int(d_state, "d_state")
        self.block_size = self.d_state if block_size is None else positive_int(block_size, "block_size")
        if self.d_state % self.block_size:
            raise ValueError(f"block_size: must divide d_state = {self.d_state}, got {self.block_size}")
        if not isinstance(conj_sym, bool) or not isinstance(clip_eigs, bool):
            raise ValueError("conj_sym, clip_eigs: expected True or False")
        if conj_sym and self.block_size % 2:
            raise ValueError(
                f"d_state: with conj_sym=True the state holds conjugate pairs, so d_state and block_size must be "
                f"even; got d_state = {self.d_state}, block_size = {self.block_size}"
            )
        self.conj_sym, self.clip_eigs = conj_sym, clip_eigs
        if not (0 < dt_min <= dt_max and math.isfinite(dt_max)):
            raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max < inf, got {dt_min!r}, {dt_max!r}")
        if not (math.isfinite(step_rescale) and step_rescale > 0):
            raise ValueError(f"step_rescale: expected a finite value > 0, got {step_rescale!r}")
        self.step_rescale = float(step_rescale)
        self.dt_min, self.dt_max = dt_min, dt_max

        H = self.d_model
        self.dt_rank = math.ceil(H / 16)
        kept = self.block_size // 2 if conj_sym else self.block_size
        self.local_P = P = kept * (self.d_state // self.block_size)
        R = self.dt_rank
        Lambda_block = nplr_legs(self.block_size)[0][:kept]  # (kept,): ascending Im, the Im <= 0 half first
        Lambda = np.tile(Lambda_block, self.d_state // self.block_size)  # (P_loc,)
        rng = np.random.default_rng(self.seed)
        width = R + 4 * P * H
        dt0 = np.maximum(log_uniform(rng, dt_min, dt_max, P), 1e-4)  # (P_loc,)
        bound = R**-0.5 * step_rescale
        self.params = S7Params(
            Lambda_re=Lambda.real.copy(),
            Lambda_im=Lambda.imag.copy(),
            x_proj_kernel=_lecun_normal(rng, (H, width), H),  # (H, R + 4 P_loc H)
            x_proj_bias=np.zeros(width),
            step_proj_kernel=rng.uniform(-bound, bound, size=(R, P)),  # (R, P_loc)
            step_proj_bias=softplus_inverse(dt0),  # (P_loc,)
            D=rng.normal(size=H),  # (H,)
        )

    @property
    def readout_scale(self) -> float:
        """2 (conj_sym: the stored half stands for the conjugate pairs) or 1 (Re only)."""
        return 2.0 if self.conj_sym else 1.0

    def Lambda(self) -> np.ndarray:
        """The continuous-time eigenvalues (P_loc,), clipped to Re <= -1e-4 when clip_eigs."""
        p = self.params
        re = np.minimum(p.Lambda_re, -1e-4) if self.clip_eigs else p.Lambda_re
        return re + 1j * p.Lambda_im  # (P_loc,)

    def _selection(self, u):
        """dt (..., P_loc), B_t (..., P_loc, H), C_t (..., H, P_loc) from u (..., H)."""
        p, R, P, H = self.params, self.dt_rank, self.local_P, self.d_model
        x_dbl = u @ p.x_proj_kernel + p.x_proj_bias  # (..., R + 4 P H)
        delta, B_raw, C_raw = x_dbl[..., :R], x_dbl[..., R : R + 2 * P * H], x_dbl[..., R + 2 * P * H :]
        dt = self.step_rescale * softplus(delta @ p.step_proj_kernel + p.step_proj_bias)  # (..., P)
        B_raw = B_raw.reshape(u.shape[:-1] + (P, H, 2))  # (..., P, H, 2)
        C_raw = C_raw.reshape(u.shape[:-1] + (H, P, 2))  # (..., H, P, 2)
        return dt, B_raw[..., 0] + 1j * B_raw[..., 1], C_raw[..., 0] + 1j * C_raw[..., 1]

    def _discretize(self, dt, Bu, tau):
        """a_bar and gamma * Bu for per-state steps dt (..., P_loc); tau (...) or None."""
        Lambda = self.Lambda()
        return discretize_diagonal(
            Lambda.reshape((1,) * (dt.ndim - 1) + Lambda.shape),  # (1.., P_loc)
            Bu,  # (..., P_loc)
            dt,  # (..., P_loc): one step per state
            self.discretization,
            integration_timesteps=tau,  # (...) aligned with the token axes
            aligned_timesteps=True,
            allow_zero_step=True,  # softplus can underflow to 0: a_bar = 1, the limit (reference/README.md §S7)
        )

    def initial_state(self, batch_size: int) -> np.ndarray:
        """Zeros ``(batch_size, P_loc)`` complex."""
        return np.zeros((positive_int(batch_size, "batch_size"), self.local_P), dtype=np.complex128)

    def _check_state(self, state, batch: int, name: str) -> np.ndarray:
        if state is None:
            return self.initial_state(batch)
        state = as_array(state, name)
        if state.shape != (batch, self.local_P):
            raise ValueError(f"{name}: expected shape {(batch, self.local_P)} (B, P_loc), got {state.shape}")
        return state.astype(np.complex128)

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False):
        """Run the SSM on ``u (B, L, H)`` or ``(L, H)``; ``integration_timesteps`` ``(L,)`` or ``(B, L)``
        (required by "async"); ``initial_state (B, P_loc)``. Returns ``y``, or ``(y, state)``."""
        finite_params(self.params)
        u, unbatched = check_sequence(u, self.d_model)
        if unbatched and initial_state is not None:
            initial_state = np.asarray(initial_state)[None]
        if unbatched and integration_timesteps is not None and np.ndim(integration_timesteps) == 2:
            raise ValueError("integration_timesteps: expected shape (L,) for an unbatched input (L, H)")
        Bsz, L, _ = u.shape
        x0 = self._check_state(initial_state, Bsz, "initial_state")
        tau = check_timesteps(integration_timesteps, Bsz, L, allow_zero=True)

        dt, B_t, C_t = self._selection(u)  # (B, L, P), (B, L, P, H), (B, L, H, P)
        Bu = np.einsum("blph,blh->blp", B_t, u)  # (B, L, P)
        a_bar, Bu_bar = self._discretize(dt, Bu, tau)  # (B, L, P) each
        x, final_state = linear_scan(a_bar, Bu_bar, x0)  # (B, L, P), (B, P)
        y = self.readout_scale * np.einsum("blhp,blp->blh", C_t, x).real + self.params.D * u  # (B, L, H)
        if unbatched:
            y, final_state = y[0], final_state[0]
        return (y, final_state) if return_state else y

    def frozen_system(self, u, t: int, *, integration_timesteps=None) -> DiscreteSSM:
        """The SSM as it acts at token ``t`` of ``u``, frozen into an LTI system (for plots, teaching).

        The selection makes S7 time-varying: dt_t, B_t and C_t are functions of the token u_t. Holding
        token t's values fixed gives the LTI system
            x_k = a_bar_t x_{k-1} + gamma_t B_t u_k,    y_k = 2 Re(C_t x_k) + D u_k   (Re without conj_sym)
        with (a_bar_t, gamma_t) from the model's rule (and token t's gap). Its first step is exactly what
        ``forward`` does at token t. ``u (L, H)`` is one sequence; ``integration_timesteps (L,)`` its gaps
        (only token t's values matter: S7's selection reads the current token only).

        Returns a ``DiscreteSSM`` with diagonal A_bar ``(P_loc,)``, B_bar ``(P_loc, H)``, C ``(H, P_loc)``,
        D = diag(D), readout "2re" (conj_sym) or "re".
        """
        u, t, tau = check_frozen_token(u, self.d_model, t, integration_timesteps, allow_zero=True)  # u (1, L, H)
        dt, B_t, C_t = self._selection(u[0, t])  # (P,), (P, H), (H, P)
        a_bar, B_bar = self._discretize(dt, B_t, None if tau is None else tau[0, t])  # (P,), (P, H)
        readout = "2re" if self.conj_sym else "re"
        return DiscreteSSM(a_bar, B_bar, C_t, np.diag(self.params.D), readout)

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state (B, P_loc)``, ``integration_timesteps (B,)``.
        Returns ``(y_t (B, H), state)``."""
        finite_params(self.params)
        u_t = check_step_input(u_t, self.d_model)
        Bsz = u_t.shape[0]
        x = self._check_state(state, Bsz, "state")
        tau = check_timesteps(integration_timesteps, Bsz, None, allow_zero=True)
        dt, B_t, C_t = self._selection(u_t)  # (B, P), (B, P, H), (B, H, P)
        Bu = np.einsum("bph,bh->bp", B_t, u_t)  # (B, P)
        a_bar, Bu_bar = self._discretize(dt, Bu, tau)  # (B, P) each
        x = a_bar * x + Bu_bar  # (B, P)
        y = self.readout_scale * np.einsum("bhp,bp->bh", C_t, x).real + self.params.D * u_t  # (B, H)
        return y, x
