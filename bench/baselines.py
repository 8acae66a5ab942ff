"""What a team without freshrec would run: popularity and periodic batch MF.

Each baseline has the evaluation interface of :class:`Recommender`:
``top(user, k)`` (item indexes, seen items excluded) then ``learn(u, i, w, ts)``.
Users and items are dense indexes assigned by the evaluation loop.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

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


class BatchALS:
    """Implicit ALS (Hu, Koren, Volinsky 2008) retrained from scratch every ``every`` events.

    Between retrains the model is frozen: new users get the popular list,
    new events change nothing. This is the nightly-batch job, compressed.
    """

    def __init__(
        self, every: int = 5000, factors: int = 32, iters: int = 6, reg: float = 0.1, alpha: float = 10.0, seed: int = 0
    ):
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
        if u >= self.user_f.shape[0] or not self.user_f[u].any():
            return self.fallback.top(u, k)
        scores = self.item_f @ self.user_f[u]
        n_seen = len(self.fallback.seen.items.get(u, ()))
        kk = min(k + n_seen, scores.size)
        part = np.argpartition(-scores, kk - 1)[:kk]
        return self.fallback.seen.filter(u, part[np.argsort(-scores[part])], k)

    def learn(self, u: int, i: int, w: float, ts: float) -> None:
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
