"""Attribution: which list earned a click, a cart or a purchase.

An interaction of an attributed kind (:data:`ATTRIBUTED`) with an item is
attributed to the latest impression that showed that item to that user
no longer than ``window_s`` before it (last touch). Every such
interaction counts: two clicks on one shown item are two clicks. Feed
records in time order (a live flow does so batch by batch: the impressions
of a batch before its interactions), and :meth:`Attributor.expire` now and
then to keep memory bounded by the window.

>>> from models.event import Event, Impression
>>> a = Attributor(window_s=1800)
>>> a.shown(Impression("u", ("x", "y"), "user", 100.0, 100.0))
>>> a.shown(Impression("u", ("y",), "similar", 200.0, 200.0))
>>> a.interact(Event("u", "y", "click", 2.0, 300.0, 300.0))
Attribution(list_kind='similar', kind='click', value=0.0, shown_ts=200.0)
>>> a.interact(Event("u", "x", "purchase", 5.0, 2000.0, 2000.0, 30.0)) is None  # 1,900 s after: too late
True
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import NamedTuple

from models.event import Event, Impression

ATTRIBUTED = ("click", "cart", "purchase")
"""The interaction kinds credited to impressions."""


class Attribution(NamedTuple):
    """An interaction credited to a list."""

    list_kind: str
    kind: str
    value: float  # the purchase's ``value`` (its amount), 0 if none
    shown_ts: float


class Attributor:
    """Latest impression of each (user, item), bounded per user.

    Parameters
    ----------
    window_s
        Longest time from an impression to an interaction credited to it.
    per_user
        Shown items remembered per user (the oldest are forgotten first).
    """

    def __init__(self, window_s: float = 1800.0, per_user: int = 512) -> None:
        self.window_s = window_s
        self.per_user = per_user
        self._shown: dict[str, OrderedDict[str, tuple[str, float]]] = {}
        self._newest: dict[str, float] = {}  # each user's newest impression time
        self._order: deque[tuple[float, str]] = deque()  # (ts, user) of impressions, for expire()

    def __len__(self) -> int:
        """Users with an impression still remembered."""
        return len(self._shown)

    def shown(self, imp: Impression) -> None:
        seen = self._shown.get(imp.user)
        if seen is None:
            seen = self._shown[imp.user] = OrderedDict()
        for item in imp.items:
            seen[item] = (imp.list_kind, imp.ts)
            seen.move_to_end(item)
        while len(seen) > self.per_user:
            seen.popitem(last=False)
        if imp.ts >= self._newest.get(imp.user, -math.inf):
            self._newest[imp.user] = imp.ts
        self._order.append((imp.ts, imp.user))

    def expire(self, now: float) -> None:
        """Forget the users whose newest impression is older than the window at ``now`` (bounded memory).

        >>> a = Attributor(window_s=10)
        >>> a.shown(Impression("u", ("x",), "user", 100.0, 100.0))
        >>> a.expire(105.0), len(a), a.expire(111.0), len(a)
        (None, 1, None, 0)
        """
        cutoff = now - self.window_s
        order = self._order
        while order and order[0][0] < cutoff:
            _, user = order.popleft()
            if self._newest.get(user, math.inf) < cutoff:
                del self._newest[user]
                del self._shown[user]

    def interact(self, ev: Event) -> Attribution | None:
        """The attribution of ``ev``, or None (not an attributed kind, never shown, or shown too long ago)."""
        if ev.kind not in ATTRIBUTED:
            return None
        seen = self._shown.get(ev.user)
        got = seen.get(ev.item) if seen is not None else None
        if got is None or not 0.0 <= ev.ts - got[1] <= self.window_s:
            return None
        value = (ev.value or 0.0) if ev.kind == "purchase" else 0.0
        return Attribution(got[0], ev.kind, value, got[1])
