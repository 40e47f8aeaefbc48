"""Re-ranking of query x gallery distances: Zhong et al.'s k-reciprocal encoding (`zhong.py`), and
the 2017 original's own per-probe version (`original.py`)."""

from reid_tf.rerank.original import original_re_ranking
from reid_tf.rerank.zhong import KReciprocal, re_ranking, re_ranking_features

__all__ = ["KReciprocal", "original_re_ranking", "re_ranking", "re_ranking_features"]
