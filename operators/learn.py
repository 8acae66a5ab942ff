"""The learner step: the single writer of the item side, broadcasting what changed to every ranker.

Every user shard sends its :class:`~models.users.LearnBatch` here (one
key, on worker 0). At most every ``broadcast_s`` the learner hands each
ranker an :class:`~models.items.ItemDelta`: the first one after a start
carries the whole item state, the later ones what changed. The ranker on
the learner's own worker reads the learner's state itself; the others
apply copies.

The learner also follows the catalogue (``operators/feeds.py``): a listed
item becomes known, with fresh factors, before its first event, so the
rankers can show it to the users its content features match (cold start).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from bytewax.operators import StatefulBatchLogic

from models.config import ModelConfig
from models.items import ItemDelta
from models.learner import ItemLearner
from operators.catalogue import Availability
from operators.feeds import Feed
from operators.snapshots import Snapshots, checkpoint
from operators.users import ToLearn
from state import metrics
from state.journal import Manifest

_LIST_PER_CALL = 10_000  # catalogue items listed per call at most: loading a large catalogue never stalls the flow


class Broadcast(NamedTuple):
    """An item delta for the ranker of worker ``shard``, and the last batch of each shard it includes."""

    shard: int
    delta: ItemDelta
    learned: dict[int, int]  # shard -> the seq of its last batch learned


class LearnerLogic(StatefulBatchLogic[ToLearn, tuple[str, Broadcast], Manifest | None]):
    """Learn every event; emit ``(ranker key, Broadcast)`` pairs.

    Parameters
    ----------
    rank_keys
        The ranker keys, one per worker; ``rank_keys[local]`` is on this worker.
    broadcast_s
        Most seconds between deltas while events arrive.
    catalogue
        The catalogue feed of this process (none: items are known from their first event).
    """

    def __init__(
        self,
        config: ModelConfig,
        rank_keys: list[str],
        local: int,
        broadcast_s: float,
        snapshots: Snapshots | None,
        resume: Manifest | None,
        catalogue: Sequence[Feed] = (),
    ) -> None:
        self._journal = snapshots.journal("learner") if snapshots else None
        if resume is not None and snapshots is not None:
            self.learner = snapshots.restore(resume, lambda: ItemLearner(config, journaled=True), self._journal)
        else:
            self.learner = ItemLearner(config, journaled=snapshots is not None)
        self._keys = rank_keys
        self._local = local
        self._every = broadcast_s
        self._based = False  # the rankers have had this run's base delta
        self._learned: dict[int, int] = {}
        self._last = -float("inf")
        self._catalogue = [f.subscribe() for f in catalogue]
        self._to_list: list[tuple[int, str]] = []  # listed by the catalogue, not made known yet (newest last)
        self._gauges()

    @metrics.timed("learner", "on_batch")
    def on_batch(self, batches: list[ToLearn]) -> tuple[list[tuple[str, Broadcast]], bool]:
        self._list_items()
        for message in batches:
            self.learner.learn_batch(message.batch)
            self._learned[message.shard] = message.seq
        self._gauges()
        if time.monotonic() - self._last >= self._every:
            return self._flush(), StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    @metrics.timed("learner", "on_notify")
    def on_notify(self) -> tuple[list[tuple[str, Broadcast]], bool]:
        self._list_items()
        return self._flush(), StatefulBatchLogic.RETAIN

    def _list_items(self) -> None:
        """Make the items the catalogue listed known, ``_LIST_PER_CALL`` at most per call (the rest wait)."""
        for q in self._catalogue:
            while not q.empty():
                v = q.get_nowait()
                if isinstance(v, Availability) and v.names:
                    self._to_list += zip(v.allowed.tolist(), v.names)
        if not self._to_list:
            return
        now, self._to_list = self._to_list[:_LIST_PER_CALL], self._to_list[_LIST_PER_CALL:]
        if self.learner.list_items([key for key, _ in now], [name for _, name in now]):
            self._gauges()

    def on_eof(self) -> tuple[list[tuple[str, Broadcast]], bool]:
        return self._flush(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self._based and not self.learner.pending and not self._catalogue:
            return None
        wait = 0.0 if self._to_list else max(0.0, self._last + self._every - time.monotonic())
        return datetime.now(UTC) + timedelta(seconds=wait)

    def _flush(self) -> list[tuple[str, Broadcast]]:
        self._last = time.monotonic()
        learner = self.learner
        remote = len(self._keys) > 1
        if not self._based:
            self._based = True
            local = learner.base_delta()
            copy = local.copied() if remote else local
            learned = dict(self._learned)
            out = [(k, Broadcast(w, local if w == self._local else copy, learned)) for w, k in enumerate(self._keys)]
        elif learner.pending:
            delta = learner.take_delta(shared=not remote)
            shared = delta._replace(shared=True)
            learned = dict(self._learned)
            out = [(k, Broadcast(w, shared if w == self._local else delta, learned)) for w, k in enumerate(self._keys)]
        else:
            return []
        metrics.DELTAS.inc(len(out))
        return out

    def _gauges(self) -> None:
        metrics.MODEL_EVENTS.set(self.learner.n_events)
        metrics.ITEMS.set(len(self.learner.state))

    def snapshot(self) -> Manifest | None:
        if self._journal is None:
            return None
        return checkpoint("learner", self._journal, self.learner)
