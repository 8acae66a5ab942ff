"""The user step: each shard (one per worker) applies its users' events and hands them on.

Every event updates its user's recent and seen items at once. Per batch
the shard emits one :class:`LearnBatch` for the item-side learner and one
:class:`RankBatch` for the ranker of its own worker, so a user's new list
never waits for the learner.
"""

from __future__ import annotations

from typing import NamedTuple

from bytewax.operators import StatefulBatchLogic

from models.config import ModelConfig
from models.event import Event
from models.users import LearnInput, UserTable, UserView
from operators.routing import shard_of
from operators.snapshots import Snapshots
from state import metrics
from state.journal import Journal, Manifest


class LearnBatch(NamedTuple):
    """The learner's share of one user-step batch."""

    inputs: list[LearnInput]


class RankItem(NamedTuple):
    """One user to rank: their state after the batch, and the batch's events of theirs."""

    view: UserView
    items: tuple[int, ...]  # item keys of the events (the live hit-rate checks them before ranking)
    event_ts: float  # newest event time
    source_ts: tuple[float, ...]  # Kafka timestamps of the events (freshness)


class RankBatch(NamedTuple):
    """The ranker's share of one user-step batch: each touched user once."""

    shard: int
    users: list[RankItem]


class UserShardLogic(StatefulBatchLogic[Event, LearnBatch | RankBatch, Manifest | None]):
    """One shard of the user side; its snapshot is a journal manifest (``state/journal.py``).

    Bytewax builds a logic without telling it its key: a shard learns its
    index from its first event (or its snapshot).
    """

    def __init__(self, config: ModelConfig, workers: int, snapshots: Snapshots | None, resume: Manifest | None) -> None:
        self.workers = workers
        self._snapshots = snapshots
        self._journal: Journal | None = None
        self.shard = -1
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

    def on_batch(self, events: list[Event]) -> tuple[list[LearnBatch | RankBatch], bool]:
        if self.shard < 0:
            self._open(shard_of(events[0].user, self.workers))
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
        metrics.EVENTS.labels("applied", "").inc(len(events))
        metrics.BATCH_SIZE.observe(len(events))
        metrics.USERS.inc(len(table) - before)
        return [LearnBatch(learn), RankBatch(self.shard, rank)], StatefulBatchLogic.RETAIN

    def snapshot(self) -> Manifest | None:
        if self._journal is None:
            return None
        manifest = self._journal.checkpoint(self.table)
        metrics.SNAPSHOT_SECONDS.labels("users").observe(self._journal.last_s)
        metrics.SNAPSHOT_BYTES.labels("users").inc(self._journal.last_bytes)
        return manifest
