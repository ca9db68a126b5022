"""The RG-LRU and Griffin's recurrent block in torch (twin of ``reference.models.ltv.rglru``).

Paper: De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models", arXiv 2402.19427 (§2.4, the RG-LRU; Figure 2, the recurrent block). Official code followed
(through the reference): google-deepmind/recurrentgemma ``recurrentgemma/torch/layers.py`` (``RGLRU``,
``rnn_scan``, ``BlockDiagonalLinear``, ``Conv1D``) and ``modules.py`` (``RecurrentBlock``). reference/README.md §RG-LRU.

The RG-LRU on x (B, L, D), per channel, with c = 8:

    r_t = sigmoid(x_t W_a + b_a),  i_t = sigmoid(x_t W_x + b_x)      block-diagonal gates
    log a_t = -c r_t softplus(a_param)       (with gaps tau_t: times tau_t)
    h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)      (at a document start: a_t = 0, multiplier 1)

The block on u (B, L, H): y_branch = GELU_tanh(linear_y(u)); x = Conv1D(linear_x(u)) (masked at document
starts); h = RG-LRU(x); out = linear_out(h * y_branch).

Glossary (code name -> paper symbol): ``a_param`` = -Lambda, ``a_gate_*`` = W_a, b_a, ``input_gate_*`` =
W_x, b_x, ``c`` = c, ``lru_width`` = D (= ``d_state``), ``h`` = h_t, ``tau`` = integration_timesteps,
``segment_pos`` = the position of each token in its document (0 = a document start).

Parameters: the reference's (``RGLRUParams``; RecurrentGemma's names, gate weights ``[head, in, out]``),
as ``nn.Parameter``s copied from the reference twin. State (``RGLRUState``, tensors): ``conv_state
(B, W-1, D)``, ``ssm_state (B, D)`` and ``segment_pos (B,)`` (int64), as in the reference.

The scan is ``fast.scan.linear_scan`` over ``(B, L, D)`` (the RG-LRU state is one number per channel, so
there is no N axis to bound). A half-precision (float16 / bfloat16) module computes its projections and
convolution in its dtype and the gates and the scan in float32 (RecurrentGemma's scan accumulates in float32
too), the output cast back. Deviations from RecurrentGemma: those of the reference (the segment reset is
the default; ``segment_reset=False`` drops it, reference/README.md §RG-LRU); and the gradient of
sqrt(1 - a_t^2) is the exact
one, not RecurrentGemma's clipped (at 1000) custom gradient, so that gradients equal finite differences.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from fast._checks import upcast, validating
from fast.models.ltv._base import LTVFastModel, causal_depthwise_conv1d, gelu_tanh, scan_states, softplus
from reference.models.ltv.rglru import RGLRU as ReferenceRGLRU

__all__ = ["RGLRU", "RGLRUState"]

_ZERO_GAP = " (the RG-LRU would keep the state and drop that event's input: a_t = 1, sqrt(1 - a_t^2) = 0)"


class RGLRUState(NamedTuple):
    """``conv_state (B, W-1, D)``, ``ssm_state (B, D)``, ``segment_pos (B,)`` (position of the next token)."""

    conv_state: torch.Tensor
    ssm_state: torch.Tensor
    segment_pos: torch.Tensor


class RGLRU(LTVFastModel):
    """Griffin's recurrent block with the RG-LRU (module docstring): ``RGLRU(d_model, d_state=None, *,
    discretization=None, seed=None, backend="auto", device=None, dtype=None, num_heads=1, conv1d_width=4,
    c=8.0, min_rad=0.9, max_rad=0.999, segment_reset=True, final_w_init_variance_scale=1.0)``. ``d_state`` is
    the RG-LRU width. The options of ``reference.models.RGLRU`` plus
    ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype)
    and ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    ``from_reference`` / ``to_reference`` copy the parameters exactly."""

    reference_class = ReferenceRGLRU

    def __init__(
        self,
        d_model: int,
        d_state: int | None = None,
        *,
        discretization: str | None = None,
        seed: int | None = None,
        backend: str = "auto",
        device=None,
        dtype=None,
        num_heads: int = 1,
        conv1d_width: int = 4,
        c: float = 8.0,
        min_rad: float = 0.9,
        max_rad: float = 0.999,
        segment_reset: bool = True,
        final_w_init_variance_scale: float = 1.0,
    ):
        super().__init__(
            d_model, d_state, discretization=discretization, seed=seed, backend=backend, device=device, dtype=dtype,
            num_heads=num_heads,
            conv1d_width=conv1d_width, c=c, min_rad=min_rad, max_rad=max_rad, segment_reset=segment_reset,
            final_w_init_variance_scale=final_w_init_variance_scale,
        )

    def setup(self, reference_model) -> None:
        self.lru_width = reference_model.lru_width
        self.num_heads = reference_model.num_heads
        self.conv1d_width = reference_model.conv1d_width
        self.c = reference_model.c
        self.segment_reset = reference_model.segment_reset

    # -- the RG-LRU layer -----------------------------------------------------------------------
    def _block_diagonal(self, x, weight, bias):
        """RecurrentGemma's BlockDiagonalLinear: x (..., D) -> (..., D), one dense map per head."""
        xh = x.reshape(x.shape[:-1] + (self.num_heads, -1))  # (..., heads, D/heads)
        y = torch.einsum("...hi,hij->...hj", xh, upcast(weight)) + upcast(bias)  # (..., heads, D/heads)
        return y.reshape(x.shape)  # (..., D)

    def _gates(self, x, tau):
        """(log a_t, i_t x_t) for x (..., D) and gaps tau (...) or None, in float32 for a half-precision module."""
        x = upcast(x)
        tau = upcast(tau)
        gate_x = torch.sigmoid(self._block_diagonal(x, self.input_gate_weight, self.input_gate_bias))  # (..., D)
        gate_a = torch.sigmoid(self._block_diagonal(x, self.a_gate_weight, self.a_gate_bias))  # (..., D)
        log_a = -self.c * gate_a * softplus(upcast(self.a_param))  # (..., D)
        if tau is not None:
            log_a = log_a * tau[..., None]  # (..., D): a_t = a^{c r_t tau_t}
        return log_a, x * gate_x

    def _segment_positions(self, segment_pos, Bsz: int, L: int, start: torch.Tensor) -> torch.Tensor:
        if segment_pos is None:
            return start[:, None] + torch.arange(L, device=self.device)  # (B, L)
        seg = segment_pos if isinstance(segment_pos, torch.Tensor) else torch.as_tensor(np.asarray(segment_pos))
        if seg.is_floating_point() or seg.is_complex() or seg.dtype == torch.bool:
            raise ValueError(f"segment_pos: expected integers, got dtype {seg.dtype}")
        seg = seg.to(device=self.device, dtype=torch.int64)
        if tuple(seg.shape) == (L,):
            seg = seg.expand(Bsz, L)  # (B, L)
        elif tuple(seg.shape) != (Bsz, L):
            raise ValueError(f"segment_pos: expected shape ({L},) or ({Bsz}, {L}), got {tuple(seg.shape)}")
        if validating() and bool((seg < 0).any()):
            raise ValueError("segment_pos: expected positions >= 0")
        return seg

    def _resets(self, seg: torch.Tensor) -> torch.Tensor:
        return (seg == 0) if self.segment_reset else torch.zeros_like(seg, dtype=torch.bool)  # (B, L)

    def _rg_lru(self, x, reset, tau, h0):
        """The RG-LRU on x (B, L, D) with resets (B, L); returns (h (B, L, D), h_last (B, D)) in x's dtype (the scan
        in float32 for half precision; ``fast.scan.linear_scan``: the decays and inputs computed here are not checked
        as a caller's arguments)."""
        log_a, gated_x = self._gates(x, tau)  # (B, L, D) each
        one = torch.ones((), dtype=x.dtype, device=x.device)
        multiplier = torch.sqrt(-torch.expm1(2.0 * log_a))  # (B, L, D): sqrt(1 - a_t^2)
        multiplier = torch.where(reset[..., None], one, multiplier)  # (B, L, D): no normalization at a reset
        a = torch.where(reset[..., None], torch.zeros_like(one), torch.exp(log_a))  # (B, L, D)
        h, h_last = scan_states(a, gated_x * multiplier, upcast(h0), self.backend)  # (B, L, D), (B, D)
        return h.to(x.dtype), h_last.to(x.dtype)

    def rg_lru(self, x, segment_pos=None, *, integration_timesteps=None, initial_state=None, return_state=False):
        """The RG-LRU layer alone on ``x (B, L, D)``, resetting where ``segment_pos == 0`` (RecurrentGemma's
        ``RGLRU.forward``). ``segment_pos`` ``(B, L)`` or ``(L,)`` integers; None means one document starting
        at t = 0 (or, with ``initial_state (B, D)``, a continuation without reset). Returns ``y (B, L, D)``,
        or ``(y, h_last (B, D))`` when ``return_state``."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[2] != self.lru_width or x.shape[1] == 0:
            raise ValueError(f"x: expected shape (B, L, {self.lru_width}) with L >= 1, got {tuple(x.shape)}")
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(
                f"x: dtype {x.dtype} on {x.device} does not match the module's {self.dtype} on {self.device}"
            )
        Bsz, L, D = x.shape
        h0 = None
        if initial_state is not None:
            h0 = self.check_state_tensor(initial_state, "initial_state", (Bsz, D))
        start = torch.full((Bsz,), 0 if h0 is None else 1, dtype=torch.int64, device=self.device)
        seg = self._segment_positions(segment_pos, Bsz, L, start)  # (B, L)
        tau = self.check_timesteps(integration_timesteps, Bsz, L, allow_zero=False, why_not_zero=_ZERO_GAP)
        self.values_ok({"x": x, "initial_state": h0})
        y, h_last = self._rg_lru(x, self._resets(seg), tau, h0)
        return (y, h_last) if return_state else y

    # -- the recurrent block --------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> RGLRUState:
        """Zeros, with segment_pos 0 (the next token starts a document)."""
        B = self.batch_size(batch_size)
        like = dict(dtype=self.dtype, device=self.device)
        return RGLRUState(
            torch.zeros(B, self.conv1d_width - 1, self.lru_width, **like),
            torch.zeros(B, self.lru_width, **like),
            torch.zeros(B, dtype=torch.int64, device=self.device),
        )

    def _check_state(self, state, batch: int, name: str) -> RGLRUState:
        if state is None:
            return self.initial_state(batch)
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError(
                f"{name}: expected an RGLRUState (conv_state, ssm_state, segment_pos), got {type(state).__name__}"
            )
        W, D = self.conv1d_width, self.lru_width
        conv = self.check_state_tensor(state[0], f"{name}.conv_state", (batch, W - 1, D))
        h = self.check_state_tensor(state[1], f"{name}.ssm_state", (batch, D))
        pos = self.check_state_tensor(state[2], f"{name}.segment_pos", (batch,), dtype=torch.int64)
        if validating() and bool((pos < 0).any()):
            raise ValueError(f"{name}.segment_pos: expected positions >= 0")
        return RGLRUState(conv, h, pos)

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False, segment_pos=None):
        """Run the recurrent block on ``u (B, L, H)`` or ``(L, H)``.

        ``integration_timesteps``: ``(L,)`` or ``(B, L)`` gaps > 0. ``initial_state``: an ``RGLRUState``.
        ``segment_pos``: ``(L,)`` or ``(B, L)`` positions in the document (0 = a document start); by default
        the state's position plus 0..L-1. Returns ``y``, or ``(y, RGLRUState)`` when ``return_state``.
        """
        u, initial_state, unbatched = self.sequence(
            u, initial_state, {"integration_timesteps": integration_timesteps, "segment_pos": segment_pos}
        )
        Bsz, L, _ = u.shape
        state = self._check_state(initial_state, Bsz, "initial_state")
        tau = self.check_timesteps(integration_timesteps, Bsz, L, allow_zero=False, why_not_zero=_ZERO_GAP)
        self.values_ok({"u": u, "initial_state.conv_state": initial_state and state.conv_state,
                        "initial_state.ssm_state": initial_state and state.ssm_state})
        seg = self._segment_positions(segment_pos, Bsz, L, state.segment_pos)  # (B, L)
        reset = self._resets(seg)  # (B, L)
        W = self.conv1d_width

        y_branch = gelu_tanh(F.linear(u, self.linear_y_weight, self.linear_y_bias))  # (B, L, D)
        x = F.linear(u, self.linear_x_weight, self.linear_x_bias)  # (B, L, D)
        doc_start = None
        if self.segment_reset:
            t = torch.arange(L, device=self.device)  # (L,)
            last_reset = torch.cummax(torch.where(reset, t, -1), dim=1).values  # (B, L)
            doc_start = torch.where(last_reset >= 0, W - 1 + last_reset, 0)  # (B, L) in the padded frame
        x, conv_state = causal_depthwise_conv1d(x, self.conv_1d_weight, self.conv_1d_bias, state.conv_state, doc_start)
        h, h_last = self._rg_lru(x, reset, tau, state.ssm_state)  # (B, L, D), (B, D)
        out = F.linear(h * y_branch, self.linear_out_weight, self.linear_out_bias)  # (B, L, H)
        new_state = RGLRUState(conv_state, h_last, seg[:, -1] + 1)
        if unbatched:
            out, new_state = out[0], RGLRUState(*(s[0] for s in new_state))
        return (out, new_state) if return_state else out

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state`` an ``RGLRUState``, ``integration_timesteps (B,)`` gaps > 0.
        Returns ``(y_t (B, H), new RGLRUState)``."""
        u_t, state, integration_timesteps, unbatched = self.step_inputs(u_t, state, integration_timesteps)
        Bsz = u_t.shape[0]
        state = self._check_state(state, Bsz, "state")
        tau = self.check_timesteps(integration_timesteps, Bsz, None, allow_zero=False, why_not_zero=_ZERO_GAP)
        self.values_ok({"u_t": u_t, "state.conv_state": state.conv_state, "state.ssm_state": state.ssm_state})
        reset = self._resets(state.segment_pos)  # (B,)

        y_branch = gelu_tanh(F.linear(u_t, self.linear_y_weight, self.linear_y_bias))  # (B, D)
        x = F.linear(u_t, self.linear_x_weight, self.linear_x_bias)  # (B, D)
        history = torch.where(reset[:, None, None], 0.0, state.conv_state)  # (B, W-1, D): a new document forgets
        window = torch.cat([history, x[:, None, :]], dim=1)  # (B, W, D), oldest first
        x = torch.sum(window * self.conv_1d_weight, dim=1) + self.conv_1d_bias  # (B, D)
        log_a, gated_x = self._gates(x, tau)  # (B, D) each
        multiplier = torch.where(reset[:, None], 1.0, torch.sqrt(-torch.expm1(2.0 * log_a)))  # (B, D)
        a = torch.where(reset[:, None], 0.0, torch.exp(log_a))  # (B, D)
        h = (a * upcast(state.ssm_state) + multiplier * gated_x).to(u_t.dtype)  # (B, D)
        out = F.linear(h * y_branch, self.linear_out_weight, self.linear_out_bias)  # (B, H)
        return self.unbatch(out, RGLRUState(window[:, 1:], h, state.segment_pos + 1), unbatched)
