"""The learning step: every event updates the model; touched users are re-ranked.

All events go to one model (one key of a ``stateful_batch``), so a whole
batch is learned together and each user touched in it is ranked once.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from bytewax.operators import StatefulBatchLogic

from models import HybridRecommender, ModelConfig
from models.arrays import grow
from models.event import Event
from operators.serve import Write
from state import metrics
from state.keys import item_key, popular_key, user_key
from state.recovery import RecoveryError
from state.redis_store import payload

HIT_K = 10  # the live metric is hit-rate@10
_BLOCK = 64  # similar-items lists computed per matrix product during a refresh
_CATCH_UP_S = 0.25  # next refresh tick while similar-items lists are pending
_HIT_WINDOW = 10_000


@dataclass(frozen=True)
class ServeConfig:
    """What the learn step writes.

    Parameters
    ----------
    namespace
        Redis key prefix.
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
        and the rest follow on ticks ``_CATCH_UP_S`` apart, so a refresh
        never stalls the event path for long.
    """

    namespace: str = "freshrec"
    k: int = 20
    popular_n: int = 100
    similar_k: int = 20
    refresh_s: float = 2.0
    refresh_budget_s: float = 0.02


class LearnLogic(StatefulBatchLogic[Event, Write, bytes | None]):
    """Learn a batch, emit one :class:`Write` per touched user; timers for the rest.

    The snapshot is the pickled model (bytes: an immutable deep copy), or
    None when ``snapshots`` is off (no recovery configured).
    Besides the model, the step keeps each user's last served top-10 for
    the live prequential hit-rate; that is metric state and is not
    snapshotted.
    """

    def __init__(
        self, model_config: ModelConfig, serve: ServeConfig, resume: bytes | None, snapshots: bool = True
    ) -> None:
        self.model = _restore(resume) if resume is not None else HybridRecommender(model_config)
        self.serve = serve
        self._snapshots = snapshots
        self._served = np.full((0, HIT_K), -1, dtype=np.int32)
        self._hits = np.zeros(_HIT_WINDOW, dtype=np.bool_)
        self._checks = 0
        self._changed: dict[int, None] = {}
        self._next_refresh = datetime.now(UTC) + timedelta(seconds=serve.refresh_s)
        _model_gauges(self.model)

    def on_batch(self, events: list[Event]) -> tuple[list[Write], bool]:
        model = self.model
        touched: dict[str, list[Event]] = {}
        hits = 0
        checks = 0
        for ev in events:
            u = model.users.get(ev.user)
            if u is not None and u < self._served.shape[0] and self._served[u, 0] >= 0:
                i = model.items.get(ev.item)
                hit = i is not None and bool((self._served[u] == i).any())
                self._hits[self._checks % _HIT_WINDOW] = hit
                self._checks += 1
                hits += hit
                checks += 1
            model.learn(ev)
            touched.setdefault(ev.user, []).append(ev)
            self._changed[model.items.index[ev.item]] = None

        ns, k = self.serve.namespace, self.serve.k
        writes = []
        now = time.time()
        self._served = grow(self._served, len(model.users), fill=-1)
        for (user, evs), ranked in zip(touched.items(), model.recommend_many(list(touched), k)):
            u = model.users.index[user]
            served = ranked.indexes[:HIT_K]
            self._served[u] = -1
            self._served[u, : len(served)] = served
            newest = max(e.ts for e in evs)
            writes.append(
                Write(
                    user_key(ns, user),
                    payload(ranked.items, ranked.scores, newest, now),
                    "user",
                    tuple(e.source_ts for e in evs),
                )
            )

        metrics.EVENTS.labels("applied", "").inc(len(events))
        metrics.BATCH_SIZE.observe(len(events))
        if checks:
            metrics.PREQ_CHECKS.inc(checks)
            metrics.PREQ_HITS.inc(hits)
            seen = min(self._checks, _HIT_WINDOW)
            metrics.HIT_RATE.set(float(self._hits[:seen].mean()))
        _model_gauges(model)
        return writes, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Write], bool]:
        writes = self.refresh_lists()
        wait = _CATCH_UP_S if self._changed else self.serve.refresh_s
        self._next_refresh = datetime.now(UTC) + timedelta(seconds=wait)
        return writes, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Write], bool]:
        writes = []
        while self._changed:
            writes += self.refresh_lists()
        return writes, StatefulBatchLogic.RETAIN

    def refresh_lists(self) -> list[Write]:
        """The popular list, and similar-items lists of changed items within the time budget.

        Oldest changes first; items changed again while waiting keep their place.
        """
        model, s = self.model, self.serve
        if not self._changed:
            return []
        deadline = time.perf_counter() + s.refresh_budget_s
        model.refresh_index()
        now = model.pop.now
        top = model.popular(s.popular_n)
        writes = [Write(popular_key(s.namespace), payload(top.items, top.scores, now), "popular")]
        names = model.items.names
        pending = list(self._changed)
        for done, (i, sim) in enumerate(zip(pending, model.iter_similar(np.array(pending), s.similar_k, _BLOCK)), 1):
            writes.append(Write(item_key(s.namespace, names[i]), payload(sim.items, sim.scores, now), "item"))
            del self._changed[i]
            if done % _BLOCK == 0 and time.perf_counter() > deadline:
                break  # a block's lists are computed together; stop between blocks
        return writes

    def notify_at(self) -> datetime:
        return self._next_refresh

    def snapshot(self) -> bytes | None:
        # Bytewax asks for a snapshot at every epoch even without recovery;
        # pickling the model then would stall the flow for nothing (0.2 s at
        # 64k users, every 5 s: it was the tail of the freshness latency).
        if not self._snapshots:
            return None
        return pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL)


def _restore(snapshot: bytes) -> HybridRecommender:
    try:
        model = pickle.loads(snapshot)
    except Exception as ex:  # any failure means the same to the operator
        raise RecoveryError(
            f"cannot restore the model from the recovery snapshot ({type(ex).__name__}: {ex}); it was probably "
            "written by another freshrec version. Move the --recovery-dir away to start afresh: the flow then "
            "reads the topic from the beginning."
        ) from ex
    if not isinstance(model, HybridRecommender):
        raise RecoveryError(f"the recovery snapshot holds a {type(model).__name__}, not a freshrec model")
    return model


def _model_gauges(model: HybridRecommender) -> None:
    metrics.MODEL_EVENTS.set(model.n_events)
    metrics.USERS.set(len(model.users))
    metrics.ITEMS.set(len(model.items))
