"""The user step: each shard (one per worker) applies its users' events and hands them on.

:func:`route` parses each input batch and groups its events by shard.
Every event updates its user's recent and seen items at once. Per batch
the shard emits one :class:`~models.users.LearnBatch` for the item-side
learner and one :class:`RankBatch` for the ranker of its own worker, so
a user's new list never waits for the learner.

When the rules file changes (and loads), the shard sends every one of its
users to its ranker again (which ranks again those the changed rules apply
to, ``RuleBook.affected``), in the background, in batches ``_RERANK_TICK_S``
apart between event batches, so the lists in Redis obey the new rules
without waiting for each user's next event. The batches yield to events:
a batch is as large as ``rerank_per_s`` allows, but halves whenever the
events the shard last applied were more than ``_RERANK_LAG_S`` old (they
queued behind the re-rank) or the worker came back to the shard more than
``_RERANK_LATE_S`` late (it was busy), and grows again by a quarter when
neither. So a re-rank takes the worker's spare time, not the events'.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
from bytewax.operators import StatefulBatchLogic

from models.attribution import Attributor
from models.config import ModelConfig
from models.event import Event, Impression
from models.users import LearnBatch, UserTable, UserView
from operators.parse import Message, ParseConfig, parse
from operators.routing import shard_of
from operators.rules import RulesFile
from operators.snapshots import Snapshots, checkpoint
from state import metrics
from state.journal import Journal, Manifest

log = logging.getLogger(__name__)

_RERANK_TICK_S = 0.025  # between background re-rank batches after a rules change
_RERANK_LATE_S = 0.02  # a re-rank tick this late halves the next batch
_RERANK_LAG_S = 0.05  # ... and so do events this old (Kafka timestamp to the shard) in the last batch
_RERANK_MIN = 16  # users per re-rank batch at least
_RULES_CHECK_S = 1.0  # the rules file is looked at this often


class EventBatch(NamedTuple):
    """The events and impressions of one input batch that belong to one shard, each in order.

    Between processes the events travel as columns: one pickle of a few
    lists instead of one object per event.
    """

    events: list[Event]
    impressions: list[Impression]

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        ev = self.events
        return _events, (
            [e.user for e in ev],
            [e.item for e in ev],
            [e.kind for e in ev],
            np.array([e.weight for e in ev]),
            np.array([e.ts for e in ev]),
            np.array([e.source_ts for e in ev]),
            [e.value for e in ev],
            self.impressions,
        )


def _events(users, items, kinds, weights, ts, source_ts, values, impressions) -> EventBatch:  # type: ignore[no-untyped-def]
    return EventBatch(
        [Event(*f) for f in zip(users, items, kinds, weights.tolist(), ts.tolist(), source_ts.tolist(), values)],
        impressions,
    )


def route(messages: list[Message], config: ParseConfig, keys: list[str], bounds: list[float]) -> list[object]:
    """Parse a batch of messages: the rejected ones, then one ``(shard key, EventBatch)`` per shard reached.

    Impressions are counted (``freshrec_impressions_total``, items shown, and
    ``freshrec_events_total{outcome="impression"}``) and go to their user's
    shard for attribution only: the model learns from interactions alone.
    """
    out: list[object] = []
    shards: dict[int, EventBatch] = {}

    def batch_of(user: str) -> EventBatch:
        shard = shard_of(user, bounds)
        batch = shards.get(shard)
        if batch is None:
            batch = shards[shard] = EventBatch([], [])
        return batch

    for m in messages:
        got = parse(m.value, m.ts, config)
        if isinstance(got, Event):
            batch_of(got.user).events.append(got)
        elif isinstance(got, Impression):
            metrics.IMPRESSIONS.labels(got.list_kind).inc(len(got.items))
            metrics.EVENTS.labels("impression", "").inc()
            batch_of(got.user).impressions.append(got)
        else:
            out.append(got)
    out += [(keys[shard], batch) for shard, batch in shards.items()]
    return out


class RankItem(NamedTuple):
    """One user to rank: their state after the batch, and the batch's events of theirs."""

    view: UserView
    items: tuple[int, ...]  # item keys of the events (the live hit-rate checks them before ranking)
    event_ts: float  # newest event time
    source_ts: tuple[float, ...]  # Kafka timestamps of the events (freshness)


class RankBatch(NamedTuple):
    """The ranker's share of one user-step batch: each touched user once ("rules": a re-rank after a rules change)."""

    shard: int
    seq: int  # the shard's batch number (the same as the LearnBatch's)
    users: list[RankItem]
    kind: str = "event"


class ToLearn(NamedTuple):
    """The learner's share of one user-step batch, numbered so the rankers know when it is learned."""

    shard: int
    seq: int
    batch: LearnBatch


