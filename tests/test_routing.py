"""Worker-pinned keys: every per-worker step lands where the flow means it to (Bytewax 0.21 routing)."""

from __future__ import annotations

import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main

from operators.routing import bytewax_worker, shard_bounds, shard_of, worker_keys


class _Pass(op.StatefulBatchLogic):
    def on_batch(self, values):  # type: ignore[no-untyped-def]
        return values, op.StatefulBatchLogic.DISCARD

    def snapshot(self) -> None:
        return None


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_keys_land_where_routing_says(workers: int) -> None:
    keys = worker_keys("shard", workers) + [f"k{n}" for n in range(40)]
    landed: dict[str, int] = {}
    lock = threading.Lock()

    def seen(_step: str, item: tuple[str, str], _epoch: int, worker: int) -> None:
        with lock:
            landed[item[0]] = worker

    flow = Dataflow("routing")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    op.inspect_debug("where", op.stateful_batch("st", keyed, lambda _: _Pass()), seen)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert landed == {k: bytewax_worker(k, workers) for k in keys}
    assert [landed[k] for k in worker_keys("shard", workers)] == list(range(workers))


def test_users_spread_over_shards_by_their_weights() -> None:
    counts = [0, 0, 0]
    for u in range(30_000):
        counts[shard_of(f"user-{u}", shard_bounds(3, 0.5))] += 1
    assert abs(counts[0] - 6_000) < 400 and abs(counts[1] - 12_000) < 500 and abs(counts[2] - 12_000) < 500
