"""The fast LTV (selective, input-dependent) models: Mamba, RG-LRU (Griffin's recurrent block) and S7, torch
twins of ``reference.models.ltv``. They run on ``fast.ops.selective_scan`` (Mamba; chunked over time, never
a ``(B, L, D, N)`` tensor) and ``fast.ops.linear_scan`` (RG-LRU, S7)."""

from fast.models.ltv.mamba import Mamba, MambaState
from fast.models.ltv.rglru import RGLRU, RGLRUState
from fast.models.ltv.s7 import S7

__all__ = ["Mamba", "MambaState", "RGLRU", "RGLRUState", "S7"]
