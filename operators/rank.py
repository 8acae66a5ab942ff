"""The rank step: one ranker per worker ranks its shard's users and writes the lists.

A ranker keeps a replica of the item side (``models/items.py``), current
to within one learner broadcast, and its own HNSW index. It ranks the
users of every :class:`~operators.users.RankBatch` of its shard, checks the
live hit-rate before it does, and on a timer refreshes the similar-items
lists of its share of the items (``item key % workers``) and, on worker 0,
the popular list. Its state is derived from the learner's and is not
snapshotted: after a restart the learner's first delta rebuilds it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

import numpy as np
from bytewax.operators import StatefulBatchLogic

from models.config import ModelConfig
from models.items import ItemDelta, Replica
from models.ranking import Ranker
from models.served import ServedLists
from operators.catalogue import Availability
from operators.feeds import Feed
from operators.learn import Broadcast
from operators.routing import shard_of
from operators.rules import RuleBook, UserFacts
from operators.users import RankBatch, RankItem
from state import metrics
from state.keys import ITEM, POPULAR, USER
from state.redis_store import ListWrite

HIT_K = 10  # the live metric is hit-rate@10
_CATCH_UP_S = 0.25  # next refresh tick while similar-items lists are pending (at the soonest)
_REFRESH_SHARE = 0.05  # most share of the worker the refresh ticks take while lists are pending
_BEHIND_S = 0.05  # events this old when ranked: the worker is behind, and similar-items lists wait
_HIT_WINDOW = 10_000
_SETTLE = 4096  # provisional users ranked again per tick at most
_REFRESH_TAKE = 2048  # similar-items lists a refresh takes from the pending ones at most (it stops at its budget)
_PROVISIONAL_MAX = 100_000


@dataclass(frozen=True)
class ServeConfig:
    """What the rankers write.

    Parameters
    ----------
    k
        Length of each user's list.
    popular_n
        Length of the popular list.
    similar_k
        Length of each similar-items list.
    refresh_s
        Seconds between refreshes of the popular and similar-items lists.
    refresh_budget_s
        Most seconds of similar-items work per timer tick: the lists of
        changed items are refreshed in blocks until the budget is spent,
        and the rest follow on ticks at least ``_CATCH_UP_S`` apart that
        take at most ``_REFRESH_SHARE`` of the worker, so a refresh never
        stalls the event path for long. While the worker is behind
        (the newest event of the last batch ranked was over ``_BEHIND_S``
        old), only one block per ``refresh_s`` is refreshed: user lists
        come first.
    """

    k: int = 20
    popular_n: int = 100
    similar_k: int = 20
    refresh_s: float = 2.0
    refresh_budget_s: float = 0.02


class _HitWindow:
    """The live hit-rate over the last checks of every ranker of this process."""

    def __init__(self) -> None:
        self._hits = np.zeros(_HIT_WINDOW, dtype=np.bool_)
        self._n = 0
        self._lock = threading.Lock()

    def add(self, hits: list[bool]) -> None:
        with self._lock:
            for hit in hits:
                self._hits[self._n % _HIT_WINDOW] = hit
                self._n += 1
            metrics.HIT_RATE.set(float(self._hits[: min(self._n, _HIT_WINDOW)].mean()))


_HITS = _HitWindow()


class RankerLogic(StatefulBatchLogic[RankBatch | Broadcast, ListWrite, None]):
    """Apply item deltas and catalogue changes, rank user batches, refresh item and popular lists.

    Its shard (worker) index comes with its first value.
    """

    def __init__(
        self,
        workers: int,
        config: ModelConfig,
        serve: ServeConfig,
        rules: str = "",
        side: Sequence[Feed] = (),
        bounds: Sequence[float] = (),
    ) -> None:
        self.shard = -1
        self.book = RuleBook(rules)  # business rules, user attributes, item facts
        self._side = [f.subscribe() for f in side]  # changes of the catalogue and the user attributes
        self._bounds = list(bounds)
        self.workers = workers
        self.serve = serve
        self.replica = Replica()
        self.ranker = Ranker(config, self.replica)
        self._lists = ServedLists(serve.k)  # user lists last written, by shard row (the live hit-rate, rewrites)
        self._similar = ServedLists(serve.similar_k)  # similar-items lists last written, by dense item
        self._waiting: list[RankBatch] = []  # until the first delta brings the item state
        # A user is ranked as soon as their events arrive, before the learner
        # has learned them (it sees every shard's events and broadcasts what
        # changed every broadcast_s). That is fine for items the replica
        # knows, but a list ranked with recent items the replica does not
        # know yet (new items in flight) is provisional: once a delta
        # includes the user's batch, the user is ranked again. So is a list
        # that came out short (a young catalogue), once the catalogue grows.
        # A few thousand per tick at most; the oldest are dropped past a bound
        # (the user's next events rank them anyway).
        self._learned = 0  # this shard's last batch the replica includes
        self._provisional: dict[int, tuple[int, int, RankItem]] = {}  # row -> (batch seq, items then, item)
        self._pending: dict[int, None] = {}  # items (dense) whose similar-items lists are due, oldest first
        self._popular_due = False
        self._next_refresh = datetime.now(UTC) + timedelta(seconds=serve.refresh_s)
        self._behind = False  # the last batch ranked had waited over _BEHIND_S

    @metrics.timed("rank", "on_batch")
    def on_batch(self, values: list[RankBatch | Broadcast]) -> tuple[list[ListWrite], bool]:
        batches = self._waiting
        for v in values:
            self.shard = v.shard
            if isinstance(v, Broadcast):
                self._apply(v.delta)
                self._learned = v.learned.get(self.shard, 0)
            else:
                batches.append(v)
        if not self.ranker.ready:
            return [], StatefulBatchLogic.RETAIN
        self._waiting = []
        writes = self._side_changes()
        for b in batches:
            if b.kind == "rules" and self.book.file is not None:
                self.book.file.check()  # the shard saw a new version: rank with it
            writes += self._rank(b.users, seq=b.seq, kind=b.kind)
        writes += self._settle()
        self._maintain()
        return writes, StatefulBatchLogic.RETAIN

    def _side_changes(self) -> list[ListWrite]:
        """Apply what the catalogue and user-attribute feeds brought since the last call."""
        blocked = []
        for q in self._side:
            while not q.empty():
                v = q.get_nowait()
                if isinstance(v, Availability):
                    self.ranker.set_available(v.blocked, v.allowed)
                    self.ranker.set_content(v.keys, v.features)
                    self.book.learn_items(v.facts)
                    metrics.UNAVAILABLE.set(self.ranker.blocked_count)
                    blocked.append(v.blocked)
                elif isinstance(v, UserFacts):
                    self.book.learn_users(v, self._mine)
        return self._take_away(np.concatenate(blocked)) if blocked else []

    def _mine(self, user: str) -> bool:
        """Whether ``user`` belongs to this ranker's shard (every user until the shard is known)."""
        return not self._bounds or self.shard < 0 or shard_of(user, self._bounds) == self.shard

    def _take_away(self, items: np.ndarray) -> list[ListWrite]:
        """Stored lists without the item keys ``items`` (the catalogue took them away), and the popular list anew.

        Lists ranked from now on leave them out (``Ranker.blocked``); the
        ones already in Redis are rewritten here, at once, from the copies
        kept of them: the items after it move up, the list is one shorter
        until its owner is ranked again.
        """
        if not items.size:
            return []
        state, now = self.ranker.state, time.time()
        writes = []
        for kind, lists in ((USER, self._lists), (ITEM, self._similar)):
            changed = lists.without(items)
            metrics.LIST_REWRITES.labels(kind).inc(len(changed))
            names = state.names
            for owner, lst, event_ts in changed:
                dense = state.dense(np.array(lst.keys, dtype=np.int64)).tolist()
                # a pinned item may be one the model does not know yet
                shown = [names[j] if j >= 0 else self.book.name_of(key) or "" for j, key in zip(dense, lst.keys)]
                writes.append(ListWrite(kind, owner, shown, lst.scores, event_ts, now))
        self._popular_due = True
        if self.shard == 0:
            writes += self.refresh_lists(similar=False)
        return writes

    def _settle(self) -> list[ListWrite]:
        """Rank again the provisional users whose events the replica now includes (oldest first, bounded)."""
        n = len(self.ranker.state)
        due: list[tuple[int, RankItem]] = []
        for scanned, (row, (seq, items, item)) in enumerate(self._provisional.items()):
            if seq > self._learned or len(due) >= _SETTLE or scanned >= 4 * _SETTLE:
                break  # in batch order: the rest are newer
            if items < n:  # a short list waits for the catalogue to grow (-1: a full list, due once learned)
                due.append((row, item))
        for row, _ in due:
            del self._provisional[row]
        while len(self._provisional) > _PROVISIONAL_MAX:
            del self._provisional[next(iter(self._provisional))]
        return self._rank([item for _, item in due], seq=None) if due else []

    def _maintain(self) -> None:
        """Keep the index current (swap a finished build, insert new items, start a build) and report it."""
        index = self.ranker.index
        was_building = index.building
        if self.ranker.maintain():
            metrics.INDEX_BUILDS.inc()
            metrics.INDEX_BUILD_SECONDS.observe(index.last_build_s)
            metrics.INDEX_SWAP_SECONDS.observe(index.last_swap_s)
        if index.building != was_building:
            metrics.INDEX_BUILDING.inc(1 if index.building else -1)
        lists = self.ranker.candidates.lists
        for path, n in lists.items():
            if n:
                metrics.TWO_STAGE_LISTS.labels(path).inc(n)
                lists[path] = 0
        if index.ready:
            metrics.INDEX_ITEMS.labels(str(self.shard)).set(index.size)
            metrics.INDEX_BYTES.labels(str(self.shard)).set(index.memory_bytes)

    def _apply(self, delta: ItemDelta) -> None:
        self.replica.apply(delta)
        if self.replica.state is None:
            return
        self.ranker.changed(delta.rows)
        keys = self.replica.state.keys.keys
        # items with events, and items new to the replica (listed by the catalogue before any event)
        due = np.union1d(delta.active, np.arange(delta.first, delta.first + len(delta.names)))
        mine = due[keys[due] % self.workers == self.shard]
        for i in mine.tolist():
            self._pending[i] = None
        self._popular_due = self._popular_due or bool(delta.active.size)

    def _rank(self, items: list[RankItem], seq: int | None, kind: str = "event") -> list[ListWrite]:
        """Rank users of batch ``seq``: their events count for the live hit-rate first; None: a settling.

        ``kind`` "rules": users the shard sends again after a rules change
        (no events); those the changed rules apply to get the new rules over
        the pool the model gave them last (``RuleBook.pooled``: only the rules
        changed, so the model is not run again; a user without a kept pool,
        as after a restart, is ranked in full), and their lists keep the
        event time they were written with.
        """
        rows = [item.view.row for item in items]
        served = self._lists.keys
        if kind == "rules":  # only the users the changed rules apply to
            affected = self.book.affected([it.view.user for it in items]) if self.book.file is not None else []
            items = [it for it, yes in zip(items, affected) if yes]
            if not items:
                return []
            rows = [item.view.row for item in items]
            known = self._lists.event_ts
            items = [it._replace(event_ts=float(known[r]) if r < known.shape[0] else 0.0) for it, r in zip(items, rows)]
        hits = []
        if seq is not None:
            for item, row in zip(items, rows):
                if row < served.shape[0] and served[row, 0] >= 0:
                    top = served[row, :HIT_K]
                    hits += [key in top for key in item.items]
        k = self.serve.k
        views = [item.view for item in items]
        users = [v.user for v in views]
        kept = self.book.pooled(rows, self.ranker.state, self.ranker.blocked()) if kind == "rules" else []
        model = [i for i in range(len(items)) if not kept or kept[i] is None]
        fresh = self.ranker.rank([views[i] for i in model], self.book.pool(k))
        more = iter(fresh)  # in the order of ``model``
        ranked = [r if r is not None else next(more) for r in kept] if kept else fresh
        self.book.remember([rows[i] for i in model], [users[i] for i in model], fresh, k)
        if self.book.active:
            ranked = self.book.apply(users, [v.seen for v in views], ranked, self.ranker.is_blocked, time.time(), k)
        metrics.RANKINGS.labels(kind if seq is not None else "settle").inc(len(items))
        n = len(self.ranker.state)
        unknown = self.ranker.unknown_history([views[i] for i in model])
        for i, missing in zip(model, unknown):  # a list from a kept pool keeps its provisional state
            item, r = items[i], ranked[i]
            self._provisional.pop(item.view.row, None)  # this ranking supersedes an earlier provisional one
            short = len(r.items) < self.serve.k
            if missing or short:
                mark = n if short else -1  # settled once learned (-1), or once learned and grown (n)
                self._provisional[item.view.row] = (seq or self._learned, mark, item._replace(source_ts=()))
        now = time.time()
        if seq is not None and kind == "event":
            newest = max((max(item.source_ts) for item in items if item.source_ts), default=now)
            self._behind = now - newest > _BEHIND_S
        if kind == "rules":  # a list the new rules leave as it was is not written again
            changed = np.flatnonzero(~self._lists.unchanged(rows, ranked)).tolist()
            items, rows = [items[i] for i in changed], [rows[i] for i in changed]
            users, ranked = [users[i] for i in changed], [ranked[i] for i in changed]
        self._lists.record_each(rows, users, ranked, [item.event_ts for item in items])
        writes = []
        for item, user, r in zip(items, users, ranked):
            writes.append(ListWrite(USER, user, r.items, r.scores, item.event_ts, now, item.source_ts))
        if hits:
            metrics.PREQ_CHECKS.inc(len(hits))
            metrics.PREQ_HITS.inc(sum(hits))
            _HITS.add(hits)
        return writes

    @metrics.timed("rank", "on_notify")
    def on_notify(self) -> tuple[list[ListWrite], bool]:
        if self.book.file is not None:
            self.book.file.check()  # a changed rules file applies to the lists ranked from now on
        writes = []
        t0 = time.perf_counter()
        if self.ranker.ready:
            budget = 0.0 if self._behind else self.serve.refresh_budget_s  # behind: one block
            writes = self._side_changes() + self.refresh_lists(budget=budget) + self._settle()
            self._maintain()
        # While lists are pending the ticks come sooner, but take at most _REFRESH_SHARE of
        # the worker: at 1M items they never catch up, and a tick every 0.25 s took a tenth
        # of a worker that was 90% busy, with each tick a 20-40 ms wait for the events behind it.
        spent = time.perf_counter() - t0
        pending = self._pending and not self._behind
        wait = max(_CATCH_UP_S, spent / _REFRESH_SHARE) if pending else self.serve.refresh_s
        self._next_refresh = datetime.now(UTC) + timedelta(seconds=wait)
        return writes, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[ListWrite], bool]:
        writes = []
        if self.ranker.ready:
            while self._pending or self._popular_due:
                writes += self.refresh_lists()
        return writes, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime:
        return self._next_refresh

    def refresh_lists(self, similar: bool = True, budget: float | None = None) -> list[ListWrite]:
        """The popular list (worker 0), then similar-items lists of changed items within the time budget.

        Oldest changes first; items changed again while waiting keep their place.
        """
        s = self.serve
        state = self.ranker.state
        now = state.pop.now
        writes = []
        if self._popular_due and self.shard == 0:
            top = self.ranker.popular(s.popular_n)
            writes.append(ListWrite(POPULAR, "", top.items, top.scores, now, time.time()))
        self._popular_due = False
        if not self._pending or not similar:
            return writes
        deadline = time.perf_counter() + (s.refresh_budget_s if budget is None else budget)
        names = state.names
        # At most _REFRESH_TAKE of them: at 1M items hundreds of thousands wait, and
        # copying them all at every tick took a third of the worker at 1,000 events/s.
        pending = list(islice(self._pending, _REFRESH_TAKE))
        block = 64
        done_items: list[int] = []
        lists = []
        for done, (i, sim) in enumerate(zip(pending, self.ranker.similar(np.array(pending), s.similar_k)), 1):
            writes.append(ListWrite(ITEM, names[i], sim.items, sim.scores, now, time.time()))
            del self._pending[i]
            done_items.append(i)
            lists.append(sim)
            if done % block == 0 and time.perf_counter() > deadline:
                break  # a block's lists are computed together; stop between blocks
        self._similar.record(done_items, [names[i] for i in done_items], lists, now)
        return writes

    def snapshot(self) -> None:
        return None  # derived from the learner's state, rebuilt by its first delta after a restart
