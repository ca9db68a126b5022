"""The fast LTI models: ``S4, S4D, S5, LRU, Centaurus``, torch twins of ``reference.models.lti``
(``fast.models.lti._base`` has what they share: FFT convolution, the initial-state response and
final state without a loop over time, the kernel cache, the step)."""

from fast.models.lti.centaurus import Centaurus
from fast.models.lti.lru import LRU
from fast.models.lti.s4 import S4
from fast.models.lti.s4d import S4D
from fast.models.lti.s5 import S5

__all__ = ["S4", "S4D", "S5", "LRU", "Centaurus"]
