"""Exponentially time-decayed item popularity."""

from __future__ import annotations

import math

import numpy as np

from models.arrays import grow

# Rescale the stored scores when the decay factor would exceed 2**_RESCALE_AT,
# far below float64 overflow (2**1023).
_RESCALE_AT = 64.0
_LEADERS = 1024  # items kept as the only candidates of top(n) for n up to this many


class DecayedPopularity:
    """Time-decayed interaction counts per item.

    An event of weight ``w`` at time ``t`` contributes ``w * 2**(-(now - t) /
    half_life)`` to its item's score. Scores are stored relative to a
    reference time and rescaled only when the factor grows large, so an
    update is one multiply-add and ranking needs no pass over all items.
    ``half_life=math.inf`` gives all-time counts.

    Parameters
    ----------
    half_life
        Half life in seconds of event time.

    Examples
    --------
    >>> pop = DecayedPopularity(half_life=3600)
    >>> pop.learn(0, 1.0, t=0.0)
    >>> pop.learn(1, 1.0, t=3600.0)
    >>> pop.scores(at=3600.0).round(3).tolist()
    [0.5, 1.0]
    >>> pop.top(1).tolist()
    [1]
    """

    def __init__(self, half_life: float = 86400.0) -> None:
        self.half_life = half_life
        self._scores = np.zeros(0, dtype=np.float64)
        self._n = 0
        self._t_ref: float | None = None
        self._peak = 0.0  # max of the stored scores, kept per update
        self.now = 0.0
        self.rescaled = 1.0  # product of the rescalings since the last take_rescaled() (snapshots)
        self._leaders: set[int] | None = None  # None: found again by a pass over every item
        self._floor = 0.0  # every item outside the leaders has a stored score <= this

    def __len__(self) -> int:
        return self._n

    def __getstate__(self) -> dict:
        # The leaders are a cache that reads fill: a copy finds them again (reads create no state).
        return {**self.__dict__, "_leaders": None, "_floor": 0.0}

    def ensure(self, n: int) -> None:
        """Make items ``0..n-1`` exist (a new one scores 0)."""
        if n > self._n:
            self._scores = grow(self._scores, n)
            self._n = n

    def learn(self, item: int, weight: float, t: float) -> None:
        """Add ``weight`` to ``item`` at event time ``t``."""
        if item >= self._n:
            self.ensure(item + 1)
        self.now = max(self.now, t)
        if not math.isinf(self.half_life):
            if self._t_ref is None:
                self._t_ref = t
            exponent = (t - self._t_ref) / self.half_life
            if exponent > _RESCALE_AT:
                scale = 2.0**-exponent
                self._scores[: self._n] *= scale
                self._peak *= scale
                self._floor *= scale
                self.rescaled *= scale
                self._t_ref = t
                exponent = 0.0
            weight *= 2.0**exponent
        s = self._scores[item] + weight
        self._scores[item] = s
        self._peak = max(self._peak, s)
        if s > self._floor and self._leaders is not None:
            self._leaders.add(item)

    def scores(self, at: float | None = None) -> np.ndarray:
        """Decayed scores of all items at time ``at`` (default: newest event).

        Returns a view for all-time counts; do not modify it.
        """
        live = self._scores[: self._n]
        if math.isinf(self.half_life) or self._t_ref is None:
            return live
        at = self.now if at is None else at
        return live * 2.0 ** ((self._t_ref - at) / self.half_life)

    def raw(self) -> np.ndarray:
        """Scores proportional to :meth:`scores`, without a copy (for ranking)."""
        return self._scores[: self._n]

    def peak(self) -> float:
        """The largest value in :meth:`raw`, without a pass over the items."""
        return self._peak

    def top(self, n: int) -> np.ndarray:
        """Indexes of the ``n`` most popular items, best first."""
        raw = self.raw()
        n = min(n, raw.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self._leaders is None:
            self._lead(np.arange(raw.shape[0]))
        assert self._leaders is not None
        if len(self._leaders) > 4 * _LEADERS:
            self._lead(np.fromiter(self._leaders, dtype=np.int64, count=len(self._leaders)))
        if n > len(self._leaders):  # more than the leaders (a small catalogue, or a long list)
            part = np.argpartition(-raw, n - 1)[:n]
        else:
            part = np.fromiter(self._leaders, dtype=np.int64, count=len(self._leaders))
        return part[np.argsort(-raw[part], kind="stable")][:n]

    def _lead(self, items: np.ndarray) -> None:
        """Make the best ``_LEADERS`` of ``items`` (a superset of the leaders) the leaders."""
        raw = self.raw()
        if items.shape[0] > _LEADERS:
            items = items[np.argpartition(-raw[items], _LEADERS - 1)[:_LEADERS]]
            self._floor = max(self._floor, float(raw[items].min()))
        self._leaders = set(items.tolist())

    # ------------------------------------------------ snapshots (state/journal.py)

    def take_rescaled(self) -> float:
        """The factor every stored score was multiplied by since the last call."""
        factor, self.rescaled = self.rescaled, 1.0
        return factor

    def set_rows(self, rows: np.ndarray, values: np.ndarray, factor: float = 1.0) -> None:
        """Restore: scale every score by ``factor``, then set ``rows`` to ``values``."""
        self._leaders, self._floor = None, 0.0
        if factor != 1.0:
            self._scores[: self._n] *= factor
        if rows.size:
            n = int(rows.max()) + 1
            if n > self._n:
                self._scores = grow(self._scores, n)
                self._n = n
            self._scores[rows] = values

    def scalars(self) -> dict[str, float | int | None]:
        return {"n": self._n, "t_ref": self._t_ref, "peak": self._peak, "now": self.now}

    def set_scalars(self, d: dict) -> None:
        self._leaders, self._floor = None, 0.0
        self._scores = grow(self._scores, d["n"])
        self._n, self._t_ref, self._peak, self.now = d["n"], d["t_ref"], d["peak"], d["now"]
