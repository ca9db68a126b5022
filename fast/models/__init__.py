"""The fast (torch) models: ``S4, S4D, S5, LRU, Centaurus`` (LTI, in ``fast.models.lti``) and ``Mamba,
RGLRU, S7`` (LTV, in ``fast.models.ltv``), each a ``torch.nn.Module`` twin of its ``reference.models``
class with a ``backend`` argument and ``from_reference``.

Empty for now: the models come in issue 5. Importing this package must stay cheap and never import
triton.
"""
