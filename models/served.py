"""The lists a ranker last wrote, kept so it can rewrite them when the catalogue takes an item away."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.arrays import grow
from models.blend import Ranked


class ServedLists:
    """Per row (a user of the shard, or an item): the owner's id, the list's item keys and scores, its event time.

    ``keys`` is ``(rows, width)`` item keys, -1 past a list's end.
    :meth:`without` finds the lists that hold any of some items and gives
    them back without those items, scores and order kept: what a list in
    Redis becomes at once when an item is no longer available, before its
    owner is ranked again. About ``12 * width + 16`` bytes per row.

    >>> s = ServedLists(width=3)
    >>> s.record([0, 1], ["ann", "bob"], [Ranked(["x", "y"], [0.9, 0.5], [10, 20]), Ranked(["z"], [0.7], [30])], 5.0)
    >>> s.keys[0, :2].tolist(), float(s.event_ts[1])
    ([10, 20], 5.0)
    >>> same, other = Ranked(["x", "y"], [0.9, 0.5], [10, 20]), Ranked(["z"], [0.6], [30])
    >>> s.unchanged([0, 1, 2], [same, other, other]).tolist()  # row 2: nothing stored
    [True, False, False]
    >>> [(owner, lst.keys, lst.scores) for owner, lst, ts in s.without(np.array([10]))]
    [('ann', [20], [0.5])]
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.keys = np.full((0, width), -1, dtype=np.int64)
        self.scores = np.zeros((0, width), dtype=np.float32)
        self.event_ts = np.zeros(0, dtype=np.float64)
        self.owners: list[str] = []

    def record(self, rows: Sequence[int], owners: Sequence[str], lists: Sequence[Ranked], event_ts: float) -> None:
        """What was just written for ``rows`` (event time of all of them; :meth:`record_each` for one per row)."""
        self.record_each(rows, owners, lists, [event_ts] * len(rows))

    def record_each(
        self, rows: Sequence[int], owners: Sequence[str], lists: Sequence[Ranked], event_ts: Sequence[float]
    ) -> None:
        if not rows:
            return
        end = max(rows) + 1
        self.keys = grow(self.keys, end, fill=-1)
        self.scores = grow(self.scores, end, fill=0.0)
        self.event_ts = grow(self.event_ts, end, fill=0.0)
        if len(self.owners) < end:
            self.owners += [""] * (end - len(self.owners))
        w = self.width
        for row, owner, lst, ts in zip(rows, owners, lists, event_ts):
            n = min(len(lst.keys), w)
            self.keys[row, :n] = lst.keys[:n]
            self.keys[row, n:] = -1
            self.scores[row, :n] = lst.scores[:n]
            self.event_ts[row] = ts
            self.owners[row] = owner

    def unchanged(self, rows: Sequence[int], lists: Sequence[Ranked]) -> np.ndarray:
        """For each row, whether its list in ``lists`` is the one stored (keys, and scores to float32)."""
        at = np.array(rows, dtype=np.int64)
        out = np.zeros(at.shape[0], dtype=np.bool_)
        have = np.flatnonzero(at < self.keys.shape[0])
        if not have.size:
            return out
        w = self.width
        lens = np.array([min(len(lists[i].keys), w) for i in have.tolist()], dtype=np.int64)
        filled = np.arange(w) < lens[:, None]  # row-major, as the lists are concatenated
        keys = np.full((have.shape[0], w), -1, dtype=np.int64)
        keys[filled] = [key for i in have.tolist() for key in lists[i].keys[:w]]
        scores = np.zeros((have.shape[0], w), dtype=np.float32)
        scores[filled] = [x for i in have.tolist() for x in lists[i].scores[:w]]
        rows_at = at[have]
        same = (keys == self.keys[rows_at]).all(axis=1) & ((scores == self.scores[rows_at]) | ~filled).all(axis=1)
        out[have] = same
        return out

    def without(self, items: np.ndarray) -> list[tuple[str, Ranked, float]]:
        """Every stored list holding one of the item keys ``items``, as ``(owner, list without them, event time)``.

        The stored copies are updated too, so a second call finds nothing.
        Names are not kept here: the returned lists carry keys and scores,
        with ``items`` (names) empty for the caller to fill.
        """
        if not items.size or not self.keys.size:
            return []
        hit = np.isin(self.keys, items)
        rows = np.flatnonzero(hit.any(axis=1))
        out = []
        for row in rows.tolist():
            keep = ~hit[row] & (self.keys[row] >= 0)
            keys, scores = self.keys[row, keep], self.scores[row, keep]
            n = keys.shape[0]
            self.keys[row, :n], self.keys[row, n:] = keys, -1
            self.scores[row, :n] = scores
            kept = Ranked([], scores.astype(np.float64).round(6).tolist(), keys.tolist())
            out.append((self.owners[row], kept, float(self.event_ts[row])))
        return out
