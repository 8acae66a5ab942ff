"""Crash recovery and outages, on the real services.

Each test produces a steady stream with its own producer thread, breaks
something mid-stream (the flow, Redis or the broker), and then checks the
promises: the model state counts every event exactly once
(``freshrec_model_events``), every user's list in Redis reflects their
newest event, and a restart resumes from the last snapshot it had (so it
re-applies only the events after it).
"""

from __future__ import annotations

import signal
import threading
import time

import orjson
import pytest
import redis
from kafka import KafkaProducer

from state.keys import user_key
from support import wait_for

USERS = 300
TS0 = 1_750_000_000.0


def event(n: int) -> dict:
    """Event ``n`` of the test stream; its ``ts`` grows with ``n``."""
    return {"user": f"u{n % USERS}", "item": f"i{(n * 7) % 251}", "type": "click", "ts": TS0 + n * 0.001}


class Steady(threading.Thread):
    """Produce events ``0..total-1`` at ``rate`` per second; ``sent`` counts sends so far."""

    def __init__(self, brokers: str, topic: str, total: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.brokers, self.topic, self.total, self.rate = brokers, topic, total, rate
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.brokers, linger_ms=5, acks="all", retries=100)
            t0 = time.monotonic()
            for n in range(self.total):
                ahead = t0 + n / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                producer.send(self.topic, key=event(n)["user"].encode(), value=orjson.dumps(event(n)))
                self.sent = n + 1
            producer.flush(timeout=120)
            producer.close()
        except BaseException as ex:  # noqa: BLE001 (surfaced by finish())
            self.error = ex

    def finish(self) -> None:
        self.join(timeout=180)
        assert self.error is None, self.error
        assert not self.is_alive(), "producer did not finish"


def newest_ts_per_user(total: int) -> dict[str, float]:
    newest: dict[str, float] = {}
    for n in range(total):
        e = event(n)
        newest[e["user"]] = e["ts"]
    return newest


def assert_every_user_current(redis_client, namespace: str, total: int) -> None:
    """Each user's list exists and reflects that user's newest event."""
    newest = newest_ts_per_user(total)
    users = sorted(newest)

    def current():
        values = redis_client.mget([user_key(namespace, u) for u in users])
        stale = [u for u, raw in zip(users, values) if raw is None or orjson.loads(raw)["event_ts"] < newest[u] - 1e-6]
        return not stale or None

    wait_for(current, timeout=30)


def applied(flow) -> float:
    return flow.metric("freshrec_events_total", {"outcome": "applied"})


class Watch:
    """Poll a flow's metrics: the learner's snapshot times, and its event count before each."""

    def __init__(self, flow) -> None:
        self.flow = flow
        self.samples: list[tuple[float, float]] = []  # (unix time the scrape had returned by, model events read)
        self.snapshots: list[float] = []  # distinct unix times of the learner's last snapshot, as seen
        self.applied = 0.0

    def poll(self) -> None:
        from state.metrics import scrape, total

        got = scrape(self.flow.metrics_port)
        if not got:
            return
        self.samples.append((time.time(), total(got, "freshrec_model_events")))
        self.applied = total(got, "freshrec_events_total", {"outcome": "applied"})
        taken = total(got, "freshrec_snapshot_timestamp_seconds", {"step": "learner"})
        if taken and (not self.snapshots or taken != self.snapshots[-1]):
            self.snapshots.append(taken)

    def learned_before(self, t: float) -> float:
        """Events the learner had learned by unix time ``t``, at least (the last sample read before it)."""
        return max((n for at, n in self.samples if at <= t), default=0.0)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_restart_loses_nothing(sig, start_flow, services, names, redis_client, tmp_path) -> None:
    rate, total, interval = 2000.0, 24_000, 1.0
    args = ["--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval-s", str(interval)]
    first = start_flow(*args)
    producer = Steady(services["FRESHREC_KAFKA"], names["topic"], total, rate)
    producer.start()
    watch = Watch(first)

    def ready() -> bool:
        watch.poll()
        return watch.applied > 5000 and len(watch.snapshots) >= 3

    wait_for(ready, timeout=40, every=0.05)
    until = time.monotonic() + 0.5 * interval  # stop mid-epoch, not just after the snapshot that ended the wait
    while time.monotonic() < until:
        watch.poll()
        time.sleep(0.05)
    produced_at_stop = producer.sent
    # SIGTERM is a clean stop (exit 0); kill -9 ends the process where it stands.
    assert first.stop(sig) == (0 if sig == signal.SIGTERM else -signal.SIGKILL), first.output()
    assert 0 < produced_at_stop < total, "the stop must come mid-stream"

    second = start_flow(*args)
    producer.finish()
    # The model state came back from the snapshot with the offsets, so it
    # counts every event exactly once: nothing lost, nothing learned twice.
    wait_for(lambda: second.metric("freshrec_model_events") == total, timeout=60)
    assert_every_user_current(redis_client, names["namespace"], total)
    time.sleep(1.5)
    assert second.metric("freshrec_model_events") == total
    # The restart resumed from the last snapshot the first run had committed: the newest one it took,
    # or the one before if the stop came before Bytewax committed the newest. So it resumed at or after
    # what the learner had learned by the one before the newest (the samples only make this looser).
    resumed_at = total - applied(second)
    floor = watch.learned_before(watch.snapshots[-2])
    gaps = [b - a for a, b in zip(watch.snapshots, watch.snapshots[1:])]
    print(
        f"{sig.name}: resumed at event {resumed_at:.0f} (floor {floor:.0f}), "
        f"{watch.applied - resumed_at:.0f} events re-applied; snapshots {max(gaps):.2f} s apart at most "
        f"(interval {interval} s)"
    )
    assert floor > 0, watch.samples
    assert resumed_at >= floor, (resumed_at, floor, second.output())
    assert "Traceback" not in second.output()


