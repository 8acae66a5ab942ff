"""Ranking: every user list, similar-items list and the popular list, from the item side's current state.

A user's score for item ``i`` blends three signals, each scaled to
``[0, 1]``::

    w_mf * sigmoid(p_u . q_i) + w_cooc * co(u, i) / max co + w_pop * pop(i) / max pop

``p_u`` is the user vector (``models/mf.py``), ``co`` the co-occurrence of
``i`` with the user's last ``window`` items, normalised over the items the
user may still be shown, and ``pop`` decayed popularity. Items the user
interacted with are excluded.

Up to ``exact_max_items`` items every item is scored: one matrix product
and one row-wise partition per block of users. Above it ranking is two
stages: candidates from several sources (HNSW neighbours of the user
vector, the co-occurrence rows of the user's recent items, the most
popular and the trending items, items newer than the index), then the
exact blend over the candidates only, so the cost of a list hardly grows
with the catalogue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from models.config import ModelConfig
from models.ids import item_key
from models.index import BackgroundIndex
from models.items import ItemState, Replica
from models.mf import user_vectors
from models.topk import top_finite, top_k_rows
from models.users import UserView

BLOCK = 64  # users ranked per matrix product (a 64 x 20k float32 block is 5 MB)
_POPULAR_EVERY_S = 1.0  # the popular and trending candidates are recomputed at most this often


class Ranked(NamedTuple):
    """A ranked list: external item ids, best first, their scores, and their item keys."""

    items: list[str]
    scores: list[float]
    keys: list[int]


EMPTY = Ranked([], [], [])


class _Block(NamedTuple):
    """Users of one block in dense form: user vectors, co-occurrence terms and exclusions as ``(user, item)`` pairs."""

    vectors: np.ndarray
    co_user: np.ndarray
    co_item: np.ndarray
    co_val: np.ndarray
    ex_user: np.ndarray
    ex_item: np.ndarray


class Ranker:
    """Ranks users, items and the popular list over a :class:`~models.items.Replica`.

    Reads never change the item state. The HNSW index is this ranker's
    own (:class:`~models.index.BackgroundIndex`); :meth:`maintain` keeps it
    current and is the only method that starts or swaps a build.

    Examples
    --------
    >>> from models.learner import ItemLearner
    >>> from models.users import UserTable
    >>> from models.event import Event
    >>> cfg = ModelConfig(seed=1)
    >>> users, learner, replica = UserTable(cfg), ItemLearner(cfg), Replica()
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x")]:
    ...     learner.learn(users.learn(Event(user, item, "view", 1.0, 0.0, 0.0)))
    >>> replica.apply(learner.base_delta())
    >>> Ranker(cfg, replica).rank([users.view("b")], k=2)[0].items
    ['y']
    """

    def __init__(self, config: ModelConfig, replica: Replica) -> None:
        self.config = config
        self.replica = replica
        c = config
        self.index = BackgroundIndex(c.index_m, c.index_ef_construction, c.index_ef, c.index_rebuild_s, c.seed)
        self._factors_changed = False
        self._candidates_at = -math.inf
        self._popular_top = np.zeros(0, dtype=np.int64)
        self._trending_top = np.zeros(0, dtype=np.int64)

    @property
    def state(self) -> ItemState:
        s = self.replica.state
        if s is None:
            raise RuntimeError("the ranker has no item state yet (no base delta from the learner)")
        return s

    @property
    def ready(self) -> bool:
        return self.replica.state is not None

    def uses_index(self) -> bool:
        """Whether user lists come from candidates (the catalogue is past ``exact_max_items`` and an index exists)."""
        return len(self.state) > self.config.exact_max_items and self.index.current is not None

    def changed(self) -> None:
        """Tell the ranker the factors moved (an applied delta): the index is due for a rebuild."""
        self._factors_changed = True
        self._candidates_at = -math.inf

    def maintain(self) -> bool:
        """Swap in a finished index build, start one if due; True when a new index was swapped in."""
        s = self.state
        if len(s) <= self.config.exact_max_items and self.index.current is None:
            return False
        swapped = self.index.poll(s.mf.item_factors, self._factors_changed)
        if self.index.building:
            self._factors_changed = False
        return swapped

    # ------------------------------------------------------------------ users

    def rank(self, views: Sequence[UserView], k: int, exact: bool | None = None) -> list[Ranked]:
        """Top-``k`` of each user, in order (``exact``: force, or forbid, scoring every item)."""
        if not views:
            return []
        two_stage = self.uses_index() if exact is None else (not exact and self.index.current is not None)
        if len(views) == 1 and not two_stage:
            return [self._exact_one(views[0], k)]  # the evaluation's path: 1-D arrays cost less
        out: list[Ranked] = []
        for start in range(0, len(views), BLOCK):
            chunk = views[start : start + BLOCK]
            block = self._block(chunk)
            out += self._two_stage(block, k) if two_stage else self._exact(block, k)
        return out

    def _unit(self) -> tuple[float, float]:
        """``(half, unit)``: ranking scores s map back to the blend as ``s * unit + half``."""
        half = 0.5 * self.config.w_mf
        return half, (half if half > 0 else 1.0)

    def _block(self, views: Sequence[UserView]) -> _Block:
        s, c = self.state, self.config
        recent = s.dense(np.concatenate([v.recent for v in views])).reshape(len(views), -1)
        vectors = user_vectors(recent, s.mf.history_factors.matrix, s.mf.weights)
        lens = [v.seen.shape[0] for v in views]
        seen = s.dense(np.concatenate([v.seen for v in views])) if sum(lens) else np.zeros(0, dtype=np.int64)
        ex_user = np.repeat(np.arange(len(views)), lens)
        known = seen >= 0
        ex_user, ex_item = ex_user[known], seen[known]
        co_user, co_item, co_val, peak = s.cooc.scores(recent[:, -c.window :], (ex_user, ex_item))
        if c.w_cooc and co_val.size:
            # peak 0: all of that user's values are 0 (excluded); the floor keeps them 0
            co_val = co_val * (c.w_cooc / self._unit()[1] / np.maximum(peak, 1e-300))[co_user]
        else:
            co_user = co_item = np.zeros(0, dtype=np.int64)
            co_val = np.zeros(0)
        return _Block(vectors, co_user, co_item, co_val, ex_user, ex_item)

    def _base_scores(self, vectors: np.ndarray, items: np.ndarray | None, popularity: bool = True) -> np.ndarray:
        """The MF and popularity terms for ``items`` (None: all), ``(len(vectors), len(items))`` float32."""
        s, c = self.state, self.config
        factors = s.mf.item_factors if items is None else s.mf.item_factors[items]
        half, unit = self._unit()
        if half > 0:
            score = (vectors * np.float32(0.5)) @ factors.T
            np.tanh(score, out=score)
        else:
            score = np.zeros((vectors.shape[0], factors.shape[0]), dtype=np.float32)
        peak = s.pop.peak()
        if popularity and c.w_pop and peak > 0:
            pop = s.pop.raw() if items is None else s.pop.raw()[items]
            score += (pop * (c.w_pop / (peak * unit))).astype(np.float32)
        return score

    def _exact(self, b: _Block, k: int) -> list[Ranked]:
        score = self._base_scores(b.vectors, None)
        score[b.co_user, b.co_item] += b.co_val  # a repeated pair carries the same value: exact
        score[b.ex_user, b.ex_item] = -math.inf
        tops = top_k_rows(score, k)
        rows = np.repeat(np.arange(len(tops)), [t.shape[0] for t in tops])
        return self._named_many(tops, score[rows, np.concatenate(tops)] if tops else np.zeros(0))

    def _exact_one(self, view: UserView, k: int) -> Ranked:
        """:meth:`_exact` for one user, with 1-D arrays."""
        s, c = self.state, self.config
        get = s.keys.get
        recent = np.array([get(key, -1) if key >= 0 else -1 for key in view.recent.tolist()], dtype=np.int64)
        seen = s.dense(view.seen)
        seen = seen[seen >= 0]
        vector = s.mf.user_vector(recent)
        row = self._base_scores(vector[None, :], None)[0]
        none = np.zeros(0, dtype=np.int64)
        _, co_item, co_val, peak = s.cooc.scores(recent[None, -c.window :], (np.zeros(seen.shape[0], np.int64), seen))
        if c.w_cooc and co_val.size and peak[0] > 0:
            row[co_item] += co_val * (c.w_cooc / self._unit()[1] / peak[0])
        row[seen if seen.size else none] = -math.inf
        top = top_finite(row, k)
        return self._named(top, row[top])

    def _two_stage(self, b: _Block, k: int) -> list[Ranked]:
        s = self.state
        index = self.index.current
        assert index is not None
        users = b.vectors.shape[0]
        ann = index.query(b.vectors, self.config.candidates)
        fixed = [self._popular_candidates(), np.arange(index.size, len(s))]  # the same for every user
        co_at = np.searchsorted(b.co_user, np.arange(users + 1))
        ex_at = np.searchsorted(b.ex_user, np.arange(users + 1))
        out = []
        for u in range(users):
            co_item = b.co_item[co_at[u] : co_at[u + 1]]
            cand = np.unique(np.concatenate([ann[u], co_item, *fixed]))
            row = self._base_scores(b.vectors[u : u + 1], cand)[0]
            row[np.searchsorted(cand, co_item)] += b.co_val[co_at[u] : co_at[u + 1]]
            row[np.isin(cand, b.ex_item[ex_at[u] : ex_at[u + 1]])] = -math.inf
            top = top_finite(row, k)
            out.append(self._named(cand[top], row[top]))
        return out

    def _popular_candidates(self) -> np.ndarray:
        """The most popular and the trending items, recomputed at most every second."""
        now = time.monotonic()
        if now - self._candidates_at > _POPULAR_EVERY_S:
            s, n = self.state, self.config.popular_candidates
            self._popular_top, self._trending_top = s.pop.top(n), s.trend.top(n)
            self._candidates_at = now
        return np.concatenate([self._popular_top, self._trending_top])

    def _named_many(self, tops: list[np.ndarray], scores: np.ndarray) -> list[Ranked]:
        """:meth:`_named` of many lists at once: ``scores`` holds theirs, concatenated."""
        s = self.state
        half, unit = self._unit()
        idx = np.concatenate(tops) if tops else np.zeros(0, dtype=np.int64)
        names = s.names
        all_names = [names[j] for j in idx.tolist()]
        values = (scores.astype(np.float64) * unit + half).round(6).tolist()
        keys = s.keys.keys[idx].tolist()
        out, at = [], 0
        for t in tops:
            end = at + t.shape[0]
            out.append(Ranked(all_names[at:end], values[at:end], keys[at:end]))
            at = end
        return out

    def _named(self, idx: np.ndarray, score: np.ndarray) -> Ranked:
        s = self.state
        half, unit = self._unit()
        names, keys = s.names, s.keys.keys
        dense = idx.tolist()
        values = (score.astype(np.float64) * unit + half).round(6).tolist()
        return Ranked([names[j] for j in dense], values, keys[idx].tolist())

    # ------------------------------------------------------ popular, similar

    def popular(self, k: int, exclude: Sequence[str] = ()) -> Ranked:
        """The ``k`` most popular items now (decayed), scores relative to the most popular."""
        s = self.state
        raw = s.pop.raw()
        if raw.size == 0:
            return EMPTY
        drop = [d for d in (s.keys.get(item_key(x)) for x in exclude) if d is not None]
        top = s.pop.top(k + len(drop))
        if drop:
            top = top[~np.isin(top, drop)]
        top = top[:k]
        peak = raw[top[0]] if top.size and raw[top[0]] > 0 else 1.0
        names, keys = s.names, s.keys.keys
        return Ranked([names[j] for j in top.tolist()], (raw[top] / peak).round(6).tolist(), keys[top].tolist())

    def similar(self, items: np.ndarray, k: int) -> Iterator[Ranked]:
        """Similar-items lists of dense ``items``, lazily (a refresh stops when its time budget is spent).

        The list of ``i`` is what a user whose only recent item is ``i``
        would be shown, without the popularity term: ``w_mf *
        sigmoid(y_i . q_j) + w_cooc * share of j in i's co-occurrence row``.
        """
        s, c = self.state, self.config
        k = min(k, len(s) - 1)
        if k <= 0:
            yield from [EMPTY] * len(items)
            return
        two_stage = self.uses_index()
        for start in range(0, len(items), BLOCK):
            chunk = items[start : start + BLOCK]
            vectors = s.mf.history_factors.data[chunk]
            rows = [s.cooc.row(i) for i in chunk.tolist()]
            if two_stage:
                yield from self._similar_candidates(chunk, vectors, rows, k)
                continue
            score = self._base_scores(vectors, None, popularity=False)
            for r, (co_idx, share) in enumerate(rows):
                if co_idx.size and c.w_cooc:
                    score[r, co_idx] += (share * (c.w_cooc / self._unit()[1] / share.max())).astype(np.float32)
            score[np.arange(len(chunk)), chunk] = -math.inf
            for row, top in enumerate(top_k_rows(score, k)):
                yield self._named(top, score[row, top])

    def _similar_candidates(
        self, chunk: np.ndarray, vectors: np.ndarray, rows: list[tuple[np.ndarray, np.ndarray]], k: int
    ) -> Iterator[Ranked]:
        c = self.config
        index = self.index.current
        assert index is not None
        ann = index.query(vectors, c.candidates)
        fresh = np.arange(index.size, len(self.state))
        for r, i in enumerate(chunk.tolist()):
            co_idx, share = rows[r]
            cand = np.unique(np.concatenate([ann[r], co_idx, fresh]))
            row = self._base_scores(vectors[r : r + 1], cand, popularity=False)[0]
            if co_idx.size and c.w_cooc:
                row[np.searchsorted(cand, co_idx)] += share * (c.w_cooc / self._unit()[1] / share.max())
            row[cand == i] = -math.inf
            top = top_finite(row, k)
            yield self._named(cand[top], row[top])
