"""LRU in torch: the twin of ``reference.models.lti.lru`` (same parameters, state layout and kernel).

Paper: Orvieto et al., "Resurrecting Recurrent Neural Networks for Long Sequences" (ICML 2023), §3 and
the JAX listing of its appendix. The definition, the initialization, the ``"native"`` rule and the
continuous-time reading behind "zoh" / "bilinear" / "dirac" are in the reference module's docstring.

    z = -exp(nu_log) + i exp(theta_log),   lambda = exp(z),   B_c = exp(gamma_log) (B_re + i B_im)
    "native":  a_bar = lambda, B_bar = B_c;   otherwise discretize(z / dt, B_c, dt) with dt = exp(log_dt)
    K_l = Re(C diag(a_bar^l) B_bar)   (Re, not 2 Re: no conjugate pairing),   y = K * u + D u

As lanes (``fast.models.lti._base``): N groups of one lane, P_in = B_bar, P_out = C. State: ``(B, N)``
complex, the modes in parameter order. Every parameter is real, as in the reference. Under ``"native"`` the
step ``log_dt`` is a buffer, not a parameter (no rule reads it there, so no gradient could reach it).
"""

from __future__ import annotations

import dataclasses

import torch

from fast.discretization import discretize_diagonal
from fast.models.lti._base import FastLTIModel, LaneSystem
from reference.models.lti.lru import LRU as _ReferenceLRU

__all__ = ["LRU"]


class LRU(FastLTIModel):
    """The Linear Recurrent Unit as a ``torch.nn.Module``.

    Args: those of ``reference.models.LRU`` (``d_model, d_state=64, *, discretization="native", r_min=0.0,
    r_max=1.0, max_phase=2 pi``)
    plus ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype) and
    ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    ``LRU.from_reference(ref)`` copies a reference model's parameters exactly; ``to_reference()`` copies back.
    """

    reference_class = _ReferenceLRU
    discretizations = _ReferenceLRU.discretizations
    readout = "re"

    def setup(self, reference_model) -> None:
        # Under "native" the step log_dt enters nothing (a_bar = lambda, B_bar = B_c): as a parameter no backward
        # would reach it (DistributedDataParallel without find_unused_parameters fails on that), so it is a buffer
        # there (state_dict, .to() and to_reference keep it; no optimizer sees it).
        if self.discretization == "native" and "log_dt" in self._parameters:
            log_dt = self._parameters.pop("log_dt")
            self.register_buffer("log_dt", log_dt.detach().clone())

    def to_reference(self):
        reference_model = super().to_reference()
        if "log_dt" in self._buffers:  # the native rule's unused step (setup): back as a float64 array
            log_dt = self.log_dt.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
            reference_model.params = dataclasses.replace(reference_model.params, log_dt=log_dt)
        return reference_model

    def state_size(self) -> int:
        return self.nu_log.numel()  # N

    def exponent(self) -> torch.Tensor:
        """z = -exp(nu_log) + i exp(theta_log), so that lambda = exp(z): ``(N,)``."""
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))  # (N,)

    def eigenvalues(self) -> torch.Tensor:
        """lambda = exp(z): ``(N,)``."""
        return torch.exp(self.exponent())  # (N,)

    def discretized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_bar (N,), B_bar (N, H))`` by ``self.discretization``."""
        B_c = torch.exp(self.gamma_log)[:, None] * torch.complex(self.B_re, self.B_im)  # (N, H)
        if self.discretization == "native":
            return self.eigenvalues(), B_c
        dt = torch.exp(self.log_dt)  # (N,)
        return discretize_diagonal(self.exponent() / dt, B_c, dt, self.discretization)

    def _build_system(self) -> LaneSystem:
        a_bar, B_bar = self.discretized()  # (N,), (N, H)
        ones = torch.ones_like(a_bar)[:, None]  # (N, 1)
        return LaneSystem(a_bar[:, None], ones, ones, B_bar, torch.complex(self.C_re, self.C_im), self.D, 1.0)
