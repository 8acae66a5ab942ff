"""The naive pipeline ``freshrec bench`` compares against.

What a team without a stream processor would write first: one kafka-python
consumer loop that, per event, parses it, calls River ``learn_one``, ranks
every item with numpy and ``SET``s the user's list in Redis. It is written
competently (the item vectors live in a numpy matrix updated after each
step, not rebuilt per event) and reports the same metrics as the flow
(``freshrec_events_total``, ``freshrec_freshness_seconds``), measured the
same way, so the benchmark reads both identically::

    python -m bench.naive --kafka 127.0.0.1:9092 --topic t --redis-url redis://127.0.0.1:6379/0 --metrics-port 9465
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
from kafka import KafkaConsumer
from river import optim, reco

from models.arrays import grow
from models.event import Event
from operators.parse import ParseConfig, Rejected, parse
from state import metrics
from state.keys import user_key
from state.redis_store import connect, payload


def run(kafka: str, topic: str, redis_url: str, namespace: str, k: int = 20, n_factors: int = 32) -> None:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka.split(","), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    client = connect(redis_url)
    model = reco.FunkMF(n_factors=n_factors, optimizer=optim.SGD(0.05), l2=0.01, seed=0)
    items: dict[str, int] = {}
    names: list[str] = []
    vectors = np.zeros((0, n_factors))
    config = ParseConfig()
    applied = metrics.EVENTS.labels("applied", "")
    for msg in consumer:
        sent = msg.timestamp / 1000.0
        ev = parse(msg.value, sent, config)
        if isinstance(ev, Rejected):
            metrics.EVENTS.labels("rejected", ev.reason).inc()
            continue
        if not isinstance(ev, Event):  # an impression: nothing to learn
            continue
        model.learn_one(ev.user, ev.item, 1.0)
        i = items.setdefault(ev.item, len(items))
        if i == len(names):
            names.append(ev.item)
            vectors = grow(vectors, i + 1)
        vectors[i] = model.i_latents[ev.item]
        scores = vectors[: len(names)] @ model.u_latents[ev.user]
        top = np.argsort(-scores)[:k] if len(names) <= k else np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        client.set(user_key(namespace, ev.user), payload([names[j] for j in top], scores[top].round(6).tolist(), ev.ts))
        metrics.FRESHNESS.observe(max(time.time() - sent, 0.0))
        applied.inc()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--namespace", default="naive")
    ap.add_argument("--metrics-port", type=int, required=True)
    args = ap.parse_args()
    metrics.serve(args.metrics_port)
    with contextlib.suppress(KeyboardInterrupt):
        run(args.kafka, args.topic, args.redis_url, args.namespace)


if __name__ == "__main__":
    main()
