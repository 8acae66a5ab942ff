"""The unit of learning: one validated interaction."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """A validated interaction event (a named tuple: cheap to build, immutable).

    Attributes
    ----------
    user, item
        External ids (always strings).
    kind
        ``view``, ``click``, ``cart``, ``purchase`` or ``rating``.
    weight
        Positive learning weight derived from ``kind`` and ``value``.
    ts
        Event time, seconds since the epoch.
    source_ts
        When the event entered the system (the Kafka message timestamp),
        seconds since the epoch; freshness is measured from here.
    value
        The producer's ``value`` field, if any.
    """

    user: str
    item: str
    kind: str
    weight: float
    ts: float
    source_ts: float
    value: float | None = None
