"""S5 in torch: the twin of ``reference.models.lti.s5`` (same parameters, state layout and kernel).

Paper: Smith, Warrington, Linderman, "Simplified State Space Layers for Sequence Modeling" (ICLR 2023),
§3; official code: lindermanlab/S5 ``s5/ssm.py``. The definition, the initialization and every
deliberate deviation are in the reference module's docstring; this module only runs the same system.

One MIMO diagonal system shared by the H channels, P_s stored modes:

    Lambda_bar, B_bar = discretize(Lambda, B_tilde, step_rescale * exp(log_step))     (per-state steps)
    K_l = read(C_tilde diag(Lambda_bar^l) B_bar)       read = 2 Re (conj_sym) or Re
    y = K * u + D u

The official code runs a parallel scan; this twin, like the reference's "convolution" mode, convolves
with the full H x H kernel (a Vandermonde contraction) through the FFT. As lanes
(``fast.models.lti._base``): P_s groups of one lane, P_in = B_bar, P_out = C_tilde. State: ``(B, P_s)``
complex, the stored modes in parameter order (block-major).

Irregular time (``integration_timesteps``, reference/README.md §S5): event k discretized with the step dt * tau_k,
x_k = Lambda_bar_k x_{k-1} + gamma_k (B_tilde u_k), run through ``fast.ops.linear_scan`` (the torch chunked scan,
or the Triton kernel with ``backend="triton"``), no loop over time.

Bidirectional (``bidirectional=True``): a second, reversed-time pass over the same (Lambda_bar, B_bar)
read by ``C_tilde_reverse``; not causal, so ``step``, states and responses refuse it, as in the
reference.

Glossary: ``Lambda_re``, ``Lambda_im``, ``log_step`` (P_s,); ``B_tilde`` (P_s, H) and ``C_tilde``,
``C_tilde_reverse`` (H, P_s) complex, stored as real ``(..., 2)`` parameters; ``D`` (H,).
"""

from __future__ import annotations

import numpy as np
import torch

from fast.convolution import conv_depthwise, depthwise_spectrum, fft_length
from fast.discretization import discretize_diagonal
from fast.models.lti._base import FastLTIModel, LaneSystem, _into_lanes, _read_lanes
from fast.models.ltv._base import LTVFastModel
from fast.scan import linear_scan
from reference.models.lti.s5 import S5 as _ReferenceS5

__all__ = ["S5"]


