"""Write ranked lists to Redis: one MSET per batch, keys and payloads from ``state/``."""

from __future__ import annotations

import time

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from state import metrics
from state.redis_store import ListWrite, RedisWriter


class _Writer(StatelessSinkPartition[ListWrite]):
    def __init__(self, url: str, namespace: str) -> None:
        self._redis = RedisWriter(url)
        self._namespace = namespace

    @metrics.timed("redis", "write_batch")
    def write_batch(self, items: list[ListWrite]) -> None:
        ns = self._namespace
        self._redis.write(w.key_value(ns) for w in items)
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


class RedisSink(DynamicSink[ListWrite]):
    """Set every list of a batch in one Redis MSET under ``namespace``, then record freshness."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Writer:
        return _Writer(self.url, self.namespace)
