"""Learning and ranking: pure Python and numpy, no I/O.

The live flow (``flows/recommend.py``) runs the user side
(``models/users.py``), the item-side learner (``models/learner.py``) and
the rankers (``models/ranking.py``) as separate steps; the offline
evaluation runs the same classes together (``models/recommender.py``).
"""

from models.config import ModelConfig
from models.recommender import Recommender

__all__ = ["ModelConfig", "Recommender"]
