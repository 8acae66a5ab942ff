"""The units of input: a validated interaction (learned) and an impression (what was shown; not learned)."""

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


LISTS = ("user", "similar", "popular")
"""Which list an impression showed: a user's list, an item's similar items, or the popular list."""


class Impression(NamedTuple):
    """Items shown to a user in one list (event type ``impression``); the analytics attribute clicks to it.

    Attributes
    ----------
    user
        External id.
    items
        The items shown, in order.
    list_kind
        One of :data:`LISTS`.
    ts, source_ts
        As in :class:`Event`.
    context
        The producer's ``context`` field (a page, a placement), if any.
    """

    user: str
    items: tuple[str, ...]
    list_kind: str
    ts: float
    source_ts: float
    context: str | None = None
