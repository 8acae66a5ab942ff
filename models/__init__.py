"""Learning and ranking: pure Python and numpy, no I/O.

The live flow (``flows/recommend.py``) and the offline evaluation
(``bench/evaluate.py``) use exactly these classes.
"""

from models.hybrid import HybridRecommender, ModelConfig

__all__ = ["HybridRecommender", "ModelConfig"]
