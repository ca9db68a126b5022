"""A minimal sequence model around any fast SSM layer, and Mamba with its selection switched off.

    tokens (B, L) -> Embedding -> n_layers x [ x + mixer(LayerNorm(x)) ] -> LayerNorm -> Linear -> logits (B, L, V)

The mixer of a layer:

* ``Mamba`` and ``RGLRU`` are whole blocks already (input projection, short convolution, the gate, the output
  projection), as in the Mamba and Griffin papers: the mixer is the block.
* ``S4D``, ``S5``, ``LRU``, ``S4``, ``Centaurus`` and ``S7`` are SSM cores (u (B, L, H) -> y (B, L, H)): the
  mixer is the standard S4/S5 layer around them, ``GLU(Linear(GELU(SSM(x))))`` (the GLU output of S4D and S5).
* ``MambaFixed`` is the Mamba block with Delta, B and C input-independent: the paper's ablation of selection
  (its Table 1 rows with the S4 layer inside the Mamba architecture are the LTI end of this axis). See
  ``FixedSelectionMamba``.

``width_for(name, target_params, ...)`` picks the model width that comes nearest a parameter budget, so that
every model of the comparison has roughly the same number of parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import fast.models

__all__ = ["MODELS", "LTI", "SELECTIVE", "STATE_SCALE", "FixedSelectionMamba", "SequenceModel", "make_layer",
           "width_for"]

#: every layer the experiment can build, LTI first
LTI = ("S4D", "S5", "LRU", "S4", "Centaurus")
SELECTIVE = ("Mamba", "RGLRU", "S7")
MODELS = LTI + SELECTIVE + ("MambaFixed",)
_BLOCKS = ("Mamba", "RGLRU", "MambaFixed")  # whole blocks, no GLU around them
#: ``d_state`` is per channel for S4D, S4, Centaurus (sub_state_dim), Mamba; S5, LRU and S7 have one state of
#: ``d_state`` modes shared by all channels, so they get ``STATE_SCALE`` times more (S5's and LRU's papers use
#: P, N of 64-256 for widths of 64-512)
STATE_SCALE = {"S5": 4, "LRU": 4}


class FixedSelectionMamba(fast.models.Mamba):
    """The Mamba block with its selection switched off: Delta, B and C are learned constants, the same at every
    token, instead of the projections ``x_proj`` of the token (the ablation of the Mamba paper, §4.1 and Table 1).

    Mamba computes, per token, ``delta, B_t, C_t = split(x_t @ x_proj_weight.T)`` and
    ``dt_t = softplus(delta @ dt_proj_weight.T + dt_proj_bias)``. Here ``_selection`` (the one method of
    ``fast.models.Mamba`` that forms them) returns ``dt = softplus(dt_proj_bias)`` (D,) — Mamba's own
    initialization of the step, Delta = tau_Delta(parameter) in the paper's Algorithm 2 without s_Delta(x) —
    and ``B``, ``C`` (N,) learned vectors, broadcast over the tokens. The rest of the block (the input
    projection, the causal convolution, the gate SiLU(z), D, the output projection) is unchanged, so the
    scan is a time-invariant diagonal system per channel inside the same architecture. ``x_proj_weight`` and
    ``dt_proj_weight`` stay in the module (unused, so they get no gradient) and are not counted by
    ``SequenceModel.n_parameters``.
    """

    def __init__(self, d_model: int, d_state: int = 16, **kwargs):
        super().__init__(d_model, d_state, **kwargs)
        like = dict(dtype=self.x_proj_weight.dtype, device=self.x_proj_weight.device)
        N = self.d_state
        # B, C: unit-scale constants like the projections' outputs at initialization (drawn from torch's generator)
        self.B_fixed = nn.Parameter(torch.randn(N, **like) / N**0.5)
        self.C_fixed = nn.Parameter(torch.randn(N, **like) / N**0.5)

    def _selection(self, x):
        """Input-independent Delta (..., D), B (..., N), C (..., N) for x (..., D)."""
        lead = x.shape[:-1]
        dt = F.softplus(self.dt_proj_bias).expand(*lead, self.d_inner)  # (..., D)
        B_t = self.B_fixed.expand(*lead, self.d_state)  # (..., N)
        C_t = self.C_fixed.expand(*lead, self.d_state)  # (..., N)
        return dt, B_t, C_t

    def unused_parameters(self):
        return [self.x_proj_weight, self.dt_proj_weight]


def make_layer(name: str, d_model: int, d_state: int, seed: int) -> nn.Module:
    """The fast layer ``name`` (``MODELS``) in float32, seeded: ``torch.manual_seed(seed)`` and ``seed=seed``."""
    if name not in MODELS:
        raise ValueError(f"name: expected one of {', '.join(MODELS)}, got {name!r}")
    torch.manual_seed(seed)
    d_state = d_state * STATE_SCALE.get(name, 1)
    if name == "MambaFixed":
        layer = FixedSelectionMamba(d_model, d_state=d_state, seed=seed)
    elif name == "Centaurus":  # its state is sub_state_dim lanes per channel
        layer = fast.models.Centaurus(d_model, sub_state_dim=d_state, seed=seed)
    elif name == "RGLRU":  # d_state is the RG-LRU width (one state per channel): the model width, as in Griffin
        layer = fast.models.RGLRU(d_model, seed=seed)
    else:
        layer = getattr(fast.models, name)(d_model, d_state=d_state, seed=seed)
    return layer.to(torch.float32)


class _CoreMixer(nn.Module):
    """``GLU(Linear(GELU(core(x))))``: the S4D / S5 layer around an SSM core."""

    def __init__(self, core: nn.Module, d_model: int):
        super().__init__()
        self.core = core
        self.out = nn.Linear(d_model, 2 * d_model)

    def forward(self, x):  # (B, L, H)
        return F.glu(self.out(F.gelu(self.core(x))), dim=-1)  # (B, L, H)


class SequenceModel(nn.Module):
    """tokens (B, L) -> logits (B, L, vocab_size), around the fast layer ``name`` (module docstring)."""

    def __init__(self, name: str, vocab_size: int, d_model: int, d_state: int = 16, n_layers: int = 2, seed: int = 0):
        super().__init__()
        self.name = name
        torch.manual_seed(seed)
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.norms = nn.ModuleList()
        self.mixers = nn.ModuleList()
        for k in range(n_layers):
            layer = make_layer(name, d_model, d_state, seed=seed * 1000 + k)
            self.mixers.append(layer if name in _BLOCKS else _CoreMixer(layer, d_model))
            self.norms.append(nn.LayerNorm(d_model))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens):  # (B, L) int64
        x = self.embedding(tokens)  # (B, L, H)
        for norm, mixer in zip(self.norms, self.mixers):
            x = x + mixer(norm(x))  # (B, L, H)
        return self.head(self.norm(x))  # (B, L, V)

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters that take part in the forward (the ablation's unused projections left out)."""
        unused = {id(p) for m in self.modules() if hasattr(m, "unused_parameters") for p in m.unused_parameters()}
        return [p for p in self.parameters() if id(p) not in unused]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.trained_parameters())


def width_for(name: str, target_params: int, vocab_size: int, d_state: int, n_layers: int, step: int = 8) -> int:
    """The model width (a multiple of ``step``, 8 .. 256) whose ``SequenceModel`` has the nearest parameter count
    to ``target_params`` (on a log scale)."""
    import math

    best, best_gap = None, math.inf
    for H in range(step, 257, step):
        n = SequenceModel(name, vocab_size, H, d_state, n_layers).n_parameters()
        gap = abs(math.log(n / target_params))
        if gap < best_gap:
            best, best_gap = H, gap
        if n > 2 * target_params:
            break
    return best
