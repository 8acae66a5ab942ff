"""Item-side state, and the deltas that keep every ranker's copy of it current.

The learner (``models/learner.py``) owns the master :class:`ItemState`.
Every ranker holds a replica: it applies the learner's :class:`ItemDelta`
messages in order (new items, changed factor rows, and the events that
popularity and co-occurrence replay deterministically), so all copies
agree. A ranker on the learner's own worker shares the master itself.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from models.config import ModelConfig
from models.cooc import CoOccurrence
from models.ids import KeyIndex
from models.mf import HistoryMF
from models.popularity import DecayedPopularity


class ItemState:
    """Everything known about items: ids, factors, popularity, co-occurrence.

    Items have dense indexes ``0..n-1`` in the order the learner first saw
    them; ``keys`` maps their :func:`~models.ids.item_key` to that index
    and ``names`` back to the external id.
    """

    def __init__(self, config: ModelConfig) -> None:
        c = self.config = config
        self.keys = KeyIndex()
        self.names: list[str] = []
        self.mf = HistoryMF(c.n_factors, c.lr, c.l2, c.history, c.history_decay, c.seed, c.mf_loss, c.mf_max_norm)
        self.pop = DecayedPopularity(c.half_life_s)
        self.trend = DecayedPopularity(c.trend_half_life_s)
        self.cooc = CoOccurrence(
            c.cooc_row_cap,
            c.cooc_backward,
            c.cooc_recency,
            c.window,
            c.cooc_positions == "learned",
            c.cooc_hop,
            hop_cache=c.cooc_hop_cache,
        )

    def __len__(self) -> int:
        return len(self.names)

    def add(self, key: int, name: str) -> int:
        """The dense index of ``key``, creating the item (with fresh factors) if it is new."""
        i = self.keys.add(key)
        if i == len(self.names):
            self.names.append(name)
            self.mf.ensure(i + 1)
            self.pop.ensure(i + 1)
            self.trend.ensure(i + 1)
        return i

    def dense(self, keys: np.ndarray) -> np.ndarray:
        """Dense indexes of item keys (-1: unknown, or an empty slot)."""
        return self.keys.lookup(keys)

    def replay(self, events: Events) -> None:
        """Popularity and co-occurrence of a batch of learned events (what a replica does with a delta)."""
        window = events.window.tolist()
        for i, w, t, recent in zip(events.item.tolist(), events.weight.tolist(), events.ts.tolist(), window):
            self.cooc.learn([j for j in recent if j >= 0], i, w)
            self.pop.learn(i, w, t)
            self.trend.learn(i, w, t)


class Events(NamedTuple):
    """Learned events in the compact form replicas replay: item, weight, time, the user's window (dense, -1 empty)."""

    item: np.ndarray
    weight: np.ndarray
    ts: np.ndarray
    window: np.ndarray

    @classmethod
    def of(cls, rows: list[tuple[int, float, float, tuple[int, ...]]], width: int) -> Events:
        if not rows:
            return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros((0, width), np.int64))
        item, weight, ts, window = zip(*rows)
        return cls(np.array(item), np.array(weight), np.array(ts), np.array(window, dtype=np.int64))


class ItemDelta(NamedTuple):
    """What changed on the item side since the learner's previous delta.

    ``base`` (the first delta after the learner starts) carries the whole
    state and replaces a replica; ``shared`` deltas are for a ranker that
    reads the master itself and carry no data to apply. Otherwise a replica
    adds the new items, replays ``events`` and copies the changed factor
    rows. ``active`` are the items that had events (their similar-items
    lists are due for a refresh).
    """

    seq: int
    base: ItemState | None
    shared: bool
    first: int  # dense index of the first new item
    keys: np.ndarray
    names: list[str]
    events: Events
    rows: np.ndarray  # dense indexes whose item factors changed (the positives and negatives learned)
    item_rows: np.ndarray
    history: np.ndarray  # dense indexes whose history factors changed (the users' recent items)
    history_rows: np.ndarray
    active: np.ndarray

    def copied(self) -> ItemDelta:
        """This base delta with a copy of the state, for a ranker in another thread or process."""
        assert self.base is not None
        return self._replace(base=copy.deepcopy(self.base), shared=False)


class Replica:
    """A ranker's copy of the item side, kept current by applying :class:`ItemDelta` in order."""

    def __init__(self) -> None:
        self.state: ItemState | None = None
        self.seq = -1

    def apply(self, delta: ItemDelta) -> None:
        if delta.base is not None:
            # A copy may reach several rankers of one process: each needs its own.
            self.state = delta.base if delta.shared else copy.deepcopy(delta.base)
            self.seq = delta.seq
            return
        if self.state is None:
            return  # deltas before the first base belong to an earlier learner run
        if delta.seq != self.seq + 1:
            raise RuntimeError(f"item delta {delta.seq} arrived after {self.seq}: the replica is out of sync")
        self.seq = delta.seq
        if delta.shared:
            return
        s = self.state
        if delta.first != len(s):
            raise RuntimeError(f"item delta adds items from {delta.first}, the replica has {len(s)}")
        for key, name in zip(delta.keys.tolist(), delta.names):
            s.keys.add(key)
            s.names.append(name)
        for counts in (s.mf, s.pop, s.trend):
            counts.ensure(len(s.names))
        s.replay(delta.events)
        if delta.rows.size:
            s.mf.items.data[delta.rows] = delta.item_rows
        if delta.history.size:
            s.mf.history_factors.data[delta.history] = delta.history_rows
