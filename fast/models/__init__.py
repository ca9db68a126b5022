"""The fast (torch) models: ``S4, S4D, S5, LRU, Centaurus`` (LTI, in ``fast.models.lti``) and ``Mamba,
RGLRU, S7`` (LTV, in ``fast.models.ltv``), each a ``torch.nn.Module`` twin of its ``reference.models``
class with a ``backend`` argument and ``from_reference``.

Importing this package stays cheap and never imports triton: the Triton kernels are loaded on the first
call that runs them.
"""

from fast.models.lti import LRU, S4, S4D, S5, Centaurus
from fast.models.ltv import RGLRU, S7, Mamba

__all__ = ["S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7"]