def test_redis_outage_is_survived(own_service, start_flow, services, names) -> None:
    own = own_service("redis")
    url = own.env["FRESHREC_REDIS_URL"]
    flow = start_flow("--redis-url", url)
    rate, total = 1000.0, 12_000
    producer = Steady(services["FRESHREC_KAFKA"], names["topic"], total, rate)
    producer.start()
    wait_for(lambda: applied(flow) > 2000, timeout=30)

    own.stop()
    down_at = time.monotonic()
    wait_for(lambda: flow.metric("freshrec_outage", {"service": "redis"}) == 1, timeout=15)
    # The stream ends while Redis is down: no event arrives after it is back, so the lists of the
    # users whose last event was in the batch held by the outage are current only if that batch
    # was retried, not dropped.
    producer.finish()
    time.sleep(max(0.0, 10.0 - (time.monotonic() - down_at)))
    assert flow.proc.poll() is None, flow.output()
    assert flow.metric("freshrec_model_events") < total  # the flow waited for Redis
    own.start()

    wait_for(lambda: flow.metric("freshrec_model_events") == total, timeout=60)
    client = redis.Redis.from_url(url)
    assert_every_user_current(client, names["namespace"], total)
    client.close()
    wait_for(lambda: flow.metric("freshrec_outage", {"service": "redis"}) == 0, timeout=10)
    log = flow.output()
    assert log.count("unreachable") == 1, log  # once per outage, not per event or retry
    assert log.count("is back after") == 1, log
    assert flow.metric("freshrec_retries_total", {"service": "redis"}) >= 1


def test_broker_restart_is_survived(own_service, start_flow, services, names, redis_client) -> None:
    kafka = own_service("kafka")
    brokers = kafka.env["FRESHREC_KAFKA"]
    flow = start_flow("--kafka", brokers)
    rate, total = 1000.0, 14_000
    producer = Steady(brokers, names["topic"], total, rate)
    producer.start()
    wait_for(lambda: applied(flow) > 2000, timeout=30)

    kafka.stop()
    wait_for(lambda: flow.metric("freshrec_outage", {"service": "kafka"}) == 1, timeout=15)
    time.sleep(3)
    assert flow.proc.poll() is None, flow.output()
    kafka.start()

    producer.finish()
    # Resumed at the right offset: every event learned once, none skipped.
    wait_for(lambda: flow.metric("freshrec_model_events") == total, timeout=60)
    assert_every_user_current(redis_client, names["namespace"], total)
    time.sleep(1.5)
    assert flow.metric("freshrec_model_events") == total
    wait_for(lambda: flow.metric("freshrec_outage", {"service": "kafka"}) == 0, timeout=15)
    log = flow.output()
    assert log.count("Kafka at") == 2, log  # "unreachable" once, "is back" once


def test_a_resume_offset_deleted_by_retention_resumes_at_the_oldest_kept(start_flow, services, names, tmp_path) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    brokers = services["FRESHREC_KAFKA"]
    args = ["--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval-s", "0.5"]
    first = start_flow(*args)
    burst = Steady(brokers, names["topic"], 2000, 20_000.0)
    burst.run()
    assert burst.error is None, burst.error
    wait_for(lambda: first.metric("freshrec_model_events") == 2000, timeout=60)
    time.sleep(1.5)  # a snapshot after the last event
    assert first.stop(signal.SIGTERM) == 0, first.output()

    # While the flow is down, 1,000 events come and retention deletes them; 500 more come after.
    producer = KafkaProducer(bootstrap_servers=brokers, linger_ms=5)
    for n in range(2000, 3000):
        producer.send(names["topic"], key=event(n)["user"].encode(), value=orjson.dumps(event(n)))
    producer.flush()
    consumer = KafkaConsumer(bootstrap_servers=brokers)
    parts = [TopicPartition(names["topic"], p) for p in consumer.partitions_for_topic(names["topic"])]
    admin = KafkaAdminClient(bootstrap_servers=brokers)
    admin.delete_records(consumer.end_offsets(parts))
    for n in range(3000, 3500):
        producer.send(names["topic"], key=event(n)["user"].encode(), value=orjson.dumps(event(n)))
    producer.flush()
    producer.close()
    consumer.close()
    admin.close()

    second = start_flow(*args)
    # The 500 kept are read (a reset to the newest offset would skip them too), the 1,000 deleted are not.
    wait_for(lambda: second.metric("freshrec_model_events") == 2500, timeout=60)
    time.sleep(1.0)
    assert second.metric("freshrec_model_events") == 2500
    assert "deleted by the topic's retention" in second.output(), second.output()
