"""In-process source and dead-letter sink for the embedded demo (no Kafka).

The source turns events into the same JSON messages a producer would post,
so everything past it (parse, learn, serve) is the code the Kafka flow runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from models.event import Event
from operators.parse import Message, Rejected
from state import metrics


def event_json(event: Event) -> bytes:
    """The producer-contract JSON of an event."""
    doc: dict[str, object] = {"user": event.user, "item": event.item, "type": event.kind, "ts": event.ts}
    if event.value is not None:
        doc["value"] = event.value
    return orjson.dumps(doc)


@dataclass
class Gate:
    """Holds a source before its ``events``-th :class:`Event` (bytes items do not count) until ``opened`` is set.

    ``held`` is set once the source waits there, and ``sent`` is then the
    number of messages it has sent.
    """

    events: int
    opened: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)
    sent: int = 0


class _Reader(StatefulSourcePartition[Message, int]):
    def __init__(
        self,
        events: Iterator[Event | bytes],
        skip: int,
        batch: int,
        rate: float,
        gate: Gate | None,
    ) -> None:
        self._events = events
        self._gate = gate
        self._pos = 0
        self._seen = 0  # Event items sent (the gate counts these)
        for _ in range(skip):
            if isinstance(next(self._events, None), Event):
                self._seen += 1
            self._pos += 1
        self._batch = batch
        self._rate = rate
        self._start = time.monotonic()
        self._sent = 0
        self._awake: datetime | None = None

    def next_batch(self) -> list[Message]:
        n = self._batch
        gate = self._gate if self._gate is not None and not self._gate.opened.is_set() else None
        if gate is not None and self._seen >= gate.events:
            gate.sent = self._pos
            gate.held.set()
            self._awake = datetime.now(UTC) + timedelta(milliseconds=20)
            return []
        if self._rate > 0:
            due = int((time.monotonic() - self._start) * self._rate) - self._sent
            if due <= 0:
                # Wake when the next message is due, as a Kafka source polls what has arrived: sleeping
                # for 64 messages' worth made batches of 64 at any rate, and every event of a user's
                # session in one batch then was checked against the list served before it.
                self._awake = datetime.now(UTC) + timedelta(seconds=max(1.0 / self._rate, 0.001))
                return []
            n = min(n, due)
        self._awake = None
        now = time.time()
        out = []
        for event in self._events:
            if isinstance(event, bytes):
                out.append(Message(event, now))
            else:
                out.append(Message(event_json(event), now))
                self._seen += 1
            if len(out) >= n or (gate is not None and self._seen >= gate.events):
                break
        if not out:
            raise StopIteration
        self._pos += len(out)
        self._sent += len(out)
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._pos


class EventSource(FixedPartitionedSource[Message, int]):
    """One partition replaying ``make_events()`` as JSON messages.

    Parameters
    ----------
    make_events
        Called once per run; must give the same sequence each time so a
        recovered run can skip what was already consumed. ``bytes`` items
        are sent as they are (to show rejected messages).
    batch
        Messages per batch.
    rate
        Messages per second (0: as fast as the flow takes them).
    gate
        Hold the source at an event until told to go on (the demo reads
        "before" lists there).
    """

    def __init__(
        self,
        make_events: Callable[[], Iterator[Event | bytes]],
        batch: int = 512,
        rate: float = 0.0,
        gate: Gate | None = None,
    ) -> None:
        self.make_events = make_events
        self.batch = batch
        self.rate = rate
        self.gate = gate

    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Reader:
        return _Reader(self.make_events(), resume_state or 0, self.batch, self.rate, self.gate)


class CountingDeadLetterSink(DynamicSink[Rejected]):
    """Counts rejected messages and keeps the last few (the demo has no Kafka)."""

    def __init__(self, keep: int = 20) -> None:
        self.kept: list[Rejected] = []
        self.keep = keep

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Rejected]:
        return _CountingWriter(self)


class _CountingWriter(StatelessSinkPartition[Rejected]):
    def __init__(self, sink: CountingDeadLetterSink) -> None:
        self._sink = sink

    def write_batch(self, items: list[Rejected]) -> None:
        for r in items:
            metrics.EVENTS.labels("rejected", r.reason).inc()
        self._sink.kept = (self._sink.kept + list(items))[-self._sink.keep :]
