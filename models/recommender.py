"""The whole model in one process: what ``freshrec eval``, the sweeps and the tests run.

The live flow splits the same three parts across steps (``flows/recommend.py``):
the user side per worker, one item-side learner, a ranker per worker. Here
they share one item state, so every list sees every event at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.config import ModelConfig
from models.event import Event
from models.ids import item_key
from models.items import Replica
from models.learner import ItemLearner
from models.ranking import EMPTY, Ranked, Ranker
from models.users import UserTable, UserView


class Recommender:
    """Users, learner and ranker over one shared item state.

    Reads (:meth:`recommend`, :meth:`similar`, :meth:`popular`,
    :meth:`is_known`) never create state.

    Examples
    --------
    >>> m = Recommender(ModelConfig(seed=1))
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x")]:
    ...     m.learn(Event(user, item, "view", 1.0, ts=0.0, source_ts=0.0))
    >>> m.recommend("b", k=2).items
    ['y']
    >>> m.is_known("zed"), m.recommend("zed", k=1).items
    (False, ['x'])
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig()
        self.users = UserTable(self.config)
        self.learner = ItemLearner(self.config)
        self.replica = Replica()
        self.replica.apply(self.learner.base_delta())
        self.ranker = Ranker(self.config, self.replica)

    @property
    def n_events(self) -> int:
        return self.learner.n_events

    def learn(self, event: Event) -> None:
        """Update the user side and the item side with one event."""
        self.learner.learn(self.users.learn(event))
        if self.learner.pending >= 256:
            self.sync()

    def sync(self) -> None:
        """Hand the ranker what changed (the index rebuild schedule follows the factors)."""
        delta = self.learner.take_delta(shared=True)
        self.replica.apply(delta)
        self.ranker.changed(delta.rows)
        self.ranker.maintain()

    def add_items(self, items: Sequence[tuple[str, tuple[np.ndarray, np.ndarray]]]) -> None:
        """Catalogue items, known from now on, and their features (``models.content.features``)."""
        keys = [item_key(name) for name, _ in items]
        self.learner.list_items(keys, [name for name, _ in items])
        self.sync()
        self.ranker.set_content(np.array(keys, dtype=np.int64), [row for _, row in items])

    def is_known(self, user: str) -> bool:
        return user in self.users.users

    def view(self, user: str, exclude: Sequence[str] = ()) -> UserView | None:
        v = self.users.view(user)
        if v is None or not exclude:
            return v
        extra = np.array([item_key(x) for x in exclude], dtype=np.int64)
        return v._replace(seen=np.concatenate([v.seen, extra]))

    def recommend(self, user: str, k: int = 20, exclude: Sequence[str] = (), exact: bool | None = None) -> Ranked:
        """Top-``k`` items for ``user``; the popular list for an unknown user."""
        v = self.view(user, exclude)
        if v is None:
            return self.popular(k, exclude)
        return self.ranker.rank([v], k, exact)[0]

    def recommend_many(self, users: Sequence[str], k: int = 20) -> list[Ranked]:
        """:meth:`recommend` for many users at once, in order."""
        views = [self.users.view(u) for u in users]
        known = [v for v in views if v is not None]
        ranked = iter(self.ranker.rank(known, k))
        fallback = self.popular(k) if len(known) < len(views) else EMPTY
        return [fallback if v is None else next(ranked) for v in views]

    def popular(self, k: int = 20, exclude: Sequence[str] = ()) -> Ranked:
        return self.ranker.popular(k, exclude)

    def similar(self, item: str, k: int = 20) -> Ranked:
        i = self.ranker.state.keys.get(item_key(item))
        if i is None:
            return EMPTY
        return next(self.ranker.similar(np.array([i]), k))
