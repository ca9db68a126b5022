"""S7 in torch (twin of ``reference.models.ltv.s7``): an S5-style diagonal complex SSM whose step, input and
output matrices depend on the token.

Paper: Soydan, Zubić, Messikommer, Mishra, Scaramuzza, "S7: Selective and Simplified State Space Layers
for Sequence Modeling", arXiv 2410.03464. Official code followed (through the reference, which follows the
code rather than the paper's equations): TaylanSoydan/S7 ``event_ssm/ssm.py::S7SSM`` with
``input_dependent=True``. EQUATIONS.md §10.1.

For an input u (B, L, H), P_loc stored complex modes, R = ceil(H / 16):

    delta, B_raw, C_raw = split(u @ x_proj_kernel + x_proj_bias)                (R, 2 P_loc H, 2 P_loc H)
    dt_t  = step_rescale * softplus(delta @ step_proj_kernel + step_proj_bias)   (B, L, P_loc)
    B_t (P_loc, H), C_t (H, P_loc): complex, from (re, im) pairs of B_raw, C_raw
    a_bar_t, gamma_t = discretize(Lambda, dt_t, tau_t)         (fast.discretize_diagonal, per state)
    x_t = a_bar_t * x_{t-1} + gamma_t * (B_t u_t)              (fast.ops.linear_scan over (B, L, P_loc))
    y_t = 2 Re(C_t x_t) + D * u_t     (conj_sym; Re(C_t x_t) + D u_t without it)

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

import fast.ops
from fast._checks import complex_dtype
from fast.discretization import discretize_diagonal
from fast.models.ltv._base import LTVFastModel, softplus
from reference.models.ltv.s7 import S7 as ReferenceS7

__all__ = ["S7"]


class S7(LTVFastModel):
    """The S7 SSM (module docstring): ``S7(d_model, d_state=16, discretization="zoh", *, seed=0,
    backend="auto", block_size=None, conj_sym=True, clip_eigs=False, dt_min=1e-3, dt_max=1e-1,
    step_rescale=1.0)``; parameters initialized by the reference twin."""

    reference_class = ReferenceS7

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        discretization: str | None = None,
        *,
        seed: int = 0,
        backend: str = "auto",
        block_size: int | None = None,
        conj_sym: bool = True,
        clip_eigs: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        step_rescale: float = 1.0,
    ):
        super().__init__(
            d_model, d_state, discretization, seed=seed, backend=backend, block_size=block_size,
            conj_sym=conj_sym, clip_eigs=clip_eigs, dt_min=dt_min, dt_max=dt_max, step_rescale=step_rescale,
        )

    def setup(self, reference_model) -> None:
        self.block_size = reference_model.block_size
        self.conj_sym = reference_model.conj_sym
        self.clip_eigs = reference_model.clip_eigs
        self.step_rescale = reference_model.step_rescale
        self.dt_rank = reference_model.dt_rank
        self.local_P = reference_model.local_P

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
        re = torch.clamp(self.Lambda_re, max=-1e-4) if self.clip_eigs else self.Lambda_re  # (P_loc,)
        return torch.complex(re, self.Lambda_im)  # (P_loc,)

    def _selection(self, u):
        """dt (..., P_loc), B_t (..., P_loc, H), C_t (..., H, P_loc) (complex) from u (..., H)."""
        R, P, H = self.dt_rank, self.local_P, self.d_model
        x_dbl = u @ self.x_proj_kernel + self.x_proj_bias  # (..., R + 4 P H)
        delta, B_raw, C_raw = x_dbl[..., :R], x_dbl[..., R : R + 2 * P * H], x_dbl[..., R + 2 * P * H :]
        dt = self.step_rescale * softplus(delta @ self.step_proj_kernel + self.step_proj_bias)  # (..., P)
        B_raw = B_raw.reshape(u.shape[:-1] + (P, H, 2))  # (..., P, H, 2)
        C_raw = C_raw.reshape(u.shape[:-1] + (H, P, 2))  # (..., H, P, 2)
        return dt, torch.complex(B_raw[..., 0], B_raw[..., 1]), torch.complex(C_raw[..., 0], C_raw[..., 1])

    def _discretize(self, dt, Bu, tau):
        """a_bar and gamma * Bu for per-state steps dt (..., P_loc); tau (...) or None."""
        Lambda = self.Lambda()  # (P_loc,)
        return discretize_diagonal(
            Lambda.reshape((1,) * (dt.ndim - 1) + Lambda.shape),  # (1.., P_loc)
            Bu,  # (..., P_loc)
            dt,  # (..., P_loc): one step per state
            self.discretization,
            integration_timesteps=tau,  # (...) aligned with the token axes
            aligned_timesteps=True,
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

        dt, B_t, C_t = self._selection(u)  # (B, L, P), (B, L, P, H), (B, L, H, P)
        Bu = torch.einsum("blph,blh->blp", B_t, u.to(B_t.dtype))  # (B, L, P)
        a_bar, Bu_bar = self._discretize(dt, Bu, tau)  # (B, L, P) each
        x, final_state = fast.ops.linear_scan(a_bar, Bu_bar, x0, backend=self.backend)  # (B, L, P), (B, P)
        y = self.readout_scale * torch.einsum("blhp,blp->blh", C_t, x).real + self.D * u  # (B, L, H)
        if unbatched:
            y, final_state = y[0], final_state[0]
        return (y, final_state) if return_state else y

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state (B, P_loc)``, ``integration_timesteps (B,)``.
        Returns ``(y_t (B, H), state)``."""
        u_t = self.check_step_input(u_t)
        Bsz = u_t.shape[0]
        x = self._check_state(state, Bsz, "state")
        tau = self.check_timesteps(integration_timesteps, Bsz, None, allow_zero=True)
        dt, B_t, C_t = self._selection(u_t)  # (B, P), (B, P, H), (B, H, P)
        Bu = torch.einsum("bph,bh->bp", B_t, u_t.to(B_t.dtype))  # (B, P)
        a_bar, Bu_bar = self._discretize(dt, Bu, tau)  # (B, P) each
        x = a_bar * x + Bu_bar  # (B, P)
        y = self.readout_scale * torch.einsum("bhp,bp->bh", C_t, x).real + self.D * u_t  # (B, H)
        return y, x
