"""The eight reference models. LTI (one kernel, convolution and recurrence): S4, S4D, S5, LRU,
Centaurus. LTV (selective / input-dependent, recurrence only): Mamba, RGLRU, S7."""

from reference.models.lti import *  # noqa: F403
from reference.models.ltv import *  # noqa: F403
