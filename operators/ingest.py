"""Events over HTTP (``POST /events``): the flow's own validation, then Kafka, keyed by user.

:func:`check_body` splits a body (one event object, or an array of up to
:data:`MAX_EVENTS`) into accepted messages and rejections, with
:func:`operators.parse.check`, the very function the flow applies: an
event the API accepts is one the flow learns. :class:`EventProducer`
sends the accepted ones and returns once Kafka has acknowledged every one
of them (``acks=all``), so a 200 means durable.

>>> got = check_body(b'[{"user": 1, "item": "a"}, {"user": 2}]', ParseConfig())
>>> got.accepted
[(b'1', b'{"user":1,"item":"a"}')]
>>> got.rejected
[{'index': 1, 'reason_code': 'missing_item', 'reason': 'item is missing or null'}]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from operators.kafka_io import ServiceError, client_config, ensure_topics
from operators.parse import ParseConfig, Rejected, check
from state import metrics

log = logging.getLogger(__name__)

MAX_EVENTS = 1000
"""Most events in one ``POST /events`` body."""


class BadBody(ValueError):
    """A body that is not one event or an array of events; ``status`` is the HTTP code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Checked:
    """A body, checked: ``(key, value)`` messages to produce, and the rejections to answer."""

    accepted: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def check_body(body: bytes, config: ParseConfig, max_events: int = MAX_EVENTS) -> Checked:
    """Validate every event of ``body``; raise :class:`BadBody` if the body itself is wrong.

    >>> check_body(b'{"user": 1', ParseConfig())
    Traceback (most recent call last):
    ...
    operators.ingest.BadBody: the body is not JSON: unexpected end of data: line 1 column 11 (char 10)
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as ex:
        raise BadBody(400, f"the body is not JSON: {str(ex)[:200]}") from ex
    if isinstance(doc, dict):
        docs = [doc]
    elif isinstance(doc, list):
        if not doc:
            raise BadBody(400, "the body is an empty array: send one event or an array of 1 to 1000")
        if len(doc) > max_events:
            raise BadBody(413, f"the body has {len(doc)} events; at most {max_events} per request")
        docs = doc
    else:
        raise BadBody(400, f"expected an event object or an array of events, got {type(doc).__name__}")
    out = Checked()
    now = time.time()
    for index, obj in enumerate(docs):
        raw = orjson.dumps(obj)
        if len(raw) > config.max_message_bytes:
            got: Any = Rejected("too_large", f"event is {len(raw)} bytes, limit {config.max_message_bytes}", raw)
        else:
            got = check(obj, raw, now, config)
        if isinstance(got, Rejected):
            out.rejected.append({"index": index, "reason_code": got.reason, "reason": got.detail})
        else:
            out.accepted.append((got.user.encode(), raw))
    return out


class EventProducer:
    """Produce accepted events to the topic and wait for Kafka's acknowledgement.

    The Kafka client is made on first use (and again after a failure), so
    the API starts, and answers reads, while Kafka is down; ``POST /events``
    then fails with :class:`ServiceError` (503).
    """

    def __init__(
        self, brokers: str, topic: str, extra: Mapping[str, Any] | None = None, partitions: int = 1, timeout: float = 10
    ) -> None:
        self.brokers, self.topic, self.partitions, self.timeout = brokers, topic, partitions, timeout
        self.extra = dict(extra or {})
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _client(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                ensure_topics(self.brokers, {self.topic: self.partitions}, self.extra)
                try:
                    self._producer = KafkaProducer(
                        **client_config(self.brokers, self.extra), acks="all", linger_ms=2, max_block_ms=5000
                    )
                except KafkaError as ex:
                    raise ServiceError(f"cannot reach Kafka at {self.brokers}: {ex}") from ex
            return self._producer

    def send(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` messages; return when all are acknowledged, else raise :class:`ServiceError`."""
        if not messages:
            return
        producer = self._client()
        try:
            futures = [producer.send(self.topic, key=key, value=value) for key, value in messages]
            deadline = time.monotonic() + self.timeout
            for f in futures:
                f.get(timeout=max(deadline - time.monotonic(), 0.001))
        except KafkaError as ex:
            log.error("producing to %s on %s failed: %s", self.topic, self.brokers, ex)
            self.close()
            raise ServiceError(f"Kafka at {self.brokers} did not take the events: {ex}; retry") from ex
        metrics.API_EVENTS.labels("accepted", "").inc(len(messages))

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=1)
                self._producer = None


def kafka_reachable(brokers: str, extra: Mapping[str, Any] | None = None) -> str | None:
    """None if the brokers answer a metadata request within 2 s, else why not (``GET /readyz``)."""
    try:
        admin = KafkaAdminClient(**{**client_config(brokers, extra or {}), "bootstrap_timeout_ms": 2000})
        try:
            admin.list_topics()
        finally:
            admin.close()
    except KafkaError as ex:
        return f"{brokers}: {ex}"
    return None
