"""Centaurus in torch: the twin of ``reference.models.lti.centaurus`` (same parameters, state layout,
kernel and contraction orders).

Paper: Pei, "Let SSMs be ConvNets: State-space Modeling with Optimal Tensor Contractions" (ICLR 2025);
official code: Brainchip-Inc/Centaurus ``centaurus/ssm.py`` (``Kernelizer``) and ``centaurus/opt_fft.py``
(``padded_fft_conv_opt``). The definition, the four connectivity modes, the initialization and every
deliberate deviation are in the reference module's docstring; this module only runs the same system.

State channels j (J' of them) of M' lanes each, lambda = -softplus(a_re) + i a_im:

    a_bar, gamma = discretize(lambda, 1, dt)                                  (J', M')
    k_j[l] = sum_m E_jm Re(gamma_jm a_bar_jm^l)                               (channel kernels)
    y = P_out (k * (P_in u))       ("states" order)   =   (P_out diag(k) P_in) * u   ("kernel" order)

As lanes (``fast.models.lti._base``): G = J' groups of M' lanes, b = gamma, c = E, real projections
P_in, P_out (identities in "dws" mode), readout Re, no D. ``forward`` contracts in the order the
official code picks (``contraction_order``). State: ``(B, J' * M')`` complex, the lanes row-major
(pointwise (J*M), neck (J, M), dws (H, M), full (H_out, H_in, M)), as the reference.

Glossary: ``A`` (..., 2) real [a_re, a_im]; ``log_dt``; ``B``, ``C`` (pointwise, neck); ``E`` (neck, dws,
full); ``M`` = ``sub_state_dim``; ``J`` = ``d_state``; all parameters are real.
"""

from __future__ import annotations

import torch

from fast._checks import positive_int
from fast.discretization import discretize_diagonal
from fast.models.lti._base import FastLTIModel, LaneSystem
from reference.models.lti.centaurus import CONTRACTION_ORDERS
from reference.models.lti.centaurus import Centaurus as _ReferenceCentaurus

__all__ = ["Centaurus"]


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x), exactly (torch's ``F.softplus`` switches to x above a threshold)."""
    return torch.logaddexp(x, torch.zeros_like(x))


class Centaurus(FastLTIModel):
    """Centaurus core as a ``torch.nn.Module``.

    Args: those of ``reference.models.Centaurus`` (``d_model, d_state=None, *, discretization="mamba",
    mode="pointwise", sub_state_dim=16, dt_min=1e-3, dt_max=1e-1``)
    plus ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype) and
    ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    ``Centaurus.from_reference(ref)`` copies a reference model's parameters exactly; ``to_reference()`` copies
    back.
    """

    reference_class = _ReferenceCentaurus
    discretizations = _ReferenceCentaurus.discretizations
    readout = "re"

    def setup(self, reference_model) -> None:
        self.mode = reference_model.mode
        self.sub_state_dim = reference_model.sub_state_dim

    def state_size(self) -> int:
        return self.A.numel() // 2

    def eigenvalues(self) -> torch.Tensor:
        """lambda = -softplus(a_re) + i a_im of every lane, in the shape of ``A`` without its last axis."""
        return torch.complex(-softplus(self.A[..., 0]), self.A[..., 1])

    def state_channels(self):
        """``(Lambda, dt, E)`` each ``(J', M')`` and ``P_in (J', H)``, ``P_out (H, J')`` (None: identity)."""
        H, M = self.d_model, self.sub_state_dim
        Lambda = self.eigenvalues()
        dt = torch.exp(self.log_dt)
        if self.mode == "pointwise":
            Lambda, dt = Lambda[:, None], dt[:, None]  # (J*M, 1): every lane its own channel
            return Lambda, dt, torch.ones_like(dt), self.B, self.C  # E (J*M, 1), (J*M, H), (H, J*M)
        if self.mode == "neck":
            return Lambda, dt[:, None].expand(Lambda.shape), self.E, self.B, self.C  # (J, M) x3, (J, H), (H, J)
        if self.mode == "dws":
            return Lambda, dt, self.E, None, None  # (H, M) x3; channel c reads u_c, writes y_c
        eye = torch.eye(H, dtype=self.dtype, device=self.device)  # (H, H)
        Lambda = Lambda.reshape(H * H, M)  # (H*H, M): channel (d, c) at d*H + c
        dt = dt[:, None, :].expand(H, H, M).reshape(H * H, M)  # (H*H, M): dt of (d, m)
        E = self.E.reshape(H * H, M)  # (H*H, M)
        P_in = eye.repeat(H, 1)  # (H*H, H): channel (d, c) reads u_c
        P_out = eye.repeat_interleave(H, dim=1)  # (H, H*H): y_d sums the channels (d, .)
        return Lambda, dt, E, P_in, P_out

    def discretized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_bar, gamma)`` of every lane, ``(J', M')`` each."""
        Lambda, dt, _, _, _ = self.state_channels()
        return discretize_diagonal(Lambda, torch.ones_like(Lambda), dt, self.discretization)

    def _build_system(self) -> LaneSystem:
        Lambda, dt, E, P_in, P_out = self.state_channels()
        a_bar, gamma = discretize_diagonal(Lambda, torch.ones_like(Lambda), dt, self.discretization)  # (J', M')
        return LaneSystem(a_bar, gamma, E, P_in, P_out, None, 1.0)

    # -- kernels and contraction orders -----------------------------------------------------------
    def _conv_kernel(self, sys, L: int, order: str) -> torch.Tensor:
        if self.mode == "full" and order == "kernel":
            # channel (d, c) is lane d*H + c: the (L, H, H) kernel is the lane kernels reshaped, with no
            # contraction through the selection matrices (which would materialize an (L, H, H^2) tensor)
            k = self._lane_kernels(sys, L)  # (H*H, L) complex
            return sys.scale * k.real.T.reshape(L, self.d_model, self.d_model)  # (L, H_out, H_in)
        return super()._conv_kernel(sys, L, order)

    def channel_kernels(self, L: int) -> torch.Tensor:
        """k_j[l] = sum_m E_jm Re(gamma_jm a_bar_jm^l), one kernel per state channel: ``(L, J')``."""
        L = positive_int(L, "L")
        return self._cached_kernel(self.system(), L, "states").T  # (L, J')

    def contraction_order(self, batch_size: int) -> str:
        """The order [Cent-code] ``padded_fft_conv_opt`` would choose: "kernel" or "states"."""
        batch_size = positive_int(batch_size, "batch_size")
        if self.mode == "dws":
            return "states"
        if self.mode == "full":
            return "kernel"
        channels = self.C.shape[1]  # J*M (pointwise) or J (neck)
        return "kernel" if 2.0 / self.d_model > 1.0 / batch_size + 1.0 / channels else "states"

    def _order(self, sys, batch: int) -> str:
        order = self.contraction_order(batch)
        return "depthwise" if sys.P_in is None else order

    def forward_contraction(self, u, order: str = "auto"):
        """The convolution from a zero state with an explicit contraction order ("kernel", "states" or
        "auto", the official choice); ``u (B, L, H)`` or ``(L, H)``, returns ``y`` of the same shape."""
        if order not in CONTRACTION_ORDERS:
            raise ValueError(f"order: expected one of {list(CONTRACTION_ORDERS)}, got {order!r}")
        u = self.check_input(u)
        unbatched = u.ndim == 2
        u = u[None] if unbatched else u  # (B, L, H)
        self.entry_checks(u, None)
        y = self._convolve(self.system(), u, None if order == "auto" else order)  # (B, L, H)
        return y[0] if unbatched else y
