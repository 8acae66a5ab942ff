"""Write ranked lists to Redis: one MSET per batch."""

from __future__ import annotations

import time
from typing import NamedTuple

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from state import metrics
from state.redis_store import RedisWriter


class Write(NamedTuple):
    """One key to set, and the source timestamps of the events it reflects."""

    key: str
    value: bytes
    kind: str  # "user", "popular" or "item"
    source_ts: tuple[float, ...] = ()


class _Writer(StatelessSinkPartition[Write]):
    def __init__(self, url: str) -> None:
        self._redis = RedisWriter(url)

    def write_batch(self, items: list[Write]) -> None:
        self._redis.write((w.key, w.value) for w in items)
        now = time.time()
        observe = metrics.FRESHNESS.observe
        counts: dict[str, int] = {}
        for w in items:
            counts[w.kind] = counts.get(w.kind, 0) + 1
            for ts in w.source_ts:
                observe(max(now - ts, 0.0))
        for kind, n in counts.items():
            metrics.REDIS_KEYS_WRITTEN.labels(kind).inc(n)

    def close(self) -> None:
        self._redis.close()


class RedisSink(DynamicSink[Write]):
    """Set every :class:`Write` of a batch in one Redis MSET, then record freshness."""

    def __init__(self, url: str) -> None:
        self.url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Writer:
        return _Writer(self.url)