class UserShardLogic(StatefulBatchLogic[EventBatch, ToLearn | RankBatch, Manifest | None]):
    """One shard of the user side; its snapshot is a journal manifest (``state/journal.py``).

    Bytewax builds a logic without telling it its key: a shard learns its
    index from its first event (or its snapshot).
    """

    def __init__(
        self,
        config: ModelConfig,
        bounds: list[float],
        snapshots: Snapshots | None,
        resume: Manifest | None,
        attribution_window_s: float = 1800.0,
        rules: str = "",
        rerank_per_s: float = 5000.0,
    ) -> None:
        self.bounds = bounds
        self._rules = RulesFile.shared(rules) if rules else None
        self._rules_version = self._rules.version if self._rules else 0
        self._rules_at = time.monotonic()
        self._rerank_max = max(_RERANK_MIN, int(rerank_per_s * _RERANK_TICK_S))
        self._rerank_chunk = _RERANK_MIN
        self._rerank = (0, 0)  # users [from, to) of the table still to re-rank
        self._rerank_due = 0.0  # when the next re-rank tick was asked for (monotonic)
        self._lag = (0.0, 0.0)  # (when, how old the newest event of the last batch was), epoch seconds
        # Live attribution counters only (freshrec report is the record): not in the snapshots, so
        # after a restart, impressions shown before the resumed offsets are not credited.
        self.attributor = Attributor(attribution_window_s)
        self._snapshots = snapshots
        self._journal: Journal | None = None
        self.shard = -1
        self._seq = 0  # batches since this run started (the learner's marks start over with it)
        if resume is not None and snapshots is not None:
            self._open(int(resume.meta["shard"]))
            self.table = snapshots.restore(resume, lambda: UserTable(config), self._journal)
        else:
            self.table = UserTable(config)
        metrics.USERS.inc(len(self.table))

    def _open(self, shard: int) -> None:
        self.shard = shard
        if self._snapshots is not None:
            self._journal = self._snapshots.journal(f"users-{shard}", shard=shard)

    @metrics.timed("users", "on_batch")
    def on_batch(self, batches: list[EventBatch]) -> tuple[list[ToLearn | RankBatch], bool]:
        events = [e for b in batches for e in b.events]
        if self.shard < 0:
            first = events[0].user if events else batches[0].impressions[0].user
            self._open(shard_of(first, self.bounds))
        self._attribute(batches, events)
        self._check_rules()
        if not events:
            return [], StatefulBatchLogic.RETAIN
        table = self.table
        before = len(table)
        learn = []
        touched: dict[str, list[tuple[int, float, float]]] = {}
        for ev in events:
            li = table.learn(ev)
            learn.append(li)
            touched.setdefault(ev.user, []).append((li.item, ev.ts, ev.source_ts))
        index = table.users.index
        rank = []
        for user, evs in touched.items():
            items, ts, source_ts = zip(*evs)
            rank.append(RankItem(table.view_row(index[user]), items, max(ts), source_ts))
        if self._rules is not None:  # how old the batch's newest event is: background re-ranks yield to events
            now = time.time()
            self._lag = (now, now - max(ev.source_ts for ev in events))
        metrics.EVENTS.labels("applied", "").inc(len(events))
        metrics.BATCH_SIZE.observe(len(events))
        metrics.USERS.inc(len(table) - before)
        self._seq += 1
        learned = ToLearn(self.shard, self._seq, LearnBatch.of(learn, table.config.history))
        return [learned, RankBatch(self.shard, self._seq, rank)], StatefulBatchLogic.RETAIN

    def _check_rules(self) -> None:
        """Look at the rules file (at most every second); a new version re-ranks every user of the shard."""
        if self._rules is None or time.monotonic() - self._rules_at < _RULES_CHECK_S:
            return
        self._rules_at = time.monotonic()
        self._rules.check()  # one instance per process: the ranker sees the same rules
        if self._rules.version != self._rules_version:
            self._rules_version = self._rules.version
            self._rerank = (0, len(self.table))
            self._rerank_due = time.monotonic()
            metrics.RERANK_PENDING.labels(str(self.shard)).set(len(self.table))
            log.info("rules changed: shard %d re-ranks its %d users in the background", self.shard, len(self.table))

    def on_notify(self) -> tuple[list[ToLearn | RankBatch], bool]:
        self._check_rules()
        start, end = self._rerank
        if start >= end or self.shard < 0:
            return [], StatefulBatchLogic.RETAIN
        late = time.monotonic() - self._rerank_due
        at, lag = self._lag
        if late > _RERANK_LATE_S or (time.time() - at < 1.0 and lag > _RERANK_LAG_S):
            self._rerank_chunk = max(_RERANK_MIN, self._rerank_chunk // 2)
        else:
            self._rerank_chunk = min(self._rerank_max, self._rerank_chunk + max(1, self._rerank_chunk // 4))
        stop = min(end, start + self._rerank_chunk)
        self._rerank = (stop, end)
        self._rerank_due = time.monotonic() + _RERANK_TICK_S
        metrics.RERANK_PENDING.labels(str(self.shard)).set(end - stop)
        users = [RankItem(self.table.view_row(r), (), 0.0, ()) for r in range(start, stop)]
        return [RankBatch(self.shard, self._seq, users, "rules")], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        # Stable times: this is asked after every batch, and an answer of "now + tick" would never come.
        if self._rerank[0] < self._rerank[1]:
            due = self._rerank_due
        elif self._rules is not None:
            due = self._rules_at + _RULES_CHECK_S
        else:
            return None
        return datetime.now(UTC) + timedelta(seconds=max(0.0, due - time.monotonic()))

    def _attribute(self, batches: list[EventBatch], events: list[Event]) -> None:
        """Count the clicks, carts and purchases the batch's impressions (and earlier ones) earned."""
        attributor = self.attributor
        newest = 0.0
        for b in batches:
            for imp in b.impressions:
                attributor.shown(imp)
                newest = max(newest, imp.ts)
        if not len(attributor):
            return
        for ev in events:
            got = attributor.interact(ev)
            if got is not None:
                metrics.ATTRIBUTED.labels(got.list_kind, got.kind).inc()
            newest = max(newest, ev.ts)
        attributor.expire(newest)

    def snapshot(self) -> Manifest | None:
        if self._journal is None:
            return None
        return checkpoint("users", self._journal, self.table)
