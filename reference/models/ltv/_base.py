"""What the LTV (selective, input-dependent) reference models share: argument checks, the activations,
the causal depthwise convolution of Mamba and Griffin, and a small base class.

Glossary (code name -> symbol):

    u, u_t            the model input, (B, L, H) or one step (B, H)
    tau               integration_timesteps: the gap before each event (reference/README.md §async)
    weight (W, D)     depthwise temporal filter; weight[j] multiplies x_{t - W + 1 + j}
    history (B, W-1, D)  the W - 1 inputs before the first one (the convolution cache)
    doc_start (B, L)  index (in the padded frame) of the first token of the current document

Unlike an LTI model, an LTV model has no single kernel: its only modes are the recurrence (``forward``,
over a whole sequence) and ``step`` (one token), which must agree.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.special

from reference._checks import as_array, positive_int
from reference.discretization import DISCRETIZATIONS, custom_discretizations
from reference.models._config import Configured

__all__ = [
    "LTVModel",
    "causal_depthwise_conv1d",
    "check_sequence",
    "check_frozen_token",
    "check_step_input",
    "check_timesteps",
    "gelu_tanh",
    "sigmoid",
    "silu",
]


def sigmoid(x):
    """1 / (1 + e^{-x}), without overflow (scipy's expit)."""
    return scipy.special.expit(x)


def silu(x):
    """x * sigmoid(x) (also called swish)."""
    return x * scipy.special.expit(x)


def gelu_tanh(x):
    """GELU with the tanh approximation (what JAX and RecurrentGemma use)."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def check_sequence(u, width: int, name: str = "u") -> tuple[np.ndarray, bool]:
    """``u`` as a real ``(B, L, width)`` array, and whether it came without the batch axis."""
    u = as_array(u, name, complex_ok=False)
    if u.ndim not in (2, 3) or u.shape[-1] != width or u.shape[-2] == 0:
        raise ValueError(f"{name}: expected shape (B, L, {width}) or (L, {width}) with L >= 1, got {u.shape}")
    unbatched = u.ndim == 2
    return (u[None] if unbatched else u), unbatched


def check_step_input(u_t, width: int) -> np.ndarray:
    u_t = as_array(u_t, "u_t", complex_ok=False)
    if u_t.ndim != 2 or u_t.shape[1] != width:
        raise ValueError(f"u_t: expected shape (B, {width}), got {u_t.shape}")
    return u_t


def check_timesteps(integration_timesteps, batch: int, length: int | None, *, allow_zero: bool, why_not_zero=""):
    """Validate the event gaps tau and return them as ``(B, L)`` (forward) or ``(B,)`` (step, ``length=None``).

    Forward accepts ``(L,)`` (shared by the batch) or ``(B, L)``; step accepts ``(B,)``. Gaps must be
    finite and >= 0, and > 0 where ``allow_zero`` is False (``why_not_zero`` says why).
    """
    if integration_timesteps is None:
        return None
    tau = as_array(integration_timesteps, "integration_timesteps", complex_ok=False)
    if length is None:
        if tau.shape != (batch,):
            raise ValueError(f"integration_timesteps: in step expected shape ({batch},) (B,), got {tau.shape}")
    elif tau.shape == (length,):
        tau = np.broadcast_to(tau, (batch, length))
    elif tau.shape != (batch, length):
        raise ValueError(
            f"integration_timesteps: expected shape ({length},) (L,) or ({batch}, {length}) (B, L), got {tau.shape}"
        )
    if np.any(tau < 0):
        raise ValueError(f"integration_timesteps: expected gaps >= 0, got min {tau.min():.3g}")
    if not allow_zero and np.any(tau == 0):
        raise ValueError(f"integration_timesteps: a zero gap is not allowed here{why_not_zero}")
    return np.array(tau, dtype=np.float64)


def check_frozen_token(u, width: int, t, integration_timesteps, *, allow_zero: bool, why_not_zero=""):
    """Arguments of ``frozen_system``: one sequence ``u (L, width)``, a token index ``0 <= t < L`` and the
    gaps ``(L,)`` (or None). Returns ``u (1, L, width)``, ``t`` and the gaps ``(1, L)`` or None."""
    u = as_array(u, "u", complex_ok=False)
    if u.ndim != 2 or u.shape[1] != width or u.shape[0] == 0:
        raise ValueError(f"u: expected one sequence of shape (L, {width}) with L >= 1, got {u.shape}")
    L = u.shape[0]
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < L:
        raise ValueError(f"t: expected an integer token index in [0, {L}) (L = len(u)), got {t!r}")
    tau = check_timesteps(integration_timesteps, 1, L, allow_zero=allow_zero, why_not_zero=why_not_zero)
    return u[None], int(t), tau


def causal_depthwise_conv1d(x, weight, bias, history=None, doc_start=None):
    """Causal depthwise convolution: y_t = bias + sum_j weight[j] * x_{t-W+1+j}, channel by channel.

    Args:
        x: ``(B, L, D)``.
        weight: ``(W, D)``; ``weight[W-1]`` multiplies the current input.
        bias: ``(D,)``, or None for none.
        history: ``(B, W-1, D)``, the inputs before ``x[:, 0]`` (zeros when omitted: zero padding).
        doc_start: ``(B, L)`` integers or None. Output t reads only positions >= doc_start[b, t] of the
            padded sequence ``[history, x]`` (whose index of ``x[:, t]`` is ``W - 1 + t``): the inputs of an
            earlier document are masked out (RecurrentGemma's document mask).

    Returns:
        ``y (B, L, D)`` and the new history ``(B, W-1, D)``: the last W - 1 inputs, masked as output L - 1 saw
        them, so that a continuation reads exactly what a longer one-shot call would read.
    """
    Bsz, L, D = x.shape
    W = weight.shape[0]
    if history is None:
        history = np.zeros((Bsz, W - 1, D))
    padded = np.concatenate([history, x], axis=1)  # (B, W-1+L, D)
    t = np.arange(L)  # (L,)
    y = np.zeros((Bsz, L, D)) if bias is None else np.broadcast_to(bias, (Bsz, L, D)).astype(np.float64)  # (B, L, D)
    for s in range(W):  # s = how far back the tap looks
        window = padded[:, W - 1 - s : W - 1 - s + L]  # (B, L, D): x_{t-s}
        if doc_start is not None:
            keep = (W - 1 + t - s)[None, :] >= doc_start  # (B, L)
            window = window * keep[..., None]  # (B, L, D)
        y = y + weight[W - 1 - s] * window  # (B, L, D)
    new_history = padded[:, L:].copy()  # (B, W-1, D): positions W-1+L-(W-1) .. W-1+L-1
    if doc_start is not None and W > 1:
        positions = np.arange(L, L + W - 1)  # (W-1,) indices of the kept inputs in the padded frame
        keep = positions[None, :] >= doc_start[:, -1:]  # (B, W-1)
        new_history = new_history * keep[..., None]  # (B, W-1, D)
    return y, new_history


class LTVModel(Configured):
    """Base of the reference LTV models: the discretization check and the input checks."""

    #: discretizations the model accepts and its default
    discretizations: ClassVar[tuple[str, ...]] = ()
    default_discretization: ClassVar[str] = ""

    #: whether the rules added by ``register_discretization`` apply (the model discretizes through
    #: ``discretize_diagonal``; RG-LRU has its own gated decay instead)
    registered_rules: ClassVar[bool] = True

    @classmethod
    def supported_discretizations(cls) -> tuple[str, ...]:
        """``discretizations`` plus the registered rules (time-varying-only ones included)."""
        if not cls.registered_rules:
            return cls.discretizations
        return cls.discretizations + tuple(m for m in custom_discretizations() if m not in cls.discretizations)

    def __init__(self, d_model: int, discretization: str | None, seed: int):
        self.d_model = positive_int(d_model, "d_model")
        if discretization is None:
            discretization = self.default_discretization
        if discretization not in self.supported_discretizations():
            known = "" if discretization in DISCRETIZATIONS else " (unknown name)"
            raise ValueError(
                f"{type(self).__name__}: discretization {discretization!r} is not supported{known}; "
                f"supported: {list(self.supported_discretizations())}"
            )
        self.discretization = discretization
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.seed = int(seed)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state=False):
        raise NotImplementedError