class S5(FastLTIModel):
    """S5 (MIMO diagonal SSM) as a ``torch.nn.Module``.

    Args: those of ``reference.models.S5`` (``d_model, d_state=256, *, discretization="zoh", blocks=1,
    conj_sym=True, C_init="trunc_standard_normal", dt_min=1e-3, dt_max=1e-1, step_rescale=1.0,
    clip_eigs=False, bidirectional=False``)
    plus ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype) and
    ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    ``S5.from_reference(ref)`` copies a reference model's parameters exactly; ``to_reference()`` copies back.
    """

    reference_class = _ReferenceS5
    discretizations = _ReferenceS5.discretizations

    def setup(self, reference_model) -> None:
        self.conj_sym = reference_model.conj_sym
        self.clip_eigs = reference_model.clip_eigs
        self.bidirectional = reference_model.bidirectional
        self.step_rescale = reference_model.step_rescale
        self.blocks = reference_model.blocks

    @property
    def readout(self) -> str:
        return "2re" if self.conj_sym else "re"

    def state_size(self) -> int:
        return self.Lambda_re.numel()  # P_s

    def eigenvalues(self) -> torch.Tensor:
        """Lambda = Lambda_re + i Lambda_im (Re clipped to <= -1e-4 with clip_eigs): ``(P_s,)``."""
        re = torch.clamp(self.Lambda_re, max=-1e-4) if self.clip_eigs else self.Lambda_re  # (P_s,)
        return torch.complex(re, self.Lambda_im)  # (P_s,)

    def discretized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Lambda_bar (P_s,), B_bar (P_s, H))`` with one step per state (an ``async`` S5 without gaps is its
        zoh system: every gap is 1)."""
        dt = self.step_rescale * torch.exp(self.log_step)  # (P_s,)
        method = "zoh" if self.discretization == "async" else self.discretization
        return discretize_diagonal(self.eigenvalues(), self.param("B_tilde"), dt, method)

    def discretized_events(self, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Irregular time: ``(Lambda_bar (B, L, P_s), gamma (B, L, P_s))`` for the gaps ``tau (B, L)``, event k
        discretized with the step dt * tau_k (``async``: the decay only); B_bar_k = diag(gamma_k) B_tilde."""
        dt = self.step_rescale * torch.exp(self.log_step)  # (P_s,)
        Lambda = self.eigenvalues()  # (P_s,)
        return discretize_diagonal(Lambda, torch.ones_like(Lambda), dt, self.discretization, integration_timesteps=tau)

    def _check_gaps(self, integration_timesteps, batch: int, length: int | None):
        """The gaps as ``(B, L)`` (forward) or ``(B,)`` (step): the checks of the LTV models."""
        self._refuse_bidirectional("integration_timesteps")
        zero_ok = self.discretization in ("async", "dirac")
        why = f" with discretization {self.discretization!r}: B_bar = 0 would drop that event's input"
        return LTVFastModel.check_timesteps(
            self, integration_timesteps, batch, length, allow_zero=zero_ok, why_not_zero=why
        )

    def _forward_irregular(self, u, integration_timesteps, initial_state, return_state: bool):
        """x_k = Lambda_bar_k x_{k-1} + gamma_k (B_tilde u_k), y_k = read(C~ x_k) + D u_k through the linear scan
        (torch's chunked scan, or the Triton kernel with ``backend="triton"``): no loop over time."""
        u = self.check_input(u)
        unbatched = u.ndim == 2
        if unbatched:
            if isinstance(integration_timesteps, torch.Tensor) and integration_timesteps.ndim == 2:
                raise ValueError(
                    f"integration_timesteps: expected shape ({u.shape[0]},) (L,) for an unbatched input, "
                    f"got {tuple(integration_timesteps.shape)}"
                )
            u = u[None]  # (1, L, H)
            if isinstance(initial_state, torch.Tensor):
                initial_state = initial_state[None]
        tau = self._check_gaps(integration_timesteps, u.shape[0], u.shape[1])  # (B, L)
        x0 = self._check_state(initial_state, u.shape[0], "initial_state")  # (B, P_s) or None
        self.entry_checks(u, x0)
        Lambda_bar, gamma = self.discretized_events(tau)  # (B, L, P_s) each
        bu = gamma * _into_lanes(u, self.param("B_tilde"))  # (B, L, P_s): B_bar_k u_k
        x, xL = linear_scan(Lambda_bar, bu, x0, backend=self.resolved_backend(u))  # (B, L, P_s), (B, P_s)
        y = _read_lanes(x, self.param("C_tilde"), 2.0 if self.conj_sym else 1.0) + self.D * u  # (B, L, H)
        if not return_state:
            return y[0] if unbatched else y
        return (y[0], xL[0]) if unbatched else (y, xL)

    def _lanes(self, C: torch.Tensor, D: torch.Tensor | None) -> LaneSystem:
        Lambda_bar, B_bar = self.discretized()  # (P_s,), (P_s, H)
        ones = torch.ones_like(Lambda_bar)[:, None]  # (P_s, 1)
        return LaneSystem(Lambda_bar[:, None], ones, ones, B_bar, C, D, 2.0 if self.conj_sym else 1.0)

    def _refuse_bidirectional(self, what: str) -> None:
        if self.bidirectional:
            raise ValueError(
                f"bidirectional: {what} describes a causal system, but an S5 with bidirectional=True is not "
                "causal (its output reads a reversed-time scan); use forward on whole sequences"
            )

    def _build_system(self) -> LaneSystem:
        return self._lanes(self.param("C_tilde"), self.D)

    def system(self):
        self._refuse_bidirectional("the discrete system")
        return super().system()

    def step(self, u_t, state, *, integration_timesteps=None):
        """One step; ``integration_timesteps (B,)`` is the gap before it (None: a gap of 1)."""
        self._refuse_bidirectional("step")
        if integration_timesteps is None:
            return super().step(u_t, state)
        u_t, state, unbatched = self.step_input(u_t, state)
        if unbatched and np.ndim(integration_timesteps) == 0:  # one gap for the one unbatched step
            integration_timesteps = torch.as_tensor(integration_timesteps).reshape(1)
        tau = self._check_gaps(integration_timesteps, u_t.shape[0], None)  # (B,)
        x = self._check_state(state, u_t.shape[0], "state")
        self.entry_checks(u_t, x, "u_t", "state")
        x = self.initial_state(u_t.shape[0]) if x is None else x  # (B, P_s)
        Lambda_bar, gamma = self.discretized_events(tau[:, None])  # (B, 1, P_s) each
        x = Lambda_bar[:, 0] * x + gamma[:, 0] * _into_lanes(u_t, self.param("B_tilde"))  # (B, P_s)
        y = _read_lanes(x, self.param("C_tilde"), 2.0 if self.conj_sym else 1.0) + self.D * u_t  # (B, H)
        return (y[0], x[0]) if unbatched else (y, x)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        self._refuse_bidirectional("initial_state")
        return super().initial_state(batch_size)

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state: bool = False):
        """As ``FastLTIModel.forward``; a bidirectional S5 takes no initial state and returns none.

        ``integration_timesteps`` (tau, ``(L,)`` or ``(B, L)``): irregular time, event k discretized with the step
        dt * tau_k, run as a linear scan (reference/README.md §S5)."""
        if integration_timesteps is not None:
            return self._forward_irregular(u, integration_timesteps, initial_state, return_state)
        if not self.bidirectional:
            return super().forward(u, initial_state=initial_state, return_state=return_state)
        if initial_state is not None or return_state:
            raise ValueError(
                "initial_state: a bidirectional S5 runs on whole sequences; it takes no initial state and "
                "returns no final state (its reversed-time scan starts at the end of the sequence)"
            )
        u = self.check_input(u)
        unbatched = u.ndim == 2
        u = u[None] if unbatched else u  # (B, L, H)
        self.entry_checks(u, None)
        L = u.shape[1]
        forward_part = self._lanes(self.param("C_tilde"), self.D)
        reverse_part = self._lanes(self.param("C_tilde_reverse"), None)
        if self.resolved_backend(u) == "triton":  # two scans: forward in time, and backward in time
            y = self._scan_lanes(forward_part, u, None)[0] + self._scan_lanes(reverse_part, u.flip(1), None)[0].flip(1)
            return y[0] if unbatched else y  # (B, L, H)
        n = fft_length(L, L)
        k_f = depthwise_spectrum(self._conv_kernel(forward_part, L, "lanes"), n)  # (P, n) complex
        k_r = depthwise_spectrum(self._conv_kernel(reverse_part, L, "lanes"), n)  # (P, n) complex
        v = _into_lanes(u, forward_part.P_in)  # (B, L, P): B_bar u, read by both directions
        y = _read_lanes(conv_depthwise(v, k_f, n), forward_part.P_out, forward_part.scale)  # (B, L, H)
        y_rev = _read_lanes(conv_depthwise(v.flip(1), k_r, n), reverse_part.P_out, reverse_part.scale)  # (B, L, H)
        y = y + y_rev.flip(1) + self.D * u  # (B, L, H)
        return y[0] if unbatched else y
