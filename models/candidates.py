"""The candidate sources of two-stage ranking (``models/ranking.py``): what each block of users is scored on.

Above ``exact_max_items`` a list is the exact blend over candidates only:
HNSW neighbours of the user vector (``index``), the best items newer than
the index (``fresh``), the newest cold items whose catalogue features match
the user's content profile (``content``), the most popular and the
trending items (``popular``, ``trending``), and the co-occurrence rows of
the user's recent items (in the :class:`Block` itself).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from models.blend import Blend
from models.config import ModelConfig
from models.index import BackgroundIndex
from models.items import ItemState
from models.topk import top_k_rows

_SHARED_EVERY_S = 1.0  # the popular, trending and cold candidates are recomputed at most this often
COLD_EVENTS = 5.0  # an item with less decayed popularity than this many events is cold (the content source)


class Block(NamedTuple):
    """Users of one block in dense form: user vectors, co-occurrence terms and exclusions as ``(user, item)`` pairs."""

    vectors: np.ndarray
    co_user: np.ndarray
    co_item: np.ndarray
    co_val: np.ndarray
    ex_user: np.ndarray
    ex_item: np.ndarray
    profiles: np.ndarray | None  # content profiles (None: no content term)


class Candidates:
    """The candidate sources over one ranker's blend and index; ``blocked`` gives the items lists leave out."""

    def __init__(
        self, config: ModelConfig, blend: Blend, index: BackgroundIndex, blocked: Callable[[], np.ndarray]
    ) -> None:
        self.config = config
        self.blend = blend
        self.index = index
        self._blocked = blocked
        self._at = -math.inf
        self._popular = np.zeros(0, dtype=np.int64)
        self._trending = np.zeros(0, dtype=np.int64)
        self._cold = np.zeros(0, dtype=np.int64)  # the newest cold items with catalogue features

    @property
    def state(self) -> ItemState:
        return self.blend.state

    def of(self, b: Block) -> dict[str, np.ndarray]:
        """Every candidate source of a block: ``(users, m)`` matrices, or one array for every user.

        ``index``: HNSW neighbours of the user vector; ``fresh``: the best
        items added since the index was built; ``cooc``: the co-occurrence
        rows of the user's recent items (in ``b``); ``popular`` and
        ``trending``: the most popular items, long and short term;
        ``content``: the cold items (``COLD_EVENTS``) listed last whose
        features best match the user's content profile. A new source is
        one more entry here.
        """
        index = self.index.current
        assert index is not None
        popular, trending, cold = self._shared()
        content = np.zeros((b.vectors.shape[0], 0), dtype=np.int64)
        if b.profiles is not None and cold.size:
            best = top_k_rows(self.blend.content.scores(b.profiles, len(self.state), cold), self.config.candidates)
            content = _rows_of(best, cold)
        return {
            "index": index.query(b.vectors, self.config.candidates),
            "fresh": self._fresh(b, index.size),
            "content": content,
            "popular": popular,
            "trending": trending,
        }

    def _fresh(self, b: Block, indexed: int) -> np.ndarray:
        """For each user, the best of the items added since the index was built (MF and popularity terms).

        Until the next build swaps in, these items are in no index: the
        newest ``fresh_max_items`` of them are scored for the whole block
        in one product, and the best ``candidates`` of each user join that
        user's candidates. Older ones (a catalogue growing faster than
        inserts keep up) reach lists only through the other sources until
        inserted: scoring all 76k of them cost a third of a 1M-item list.
        """
        n = len(self.state)
        users = b.vectors.shape[0]
        if n <= indexed:
            return np.zeros((users, 0), dtype=np.int64)
        items = np.arange(max(indexed, n - self.config.fresh_max_items), n)
        if items.shape[0] <= self.config.candidates:
            return np.broadcast_to(items, (users, items.shape[0]))
        best = top_k_rows(self.blend.base_scores(b.vectors, items, True, b.profiles), self.config.candidates)
        return _rows_of(best, items)

    def _shared(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The most popular, the trending and the newest cold items with features, recomputed at most every second."""
        now = time.monotonic()
        if now - self._at > _SHARED_EVERY_S:
            s, c = self.state, self.config
            self._popular, self._trending = s.pop.top(c.popular_candidates), s.trend.top(c.popular_candidates)
            self._cold = self._cold_items() if self.blend.uses_content() else self._cold[:0]
            self._at = now
        return self._popular, self._trending, self._cold

    def _cold_items(self) -> np.ndarray:
        """The ``fresh_max_items`` items listed last with features and fewer than ``COLD_EVENTS`` (decayed) events."""
        listed = self.blend.content.listed
        recent = np.fromiter(reversed(listed), dtype=np.int64, count=len(listed))[: 4 * self.config.fresh_max_items]
        pop = self.state.pop.scores()
        seen = np.zeros(recent.shape[0], dtype=np.bool_)
        inside = recent < pop.shape[0]
        seen[inside] = pop[recent[inside]] >= COLD_EVENTS
        cold = recent[~seen]
        blocked = self._blocked()
        if blocked.size:
            cold = cold[~np.isin(cold, blocked)]
        return cold[: self.config.fresh_max_items]


def _rows_of(best: list[np.ndarray], items: np.ndarray) -> np.ndarray:
    """Per-user picks (positions in ``items``) as one ``(users, width)`` matrix; short rows repeat a pick."""
    width = max((t.shape[0] for t in best), default=0)
    out = np.full((len(best), width), items[0] if items.size else 0, dtype=np.int64)
    for r, t in enumerate(best):
        out[r, : t.shape[0]] = items[t]
    return out
