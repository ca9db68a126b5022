"""The RG-LRU (Real-Gated Linear Recurrent Unit) and Griffin's recurrent block around it.

Paper: De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models", arXiv 2402.19427 (§2.4, the RG-LRU equations; Figure 2, the recurrent block). Official code
followed: google-deepmind/recurrentgemma ``recurrentgemma/torch/layers.py`` (``RGLRU``, ``rnn_scan``,
``BlockDiagonalLinear``, ``Conv1D``, ``rnn_param_init``) and ``recurrentgemma/torch/modules.py``
(``RecurrentBlock``). reference/README.md §RG-LRU.

The RG-LRU on x (B, L, D), per channel, with c = 8:

    r_t = sigmoid(x_t W_a + b_a)                   recurrence gate (block-diagonal W_a)
    i_t = sigmoid(x_t W_x + b_x)                   input gate (block-diagonal W_x)
    log a_t = -c r_t softplus(a_param)             i.e. a_t = a^{c r_t} with a = sigmoid(-a_param)
    h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)
    y_t = h_t

The recurrent block on u (B, L, H):

    y_branch = GELU_tanh(u @ linear_y_weight.T + linear_y_bias)          (B, L, D)
    x = u @ linear_x_weight.T + linear_x_bias                            (B, L, D)
    x = causal depthwise Conv1D(x), width 4, with bias, no activation    (B, L, D)
    x = RG-LRU(x)                                                        (B, L, D)
    out = (x * y_branch) @ linear_out_weight.T + linear_out_bias         (B, L, H)

Glossary (code name -> paper symbol): ``a_param`` = -Lambda (the paper writes a = sigmoid(Lambda)),
``a_gate_*`` = W_a, b_a, ``input_gate_*`` = W_x, b_x, ``c`` = c, ``lru_width`` = D (= ``d_state``, see
below), ``h`` = h_t, ``tau`` = integration_timesteps.

Parameters (``model.params``, an ``RGLRUParams``; RecurrentGemma's names, gate weights indexed
``[head, in, out]`` as ``BlockDiagonalLinear.w``; linear weights in torch layout ``(out, in)``):

    linear_x_weight, linear_y_weight (D, H)  N(0, 1/H); biases (D,) zeros
    conv_1d_weight (W, D)   N(0, 0.01/W); conv_1d_weight[W-1] multiplies the current input; bias (D,) zeros
    a_param (D,)            a^2 ~ U[min_rad^2, max_rad^2] (+1e-8), a_param = softplus^{-1}(-log a): a in [0.9, 0.999]
    input_gate_weight, a_gate_weight (heads, D/heads, D/heads)   N(0, 1/(D/heads))
    input_gate_bias, a_gate_bias (heads, D/heads)                zeros
    linear_out_weight (H, D)  N(0, final_w_init_variance_scale / D); bias (H,) zeros

``d_state`` means the RG-LRU width D (RecurrentGemma's ``lru_width``; its state is one real number per
channel); None gives D = d_model, RecurrentGemma's default.

Segment resets (reference/README.md §RG-LRU). By default (``segment_reset=True``) the reference keeps
RecurrentGemma's behaviour: at a token with segment_pos == 0 (a document start) the carried state is
dropped (a_t = 0) and the input is not normalized (multiplier 1), so h_t = i_t x_t; the convolution does
not read inputs from before the document start. ``forward`` without ``initial_state`` treats the sequence
as one document starting at t = 0, as RecurrentGemma's training forward does with segment_pos = arange(L);
a continuation (``initial_state`` given, or ``step``) goes on counting positions from the state, so that
forward, chunked forward and step agree. ``segment_reset=False`` gives the no-reset form (lrnnx):
every step is normalized, nothing is reset, segment_pos is ignored.

Deviations: float64 throughout (RecurrentGemma accumulates in float32); the sqrt's clipped gradient is
irrelevant here (no autodiff). The official decoding path does not mask the convolution at a document
start inside a cached continuation; the reference applies its training-mode mask in every mode, which
is what makes chunked forward equal one shot. lrnnx's RG-LRU differs (dense gates, a different a init,
erf-GELU; FLAGs D16, D17) and is not reproduced.

Irregular timesteps (an extension, not in RecurrentGemma): with integration_timesteps tau_t the decay
covers the real gap, a_t = a^{c r_t tau_t}, and the normalization uses that a_t. A zero gap would give
a_t = 1 and a zero multiplier (the event would be dropped), so gaps must be > 0.

State (``RGLRUState``): ``conv_state (B, W-1, D)`` (the previous W-1 convolution inputs, oldest first, as
RecurrentGemma's Conv1D cache), ``ssm_state (B, D)`` (h), and ``segment_pos (B,)`` integers, the position
of the next token in its document (0 at ``initial_state``: the first token starts a document). The third
field is what lets ``step`` apply the reset at the right token; it is RecurrentGemma's segment_pos carried
in the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reference._checks import as_array, finite_params, positive_int
from reference.init import softplus
from reference.models.ltv._base import (
    LTVModel,
    causal_depthwise_conv1d,
    check_frozen_token,
    check_sequence,
    check_step_input,
    check_timesteps,
    gelu_tanh,
    sigmoid,
)
from reference.response import DiscreteSSM
from reference.scan import linear_scan

__all__ = ["RGLRU", "RGLRUParams", "RGLRUState"]

_ZERO_GAP = " (the RG-LRU would keep the state and drop that event's input: a_t = 1, sqrt(1 - a_t^2) = 0)"


@dataclass
class RGLRUParams:
    """Parameters of Griffin's recurrent block (shapes in the module docstring)."""

    linear_x_weight: np.ndarray
    linear_x_bias: np.ndarray
    linear_y_weight: np.ndarray
    linear_y_bias: np.ndarray
    conv_1d_weight: np.ndarray
    conv_1d_bias: np.ndarray
    a_param: np.ndarray
    input_gate_weight: np.ndarray
    input_gate_bias: np.ndarray
    a_gate_weight: np.ndarray
    a_gate_bias: np.ndarray
    linear_out_weight: np.ndarray
    linear_out_bias: np.ndarray


