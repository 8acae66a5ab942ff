"""Ranking: every user list, similar-items list and the popular list, from the item side's current state.

The score itself is :class:`~models.blend.Blend`'s.

Up to ``exact_max_items`` items every item is scored: one matrix product
and one row-wise partition per block of users. Above it ranking is two
stages: candidates from several sources (HNSW neighbours of the user
vector, the co-occurrence rows of the user's recent items, the most
popular and the trending items, items newer than the index, the newest
cold items whose catalogue features match the user's content profile),
then the exact blend over the candidates only, so the cost of a list
hardly grows with the catalogue. Co-occurrence entries that bounds show
cannot reach a list are dropped before they are scored, and the index is
queried only for the users whose other candidates do not already beat a
bound on every item they leave out (:meth:`Ranker._two_stage`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from models.arrays import unique_sorted
from models.blend import EMPTY, Blend, Ranked
from models.candidates import MARGIN, Block, Candidates
from models.config import ModelConfig
from models.ids import item_key
from models.index import BackgroundIndex
from models.items import ItemState, Replica
from models.mf import user_vectors
from models.topk import top_finite, top_k_rows
from models.users import UserView

BLOCK = 64  # users ranked per matrix product (a 64 x 20k float32 block is 5 MB)


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
        self.blend = Blend(config, replica)
        c = config
        self.index = BackgroundIndex(
            c.index_m, c.index_ef_construction, c.index_ef, c.index_rebuild_s, c.seed, c.index_part_items
        )
        self._factors_changed = False
        self.candidates = Candidates(config, self.blend, self.index, self.blocked)
        self._blocked_keys: set[int] = set()  # items (keys) the catalogue took away
        self._blocked = np.zeros(0, dtype=np.bool_)  # the same by dense item, for the first len(...) items
        self._blocked_idx = np.zeros(0, dtype=np.int64)

    @property
    def state(self) -> ItemState:
        return self.blend.state

    @property
    def ready(self) -> bool:
        return self.replica.state is not None

    def two_stage(self) -> bool:
        """Whether lists come from candidates: the catalogue is past ``exact_max_items``.

        Until the first index is built (after a start, a build of a 1M-item
        catalogue takes minutes) the other sources and the newest items stand
        in for the index: scoring every item instead cost 2.5 ms a list at 1M.
        """
        return len(self.state) > self.config.exact_max_items

    def set_available(self, blocked: np.ndarray, allowed: np.ndarray) -> None:
        """Item keys the lists must leave out from now on (``blocked``) or may hold again (``allowed``)."""
        self._blocked_keys.difference_update(allowed.tolist())
        self._blocked_keys.update(blocked.tolist())
        if self._blocked.size:  # the items known so far, by dense id; new ones are looked up as they come
            for keys, value in ((allowed, False), (blocked, True)):
                dense = self.state.dense(keys)
                dense = dense[(dense >= 0) & (dense < self._blocked.shape[0])]
                self._blocked[dense] = value
            self._blocked_idx = np.flatnonzero(self._blocked)

    @property
    def blocked_count(self) -> int:
        return len(self._blocked_keys)

    def is_blocked(self, key: int) -> bool:
        return key in self._blocked_keys

    def blocked(self) -> np.ndarray:
        """Dense items the lists must leave out (sorted); computed for new items as the catalogue grows."""
        if not self._blocked_keys:
            return self._blocked_idx[:0]
        keys = self.state.keys.keys
        n, have = len(self.state), self._blocked.shape[0]
        if have < n:
            wanted = np.fromiter(self._blocked_keys, dtype=np.int64, count=len(self._blocked_keys))
            self._blocked = np.concatenate([self._blocked, np.isin(keys[have:n], wanted)])
            self._blocked_idx = np.flatnonzero(self._blocked)
        return self._blocked_idx

    def set_content(self, keys: np.ndarray, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Catalogue features of items by key (``models.content.features``); they count from the next list on."""
        self.blend.content.set(keys.tolist(), rows)

    def changed(self, rows: np.ndarray) -> None:
        """Tell the ranker the factors of dense ``rows`` moved (an applied delta): the index is due for a rebuild."""
        self._factors_changed = True
        self.candidates.moved(rows)

    def maintain(self) -> bool:
        """Swap in a finished index build, start one if due; True when a new index was swapped in."""
        s = self.state
        if len(s) <= self.config.exact_max_items and not self.index.ready:
            return False
        swapped = self.index.poll(s.mf.item_factors, self._factors_changed)
        self._factors_changed = False  # the index keeps when they last moved
        return swapped

    # ------------------------------------------------------------------ users

    def rank(self, views: Sequence[UserView], k: int, exact: bool | None = None) -> list[Ranked]:
        """Top-``k`` of each user, in order (``exact``: force, or forbid, scoring every item)."""
        if not views:
            return []
        two_stage = self.two_stage() if exact is None else not exact
        if len(views) == 1 and not two_stage:
            return [self._exact_one(views[0], k)]  # the evaluation's path: 1-D arrays cost less
        out: list[Ranked] = []
        for start in range(0, len(views), BLOCK):
            chunk = views[start : start + BLOCK]
            block = self._block(chunk)
            out += self._two_stage(block, k) if two_stage else self._exact(block, k)
        return out

    def unknown_history(self, views: Sequence[UserView]) -> list[bool]:
        """For each user, whether some recent item is not known here yet (the learner has not broadcast it)."""
        if not views:
            return []
        recent = np.concatenate([v.recent for v in views])
        missing = (recent >= 0) & (self.state.dense(recent) < 0)
        rows: list[bool] = np.asarray(missing.reshape(len(views), -1).any(axis=1)).tolist()
        return rows

    def vectors(self, views: Sequence[UserView]) -> np.ndarray:
        """The users' vectors (recency-weighted history factors), ``(len(views), n_factors)``."""
        s = self.state
        recent = s.dense(np.concatenate([v.recent for v in views])).reshape(len(views), -1)
        return user_vectors(recent, s.mf.history_factors.matrix, s.mf.weights)

    def _block(self, views: Sequence[UserView]) -> Block:
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
            co_val = co_val * (c.w_cooc / self.blend.unit()[1] / np.maximum(peak, 1e-300))[co_user]
        else:
            co_user = co_item = np.zeros(0, dtype=np.int64)
            co_val = np.zeros(0)
        profiles = self.blend.content.profiles(recent, s.mf.weights) if self.blend.uses_content() else None
        return Block(vectors, co_user, co_item, co_val, ex_user, ex_item, profiles)

    def _exact(self, b: Block, k: int, popularity: bool = True) -> list[Ranked]:
        score = self.blend.base_scores(b.vectors, None, popularity, b.profiles)
        score[b.co_user, b.co_item] += b.co_val  # a repeated pair carries the same value: exact
        score[b.ex_user, b.ex_item] = -math.inf
        score[:, self.blocked()] = -math.inf
        tops = top_k_rows(score, k)
        rows = np.repeat(np.arange(len(tops)), [t.shape[0] for t in tops])
        return self.blend.named_many(tops, score[rows, np.concatenate(tops)] if tops else np.zeros(0))

    def _exact_one(self, view: UserView, k: int) -> Ranked:
        """:meth:`_exact` for one user, with 1-D arrays."""
        s, c = self.state, self.config
        get = s.keys.get
        recent = np.array([get(key, -1) if key >= 0 else -1 for key in view.recent.tolist()], dtype=np.int64)
        seen = s.dense(view.seen)
        seen = seen[seen >= 0]
        vector = s.mf.user_vector(recent)
        profile = self.blend.content.profiles(recent[None, :], s.mf.weights) if self.blend.uses_content() else None
        row = self.blend.base_scores(vector[None, :], None, True, profile)[0]
        if c.w_cooc:
            co = s.cooc.dense_scores(recent[-c.window :].tolist(), row.shape[0], seen)
            peak = co.max(initial=0.0)
            if peak > 0:
                row += (co * (c.w_cooc / self.blend.unit()[1] / peak)).astype(np.float32)
        row[seen] = -math.inf
        row[self.blocked()] = -math.inf
        top = top_finite(row, k)
        return self.blend.named(top, row[top])

    def _two_stage(self, b: Block, k: int, popularity: bool = True) -> list[Ranked]:
        """Each user's top ``k`` over the candidates; the index only for users the bound does not clear.

        First the co-occurrence, popular, trending and content candidates
        are scored. A user whose ``k``-th best of them beats
        :meth:`~models.candidates.Candidates.bound` already has the exact
        top ``k``; the others are scored again with the index and the items
        outside it. When the bound clears few users, all go straight to the
        full set.
        """
        c = self.candidates
        b = c.prune(b, k, popularity)
        popular, trending, _ = c.shared()
        shared = np.concatenate([popular, trending]) if popularity else popular[:0]
        content = c.content(b)
        if not c.bound_pays():
            reach = c.reach(b)
            picked, scores, kth = self._tops(b, [reach["index"], reach["fresh"], content], shared, k, popularity)
            c.count(kth < c.bound(b, popularity) + MARGIN)  # what the bound would have cleared: when to try it again
        else:
            picked, scores, kth = self._tops(b, [content], shared, k, popularity)
            need = kth < c.bound(b, popularity) + MARGIN  # -inf: fewer than k candidates
            c.count(need)
            rows = np.flatnonzero(need)
            if rows.size:
                sub = b.subset(rows)
                reach = c.reach(sub)
                more = self._tops(sub, [reach["index"], reach["fresh"], content[rows]], shared, k, popularity)
                for j, r in enumerate(rows.tolist()):
                    picked[r], scores[r] = more[0][j], more[1][j]
        return self.blend.named_many(picked, np.concatenate(scores) if scores else np.zeros(0))

    def sources(self, views: Sequence[UserView]) -> list[dict[str, set[int]]]:
        """Which source proposed which candidates (dense items), per user (tests and benchmarks)."""
        b = self._block(views)
        c = self.candidates.of(b)
        co_at = np.searchsorted(b.co_user, np.arange(len(views) + 1))
        return [
            {
                "index": set(c["index"][u].tolist()),
                "fresh": set(c["fresh"][u].tolist()),
                "content": set(c["content"][u].tolist()),
                "cooc": set(b.co_item[co_at[u] : co_at[u + 1]].tolist()),
                "popular": set(c["popular"].tolist()),
                "trending": set(c["trending"].tolist()),
            }
            for u in range(len(views))
        ]

    def _tops(
        self, b: Block, per_user: list[np.ndarray], shared: np.ndarray, k: int, popularity: bool
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """The exact blend over each user's candidates only, for the whole block in a few array operations.

        ``per_user`` are ``(users, m)`` candidate matrices, ``shared`` the
        candidates of every user; the co-occurrence entries of ``b`` are
        candidates too. Candidates are ``user * n + item`` keys, sorted and
        deduplicated; each is scored once. Returns each user's best ``k``
        (dense items, scores) and the ``k``-th best score (``-inf`` for a
        user with fewer than ``k``).
        """
        s = self.state
        n = len(s)
        users = b.vectors.shape[0]
        rows = np.arange(users)
        keys = [(rows[:, None] * n + m).ravel() for m in per_user if m.shape[1]]
        keys += [(rows[:, None] * n + shared[None, :]).ravel(), b.co_user * n + b.co_item]
        key = unique_sorted(np.concatenate(keys))
        user, item = np.divmod(key, n)
        score = self.blend.pair_scores(b.vectors, user, item, popularity, b.profiles)
        if b.co_val.size:
            score[np.searchsorted(key, b.co_user * n + b.co_item)] += b.co_val.astype(np.float32)
        if b.ex_item.size:
            ex = b.ex_user * n + b.ex_item
            pos = np.minimum(np.searchsorted(key, ex), key.shape[0] - 1)
            score[pos[key[pos] == ex]] = -math.inf
        blocked = self.blocked()
        if blocked.size:
            score[np.isin(item, blocked)] = -math.inf
        starts = np.searchsorted(user, np.arange(users + 1))
        width = int((starts[1:] - starts[:-1]).max()) if users else 0
        table = np.full((users, width), -math.inf, dtype=np.float32)
        table[user, np.arange(key.shape[0]) - starts[user]] = score
        tops = top_k_rows(table, k)
        picked = [item[starts[r] + t] for r, t in enumerate(tops)]
        scores = [table[r, t] for r, t in enumerate(tops)]
        kth = np.array([v[k - 1] if v.shape[0] >= k else -math.inf for v in scores])
        return picked, scores, kth

    # ------------------------------------------------------ popular, similar

    def popular(self, k: int, exclude: Sequence[str] = ()) -> Ranked:
        """The ``k`` most popular items now (decayed), scores relative to the most popular."""
        s = self.state
        raw = s.pop.raw()
        if raw.size == 0:
            return EMPTY
        drop = np.array([d for d in (s.keys.get(item_key(x)) for x in exclude) if d is not None], dtype=np.int64)
        drop = np.union1d(drop, self.blocked())
        top = s.pop.top(k + drop.shape[0])
        if drop.size:
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
        two_stage = self.two_stage()
        scale = c.w_cooc / self.blend.unit()[1]
        for start in range(0, len(items), BLOCK):
            chunk = items[start : start + BLOCK]
            rows = [s.cooc.row(i) for i in chunk.tolist()]
            lens = [r[0].shape[0] for r in rows]
            co_item = np.concatenate([r[0] for r in rows]) if sum(lens) else np.zeros(0, dtype=np.int64)
            co_val = np.concatenate([r[1] / r[1].max() for r in rows if r[1].size]) if sum(lens) else np.zeros(0)
            if not c.w_cooc:
                co_item, co_val, lens = np.zeros(0, dtype=np.int64), np.zeros(0), [0] * len(chunk)
            b = Block(
                s.mf.history_factors.data[chunk],
                np.repeat(np.arange(len(chunk)), lens),
                co_item,
                co_val * scale,
                np.arange(len(chunk)),
                chunk,
                self.blend.content.item_profiles(chunk) if self.blend.uses_content() else None,
            )
            if two_stage:
                yield from self._two_stage(b, k, popularity=False)
            else:
                yield from self._exact(b, k, popularity=False)
