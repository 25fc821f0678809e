"""Neural Collaborative Filtering (He et al. 2017): GMF, MLP and NeuMF on implicit feedback.

Light imports only (numpy): the configuration, the trained model with its numpy scoring path, and
item vectors, so a serving process never loads torch. Training lives in ``recsys.ncf.training``
(imports torch): ``from recsys.ncf.training import train``.
"""

from recsys.ncf.config import NCFConfig
from recsys.ncf.history import EpochStats
from recsys.ncf.scoring import TrainedNCF
from recsys.ncf.vectors import VECTOR_KINDS, item_vectors, most_similar

__all__ = ["VECTOR_KINDS", "EpochStats", "NCFConfig", "TrainedNCF", "item_vectors", "most_similar"]
