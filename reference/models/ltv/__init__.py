"""LTV (selective, input-dependent) reference models: Mamba, RG-LRU (Griffin's recurrent block), S7, and
the selective scan they build on. Recurrence only: an LTV model has no single kernel."""

from reference.models.ltv.mamba import Mamba, MambaParams, MambaState
from reference.models.ltv.rglru import RGLRU, RGLRUParams, RGLRUState
from reference.models.ltv.s7 import S7, S7Params
from reference.models.ltv.selective_scan import selective_scan

__all__ = [
    "Mamba",
    "MambaParams",
    "MambaState",
    "RGLRU",
    "RGLRUParams",
    "RGLRUState",
    "S7",
    "S7Params",
    "selective_scan",
]
