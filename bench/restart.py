"""Restart of ``freshrec run`` on a large recovered state, end to end.

``freshrec bench`` runs it as a stage; alone::

    python -m bench.restart --kafka HOST:PORT --redis-url URL --users 1000000 [--events-per-user 3]

It produces a synthetic stream of N users over 10,000 items
(``--events-per-user`` on average, Zipf activity, so users have histories
and co-occurrence fills) to a fresh topic, runs ``freshrec run
--recovery-dir`` until every event is applied and a snapshot has covered
them, stops it with SIGTERM, produces one probe event, and starts the flow
again on the same recovery directory. Figures (the last line is JSON):

- ``drain_eps``: events/s of the first run, recovery snapshots included;
- ``stop_s``: SIGTERM to exit; ``recovery_mb``: the recovery directory;
- ``metrics_up_s``: launch of the second run to its metrics answering;
- ``restart_s``: launch to the probe user's list in Redis, with
  ``freshrec_model_events`` one past the events produced (the whole state back, the probe learned);
- ``reapplied``: events the second run applied besides the probe (0 when
  the last snapshot covered everything).

The run's Redis keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import orjson
import redis
from kafka import KafkaProducer

from bench.measure import Process, drain, start_flow
from bench.services import say
from models.event import Event
from operators.kafka_io import ensure_topics
from operators.local_io import event_json
from operators.synthetic import SyntheticConfig, synthetic_events
from state.keys import user_key
from state.metrics import total

SNAPSHOT_S = 5.0  # freshrec run's default --snapshot-interval-s


def _produce(kafka: str, topic: str, events: Iterable[Event]) -> None:
    ensure_topics(kafka, {topic: 1, f"{topic}.dlq": 1})
    producer = KafkaProducer(bootstrap_servers=kafka.split(","), linger_ms=20, batch_size=1 << 18, acks=1)
    for ev in events:
        producer.send(topic, key=ev.user.encode(), value=event_json(ev))
    producer.flush()
    producer.close()


def _drop_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    batch = []
    for key in client.scan_iter(match=f"{namespace}:*", count=10_000):
        batch.append(key)
        if len(batch) == 10_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)
    client.close()


def measure(kafka: str, redis_url: str, users: int, per_user: int, workdir: Path) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    topic, ns = f"restart.{tag}", f"restart{tag}"
    recovery = workdir / f"recovery-{tag}"
    client = redis.Redis.from_url(redis_url)

    def flow(name: str) -> Process:
        extra = ("--recovery-dir", str(recovery), "--snapshot-interval-s", str(SNAPSHOT_S))
        return start_flow(kafka, topic, redis_url, ns, workdir, name, *extra)

    try:
        n_events = users * per_user
        _say(f"producing {n_events:,} events of {users:,} users")
        stream = SyntheticConfig(users=users, items=10_000, topics=50, events=n_events, seed=3)
        _produce(kafka, topic, synthetic_events(stream))
        first = flow(f"restart-{tag}-1")
        try:
            drain_eps, _ = drain(first, n_events, timeout=3600)
            _say(f"drained at {drain_eps:,.0f} events/s with recovery on; waiting for a snapshot to cover it")
            time.sleep(2 * SNAPSHOT_S + 1)
        finally:
            t0 = time.monotonic()
            first.stop()
            stop_s = time.monotonic() - t0
        recovery_mb = sum(p.stat().st_size for p in recovery.rglob("*") if p.is_file()) / 1e6  # store and journal
        probe = Event(f"probe-{tag}", "i1", "view", 1.0, time.time(), time.time())
        _produce(kafka, topic, [probe])
        launched = time.monotonic()
        second = flow(f"restart-{tag}-2")
        try:
            metrics_up_s = time.monotonic() - launched
            key = user_key(ns, probe.user)
            while True:
                samples = second.samples()
                if client.exists(key) and total(samples, "freshrec_model_events") >= n_events + 1:
                    break
                if second.proc.poll() is not None or time.monotonic() - launched > 600:
                    raise RuntimeError(f"the restarted flow did not serve the probe; see {second.log.name}")
                time.sleep(0.05)
            restart_s = time.monotonic() - launched
            reapplied = total(second.samples(), "freshrec_events_total", {"outcome": "applied"}) - 1
        finally:
            second.stop()
    finally:
        _drop_namespace(redis_url, ns)
        client.close()
    return {
        "users": users,
        "events": n_events,
        "drain_eps": round(drain_eps),
        "stop_s": round(stop_s, 2),
        "recovery_mb": round(recovery_mb, 1),
        "metrics_up_s": round(metrics_up_s, 2),
        "restart_s": round(restart_s, 2),
        "reapplied": int(reapplied),
    }


def _say(msg: str) -> None:
    say(msg, "restart")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--events-per-user", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="freshrec-restart-") as tmp:
        row = measure(args.kafka, args.redis_url, args.users, args.events_per_user, Path(tmp))
    print(
        f"{row['users']:,} users: restart to serving {row['restart_s']} s (metrics up {row['metrics_up_s']} s), "
        f"stop {row['stop_s']} s, recovery dir {row['recovery_mb']} MB, re-applied {row['reapplied']}, "
        f"first run {row['drain_eps']:,} events/s"
    )
    print(orjson.dumps(row).decode())


if __name__ == "__main__":
    main()
