"""The hybrid recommender: River MF + co-occurrence + decayed popularity."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from models.arrays import grow
from models.cooc import CoOccurrence
from models.event import Event
from models.ids import IdMap
from models.index import ItemIndex
from models.mf import ImplicitMF
from models.popularity import DecayedPopularity


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`HybridRecommender`.

    Defaults come from the sweep in ``bench/sweep.py`` (see
    ``bench/RESULTS.md``). Every per-user and per-item structure is bounded
    by a field here.
    """

    n_factors: int = 32
    lr: float = 0.1
    l2: float = 0.01
    negatives: int = 1
    negative_sampling: str = "popular"  # or "uniform"
    half_life_s: float = 30 * 86400.0
    window: int = 5  # recent items per user (bounds co-occurrence input)
    cooc_row_cap: int = 200  # co-occurrence entries kept per item (2x before pruning)
    cooc_backward: float = 0.5
    cooc_recency: float = 0.8
    seen_cap: int = 1000  # items remembered per user for exclusion
    w_mf: float = 1.0
    w_cooc: float = 1.0
    w_pop: float = 0.3
    exact_max_items: int = 20000  # above this, rank HNSW candidates exactly
    candidates: int = 200
    negative_pool: int = 4096  # recent item events sampled for "popular" negatives
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negative_sampling not in ("popular", "uniform"):
            raise ValueError(f"negative_sampling must be 'popular' or 'uniform', got {self.negative_sampling!r}")
        for name in ("n_factors", "window", "cooc_row_cap", "seen_cap", "candidates", "negative_pool"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class Ranked(NamedTuple):
    """A ranked list: external item ids, best first, their scores, and the items' dense indexes."""

    items: list[str]
    scores: list[float]
    indexes: list[int]


_EMPTY = Ranked([], [], [])
_RANK_BLOCK = 64  # users ranked per matrix product (a 64 x 10k float32 block is 2.5 MB)


class HybridRecommender:
    """Online hybrid recommender; every event updates every component.

    Scores blend three signals, each scaled to ``[0, 1]``: the MF
    probability ``sigmoid(p_u . q_i)``, the co-occurrence of ``i`` with the
    user's recent items (relative to the best item), and decayed
    popularity (relative to the most popular item). Items the user already
    interacted with are excluded.

    Reads (:meth:`recommend`, :meth:`similar`, :meth:`popular`,
    :meth:`is_known`) never create state.

    Examples
    --------
    >>> m = HybridRecommender(ModelConfig(seed=1))
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x")]:
    ...     m.learn(Event(user, item, "view", 1.0, ts=0.0, source_ts=0.0))
    >>> m.recommend("b", k=2).items
    ['y']
    >>> m.is_known("zed"), m.is_known("zed")
    (False, False)
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = c = config or ModelConfig()
        self.users = IdMap()
        self.items = IdMap()
        self.mf = ImplicitMF(c.n_factors, c.lr, c.l2, c.seed)
        self.pop = DecayedPopularity(c.half_life_s)
        self.cooc = CoOccurrence(c.cooc_row_cap, c.cooc_backward, c.cooc_recency)
        self.index = ItemIndex(c.n_factors, seed=c.seed)
        self.n_events = 0
        self._recent = np.full((0, c.window), -1, dtype=np.int32)  # most recent last
        self._seen: list[np.ndarray] = []  # per user: ring of item indexes, at most seen_cap
        self._seen_n = np.zeros(0, dtype=np.int64)  # per user: items ever added to the ring
        self._pool = np.zeros(c.negative_pool, dtype=np.int64)
        self._rng = np.random.default_rng(c.seed)
        self._draws: list[float] = []  # uniform [0, 1) draws for negative sampling
        self._draw_at = 0
        self._dirty: set[int] = set()

    def __getstate__(self) -> dict[str, Any]:
        # One flat array instead of a million small ones: pickling per-user
        # arrays one by one took 0.9 s of a 1.0 s snapshot at 200k users.
        state = self.__dict__.copy()
        seen = state.pop("_seen")
        state["_seen_sizes"] = np.fromiter((a.shape[0] for a in seen), dtype=np.int64, count=len(seen))
        state["_seen_flat"] = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int32)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        sizes = state.pop("_seen_sizes")
        flat = state.pop("_seen_flat")
        self.__dict__.update(state)
        # Views into ``flat``: each ring is written in place or replaced when it grows.
        self._seen = np.split(flat, np.cumsum(sizes)[:-1]) if len(sizes) else []

    # ---------------------------------------------------------------- learning

    def learn(self, event: Event) -> None:
        """Update every component with one event."""
        c = self.config
        u = self.users.add(event.user)
        i = self.items.add(event.item)
        n_items = len(self.items)
        if u == len(self._seen):
            self._seen.append(np.zeros(min(8, c.seen_cap), dtype=np.int32))
            self._recent = grow(self._recent, u + 1, fill=-1)
            self._seen_n = grow(self._seen_n, u + 1)
        recent = self._recent[u]
        history = [j for j in recent.tolist() if j >= 0]
        w = event.weight

        self.cooc.learn(history, i, w)
        self.pop.learn(i, w, event.ts)
        negatives = self._sample_negatives(n_items)
        self.mf.learn(u, i, w, negatives)

        self._pool[self.n_events % c.negative_pool] = i
        self.n_events += 1
        if len(self.index):  # changed vectors matter only to a built index
            self._dirty.add(i)
            self._dirty.update(negatives)
        if recent[-1] != i:
            recent[:-1] = recent[1:]
            recent[-1] = i
        self._remember(u, i)

    def _remember(self, u: int, i: int) -> None:
        """Add ``i`` to user ``u``'s seen ring (oldest overwritten past seen_cap)."""
        ring = self._seen[u]
        n = int(self._seen_n[u])
        if n and i in ring[:n]:
            return
        cap = self.config.seen_cap
        if n == ring.shape[0] and n < cap:
            ring = self._seen[u] = np.resize(ring, min(2 * n, cap))
        ring[n % ring.shape[0]] = i
        self._seen_n[u] = n + 1

    def _sample_negatives(self, n_items: int) -> list[int]:
        k = self.config.negatives
        if self._draw_at + k > len(self._draws):
            self._draws = self._rng.random(1024 * k).tolist()  # one RNG call per 1024 events
            self._draw_at = 0
        r = self._draws[self._draw_at : self._draw_at + k]
        self._draw_at += k
        if self.config.negative_sampling == "popular" and self.n_events >= k:
            filled = min(self.n_events, self.config.negative_pool)
            pool = self._pool
            return [int(pool[int(x * filled)]) for x in r]
        return [int(x * n_items) for x in r]

    @property
    def uses_index(self) -> bool:
        """Whether ranking goes through HNSW (catalogue above ``exact_max_items``)."""
        return len(self.items) > self.config.exact_max_items

    def refresh_index(self) -> None:
        """Re-index the item vectors changed since the last call.

        Call it on a timer, not per event or batch: an hnswlib update costs
        far more than a learn step. Between refreshes, ranking takes
        candidates from the slightly stale index and scores them exactly
        with the current vectors. Below ``exact_max_items`` ranking is exact
        numpy and there is no index to keep.
        """
        if not self.uses_index:
            return
        changed = np.fromiter(self._dirty, dtype=np.int64, count=len(self._dirty))
        self._dirty.clear()
        self.index.refresh(self.mf.item_factors, changed)

    def _ensure_index(self) -> None:
        if len(self.index) == 0:
            self._dirty.clear()
            self.index.rebuild(self.mf.item_factors)

    # ------------------------------------------------------------------ reads

    def is_known(self, user: str) -> bool:
        """Whether ``user`` has been learned."""
        return user in self.users

    def recommend(self, user: str, k: int = 20, exclude: Iterable[str] = ()) -> Ranked:
        """Top-``k`` items for ``user``; the popular list for an unknown user."""
        u = self.users.get(user)
        if u is None:
            return self.popular(k, exclude)
        idx, scores = self._rank_user(u, k, self._exclusions(exclude))
        return self._named(idx, scores)

    def recommend_many(self, users: Sequence[str], k: int = 20) -> list[Ranked]:
        """:meth:`recommend` for many users, in order (the flow ranks all users a batch touched).

        Below ``exact_max_items`` the known users are ranked ``_RANK_BLOCK``
        at a time: one matrix product and one row-wise partition per block
        cost a third of ranking them one by one.
        """
        idx = [self.users.get(user) for user in users]
        known = [u for u in idx if u is not None]
        ranked: dict[int, Ranked] = {}
        if self.uses_index:
            ranked = {u: self._named(*self._rank_candidates(u, k, None)) for u in known}
        else:
            for start in range(0, len(known), _RANK_BLOCK):
                block = np.array(known[start : start + _RANK_BLOCK])
                for u, (top, scores) in zip(block.tolist(), self._rank_exact(block, k, [None] * len(block))):
                    ranked[u] = self._named(top, scores)
        fallback = self.popular(k) if len(known) < len(idx) else _EMPTY
        return [fallback if u is None else ranked[u] for u in idx]

    def recommend_indexes(self, u: int, k: int) -> np.ndarray:
        """Top-``k`` item indexes for a known user index (evaluation fast path)."""
        return self._rank_user(u, k, None)[0]

    def popular(self, k: int = 20, exclude: Iterable[str] = ()) -> Ranked:
        """The ``k`` most popular items now (decayed)."""
        raw = self.pop.raw()
        if raw.size == 0:
            return _EMPTY
        drop = self._exclusions(exclude)
        top = self.pop.top(k + len(drop))
        top = top[~np.isin(top, drop)][:k] if len(drop) else top[:k]
        peak = raw[top[0]] if top.size and raw[top[0]] > 0 else 1.0
        return self._named(top, raw[top] / peak)

    def similar(self, item: str, k: int = 20) -> Ranked:
        """Items most similar to ``item``: co-occurrence blended with MF cosine."""
        i = self.items.get(item)
        if i is None:
            return _EMPTY
        return next(self.iter_similar(np.array([i]), k))

    def iter_similar(self, items: np.ndarray, k: int = 20, block: int = 64) -> Iterator[Ranked]:
        """:meth:`similar` for many item indexes, lazily (the list refresh stops when its budget is spent).

        Item norms are computed once per call; below ``exact_max_items``
        each block of items is one matrix product and one row-wise partition.
        """
        c = self.config
        factors = self.mf.item_factors
        norms = np.linalg.norm(factors, axis=1) + 1e-12
        if self.uses_index:
            self._ensure_index()
            for i in items.tolist():
                cand = np.union1d(self.index.query(factors[i], c.candidates), self.cooc.row(i)[0])
                cand = cand[cand != i]  # a row never holds its own item, so every neighbour is in cand
                score = factors[cand] @ factors[i] / (norms[cand] * norms[i])
                self._blend_similar(score, i, cand)
                top = _top(score, k)
                yield self._named(cand[top], score[top])
            return
        k = min(k, len(self.items) - 1)
        if k <= 0:
            yield from [_EMPTY] * len(items)
            return
        unit = factors / norms[:, None]
        for start in range(0, len(items), block):
            chunk = items[start : start + block]
            score = unit[chunk] @ unit.T
            for row, i in zip(score, chunk.tolist()):
                self._blend_similar(row, i, None)
            score[np.arange(len(chunk)), chunk] = -math.inf
            part = np.argpartition(-score, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(score, part, axis=1)
            order = np.argsort(-vals, axis=1, kind="stable")
            part, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
            for p, v in zip(part, vals):
                yield self._named(p, v)

    def _blend_similar(self, cos: np.ndarray, i: int, cand: np.ndarray | None) -> None:
        """In place: ``w_mf * (cos + 1) / 2 + w_cooc * share / max share`` over ``cand`` (None: all items)."""
        c = self.config
        cos += 1.0
        cos *= 0.5 * c.w_mf
        co_idx, share = self.cooc.row(i)
        if co_idx.size and c.w_cooc:
            pos = co_idx if cand is None else np.searchsorted(cand, co_idx)
            cos[pos] += share * (c.w_cooc / share.max())

    # ---------------------------------------------------------------- ranking

    def _exclusions(self, exclude: Iterable[str]) -> np.ndarray:
        get = self.items.get
        found = [j for j in (get(x) for x in exclude) if j is not None]
        return np.array(found, dtype=np.int64)

    def _rank_user(self, u: int, k: int, drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.uses_index:
            return self._rank_candidates(u, k, drop)
        return self._rank_exact(np.array([u]), k, [drop])[0]

    # score = w_mf * sigmoid(p.q) + w_cooc * co / co_max + w_pop * pop / pop_max.
    # With sigmoid(x) = (1 + tanh(x / 2)) / 2 the blend is ranked as
    # half * s + half, s = tanh(p.q / 2) + ..., in a few passes over the items.

    def _unit(self) -> tuple[float, float]:
        """``(half, unit)``: ranking scores s map back to the blend as ``s * unit + half``."""
        half = 0.5 * self.config.w_mf
        return half, (half if half > 0 else 1.0)

    def _base_scores(self, us: np.ndarray, factors: np.ndarray, pop: np.ndarray) -> np.ndarray:
        """The MF and popularity terms, ``(len(us), len(factors))`` float32: one matrix product."""
        c = self.config
        half, unit = self._unit()
        if half > 0:
            score = (self.mf.user_factors[us] * np.float32(0.5)) @ factors.T  # float32, like the factors
            np.tanh(score, out=score)
        else:
            score = np.zeros((len(us), factors.shape[0]), dtype=np.float32)
        peak = self.pop.peak()
        if c.w_pop and peak > 0:
            score += (pop * (c.w_pop / (peak * unit))).astype(np.float32)
        return score

    def _user_terms(self, us: np.ndarray, drops: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        """Co-occurrence terms and exclusions of the users ``us``, as ``(user, item)`` pairs.

        Returns ``(co_user, co_item, co_score, ex_user, ex_item)``; ``user``
        is a position in ``us``. Co-occurrence is normalised over the items
        that can be recommended: a user's own (seen) items are its
        strongest entries and would drown the rest.
        """
        parts, lens = [], []
        for u, drop in zip(us.tolist(), drops):
            seen = self._seen[u][: self._seen_n[u]]
            if drop is not None and drop.size:
                seen = np.concatenate([seen, drop])
            parts.append(seen)
            lens.append(seen.shape[0])
        ex_item = np.concatenate(parts)
        ex_user = np.repeat(np.arange(len(parts)), lens)
        co_user, co_item, co_val, peak = self.cooc.scores(self._recent[us], (ex_user, ex_item))
        c = self.config
        if c.w_cooc and co_val.size:
            # peak 0: all of that user's values are 0 (excluded); the floor keeps them 0
            co_val = co_val * (c.w_cooc / self._unit()[1] / np.maximum(peak, 1e-300))[co_user]
        else:
            co_user = co_item = np.zeros(0, dtype=np.int64)
            co_val = np.zeros(0)
        return co_user, co_item, co_val, ex_user, ex_item

    def _rank_exact(
        self, us: np.ndarray, k: int, drops: list[np.ndarray | None]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-``k`` of every item for each user in ``us``: one matrix product and one row-wise partition."""
        score = self._base_scores(us, self.mf.item_factors, self.pop.raw())
        co_user, co_item, co_val, ex_user, ex_item = self._user_terms(us, drops)
        half, unit = self._unit()
        if len(us) == 1:  # one user (the evaluation path): 1-D indexing costs less
            row = score[0]
            row[co_item] += co_val
            row[ex_item] = -math.inf
            top = _top_finite(row, k)
            return [(top, row[top].astype(np.float64) * unit + half)]
        score[co_user, co_item] += co_val  # a repeated pair carries the same value: exact
        score[ex_user, ex_item] = -math.inf
        n = score.shape[1]
        k = min(k, n)
        if k < n:
            top = np.argpartition(score, n - k, axis=1)[:, n - k :]
        else:
            top = np.broadcast_to(np.arange(n), score.shape)
        rows = np.arange(score.shape[0])[:, None]
        vals = score[rows, top]
        order = np.argsort(-vals, axis=1, kind="stable")
        top, vals = top[rows, order], vals[rows, order]
        finite = np.isfinite(vals).sum(axis=1).tolist()  # excluded items (-inf) sort last
        vals = vals.astype(np.float64) * unit + half
        return [(t[:n_ok], v[:n_ok]) for t, v, n_ok in zip(top, vals, finite)]

    def _rank_candidates(self, u: int, k: int, drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for one user over HNSW, co-occurrence and popular candidates, scored exactly."""
        c = self.config
        _, co_item, co_val, _, ex_item = self._user_terms(np.array([u]), [drop])
        self._ensure_index()
        query = self.index.query(self.mf.user_factors[u], c.candidates)
        cand = np.union1d(np.union1d(query, co_item), self.pop.top(c.candidates))
        row = self._base_scores(np.array([u]), self.mf.item_factors[cand], self.pop.raw()[cand])[0]
        row[np.searchsorted(cand, co_item)] += co_val
        row[np.isin(cand, ex_item)] = -math.inf
        top = _top_finite(row, k)
        half, unit = self._unit()
        return cand[top], row[top] * unit + half

    def _named(self, idx: np.ndarray, scores: np.ndarray) -> Ranked:
        names = self.items.names
        indexes = idx.tolist()
        return Ranked([names[j] for j in indexes], np.asarray(scores, dtype=np.float64).round(6).tolist(), indexes)


def _top_finite(score: np.ndarray, k: int) -> np.ndarray:
    """:func:`_top` without the excluded (-inf) items."""
    top = _top(score, k)
    return top[np.isfinite(score[top])]


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the ``k`` largest scores, best first."""
    n = score.shape[0]
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n:
        return np.argsort(-score, kind="stable")
    part = np.argpartition(-score, k - 1)[:k]
    return part[np.argsort(-score[part], kind="stable")]
