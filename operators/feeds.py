"""The side topics the rankers follow: the catalogue (``freshrec.items``) and user attributes (``freshrec.users``).

Both are compacted: read from the beginning they are the current
catalogue and the current attributes. A :class:`Feed` follows one of them
in a daemon thread of the process, outside the dataflow, and hands every
parsed batch to each ranker of the process (:meth:`Feed.subscribe`); a
ranker applies what has arrived at its next batch or timer tick (at most
``--refresh-s`` later).

Why not Bytewax inputs: built first that way (a source per topic, a
parse step, a dead-letter sink), the kill -9 test of
tests/test_reliability.py counted about 5,500 re-applied events against a
bound of 3,000 in every run, and 500-1,100 with the topics followed here.
That count then included the first run's lag (it counted from what had
been produced), so part of it may have been a slower flow rather than
snapshots that did not close; it was not pinned down. Out of the dataflow
the side topics cannot hold an epoch open, and the rankers snapshot
nothing of them anyway: each start reads them again.

Bad messages go to ``TOPIC.dlq`` with ``reason`` and ``reason_code``
headers, from process 0 only. The offset reached is committed under a
consumer group of its own (``freshrec-dlq.TOPIC``, commits only, no
subscription), so a restart does not dead-letter a message twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter

from operators.catalogue import Catalogue, ItemInfo, ItemMessage, item_changes, parse_item
from operators.kafka_io import client_config
from operators.parse import Rejected

log = logging.getLogger(__name__)

Parse = Callable[[bytes | None, bytes | None], Any]  # key, value -> a valid message, or a Rejected
Changes = Callable[[list[tuple[ItemMessage, Any]]], Any]  # valid messages -> one change for the rankers, or None


class Feed:
    """One compacted topic, followed from its beginning by a daemon thread.

    ``parse`` validates each message, ``changes`` turns a batch of valid
    ones into one change for the rankers. ``dlq``: the dead-letter topic,
    or "" for a process that does not dead-letter. ``counter`` counts the
    messages by outcome (applied, rejected by reason).
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        extra: Mapping[str, Any],
        parse: tuple[Parse, Changes],
        dlq: str,
        counter: Counter | None,
    ) -> None:
        self.topic, self.dlq = topic, dlq
        self.config = client_config(brokers, extra)
        self._parse, self._changes = parse
        self._counter = counter
        self.caught_up = threading.Event()  # set once the topic was read to its end (or found missing)
        self._subscribers: list[queue.SimpleQueue[Any]] = []
        self._log: list[Any] = []  # every change since the start: what a ranker made later must catch up on
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"feed-{topic}", daemon=True)
        self._stop = threading.Event()

    def start(self) -> Feed:
        with self._lock:
            if not self._thread.is_alive():
                self._thread.start()
        return self

    def subscribe(self) -> queue.SimpleQueue[Any]:
        """A queue that gets every change read so far, then every one to come."""
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            for change in self._log:
                q.put(change)
            self._subscribers.append(q)
        return q

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except KafkaError as ex:
                log.warning("%s: %s; reading it again in 5 s", self.topic, ex)
                self._stop.wait(5.0)

    def _follow(self) -> None:
        group = {"group_id": f"freshrec-dlq.{self.topic}"} if self.dlq else {"group_id": None}
        consumer = KafkaConsumer(
            enable_auto_commit=False, client_id=f"freshrec-feed-{self.topic}", **group, **self.config
        )
        producer = KafkaProducer(**self.config) if self.dlq else None
        try:
            parts = consumer.partitions_for_topic(self.topic)
            while not parts and not self._stop.is_set():
                self.caught_up.set()  # no topic: nothing is the current content
                self._stop.wait(5.0)
                parts = consumer.partitions_for_topic(self.topic)
            tps = [TopicPartition(self.topic, p) for p in sorted(parts or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            handed = {tp: (consumer.committed(tp) or 0) if self.dlq else 0 for tp in tps}
            ends = consumer.end_offsets(tps)
            while not self._stop.is_set():
                if not self.caught_up.is_set() and all(consumer.position(tp) >= ends[tp] for tp in tps):
                    log.info("%s: read to its end", self.topic)
                    self.caught_up.set()
                for tp, records in consumer.poll(timeout_ms=200, max_records=5000).items():
                    batch = [ItemMessage(r.key, r.value, r.offset < handed[tp], r.timestamp / 1000.0) for r in records]
                    rejected, change = self._read(batch)
                    if change is not None:
                        with self._lock:
                            self._log.append(change)
                            for q in self._subscribers:
                                q.put(change)
                    if producer is not None:
                        self._dead_letter(producer, rejected)
                        end = records[-1].offset + 1
                        if end > handed[tp]:
                            consumer.commit({tp: OffsetAndMetadata(end, None, -1)})
                            handed[tp] = end
        finally:
            consumer.close()
            if producer is not None:
                producer.close()

    def _read(self, batch: list[ItemMessage]) -> tuple[list[Rejected], Any]:
        """The rejections to dead-letter (not those of messages read before a restart), and the change."""
        rejected, valid = [], []
        for m in batch:
            got = self._parse(m.key, m.value)
            if not isinstance(got, Rejected):
                valid.append((m, got))
            elif not m.replayed:
                rejected.append(got if got.raw else Rejected(got.reason, got.detail, m.value or b""))
        if valid and self._counter is not None:
            self._counter.labels("applied", "").inc(len(valid))
        return rejected, self._changes(valid)

    def _dead_letter(self, producer: KafkaProducer, rejected: list[Rejected]) -> None:
        for r in rejected:
            headers = [("reason", r.detail.encode()), ("reason_code", r.reason.encode())]
            producer.send(self.dlq, value=r.raw, headers=headers)
            if self._counter is not None:
                self._counter.labels("rejected", r.reason).inc()
        if rejected:
            producer.flush()  # before the commit that says they are done


class CatalogueTail:
    """A :class:`~operators.catalogue.Catalogue` kept current from the catalogue topic (the HTTP API's copy).

    A :class:`Feed` of its own, outside the flow: it counts nothing and
    dead-letters nothing (the flow's process 0 does both).
    """

    def __init__(self, brokers: str, topic: str, extra: Mapping[str, Any] | None = None) -> None:
        self.catalogue = Catalogue()
        self._feed = Feed(brokers, topic, extra or {}, (parse_item, self._apply), "", None)
        self.caught_up = self._feed.caught_up

    def _apply(self, valid: list[tuple[ItemMessage, ItemInfo]]) -> None:
        for _, info in valid:
            self.catalogue.apply(info)

    def start(self) -> CatalogueTail:
        self._feed.start()
        return self

    def stop(self) -> None:
        self._feed.stop()


_FEEDS: dict[str, Feed] = {}
_FEEDS_LOCK = threading.Lock()


def feed(
    brokers: str, topic: str, extra: Mapping[str, Any], parse: tuple[Parse, Changes], dlq: str, counter: Counter
) -> Feed:
    """The process's one feed of ``topic`` (every ranker of the process shares it)."""
    with _FEEDS_LOCK:
        if topic not in _FEEDS:
            _FEEDS[topic] = Feed(brokers, topic, extra, parse, dlq, counter)
        return _FEEDS[topic]


def side_feeds(settings: Any, dead_letters: bool) -> tuple[Feed, Feed]:
    """This process's feeds of the catalogue and the user attributes (``dead_letters``: process 0)."""
    from operators.rules import parse_user, user_changes
    from state import metrics

    s, extra = settings, settings.kafka_extra()
    items_dlq, users_dlq = (s.items_dlq_topic, s.users_dlq_topic) if dead_letters else ("", "")
    return (
        feed(s.kafka, s.items_topic, extra, (parse_item, item_changes), items_dlq, metrics.CATALOGUE).start(),
        feed(s.kafka, s.users_topic, extra, (parse_user, user_changes), users_dlq, metrics.USER_MESSAGES).start(),
    )
