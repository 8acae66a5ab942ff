"""What a team without freshrec would run: popularity, item-kNN and batch MF.

Each baseline has the evaluation interface of :class:`Recommender`:
``top(user, k)`` (item indexes, seen items excluded) then ``learn(u, i, w, ts)``.
Users and items are dense indexes assigned by the evaluation loop.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

import numpy as np

from models.arrays import grow
from models.popularity import DecayedPopularity


class Seen:
    """Per-user sets of interacted items (the baselines exclude them too)."""

    def __init__(self) -> None:
        self.items: dict[int, set[int]] = {}

    def add(self, u: int, i: int) -> None:
        self.items.setdefault(u, set()).add(i)

    def filter(self, u: int, ranked: np.ndarray, k: int) -> np.ndarray:
        seen = self.items.get(u)
        if not seen:
            return ranked[:k]
        return np.array([i for i in ranked.tolist() if i not in seen][:k], dtype=np.int64)


class Popularity:
    """Most popular items (all-time, or decayed with ``half_life``), seen excluded."""

    def __init__(self, half_life: float = math.inf) -> None:
        self.pop = DecayedPopularity(half_life)
        self.seen = Seen()

    def top(self, u: int, k: int) -> np.ndarray:
        n_seen = len(self.seen.items.get(u, ()))
        return self.seen.filter(u, self.pop.top(k + n_seen), k)

    def learn(self, u: int, i: int, w: float, ts: float) -> None:
        self.pop.learn(i, w, ts)
        self.seen.add(u, i)


class ItemKNN:
    """Item-to-item kNN: co-occurrence with the user's last ``last`` items, cosine-normalised.

    Every event of a user with item ``i`` counts one co-occurrence of ``i``
    with each of that user's previous ``last`` items (both ways). A user's
    score for item ``c`` is the sum over their last items ``j`` of
    ``cooc(j, c) / sqrt(n_j n_c)``. With ``pop_weight`` it adds that much
    of the decayed popularity (scaled to at most 1) to every candidate and
    to the top popular items. Unknown users, and lists short of ``k``, get
    the popular list.
    """

    def __init__(self, last: int = 5, pop_weight: float = 0.0, half_life: float = math.inf) -> None:
        self.last = last
        self.pop_weight = pop_weight
        self.cooc: dict[int, dict[int, float]] = {}
        self.count = np.zeros(0)
        self.recent: dict[int, deque[int]] = {}
        self.fallback = Popularity(half_life)

    def top(self, u: int, k: int) -> np.ndarray:
        recent = self.recent.get(u)
        seen = self.fallback.seen.items.get(u, set())
        scores: dict[int, float] = {}
        if recent:
            count = self.count
            for j in set(recent):
                norm_j = math.sqrt(count[j])
                for c, n in self.cooc.get(j, {}).items():
                    if c not in seen:
                        scores[c] = scores.get(c, 0.0) + n / (norm_j * math.sqrt(count[c]))
        if self.pop_weight and scores:
            pop = self.fallback.pop
            values, peak = pop.scores(), pop.peak() or 1.0
            for c in pop.top(k + len(seen)).tolist():
                scores.setdefault(c, 0.0)
            scale = max(scores.values()) or 1.0
            scores = {c: v / scale + self.pop_weight * values[c] / peak for c, v in scores.items() if c not in seen}
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)[:k]
        if len(ranked) < k:
            extra = [i for i in self.fallback.top(u, k + len(ranked)).tolist() if i not in scores]
            ranked += extra[: k - len(ranked)]
        return np.array(ranked, dtype=np.int64)

    def learn(self, u: int, i: int, w: float, ts: float) -> None:
        recent = self.recent.setdefault(u, deque(maxlen=self.last))
        row = self.cooc.setdefault(i, {})
        for j in recent:
            if j != i:
                row[j] = row.get(j, 0.0) + 1.0
                other = self.cooc.setdefault(j, {})
                other[i] = other.get(i, 0.0) + 1.0
        if i >= self.count.size:
            self.count = grow(self.count, i + 1)
        self.count[i] += 1.0
        recent.append(i)
        self.fallback.learn(u, i, w, ts)


class FunkMFAlone:
    """River's ``FunkMF`` on its own: each event a positive (1.0) and ``negatives`` sampled items as 0.0.

    Negatives are drawn uniformly from the items seen so far (not the
    user's own). The list ranks every item by ``p_u . q_i``; a user the
    model has not met yet gets the popular list.
    """

    def __init__(self, factors: int = 32, lr: float = 0.05, l2: float = 0.01, negatives: int = 1, seed: int = 0):
        from river import optim, reco

        self.model = reco.FunkMF(n_factors=factors, optimizer=optim.SGD(lr), l2=l2, seed=seed)
        self.negatives = negatives
        self.rng = np.random.default_rng(seed)
        self.vectors = np.zeros((0, factors))
        self.n = 0
        self.fallback = Popularity()

    def top(self, u: int, k: int) -> np.ndarray:
        if u not in self.model.u_latents or not self.n:
            return self.fallback.top(u, k)
        scores = self.vectors[: self.n] @ self.model.u_latents[u]
        n_seen = len(self.fallback.seen.items.get(u, ()))
        kk = min(k + n_seen, scores.size)
        part = np.argpartition(-scores, kk - 1)[:kk]
        return self.fallback.seen.filter(u, part[np.argsort(-scores[part])], k)

    def learn(self, u: int, i: int, w: float, ts: float) -> None:
        if i >= self.n:
            self.n = i + 1
            self.vectors = grow(self.vectors, self.n)
        touched = [i]
        self.model.learn_one(u, i, 1.0)
        mine = self.fallback.seen.items.get(u, set())
        for j in self.rng.integers(0, self.n, self.negatives).tolist():
            if j != i and j not in mine:
                self.model.learn_one(u, j, 0.0)
                touched.append(j)
        for j in touched:
            self.vectors[j] = self.model.i_latents[j]
        self.fallback.learn(u, i, w, ts)


class BatchALS:
    """Implicit ALS (Hu, Koren, Volinsky 2008) retrained from scratch every ``every`` events.

    Between retrains the item factors are frozen. Without ``fold_in`` so is
    everything: new users get the popular list, new events change nothing
    (the nightly-batch job, compressed). With ``fold_in`` the user's vector
    is solved at query time from all their events so far against the
    frozen item factors (one ``factors`` x ``factors`` solve, as implicit's
    ``recalculate_user``), so new users and new events count at once.
    """

    def __init__(
        self,
        every: int = 5000,
        factors: int = 32,
        iters: int = 6,
        reg: float = 0.1,
        alpha: float = 10.0,
        seed: int = 0,
        fold_in: bool = False,
    ):
        self.fold_in = fold_in
        self.user_items: dict[int, dict[int, float]] = {}  # every event so far, for the fold-in
        self._gram = np.zeros((factors, factors))
        self.every = every
        self.factors = factors
        self.iters = iters
        self.reg = reg
        self.alpha = alpha
        self.rng = np.random.default_rng(seed)
        self.log: list[tuple[int, int, float]] = []
        self.user_f = np.zeros((0, factors))
        self.item_f = np.zeros((0, factors))
        self.fallback = Popularity()

    def top(self, u: int, k: int) -> np.ndarray:
        vec = self._folded(u) if self.fold_in else (self.user_f[u] if u < self.user_f.shape[0] else None)
        if vec is None or not vec.any():
            return self.fallback.top(u, k)
        scores = self.item_f @ vec
        n_seen = len(self.fallback.seen.items.get(u, ()))
        kk = min(k + n_seen, scores.size)
        part = np.argpartition(-scores, kk - 1)[:kk]
        return self.fallback.seen.filter(u, part[np.argsort(-scores[part])], k)

    def _folded(self, u: int) -> np.ndarray | None:
        mine = self.user_items.get(u)
        if not mine or not self.item_f.shape[0]:
            return None
        idx = np.fromiter((i for i in mine if i < self.item_f.shape[0]), dtype=np.int64)
        if not idx.size:
            return None
        conf = self.alpha * np.array([mine[i] for i in idx.tolist()])
        vecs = self.item_f[idx]
        a = self._gram + (vecs.T * conf) @ vecs
        return np.linalg.solve(a, (vecs.T * (1.0 + conf)).sum(axis=1))

    def learn(self, u: int, i: int, w: float, ts: float) -> None:
        if self.fold_in:
            mine = self.user_items.setdefault(u, {})
            mine[i] = mine.get(i, 0.0) + w
        self.log.append((u, i, w))
        self.fallback.learn(u, i, w, ts)
        if len(self.log) % self.every == 0:
            self._fit()

    def _fit(self) -> None:
        log = np.array(self.log)
        users, items, w = log[:, 0].astype(np.int64), log[:, 1].astype(np.int64), log[:, 2]
        n_u, n_i = users.max() + 1, items.max() + 1
        X = self.rng.normal(0, 0.01, (n_u, self.factors))
        Y = self.rng.normal(0, 0.01, (n_i, self.factors))
        by_user = _groups(users, items, w, n_u)
        by_item = _groups(items, users, w, n_i)
        for _ in range(self.iters):
            X = self._solve(Y, by_user)
            Y = self._solve(X, by_item)
        self.user_f, self.item_f = X, Y
        self._gram = Y.T @ Y + self.reg * np.eye(self.factors)

    def _solve(self, other: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        gram = other.T @ other + self.reg * np.eye(self.factors)
        out = np.zeros((len(groups), self.factors))
        for row, (idx, w) in enumerate(groups):
            if idx.size == 0:
                continue
            conf = self.alpha * w
            vecs = other[idx]
            a = gram + (vecs.T * conf) @ vecs
            out[row] = np.linalg.solve(a, (vecs.T * (1.0 + conf)).sum(axis=1))
        return out


def _groups(keys: np.ndarray, values: np.ndarray, w: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    order = np.argsort(keys, kind="stable")
    keys, values, w = keys[order], values[order], w[order]
    bounds = np.searchsorted(keys, np.arange(n + 1))
    return [(values[a:b], w[a:b]) for a, b in itertools.pairwise(bounds)]
