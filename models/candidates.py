"""The candidate sources of two-stage ranking (``models/ranking.py``): what each block of users is scored on.

Above ``exact_max_items`` a list is the exact blend over candidates only:
HNSW neighbours of the user vector (``index``), the best items newer than
the index (``fresh``), the newest cold items whose catalogue features match
the user's content profile (``content``), the most popular and the
trending items (``popular``, ``trending``), and the co-occurrence rows of
the user's recent items (in the :class:`Block` itself), less the entries
that cannot reach the list (:meth:`Candidates.prune`).
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
MARGIN = 1e-5  # above float32 rounding: what a score must clear a bound by


class Block(NamedTuple):
    """Users of one block in dense form: user vectors, co-occurrence terms and exclusions as ``(user, item)`` pairs."""

    vectors: np.ndarray
    co_user: np.ndarray
    co_item: np.ndarray
    co_val: np.ndarray
    ex_user: np.ndarray
    ex_item: np.ndarray
    profiles: np.ndarray | None  # content profiles, ``(DIM, users)`` (None: no content term)

    def subset(self, rows: np.ndarray) -> Block:
        """The users ``rows`` (sorted) of this block, numbered ``0..len(rows)-1``."""
        at = np.full(self.vectors.shape[0], -1, dtype=np.int64)
        at[rows] = np.arange(rows.shape[0])
        co, ex = at[self.co_user] >= 0, at[self.ex_user] >= 0
        return Block(
            self.vectors[rows],
            at[self.co_user[co]],
            self.co_item[co],
            self.co_val[co],
            at[self.ex_user[ex]],
            self.ex_item[ex],
            None if self.profiles is None else self.profiles[:, rows],
        )


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
        # A bound of the item factors' norms (the MF term's reach): rows [0, _norm_n) of _norm_of covered.
        self._norm_of: ItemState | None = None
        self._norm_n = 0
        self._norm_max = 0.0
        self.lists = {"bound": 0, "index": 0}  # two-stage lists served without the index / with it
        self._need = 0.0  # running share of lists the bound did not clear

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
        popular, trending, _ = self.shared()
        return {**self.reach(b), "content": self.content(b), "popular": popular, "trending": trending}

    def reach(self, b: Block) -> dict[str, np.ndarray]:
        """The sources of items nothing else proposes for a user (``index``, ``fresh``): what :meth:`bound` covers."""
        if not self.index.ready:  # no build has finished yet: the newest items are scored instead (``_fresh``)
            return {"index": np.zeros((b.vectors.shape[0], 0), dtype=np.int64), "fresh": self._fresh(b, 0)}
        indexed = self.index.size  # before the query: items inserted meanwhile are then scored twice, not missed
        return {"index": self.index.query(b.vectors, self.config.candidates), "fresh": self._fresh(b, indexed)}

    def content(self, b: Block) -> np.ndarray:
        """For each user, the cold items whose features best match the content profile, ``(users, m)``."""
        cold = self.shared()[2]
        if b.profiles is None or not cold.size:
            return np.zeros((b.vectors.shape[0], 0), dtype=np.int64)
        best = top_k_rows(self.blend.content.scores(b.profiles, len(self.state), cold), self.config.candidates)
        return _rows_of(best, cold)

    def bound(self, b: Block, popularity: bool) -> np.ndarray:
        """For each user, a score no item reaches unless the co-occurrence, popular, trending or content source has it.

        Such an item has no co-occurrence term, popularity and trend at most
        those of the last popular and trending candidates, a content match
        at most 1, and an MF term ``tanh(p.q / 2) <= tanh(|p| max|q| / 2)``.
        A user whose ``k``-th best candidate scores above this bound has the
        exact top ``k`` without the index and the items outside it.
        (Popular and trending candidates are recomputed every second, so
        the bound is as current as they are.)
        """
        s, c = self.state, self.config
        unit = self.blend.unit()[1]
        out = self.mf_reach(b)
        if popularity:
            popular, trending, _ = self.shared()
            for counts, w, top in ((s.pop, c.w_pop, popular), (s.trend, c.w_trend, trending)):
                peak = counts.peak()
                if w and peak > 0 and top.size:
                    out += w * float(counts.raw()[top[-1]]) / (peak * unit)
        if b.profiles is not None:
            out += c.w_content / unit
        return out

    def prune(self, b: Block, k: int, popularity: bool) -> Block:
        """``b`` without the co-occurrence entries that cannot reach their user's top ``k`` (exact).

        An entry's co-occurrence and popularity terms are known before it is
        scored; its MF term is within :meth:`mf_reach` of 0 and its content
        term in ``[0, w_content / unit]``. Once a user has ``k`` entries
        whose lowest possible score is at least ``t``, an entry whose highest
        possible score is below ``t`` cannot make that user's top ``k``, and
        is not scored. These entries are most of the pairs a list scores: at
        1M items (synthetic stream) this leaves 37 of 139 per user.
        """
        users, entries = b.vectors.shape[0], b.co_item.shape[0]
        if entries <= k:
            return b
        known = b.co_val + self.blend.popularity(b.co_item) if popularity else b.co_val
        reach = self.mf_reach(b)[b.co_user]
        low = known - reach
        blocked = self._blocked()
        if blocked.size:
            low[np.isin(b.co_item, blocked)] = -math.inf
        # Each user's k-th best low: one sort of (user, -low), users a span apart, lows within it.
        finite = np.isfinite(low)
        if not finite.any():
            return b
        lo, hi = float(low[finite].min()), float(low[finite].max())
        span = hi - lo + 1.0
        ranked = np.sort(b.co_user * span + (hi - np.where(finite, low, lo - 0.5)))
        starts = np.searchsorted(b.co_user, np.arange(users + 1))
        kth = np.full(users, -math.inf)
        full = starts[1:] - starts[:-1] >= k
        at = starts[:-1][full] + k - 1
        kth[full] = hi - (ranked[at] - np.flatnonzero(full) * span)
        kth[kth < lo] = -math.inf  # a blocked entry among the first k
        high = known + reach + (self.config.w_content / self.blend.unit()[1] if b.profiles is not None else 0.0)
        keep = high + MARGIN >= kth[b.co_user]
        if keep.all():
            return b
        return b._replace(co_user=b.co_user[keep], co_item=b.co_item[keep], co_val=b.co_val[keep])

    def mf_reach(self, b: Block) -> np.ndarray:
        """For each user, a bound of the MF term's size over every item: ``tanh(|p| max|q| / 2)`` (0: no MF term)."""
        if self.blend.unit()[0] <= 0:
            return np.zeros(b.vectors.shape[0])
        norm = np.sqrt(np.einsum("uf,uf->u", b.vectors, b.vectors, dtype=np.float64))
        out: np.ndarray = np.tanh(0.5 * norm * self._factor_norm())
        return out

    def moved(self, rows: np.ndarray) -> None:
        """Item factor rows that changed (a delta): the bound of their norms follows."""
        f = self.state.mf.item_factors
        rows = rows[rows < self._norm_n]  # newer rows are covered on first use
        if self._norm_of is self.state and rows.size:
            moved = f[rows]
            self._norm_max = max(self._norm_max, float(np.sqrt(np.einsum("if,if->i", moved, moved).max())))

    def _factor_norm(self) -> float:
        """An upper bound of every item factor's norm (computed in full once per item state, then kept up)."""
        s = self.state
        f = s.mf.item_factors
        if self._norm_of is not s:
            self._norm_of, self._norm_n, self._norm_max = s, 0, 0.0
        if self._norm_n < f.shape[0]:
            new = f[self._norm_n :]
            self._norm_max = max(self._norm_max, float(np.sqrt(np.einsum("if,if->i", new, new).max())))
            self._norm_n = f.shape[0]
        return self._norm_max

    def bound_pays(self) -> bool:
        """Whether to try the bound first: it cleared most recent lists (else the index is queried for all)."""
        return self._need < 0.5

    def count(self, need: np.ndarray) -> None:
        """Lists the bound cleared (False) or not (True): the counts and the running share."""
        n = int(need.sum())
        self.lists["index"] += n
        self.lists["bound"] += need.shape[0] - n
        self._need += 0.05 * (n / max(need.shape[0], 1) - self._need)

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

    def shared(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
