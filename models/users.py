"""User-side state of one shard: each user's recent items and the items they have seen.

A shard holds the users routed to one worker. Its state depends only on
its users' own events, so it needs nothing from the item side: an event
updates it at once, and the shard hands the learner what the learner
needs (:class:`LearnInput`: the user's recent items before the event) and
the ranker what ranking needs (:class:`UserView`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from models.arrays import grow
from models.config import ModelConfig
from models.event import Event
from models.ids import EMPTY, IdMap, item_key
from models.packing import packed_names, ragged, unragged, unstrings


class LearnInput(NamedTuple):
    """What the item-side learner needs of one event."""

    item: int  # item key (models.ids.item_key)
    name: str  # item id, for the lists in Redis
    weight: float
    ts: float
    recent: np.ndarray  # the user's recent item keys before the event (oldest first, EMPTY in unused slots)


class LearnBatch(NamedTuple):
    """Many :class:`LearnInput` as columns: what a shard sends the learner per batch (cheap to pickle)."""

    keys: np.ndarray
    names: list[str]
    weights: np.ndarray
    ts: np.ndarray
    recent: np.ndarray  # (events, history)

    @classmethod
    def of(cls, inputs: list[LearnInput], history: int) -> LearnBatch:
        if not inputs:
            return cls(np.zeros(0, np.int64), [], np.zeros(0), np.zeros(0), np.zeros((0, history), np.int64))
        keys, names, weights, ts, recent = zip(*inputs)
        return cls(np.array(keys, dtype=np.int64), list(names), np.array(weights), np.array(ts), np.stack(recent))


class UserView(NamedTuple):
    """What ranking needs of one user: copies, safe to keep while the shard goes on learning."""

    row: int  # the user's row in its shard
    user: str
    recent: np.ndarray  # item keys, oldest first, EMPTY in unused slots
    seen: np.ndarray  # item keys the user interacted with (at most seen_cap, the oldest forgotten)


class UserTable:
    """Recent and seen items of the users of one shard, in compact arrays.

    ``recent`` is ``(users, history)`` item keys, most recent last; a
    repeat of the latest item is not added twice. ``seen`` is a ring per
    user of at most ``seen_cap`` item keys, for exclusion. Reads never
    create state.

    Examples
    --------
    >>> t = UserTable(ModelConfig(history=3, window=2))
    >>> li = t.learn(Event("ann", "x", "view", 1.0, 0.0, 0.0))
    >>> li = t.learn(Event("ann", "y", "view", 1.0, 1.0, 1.0))
    >>> li.recent.tolist() == [-1, -1, item_key("x")]
    True
    >>> v = t.view("ann")
    >>> sorted(v.seen.tolist()) == sorted([item_key("x"), item_key("y")]), t.view("bob")
    (True, None)
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.users = IdMap()
        self.recent = np.full((0, config.history), EMPTY, dtype=np.int64)
        self.seen: list[np.ndarray] = []
        self.seen_n = np.zeros(0, dtype=np.int64)  # items ever added to each ring
        self.n_events = 0
        # Since the last checkpoint (state/journal.py): rows whose recent or
        # seen_n changed, and the (row, key) pairs appended to seen rings.
        self.dirty = np.zeros(0, dtype=np.bool_)
        self.appended_rows, self.appended_keys = array("q"), array("q")
        self._journaled = 0  # users at the last checkpoint

    def __len__(self) -> int:
        return len(self.users)

    def learn(self, event: Event) -> LearnInput:
        """Apply one event; what the learner needs of it."""
        u = self.users.add(event.user)
        if u == len(self.seen):
            self._add_row()
        key = item_key(event.item)
        recent = self.recent[u]
        before = recent.copy()
        if recent[-1] != key:
            recent[:-1] = recent[1:]
            recent[-1] = key
        self._remember(u, key)
        self.dirty[u] = True
        self.n_events += 1
        return LearnInput(key, event.item, event.weight, event.ts, before)

    def _add_row(self) -> None:
        self._ensure_rows(len(self.seen) + 1)

    def _ensure_rows(self, n: int) -> None:
        while len(self.seen) < n:
            self.seen.append(np.zeros(min(8, self.config.seen_cap), dtype=np.int64))
        self.recent = grow(self.recent, n, fill=EMPTY)
        self.seen_n = grow(self.seen_n, n)
        self.dirty = grow(self.dirty, n)

    def _remember(self, u: int, key: int) -> None:
        """Add ``key`` to user ``u``'s seen ring unless it is there."""
        n = int(self.seen_n[u])
        ring = self.seen[u]
        if n and key in ring[: min(n, ring.shape[0])]:
            return
        self._append_seen(u, key)
        self.appended_rows.append(u)
        self.appended_keys.append(key)

    def _append_seen(self, u: int, key: int) -> None:
        """Append to ring ``u``: it doubles up to seen_cap, then the oldest is overwritten."""
        ring = self.seen[u]
        n = int(self.seen_n[u])
        cap = self.config.seen_cap
        if n == ring.shape[0] and n < cap:
            ring = self.seen[u] = np.resize(ring, min(2 * n, cap))
        ring[n % ring.shape[0]] = key
        self.seen_n[u] = n + 1

    def view(self, user: str) -> UserView | None:
        """The user's state for ranking, or None for an unknown user."""
        u = self.users.get(user)
        return None if u is None else self.view_row(u)

    def view_row(self, u: int) -> UserView:
        n = min(int(self.seen_n[u]), self.seen[u].shape[0])
        return UserView(u, self.users.names[u], self.recent[u].copy(), self.seen[u][:n].copy())

    # ------------------------------------------------ journal (state/journal.py)

    def rows(self) -> int:
        return len(self.users)

    def row_bytes(self) -> int:
        n = len(self.users)
        ring = float(np.minimum(self.seen_n[:n], self.config.seen_cap).mean()) if n else 8.0
        return int(8 * (self.config.history + ring + 2) + 24)

    def delta(self) -> dict[str, np.ndarray]:
        n = len(self.users)
        rows = np.flatnonzero(self.dirty[:n])
        self.dirty[:n] = False
        first, self._journaled = self._journaled, n
        added_rows, added_keys = self.appended_rows, self.appended_keys
        self.appended_rows, self.appended_keys = array("q"), array("q")
        return {
            "first": np.array(first),
            **packed_names(self.users.names[first:n]),
            "rows": rows,
            "recent": self.recent[rows],
            "seen_row": np.frombuffer(added_rows, np.int64),
            "seen_key": np.frombuffer(added_keys, np.int64),
        }

    def slice(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        lens, vals = ragged(self.seen[lo:hi])
        return {
            **packed_names(self.users.names[lo:hi]),
            "recent": self.recent[lo:hi],
            "seen_n": self.seen_n[lo:hi],
            "seen_len": lens,
            "seen": vals,
        }

    def small(self) -> dict[str, int]:
        return {"n_events": self.n_events, "users": len(self.users)}

    def apply_delta(self, a: dict[str, np.ndarray], stale: Callable[[np.ndarray], np.ndarray]) -> None:
        self._place_names(int(a["first"]), unstrings(a["name_len"], a["name"]))
        rows = a["rows"]
        if rows.size:
            self._ensure_rows(int(rows.max()) + 1)
            keep = ~stale(rows)
            self.recent[rows[keep]] = a["recent"][keep]
        appended = a["seen_row"]
        keep = ~stale(appended)
        if keep.any():
            self._ensure_rows(int(appended.max()) + 1)
        for u, key in zip(appended[keep].tolist(), a["seen_key"][keep].tolist()):
            self._append_seen(u, key)  # it passed the membership check when it was recorded

    def apply_slice(self, lo: int, hi: int, a: dict[str, np.ndarray]) -> None:
        if hi <= lo:
            return
        self._place_names(lo, unstrings(a["name_len"], a["name"]))
        self.recent[lo:hi] = a["recent"]
        self.seen_n[lo:hi] = a["seen_n"]
        for u, ring in enumerate(unragged(a["seen_len"], a["seen"]), lo):
            self.seen[u] = ring.copy() if ring.shape[0] else np.zeros(min(8, self.config.seen_cap), dtype=np.int64)

    def apply_small(self, small: dict[str, int]) -> None:
        self.n_events = small["n_events"]
        self.users = IdMap(self.users.names[: small["users"]])
        self._journaled = len(self.users)
        self.dirty[:] = False

    def _place_names(self, first: int, names: list[str]) -> None:
        self._ensure_rows(first + len(names))
        have = self.users.names
        if len(have) < first + len(names):
            have.extend([""] * (first + len(names) - len(have)))
        have[first : first + len(names)] = names