class RGLRUState(NamedTuple):
    """``conv_state (B, W-1, D)``, ``ssm_state (B, D)``, ``segment_pos (B,)`` (position of the next token)."""

    conv_state: np.ndarray
    ssm_state: np.ndarray
    segment_pos: np.ndarray


class RGLRU(LTVModel):
    """Griffin's recurrent block with the RG-LRU (module docstring): ``RGLRU(d_model, d_state=None,
    discretization=None, *, seed=0, num_heads=1, conv1d_width=4, c=8.0, min_rad=0.9, max_rad=0.999,
    segment_reset=True, final_w_init_variance_scale=1.0)``. ``d_state`` is the RG-LRU width (lru_width)."""

    #: the RG-LRU is discrete by construction: a_t = a^{c r_t} (with tau_t: a^{c r_t tau_t})
    discretizations = ("rglru",)
    default_discretization = "rglru"
    #: the RG-LRU's decay is its own gate, not a discretized (A, B, dt): no registered rules
    registered_rules = False

    def __init__(
        self,
        d_model: int,
        d_state: int | None = None,
        *,
        discretization: str | None = None,
        seed: int = 0,
        num_heads: int = 1,
        conv1d_width: int = 4,
        c: float = 8.0,
        min_rad: float = 0.9,
        max_rad: float = 0.999,
        segment_reset: bool = True,
        final_w_init_variance_scale: float = 1.0,
    ):
        super().__init__(d_model, discretization, seed)
        self.d_state = self.d_model if d_state is None else positive_int(d_state, "d_state")
        self.lru_width = self.d_state
        self.num_heads = positive_int(num_heads, "num_heads")
        if self.lru_width % self.num_heads:
            raise ValueError(
                f"num_heads: must divide the RG-LRU width d_state = {self.lru_width}, got {self.num_heads}"
            )
        self.conv1d_width = positive_int(conv1d_width, "conv1d_width")
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"c: expected a finite number > 0, got {c!r}")
        self.c = float(c)
        if not (0 < min_rad <= max_rad < 1):
            raise ValueError(f"min_rad, max_rad: expected 0 < min_rad <= max_rad < 1, got {min_rad!r}, {max_rad!r}")
        if not isinstance(segment_reset, bool):
            raise ValueError(f"segment_reset: expected True or False, got {segment_reset!r}")
        self.segment_reset = segment_reset
        if not final_w_init_variance_scale > 0:
            raise ValueError("final_w_init_variance_scale: expected a value > 0")
        self.min_rad, self.max_rad = min_rad, max_rad
        self.final_w_init_variance_scale = final_w_init_variance_scale

        H, D, W, heads = self.d_model, self.lru_width, self.conv1d_width, self.num_heads
        blk = D // heads
        rng = np.random.default_rng(self.seed)
        a_squared = rng.uniform(min_rad**2 + 1e-8, max_rad**2 + 1e-8, size=D)  # (D,): uniform on the ring
        log_a = 0.5 * np.log(a_squared)  # (D,)
        self.params = RGLRUParams(
            linear_x_weight=rng.normal(0.0, math.sqrt(1.0 / H), size=(D, H)),
            linear_x_bias=np.zeros(D),
            linear_y_weight=rng.normal(0.0, math.sqrt(1.0 / H), size=(D, H)),
            linear_y_bias=np.zeros(D),
            conv_1d_weight=rng.normal(0.0, math.sqrt(0.01 / W), size=(W, D)),
            conv_1d_bias=np.zeros(D),
            a_param=np.log(np.expm1(-log_a)),  # (D,): softplus(a_param) = -log a
            input_gate_weight=rng.normal(0.0, math.sqrt(1.0 / blk), size=(heads, blk, blk)),
            input_gate_bias=np.zeros((heads, blk)),
            a_gate_weight=rng.normal(0.0, math.sqrt(1.0 / blk), size=(heads, blk, blk)),
            a_gate_bias=np.zeros((heads, blk)),
            linear_out_weight=rng.normal(0.0, math.sqrt(final_w_init_variance_scale / D), size=(H, D)),
            linear_out_bias=np.zeros(H),
        )

    # -- the RG-LRU layer -----------------------------------------------------------------------
    def _block_diagonal(self, x, weight, bias):
        """RecurrentGemma's BlockDiagonalLinear: x (..., D) -> (..., D), one dense map per head."""
        heads = self.num_heads
        xh = x.reshape(x.shape[:-1] + (heads, -1))  # (..., heads, D/heads)
        y = np.einsum("...hi,hij->...hj", xh, weight) + bias  # (..., heads, D/heads)
        return y.reshape(x.shape)  # (..., D)

    def _gates(self, x, tau):
        """(log a_t, i_t x_t) for x (..., D) and gaps tau (...) or None."""
        p = self.params
        gate_x = sigmoid(self._block_diagonal(x, p.input_gate_weight, p.input_gate_bias))  # (..., D)
        gate_a = sigmoid(self._block_diagonal(x, p.a_gate_weight, p.a_gate_bias))  # (..., D)
        log_a = -self.c * gate_a * softplus(p.a_param)  # (..., D)
        if tau is not None:
            log_a = log_a * tau[..., None]  # (..., D): a_t = a^{c r_t tau_t}
        return log_a, x * gate_x

    def _segment_positions(self, segment_pos, Bsz, L, start):
        if segment_pos is None:
            return start[:, None] + np.arange(L)  # (B, L)
        seg = np.asarray(segment_pos)
        if seg.dtype == bool or not np.issubdtype(seg.dtype, np.integer):
            raise ValueError(f"segment_pos: expected integers, got dtype {seg.dtype}")
        if seg.shape == (L,):
            seg = np.broadcast_to(seg, (Bsz, L))
        elif seg.shape != (Bsz, L):
            raise ValueError(f"segment_pos: expected shape ({L},) or ({Bsz}, {L}), got {seg.shape}")
        if np.any(seg < 0):
            raise ValueError("segment_pos: expected positions >= 0")
        return seg

    def _resets(self, seg):
        return (seg == 0) if self.segment_reset else np.zeros(seg.shape, dtype=bool)  # (B, L)

    def _rg_lru(self, x, reset, tau, h0):
        """The RG-LRU on x (B, L, D) with resets (B, L); returns (h (B, L, D), h_last (B, D))."""
        log_a, gated_x = self._gates(x, tau)  # (B, L, D) each
        multiplier = np.sqrt(-np.expm1(2.0 * log_a))  # (B, L, D): sqrt(1 - a_t^2)
        multiplier = np.where(reset[..., None], 1.0, multiplier)  # (B, L, D): no normalization at a reset
        a = np.where(reset[..., None], 0.0, np.exp(log_a))  # (B, L, D): nothing carried over a reset
        return linear_scan(a, gated_x * multiplier, h0)  # (B, L, D), (B, D)

    def rg_lru(self, x, segment_pos=None, *, integration_timesteps=None, initial_state=None, return_state=False):
        """The RG-LRU layer alone on ``x (B, L, D)``, resetting where ``segment_pos == 0`` (RecurrentGemma's
        ``RGLRU.forward``). ``segment_pos`` ``(B, L)`` or ``(L,)``; None means one document starting at
        t = 0 (or, with ``initial_state (B, D)``, a continuation without reset). Returns ``y (B, L, D)``, or
        ``(y, h_last (B, D))`` when ``return_state``."""
        finite_params(self.params)
        x = as_array(x, "x", complex_ok=False)
        if x.ndim != 3 or x.shape[2] != self.lru_width or x.shape[1] == 0:
            raise ValueError(f"x: expected shape (B, L, {self.lru_width}) with L >= 1, got {x.shape}")
        Bsz, L, D = x.shape
        h0 = None
        if initial_state is not None:
            h0 = as_array(initial_state, "initial_state", complex_ok=False)
            if h0.shape != (Bsz, D):
                raise ValueError(f"initial_state: expected shape ({Bsz}, {D}), got {h0.shape}")
        start = np.zeros(Bsz, dtype=np.int64) if h0 is None else np.ones(Bsz, dtype=np.int64)
        seg = self._segment_positions(segment_pos, Bsz, L, start)
        tau = check_timesteps(integration_timesteps, Bsz, L, allow_zero=False, why_not_zero=_ZERO_GAP)
        y, h_last = self._rg_lru(x, self._resets(seg), tau, h0)
        return (y, h_last) if return_state else y

    # -- the recurrent block --------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> RGLRUState:
        """Zeros, with segment_pos 0 (the next token starts a document)."""
        B = positive_int(batch_size, "batch_size")
        return RGLRUState(
            np.zeros((B, self.conv1d_width - 1, self.lru_width)),
            np.zeros((B, self.lru_width)),
            np.zeros(B, dtype=np.int64),
        )

    def _check_state(self, state, batch: int, name: str) -> RGLRUState:
        if state is None:
            return self.initial_state(batch)
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError(
                f"{name}: expected an RGLRUState (conv_state, ssm_state, segment_pos), got {type(state).__name__}"
            )
        conv = as_array(state[0], f"{name}.conv_state", complex_ok=False)
        h = as_array(state[1], f"{name}.ssm_state", complex_ok=False)
        pos = np.asarray(state[2])
        W, D = self.conv1d_width, self.lru_width
        if conv.shape != (batch, W - 1, D):
            raise ValueError(f"{name}.conv_state: expected shape {(batch, W - 1, D)}, got {conv.shape}")
        if h.shape != (batch, D):
            raise ValueError(f"{name}.ssm_state: expected shape {(batch, D)}, got {h.shape}")
        if pos.shape != (batch,) or not np.issubdtype(pos.dtype, np.integer) or np.any(pos < 0):
            raise ValueError(f"{name}.segment_pos: expected ({batch},) integers >= 0, got {pos.shape} {pos.dtype}")
        return RGLRUState(conv, h, pos)

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False, segment_pos=None):
        """Run the recurrent block on ``u (B, L, H)`` or ``(L, H)``.

        ``integration_timesteps``: ``(L,)`` or ``(B, L)`` gaps > 0. ``initial_state``: an ``RGLRUState``.
        ``segment_pos``: ``(L,)`` or ``(B, L)`` positions in the document (0 = a document start); by default
        the state's position plus 0..L-1. Returns ``y``, or ``(y, RGLRUState)`` when ``return_state``.
        """
        finite_params(self.params)
        u, unbatched = check_sequence(u, self.d_model)
        if unbatched and initial_state is not None:
            initial_state = tuple(np.asarray(s)[None] for s in initial_state)
        for name, arg in (("integration_timesteps", integration_timesteps), ("segment_pos", segment_pos)):
            if unbatched and arg is not None and np.ndim(arg) == 2:
                raise ValueError(f"{name}: expected shape (L,) for an unbatched input (L, H)")
        Bsz, L, _ = u.shape
        state = self._check_state(initial_state, Bsz, "initial_state")
        tau = check_timesteps(integration_timesteps, Bsz, L, allow_zero=False, why_not_zero=_ZERO_GAP)
        seg = self._segment_positions(segment_pos, Bsz, L, state.segment_pos)  # (B, L)
        reset = self._resets(seg)  # (B, L)
        p, W = self.params, self.conv1d_width

        y_branch = gelu_tanh(u @ p.linear_y_weight.T + p.linear_y_bias)  # (B, L, D)
        x = u @ p.linear_x_weight.T + p.linear_x_bias  # (B, L, D)
        doc_start = None
        if self.segment_reset:
            last_reset = np.maximum.accumulate(np.where(reset, np.arange(L), -1), axis=1)  # (B, L)
            doc_start = np.where(last_reset >= 0, W - 1 + last_reset, 0)  # (B, L) in the padded frame
        x, conv_state = causal_depthwise_conv1d(x, p.conv_1d_weight, p.conv_1d_bias, state.conv_state, doc_start)
        h, h_last = self._rg_lru(x, reset, tau, state.ssm_state)  # (B, L, D), (B, D)
        out = (h * y_branch) @ p.linear_out_weight.T + p.linear_out_bias  # (B, L, H)
        new_state = RGLRUState(conv_state, h_last, seg[:, -1] + 1)
        if unbatched:
            out, new_state = out[0], RGLRUState(*(s[0] for s in new_state))
        return (out, new_state) if return_state else out

    def frozen_system(self, u, t: int, *, integration_timesteps=None, segment_pos=None) -> DiscreteSSM:
        """The RG-LRU as it acts at token ``t`` of ``u``, frozen into an LTI system (for plots, teaching).

        The gates make the RG-LRU time-varying: a_t = a^{c r_t} and the input weight sqrt(1 - a_t^2) i_t
        change with every token. Holding token t's values fixed gives the LTI system
            h_k = a_t h_{k-1} + (sqrt(1 - a_t^2) i_t) x_k,    y_k = h_k
        from the RG-LRU input x (after linear_x and the convolution, D channels) to its output h (before
        the product with the GELU branch). At a document start (segment_pos == 0 with ``segment_reset``)
        a_t = 0 and the weight is i_t, as in ``forward``. Its first step is exactly what ``forward`` does
        at token t.

        ``u (L, H)`` is one sequence, run from the zero state (as ``forward`` without ``initial_state``);
        ``integration_timesteps (L,)`` and ``segment_pos (L,)`` as in ``forward``. Returns a
        ``DiscreteSSM`` with diagonal A_bar ``(D,)``, B_bar = diag(weight) ``(D, D)``, C = I, D = 0,
        readout "plain".
        """
        u, t, tau = check_frozen_token(
            u, self.d_model, t, integration_timesteps, allow_zero=False, why_not_zero=_ZERO_GAP
        )  # u (1, L, H), tau (1, L) or None
        L, p, W = u.shape[1], self.params, self.conv1d_width
        seg = self._segment_positions(segment_pos, 1, L, np.zeros(1, dtype=np.int64))  # (1, L)
        reset = self._resets(seg)  # (1, L)
        doc_start = None
        if self.segment_reset:
            last_reset = np.maximum.accumulate(np.where(reset, np.arange(L), -1), axis=1)  # (1, L)
            doc_start = np.where(last_reset >= 0, W - 1 + last_reset, 0)  # (1, L) in the padded frame
        x = u @ p.linear_x_weight.T + p.linear_x_bias  # (1, L, D)
        x, _ = causal_depthwise_conv1d(x, p.conv_1d_weight, p.conv_1d_bias, None, doc_start)  # (1, L, D)
        x_t = x[0, t]  # (D,)
        gate_x = sigmoid(self._block_diagonal(x_t, p.input_gate_weight, p.input_gate_bias))  # (D,): i_t
        log_a, _ = self._gates(x_t, None if tau is None else tau[0, t])  # (D,)
        if reset[0, t]:
            a, weight = np.zeros(self.lru_width), gate_x  # (D,) each: a document start
        else:
            a, weight = np.exp(log_a), np.sqrt(-np.expm1(2.0 * log_a)) * gate_x  # (D,) each
        D = self.lru_width
        return DiscreteSSM(a, np.diag(weight), np.eye(D), np.zeros((D, D)), "plain")

    def step(self, u_t, state, *, integration_timesteps=None):
        """One token: ``u_t (B, H)``, ``state`` an ``RGLRUState``, ``integration_timesteps (B,)`` gaps > 0.
        Returns ``(y_t (B, H), new RGLRUState)``."""
        finite_params(self.params)
        u_t = check_step_input(u_t, self.d_model)
        Bsz = u_t.shape[0]
        state = self._check_state(state, Bsz, "state")
        tau = check_timesteps(integration_timesteps, Bsz, None, allow_zero=False, why_not_zero=_ZERO_GAP)
        reset = self._resets(state.segment_pos)  # (B,)
        p = self.params

        y_branch = gelu_tanh(u_t @ p.linear_y_weight.T + p.linear_y_bias)  # (B, D)
        x = u_t @ p.linear_x_weight.T + p.linear_x_bias  # (B, D)
        history = np.where(reset[:, None, None], 0.0, state.conv_state)  # (B, W-1, D): a new document forgets
        window = np.concatenate([history, x[:, None, :]], axis=1)  # (B, W, D), oldest first
        x = np.sum(window * p.conv_1d_weight, axis=1) + p.conv_1d_bias  # (B, D)
        log_a, gated_x = self._gates(x, tau)  # (B, D) each
        multiplier = np.where(reset[:, None], 1.0, np.sqrt(-np.expm1(2.0 * log_a)))  # (B, D)
        a = np.where(reset[:, None], 0.0, np.exp(log_a))  # (B, D)
        h = a * state.ssm_state + multiplier * gated_x  # (B, D)
        out = (h * y_branch) @ p.linear_out_weight.T + p.linear_out_bias  # (B, H)
        return out, RGLRUState(window[:, 1:].copy(), h, state.segment_pos + 1)
