"""The fast (torch) models: ``S4, S4D, S5, LRU, Centaurus`` (LTI, in ``fast.models.lti``) and ``Mamba,
RGLRU, S7`` (LTV, in ``fast.models.ltv``), each a ``torch.nn.Module`` twin of its ``reference.models``
class with the same arguments plus torch's ``device`` and ``dtype`` (default: ``torch.get_default_dtype()``),
``seed=None`` (the initialization drawn from torch's global generator) and ``backend``; ``from_reference`` and
``to_reference`` convert exactly (``fast.models._base``).

Importing this package stays cheap and never imports triton: the Triton kernels are loaded on the first
call that runs them.
"""

from fast.models.lti import LRU, S4, S4D, S5, Centaurus
from fast.models.ltv import RGLRU, S7, Mamba

__all__ = ["S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7"]
