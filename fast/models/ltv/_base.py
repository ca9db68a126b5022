"""What the fast LTV models share (twin of ``reference/models/ltv/_base.py``): the activations, the causal
depthwise convolution of Mamba and Griffin, and the checks of sequences, steps, event gaps and states.

Glossary (code name -> symbol):

    u, u_t            the model input, (B, L, H) or one step (B, H)
    tau               integration_timesteps: the gap before each event (reference/README.md §async)
    weight (W, D)     depthwise temporal filter; weight[j] multiplies x_{t - W + 1 + j}
    history (B, W-1, D)  the W - 1 inputs before the first one (the convolution cache)
    doc_start (B, L)  index (in the padded frame) of the first token of the current document

Everything here is a torch function of tensors, differentiable by autograd, in the precision it is given;
bad input gets a ``ValueError`` naming the argument (a tensor of another dtype or device than the module is
refused, never cast silently).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from fast import scan as _scan
from fast._checks import HALF, nonnegative, positive_int, real_like, validating, values_ok
from fast.models._base import FastModel
from fast.selective_scan import _pair_scan

__all__ = [
    "LTVFastModel",
    "scan_states",
    "causal_depthwise_conv1d",
    "gelu_tanh",
    "softplus",
]


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x), equal to the reference's ``np.logaddexp(0, x)`` up to rounding: ``F.softplus`` with its linear
    cut-off moved from x = 20 (its default, off by e^{-20} ~ 2e-9 there, visible in float64) to x = 40, above which
    e^{-x} < 5e-18 is below half a unit in the last place of x in float32 and float64, so that x is the rounded
    value. One operation with a one-operation backward (``logaddexp(x, 0)`` needs a zeros tensor and its backward
    several passes over it)."""
    return F.softplus(x, threshold=40.0)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (RecurrentGemma's), 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return F.gelu(x, approximate="tanh")


def causal_depthwise_conv1d(x, weight, bias, history=None, doc_start=None):
    """Causal depthwise convolution: y_t = bias + sum_j weight[j] * x_{t-W+1+j}, channel by channel.

    Args:
        x: ``(B, L, D)``.
        weight: ``(W, D)``; ``weight[W-1]`` multiplies the current input.
        bias: ``(D,)``, or None for none.
        history: ``(B, W-1, D)``, the inputs before ``x[:, 0]`` (zeros when omitted).
        doc_start: ``(B, L)`` integers or None: output t reads only positions >= doc_start[b, t] of the
            padded sequence ``[history, x]`` (where ``x[:, t]`` sits at ``W - 1 + t``).

    Returns:
        ``y (B, L, D)`` and the new history ``(B, W-1, D)`` (the last W - 1 inputs, masked as output L - 1
        saw them). A loop over the W taps, never over time.
    """
    Bsz, L, D = x.shape
    W = weight.shape[0]
    if history is None:
        history = x.new_zeros(Bsz, W - 1, D)  # (B, W-1, D)
    padded = torch.cat([history, x], dim=1)  # (B, W-1+L, D)
    if doc_start is None and not torch.compiler.is_compiling():
        return _DepthwiseConv.apply(padded, weight, bias), padded[:, L:]
    t = torch.arange(L, device=x.device)  # (L,)
    y = x.new_zeros(Bsz, L, D) if bias is None else bias.expand(Bsz, L, D)  # (B, L, D)
    for s in range(W):  # s = how far back the tap looks
        window = padded[:, W - 1 - s : W - 1 - s + L]  # (B, L, D): x_{t-s}
        if doc_start is not None:
            keep = (W - 1 + t - s)[None, :] >= doc_start  # (B, L)
            window = window * keep[..., None]  # (B, L, D)
        y = torch.addcmul(y, weight[W - 1 - s], window)  # (B, L, D): y + weight * window in one pass
    new_history = padded[:, L:]  # (B, W-1, D)
    if doc_start is not None and W > 1:
        positions = torch.arange(L, L + W - 1, device=x.device)  # (W-1,) indices of the kept inputs
        keep = positions[None, :] >= doc_start[:, -1:]  # (B, W-1)
        new_history = new_history * keep[..., None]  # (B, W-1, D)
    return y, new_history


class _DepthwiseConv(torch.autograd.Function):
    """``causal_depthwise_conv1d`` without document starts, on ``padded (B, W-1+L, D)``: the W taps accumulated in
    place into one output, and the backward written out (autograd's graph of W out-of-place products made 2 W
    fresh (B, L, D) tensors, forward and backward, each page-faulting on the CPU; here one output each way). Not
    used under torch.compile, which records the plain ops instead. Differentiable once."""

    @staticmethod
    def forward(ctx, padded, weight, bias):
        W, L = weight.shape[0], padded.shape[1] - weight.shape[0] + 1
        y = torch.mul(padded[:, W - 1 :], weight[W - 1])  # (B, L, D): the tap of the current input
        for s in range(1, W):  # s = how far back the tap looks
            y.addcmul_(padded[:, W - 1 - s : W - 1 - s + L], weight[W - 1 - s])
        if bias is not None:
            y += bias
        ctx.save_for_backward(padded, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        """dL/dpadded[t + j] += weight[j] g_t, dL/dweight[j] = sum_{b,t} g_t padded[t + j], dL/dbias = sum_{b,t} g_t."""
        padded, weight = ctx.saved_tensors
        W, L = weight.shape[0], grad_y.shape[1]
        want_padded, want_weight, want_bias = ctx.needs_input_grad
        grad_padded = grad_weight = grad_bias = None
        if want_padded:
            grad_padded = torch.empty(padded.shape, dtype=torch.result_type(grad_y, weight), device=padded.device)
            grad_padded[:, : W - 1].zero_()  # (B, W-1, D): reached by the taps looking back only
            torch.mul(grad_y, weight[W - 1], out=grad_padded[:, W - 1 :])
            for j in range(W - 1):
                grad_padded[:, j : j + L].addcmul_(grad_y, weight[j])
        if want_weight:
            product = torch.empty_like(grad_y)  # (B, L, D), reused by every tap
            grad_weight = torch.stack([torch.mul(grad_y, padded[:, j : j + L], out=product).sum((0, 1))
                                       for j in range(W)])  # (W, D)
        if want_bias:
            grad_bias = grad_y.sum((0, 1))  # (D,)
        return grad_padded, grad_weight, grad_bias


def scan_states(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None, backend: str):
    """x_k = a_k x_{k-1} + b_k over axis 1 of ``(B, L, F)`` (real or complex) from ``x0 (B, F)`` or zeros:
    ``(x, x[:, -1])``. ``fast.scan.linear_scan`` (the decays and inputs the model computed are not checked as a
    caller's arguments); under torch.compile the out-of-place pairwise scan of the selective scan instead (the
    compiler refuses the blocked scan's writes into strided views)."""
    if not torch.compiler.is_compiling():
        return _scan.linear_scan(a, b, x0, backend=backend)
    a = a.expand(b.shape)
    if x0 is not None:
        b = torch.cat([b[:, :1] + a[:, :1] * x0[:, None], b[:, 1:]], dim=1)  # x0 folded into step 0
    x = _pair_scan(a, b)  # (B, L, F)
    return x, x[:, -1]


class LTVFastModel(FastModel):
    """Base of the fast LTV models: the reference's discretization list and the input / state checks."""

    discretizations: ClassVar[tuple[str, ...]] = ()
    default_discretization: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ref = cls.__dict__.get("reference_class")
        if ref is not None:  # the same supported methods as the reference twin
            cls.discretizations = ref.discretizations
            cls.default_discretization = ref.default_discretization

    # -- sequences and steps --------------------------------------------------------------------
    def sequence(self, u, initial_state, batched_args: dict):
        """``(u (B, L, H), initial_state with a batch axis, unbatched)``. ``batched_args`` maps the names of
        per-token arguments (gaps, segment positions) to their values: with an unbatched ``u (L, H)``
        they must be ``(L,)``."""
        u = self.check_input(u)
        if u.ndim == 3 and u.shape[0] == 0:
            raise ValueError(f"u: expected shape (B, L, {self.d_model}) with B >= 1, got {tuple(u.shape)}")
        unbatched = u.ndim == 2
        if unbatched:
            u = u[None]  # (1, L, H)
            if initial_state is not None:
                initial_state = self.add_batch_axis(initial_state)
            for name, arg in batched_args.items():
                if arg is not None and np.ndim(arg) == 2:
                    raise ValueError(f"{name}: expected shape (L,) for an unbatched input (L, H)")
        return u, initial_state, unbatched

    def add_batch_axis(self, state):
        """The state of one sequence with a batch axis of 1 (tensors of a NamedTuple, or one tensor)."""
        if isinstance(state, torch.Tensor):
            return state[None]
        if isinstance(state, tuple):
            return tuple(s[None] if isinstance(s, torch.Tensor) else s for s in state)
        return state  # the state check names what is wrong

    def step_inputs(self, u_t, state, integration_timesteps):
        """``(u_t (B, H), state with a batch axis, gaps (B,) or None, unbatched)``: an unbatched ``u_t (H,)`` (as
        ``forward`` takes ``(L, H)``) gets a batch axis of 1, and so do its state and its gap (a scalar or
        ``(1,)``); the step then returns ``y_t (H,)`` and the state without the batch axis (``unbatch``)."""
        unbatched = isinstance(u_t, torch.Tensor) and u_t.ndim == 1
        if unbatched:
            u_t = u_t[None]  # (1, H)
            if state is not None:
                state = self.add_batch_axis(state)
            if integration_timesteps is not None and np.ndim(integration_timesteps) == 0:
                integration_timesteps = (
                    integration_timesteps.reshape(1)
                    if isinstance(integration_timesteps, torch.Tensor)
                    else [integration_timesteps]
                )
        return self.check_step_input(u_t), state, integration_timesteps, unbatched

    @staticmethod
    def unbatch(y_t, state, unbatched: bool):
        """``(y_t, state)`` without the batch axis that ``step_inputs`` added (unchanged otherwise)."""
        if not unbatched:
            return y_t, state
        if isinstance(state, torch.Tensor):
            return y_t[0], state[0]
        return y_t[0], type(state)(*(s[0] if isinstance(s, torch.Tensor) else s for s in state))

    def values_ok(self, tensors: dict) -> None:
        """The value checks of a forward or step (while ``fast.validation`` is on; nothing otherwise): the
        tensors the caller passed (input, state) and every parameter finite, in one host sync; a NaN parameter
        is named (``Mamba.A_log: contains NaN ...``). The gaps are checked by ``check_timesteps``."""
        if not validating():
            return
        what = type(self).__name__
        named = {f"{what}.{k}": p.detach() for k, p in self.named_parameters()}
        named.update({k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)})
        values_ok(named)

    @property
    def compute_dtype(self) -> torch.dtype:
        """float32 for a half-precision module (its scan runs in float32, as mamba_ssm's does), else its dtype."""
        return torch.float32 if self.dtype in HALF else self.dtype

    def check_step_input(self, u_t) -> torch.Tensor:
        if not isinstance(u_t, torch.Tensor):
            raise ValueError(f"u_t: expected a torch.Tensor, got {type(u_t).__name__}")
        if u_t.ndim != 2 or u_t.shape[1] != self.d_model or u_t.shape[0] == 0:
            raise ValueError(f"u_t: expected shape (B, {self.d_model}) with B >= 1 or ({self.d_model},), "
                             f"got {tuple(u_t.shape)}")
        if u_t.dtype != self.dtype or u_t.device != self.device:
            raise ValueError(
                f"u_t: dtype {u_t.dtype} on {u_t.device} does not match the module's {self.dtype} on "
                f"{self.device}; use .to()"
            )
        return u_t

    def check_timesteps(self, integration_timesteps, batch: int, length: int | None, *, allow_zero: bool,
                        why_not_zero: str = ""):
        """Event gaps as ``(B, L)`` (forward; from ``(L,)`` or ``(B, L)``) or ``(B,)`` (step, ``length=None``),
        finite, >= 0, and > 0 unless ``allow_zero``; None stays None (reference ``check_timesteps``)."""
        if integration_timesteps is None:
            return None
        tau = real_like(integration_timesteps, "integration_timesteps", self.dtype, self.device)
        if length is None:
            if tuple(tau.shape) != (batch,):
                raise ValueError(
                    f"integration_timesteps: in step expected shape ({batch},) (B,), got {tuple(tau.shape)}"
                )
        elif tuple(tau.shape) == (length,):
            tau = tau.expand(batch, length)  # (B, L)
        elif tuple(tau.shape) != (batch, length):
            raise ValueError(
                f"integration_timesteps: expected shape ({length},) (L,) or ({batch}, {length}) (B, L), "
                f"got {tuple(tau.shape)}"
            )
        if tau.device != self.device:
            raise ValueError(f"integration_timesteps: device {tau.device} does not match the module's {self.device}")
        if validating() and not bool((torch.isfinite(tau) & (tau >= 0)).all()):  # one sync; names the problem
            nonnegative(tau, "integration_timesteps")
        if not allow_zero and validating() and bool((tau == 0).any()):
            raise ValueError(f"integration_timesteps: a zero gap is not allowed here{why_not_zero}")
        return tau

    def check_state_tensor(self, x, name: str, shape: tuple, *, dtype=None) -> torch.Tensor:
        """One tensor of a state: of ``shape``, of ``dtype`` (the module's by default) and on its device."""
        dtype = self.dtype if dtype is None else dtype
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
        if x.dtype != dtype or x.device != self.device:
            raise ValueError(f"{name}: expected dtype {dtype} on {self.device}, got {x.dtype} on {x.device}")
        return x

    def batch_size(self, batch_size) -> int:
        return positive_int(batch_size, "batch_size")
