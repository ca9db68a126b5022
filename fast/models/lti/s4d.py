"""S4D in torch: the twin of ``reference.models.lti.s4d`` (same parameters, state layout and kernel).

Paper: Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State Space Models"
(NeurIPS 2022, arXiv 2206.11893), the Vandermonde kernel of its §3; official code: state-spaces/s4
``models/s4/s4.py`` (``SSMKernelDiag``). The definition, the initializations and every deliberate
deviation are in the reference module's docstring; this module only runs the same system.

Each channel h holds N/2 complex modes (one per conjugate pair, N = ``d_state``):

    a_bar_hn, B_bar_hn = discretize(lambda_hn, B_hn, dt_h)        lambda = -exp(log_A_real) - i A_imag
    k_h[l] = 2 Re( sum_n C_hn B_bar_hn a_bar_hn^l )                (Vandermonde kernel, depthwise)
    y_h = k_h * u_h + D_h u_h

As lanes (``fast.models.lti._base``): G = H groups of M = N/2 lanes, identity projections, readout
2 Re. State: ``(B, H * N/2)`` complex, h-major (entry h * N/2 + n is mode n of channel h).

Glossary: ``log_A_real``, ``A_imag`` (H, N/2); ``B``, ``C`` (H, N/2) complex, stored as real
``(H, N/2, 2)`` parameters (``self.param("B")`` is the complex view); ``log_dt`` (H,); ``D`` (H,).
"""

from __future__ import annotations

import torch

from fast.discretization import discretize_diagonal
from fast.models.lti._base import FastLTIModel, LaneSystem
from reference.models.lti.s4d import S4D as _ReferenceS4D

__all__ = ["S4D"]


class S4D(FastLTIModel):
    """S4D (diagonal SSM per channel, stored half + 2 Re readout) as a ``torch.nn.Module``.

    Args: those of ``reference.models.S4D`` (``d_model, d_state=64, *, discretization="zoh", init="legs",
    dt_min=1e-3, dt_max=1e-1, B_clip=2.0``)
    plus ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype) and
    ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    ``S4D.from_reference(ref)`` copies a reference model's parameters exactly; ``to_reference()`` copies back.
    """

    reference_class = _ReferenceS4D
    discretizations = _ReferenceS4D.discretizations
    readout = "2re"

    def setup(self, reference_model) -> None:
        self.init = reference_model.init

    def state_size(self) -> int:
        return self.log_A_real.numel()  # H * N/2

    def eigenvalues(self) -> torch.Tensor:
        """lambda = -exp(log_A_real) - i A_imag: ``(H, N/2)`` complex."""
        return torch.complex(-torch.exp(self.log_A_real), -self.A_imag)  # (H, N/2)

    def discretized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_bar, B_bar)``, both ``(H, N/2)``: each channel discretized with its own step."""
        return discretize_diagonal(self.eigenvalues(), self.param("B"), torch.exp(self.log_dt), self.discretization)

    def _build_system(self) -> LaneSystem:
        a_bar, b_bar = self.discretized()  # (H, N/2), (H, N/2)
        return LaneSystem(a_bar, b_bar, self.param("C"), None, None, self.D, 2.0)
