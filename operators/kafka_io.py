"""Kafka input and dead-letter output on kafka-python.

The source assigns one Kafka partition to each Bytewax partition and keeps
the next offset in Bytewax recovery snapshots, not in consumer-group
commits: on restart, input offsets and model state rewind together.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaConfigurationError, KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from operators.parse import Message, Rejected
from state import metrics

log = logging.getLogger(__name__)

_IDLE = timedelta(milliseconds=5)  # how long an idle partition sleeps between polls
# Bytes one fetch may bring per partition (kafka-python's default is 1 MB). kafka-python
# sends the next fetch only once the records of the last one are used up, and the worker
# waits for it: a larger fetch waits less often (a 10k-item backlog drained 9-14% faster
# with 8 MB, bench/RESULTS.md).
FETCH_BYTES = 8 << 20


class ServiceError(RuntimeError):
    """A service (Kafka or Redis) is unreachable or misconfigured; one line for the user."""


def client_config(brokers: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python settings for ``brokers`` (``HOST:PORT,...``), with ``extra`` (SASL, SSL, ...) on top."""
    return {"bootstrap_servers": brokers.split(","), "bootstrap_timeout_ms": 5000, **extra}


def ensure_topics(
    brokers: str,
    topics: dict[str, int],
    extra: Mapping[str, Any] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the missing topics (name -> partitions; ``configs``: their settings); one line if Kafka is down."""
    try:
        admin = KafkaAdminClient(**client_config(brokers, extra or {}))
    except KafkaConfigurationError as ex:  # every client (admin, producer, consumer) takes the same extra settings
        raise ServiceError(
            f"--kafka-config: {ex}; give only settings every Kafka client takes (security_protocol, sasl_*, ssl_*, ...)"
        ) from ex
    except KafkaError as ex:
        raise ServiceError(f"cannot reach Kafka at {brokers}: {ex}; start the broker or pass --kafka HOST:PORT") from ex
    try:
        existing = set(admin.list_topics())
        missing = {
            t: {"num_partitions": n, "replication_factor": -1, "configs": dict((configs or {}).get(t, {}))}
            for t, n in topics.items()
            if t not in existing
        }
        if missing:
            log.info("creating Kafka topics %s on %s", ", ".join(sorted(missing)), brokers)
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, wait_for_metadata=True)
    finally:
        admin.close()


def _reachable(brokers: list[str], timeout: float = 0.2) -> bool:
    """Whether some bootstrap server accepts a TCP connection."""
    for broker in brokers:
        host, _, port = broker.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
        except (OSError, ValueError):
            continue
        return True
    return False


class _PartitionReader(StatefulSourcePartition[Message, int | None]):
    def __init__(self, config: dict[str, Any], topic: str, partition: int, resume: int | None, max_records: int):
        self._tp = TopicPartition(topic, partition)
        config = {"client_id": f"freshrec-{topic}-{partition}", **config}  # broker logs and quotas tell readers apart
        # A recovered offset that retention has deleted since resumes at the
        # oldest record kept (kafka-python's default, the newest, would skip
        # all of them), with a warning from _check_retention.
        config = {"max_partition_fetch_bytes": FETCH_BYTES, **config}
        self._consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, auto_offset_reset="earliest", **config)
        self._consumer.assign([self._tp])
        if resume is None:
            self._consumer.seek_to_beginning(self._tp)
        else:
            self._consumer.seek(self._tp, resume)
        self._next: int | None = resume
        self._max = max_records
        self._lag = metrics.LAG.labels(str(partition))
        self._lag_at = 0.0
        self._brokers = ",".join(config["bootstrap_servers"])
        self._check_retention()
        self._outage_since: float | None = None
        self._connected = False  # no outage before the first connection
        self._awake: datetime | None = None

    def _check_retention(self) -> None:
        """Log one warning when the recovered offset is older than the oldest record the broker still keeps."""
        if self._next is None or not _reachable(self._brokers.split(",")):
            return
        try:
            oldest = self._consumer.beginning_offsets([self._tp])[self._tp]
        except KafkaError:  # an outage: next_batch reports it
            return
        if oldest > self._next:
            log.warning(
                "%s[%d]: the recovered offset %d was deleted by the topic's retention; resuming at %d, "
                "%d events were never read (raise retention.ms above the longest outage you want to survive)",
                self._tp.topic,
                self._tp.partition,
                self._next,
                oldest,
                oldest - self._next,
            )

    @metrics.timed("input", "next_batch")
    def next_batch(self) -> list[Message]:
        # Never a poll that waits: while this partition sleeps (next_awake) the
        # worker serves its other inputs, timers and the exchange between
        # processes. A poll that waited up to 5 ms for the fetch in flight
        # halved the empty polls (each costs ~1 ms of the worker) but cost the
        # 2-process cluster a third of its drain rate (bench/RESULTS.md).
        records = self._consumer.poll(timeout_ms=0, max_records=self._max).get(self._tp, ())
        now = time.monotonic()
        if now - self._lag_at > 1.0:
            self._lag_at = now
            self._check_broker(now)
            high = self._consumer.highwater(self._tp)
            if high is not None and self._next is not None:
                self._lag.set(max(high - self._next, 0))
        if not records:
            self._awake = datetime.now(UTC) + _IDLE
            return []
        self._awake = None
        self._next = records[-1].offset + 1
        return [Message(r.value, r.timestamp / 1000.0) for r in records]

    def next_awake(self) -> datetime | None:
        return self._awake

    def _check_broker(self, now: float) -> None:
        """Report a broker outage once (log line and metric) and its end.

        kafka-python reconnects by itself and the consumer keeps its
        position, so the flow only has to say what is going on. Whether a
        broker is there is asked of the network (a TCP connection to a
        bootstrap server), not of the client: kafka-python 3.0's connection
        count said 0 while it was fetching.
        """
        conns = 1 if _reachable(self._brokers.split(",")) else 0
        if conns > 0:
            self._connected = True
        if conns == 0 and self._connected and self._outage_since is None:
            self._outage_since = now
            metrics.OUTAGE.labels("kafka").set(1)
            log.error(
                "Kafka at %s unreachable; the source reconnects and resumes at offset %s", self._brokers, self._next
            )
        elif conns > 0 and self._outage_since is not None:
            metrics.OUTAGE.labels("kafka").set(0)
            log.warning("Kafka at %s is back after %.1f s", self._brokers, now - self._outage_since)
            self._outage_since = None

    def snapshot(self) -> int | None:
        return self._next

    def close(self) -> None:
        self._consumer.close()


class KafkaSource(FixedPartitionedSource[Message, int | None]):
    """Read a topic; one Bytewax partition per Kafka partition.

    Parameters
    ----------
    brokers
        ``HOST:PORT[,HOST:PORT...]``.
    topic
        Topic to read from the beginning (or from the recovered offset).
    extra
        More kafka-python settings (SASL, SSL, ...).
    max_records
        Most messages returned by one poll.
    """

    def __init__(self, brokers: str, topic: str, extra: Mapping[str, Any] | None = None, max_records: int = 4096):
        self.brokers = brokers
        self.topic = topic
        self.config = client_config(brokers, extra or {})
        self.max_records = max_records

    def list_parts(self) -> list[str]:
        try:
            consumer = KafkaConsumer(**self.config)
        except KafkaError as ex:
            raise ServiceError(f"cannot reach Kafka at {self.brokers}: {ex}") from ex
        try:
            parts = consumer.partitions_for_topic(self.topic)
        finally:
            consumer.close()
        if not parts:
            raise ServiceError(f"topic {self.topic!r} does not exist on Kafka at {self.brokers}")
        return [str(p) for p in sorted(parts)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        return _PartitionReader(self.config, self.topic, int(for_part), resume_state, self.max_records)


class _DeadLetterWriter(StatelessSinkPartition[Rejected]):
    def __init__(self, config: dict[str, Any], topic: str):
        self._producer = KafkaProducer(**config)
        self._topic = topic

    def write_batch(self, items: list[Rejected]) -> None:
        for r in items:
            headers = [("reason", r.detail.encode()), ("reason_code", r.reason.encode())]
            self._producer.send(self._topic, value=r.raw, headers=headers)
        # Flushed before the epoch can close, so a snapshot never covers a
        # rejected message that is not durable in the dead-letter topic.
        self._producer.flush()
        for r in items:
            metrics.EVENTS.labels("rejected", r.reason).inc()

    def close(self) -> None:
        self._producer.close()


class DeadLetterSink(DynamicSink[Rejected]):
    """Send rejected messages, unchanged, to the dead-letter topic.

    Each message keeps its original bytes and gets a ``reason`` header
    (human-readable) and a ``reason_code`` header (the metric label).
    """

    def __init__(self, brokers: str, topic: str, extra: Mapping[str, Any] | None = None):
        self.config = client_config(brokers, extra or {})
        self.topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterWriter:
        return _DeadLetterWriter(self.config, self.topic)


class KeyTail:
    """The newest messages of one key in a topic (the console's user inspector).

    Messages are keyed (the event schema: key = user id), so all of a key's
    messages are in the partition Kafka's default partitioner picks for it;
    the last ``scan`` messages of that partition are read and filtered. One
    consumer, made on first use, serves every call.
    """

    def __init__(self, brokers: str, topic: str, extra: Mapping[str, Any] | None = None, scan: int = 5000) -> None:
        self.brokers, self.topic, self.scan = brokers, topic, scan
        self.config = client_config(brokers, extra or {})
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()

    def newest(self, key: bytes, limit: int = 20, timeout: float = 2.0) -> list[tuple[float, bytes]]:
        """Up to ``limit`` ``(kafka_ts_s, value)`` of ``key``, newest first; raises :class:`ServiceError`."""
        with self._lock:
            try:
                if self._consumer is None:
                    self._consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, **self.config)
                return self._newest(self._consumer, key, limit, timeout)
            except KafkaError as ex:
                self.close()
                raise ServiceError(f"cannot read {self.topic} on Kafka at {self.brokers}: {ex}") from ex

    def _newest(self, consumer: KafkaConsumer, key: bytes, limit: int, timeout: float) -> list[tuple[float, bytes]]:
        parts = sorted(consumer.partitions_for_topic(self.topic) or ())
        if not parts:
            return []
        tp = TopicPartition(self.topic, parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)])
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        start = max(end - self.scan, consumer.beginning_offsets([tp])[tp])
        consumer.seek(tp, start)
        found: list[tuple[float, bytes]] = []
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=100, max_records=self.scan).get(tp, ())
            found.extend((r.timestamp / 1000.0, r.value) for r in records if r.offset < end and r.key == key)
        return found[::-1][:limit]

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
