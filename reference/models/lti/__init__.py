from reference.models.lti.centaurus import Centaurus as Centaurus
from reference.models.lti.lru import LRU as LRU
from reference.models.lti.s4 import S4 as S4
from reference.models.lti.s4d import S4D as S4D
from reference.models.lti.s5 import S5 as S5
