"""Incremental item-to-item co-occurrence over each user's recent items."""

from __future__ import annotations

from array import array
from collections import OrderedDict
from operator import attrgetter

import numpy as np

from models.arrays import sum_by_key


class _Row:
    """One item's neighbours: a position map plus parallel ``array`` columns (item, count).

    Python arrays, not numpy ones: an event adds to about ten rows, and an
    add to a Python array costs about 0.6 us where numpy scalars took 0.9
    (RESULTS.md, "Co-occurrence rows as Python arrays"). Readers
    copy the columns into their own arrays (``extend``, ``np.array``), so no
    numpy view holds a row's buffer while it grows.
    """

    __slots__ = ("idx", "pos", "total", "val")

    def __init__(self) -> None:
        self.pos: dict[int, int] = {}
        self.idx = array("q")
        self.val = array("d")
        self.total = 0.0

    @property
    def n(self) -> int:
        return len(self.idx)

    def prune(self, keep: int) -> None:
        val = np.array(self.val)
        order = np.argsort(-val, kind="stable")[:keep]
        kept = val[order]
        self.idx = array("q", np.array(self.idx)[order].tobytes())
        self.val = array("d", kept.tobytes())
        self.pos = {j: p for p, j in enumerate(self.idx)}
        self.total = float(kept.sum())


class CoOccurrence:
    """Counts of "item ``i`` followed item ``j`` in some user's recent history".

    When a user interacts with ``i``, every item ``j`` among their last
    ``window`` items gets ``row[j][i] += w * recency**pos`` (forward) and
    ``row[i][j] += w * backward * recency**pos``. A row is bounded to
    ``2 * row_cap`` entries: past that, its ``row_cap`` largest are kept, so
    memory is at most ``2 * row_cap`` entries per item on an endless stream.

    A user's scores are a weighted sum of their recent items' normalised
    rows, one weight per age (:attr:`positions`, age 0 the last item),
    learned online from the events themselves (:meth:`_credit`): sessions
    put most weight on the last item, stable tastes spread it. Replicas
    that replay the same events learn the same weights.

    Parameters
    ----------
    row_cap
        Entries kept per item row after pruning.
    backward
        Weight of the reverse direction (``i`` -> ``j``), 0 to 1.
    recency
        Per-position decay of the counts older recent items add, and the
        starting position weights.
    window
        Recent items that count.
    learn_positions
        Learn the position weights (else they stay ``recency ** age``).
    hop
        Weight of the two-step walk in a row as scoring reads it (0: off;
        :meth:`row`). Rows are counted as before; what a user's recent item
        contributes is its row mixed with its ``hop_neighbours`` strongest
        neighbours' rows (``(P + hop * P @ P) / (1 + hop)``), which fills in
        the sparse rows of session logs. Each item's mixed row is kept and
        made again once its row's total has grown by ``hop_stale``.
    hop_cache
        Mixed rows kept (the least recently read are dropped past it): at
        most ``2 * row_cap`` entries each, about 6 KB at the default cap.

    Examples
    --------
    >>> co = CoOccurrence(row_cap=10)
    >>> co.learn(recent=[0], item=1, weight=1.0)
    >>> co.learn(recent=[0], item=2, weight=1.0)
    >>> co.learn(recent=[0, 2], item=2, weight=1.0)  # 2 -> 2 is skipped
    >>> none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    >>> user, item, val, peak = co.scores(np.array([[-1, 0]]), exclude=none)
    >>> item.tolist(), (val / peak).round(3).tolist()
    ([1, 2], [0.5, 1.0])
    >>> co.learn(recent=[3, 0], item=1, weight=1.0)  # the last item's row held item 1, item 3's did not
    >>> [round(w, 3) for w in co.positions]
    [0.996, 0.001, 0.001, 0.001, 0.001]
    """

    def __init__(
        self,
        row_cap: int = 200,
        backward: float = 0.5,
        recency: float = 0.8,
        window: int = 5,
        learn_positions: bool = True,
        hop: float = 0.0,
        hop_neighbours: int = 32,
        hop_stale: float = 1.1,
        hop_cache: int = 10_000,
    ) -> None:
        self.hop = hop
        self.hop_neighbours = hop_neighbours
        self.hop_stale = hop_stale
        self.hop_cache = hop_cache
        # item: mixed row, its row's total then; least recently read first
        self._walks: OrderedDict[int, tuple[np.ndarray, np.ndarray, float]] = OrderedDict()
        self.row_cap = row_cap
        self.backward = backward
        self.recency = recency
        self.learn_positions = learn_positions
        start = recency ** np.arange(window)
        self.positions: list[float] = (start / start.sum()).tolist()  # scoring weight by age, 0: the last item
        self.credited = 0  # events that moved the position weights
        self.rows: list[_Row] = []
        # The adds since the log was last taken (snapshots), as columns of raw numbers, when on.
        self.log: tuple[array, array, array] | None = None

    def __getstate__(self) -> dict:
        # The mixed rows are a cache that reads fill: a copy (a replica's, a snapshot's) makes its own.
        return {**self.__dict__, "_walks": OrderedDict()}

    def _ensure(self, n: int) -> None:
        while len(self.rows) < n:
            self.rows.append(_Row())

    def learn(self, recent: list[int], item: int, weight: float) -> None:
        """Link ``item`` to the user's ``recent`` items (most recent last)."""
        if not recent:
            return
        self._ensure(max(item, *recent) + 1)
        if self.learn_positions:
            self._credit(recent, item)
        w = weight
        back = self.backward
        add = self.add
        for j in reversed(recent):
            if j == item:
                # A repeat carries no co-occurrence signal; do not decay past it.
                continue
            add(j, item, w)
            if back:
                add(item, j, w * back)
            w *= self.recency

    def _credit(self, recent: list[int], item: int) -> None:
        """One online EM step of the position weights: how much each age's row predicted ``item``.

        Scores are a mixture of the recent items' normalised rows, weighted
        by age. Before the event is counted, each age's row gives ``item`` a
        share; the ages are credited in proportion to weight x share, and the
        weights move towards the credit by a step that starts as a running
        mean and settles at 1/1000. Logs where the last item says most
        (shopping sessions) end with most weight on age 0; logs of stable
        tastes spread it.
        """
        rows, pos = self.rows, self.positions
        window = recent[-len(pos) :]
        if item in window:
            return  # a return to a recent item: lists exclude it, so it says nothing about what to rank
        shares = []
        for age, j in enumerate(reversed(window)):
            r = rows[j]
            at = r.pos.get(item)
            shares.append(pos[age] * r.val[at] / r.total if at is not None else 0.0)
        total = sum(shares)
        if total <= 0.0:
            return
        self.credited += 1
        step = max(1.0 / self.credited, 1e-3)
        keep = 1.0 - step
        for age in range(len(pos)):
            credit = shares[age] / total if age < len(shares) else 0.0
            pos[age] = keep * pos[age] + step * credit
        floored = [max(p, 1e-3) for p in pos]  # no age is ever ruled out
        norm = sum(floored)
        self.positions = [p / norm for p in floored]

    def add(self, row: int, col: int, w: float) -> None:
        """``row[col] += w``, pruning the row to ``row_cap`` entries once it holds twice as many.

        Every change to the rows goes through here, in order: with ``log``
        on, the ``(row, col, w)`` adds are recorded, and replaying them
        (:meth:`replay`) rebuilds the same rows, pruning included.
        """
        r = self.rows[row]
        r.total += w
        p = r.pos.get(col)
        if p is None:
            r.pos[col] = len(r.idx)
            r.idx.append(col)
            r.val.append(w)
            if len(r.idx) > 2 * self.row_cap:
                r.prune(self.row_cap)  # sets the total anew
        else:
            r.val[p] += w
        if self.log is not None:
            self.log[0].append(row)
            self.log[1].append(col)
            self.log[2].append(w)

    def start_log(self) -> None:
        """Log every add from now on (snapshots replay them: :meth:`take_log`, :meth:`replay`)."""
        self.log = (array("q"), array("q"), array("d"))

    def take_log(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The logged adds as arrays ``(row, col, w)``; the log starts over."""
        if self.log is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        rows, cols, ws = self.log
        self.start_log()
        return np.frombuffer(rows, np.int64), np.frombuffer(cols, np.int64), np.frombuffer(ws, np.float64)

    def replay(self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> None:
        """Apply logged adds in order (a restore)."""
        if rows.size:
            self._ensure(int(max(rows.max(), cols.max())) + 1)
        add = self.add
        for row, col, w in zip(rows.tolist(), cols.tolist(), weights.tolist()):
            add(row, col, w)

    def row(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indexes of item ``j`` and their share of its row (sums to 1), two-step walk mixed in (``hop``)."""
        if j >= len(self.rows) or self.rows[j].n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        r = self.rows[j]
        if self.hop:
            return self._walk(j)
        return np.array(r.idx), np.array(r.val) / r.total

    def _walk(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``j`` as shares, mixed with the two-step walk through its strongest neighbours (cached).

        The cache is made again once the row's total has grown by
        ``hop_stale``: a popular item's mixed row is remade about
        ``log(total) / log(hop_stale)`` times over its life, not per read.
        At most ``hop_cache`` are kept, the least recently read dropped first.
        Item ``j`` itself is left out (a walk back to where it started).
        """
        r, walks = self.rows[j], self._walks
        cached = walks.get(j)
        if cached is not None and r.total <= cached[2] * self.hop_stale:
            walks.move_to_end(j)
            return cached[0], cached[1]
        idx, val = array("q", r.idx), array("d", r.val)  # the row, then its neighbours' rows, one after another
        share = np.frombuffer(val) / r.total
        near = np.argsort(-share)[: self.hop_neighbours] if share.shape[0] > self.hop_neighbours else slice(None)
        scale, lens = [1.0 / r.total], [len(r.idx)]
        rows, hop = self.rows, self.hop
        for k, pk in zip(np.frombuffer(idx, np.int64)[near].tolist(), share[near].tolist()):
            rk = rows[k]
            if rk.n:
                idx.extend(rk.idx)
                val.extend(rk.val)
                scale.append(hop * pk / rk.total)
                lens.append(len(rk.idx))
        key, value = sum_by_key(np.frombuffer(idx, np.int64), np.frombuffer(val) * np.repeat(np.array(scale), lens))
        back = key != j
        key, value = key[back], value[back]
        if key.shape[0] > 2 * self.row_cap:  # bounded like a row
            top = np.argpartition(-value, 2 * self.row_cap)[: 2 * self.row_cap]
            key, value = key[top], value[top]
        value /= value.sum()
        walks[j] = (key, value, r.total)
        walks.move_to_end(j)
        if len(walks) > self.hop_cache:
            walks.popitem(last=False)
        return key, value

    def scores(
        self, recent: np.ndarray, exclude: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Recency-weighted sums of the normalised rows of many users' recent items.

        ``recent`` is ``(users, window)``: item indexes, most recent last,
        -1 in empty slots. Each row is normalised to sum to one, so a
        popular source item does not drown the others, and the item
        ``age`` places back weighs ``recency ** age``. ``exclude`` is a pair
        of arrays ``(user, item)``: those entries are left out.

        Returns ``(user, item, value, peak)``: the entries reached, one per
        ``(user, item)`` pair, sorted by user, and each user's largest value
        (0 if none). The cost is proportional to the rows read, not to the
        catalogue.
        """
        b = recent.shape[0]
        rows = self.rows
        n = len(rows)
        owners, scale, lens = [], [], []
        idx, val = array("q"), array("d")  # the rows' entries, one after another
        positions, hop = self.positions, self.hop
        for r, items in enumerate(recent.tolist()):
            for j, weight in zip(reversed(items), positions):
                if 0 <= j < n:  # -1: an empty slot, or an item this copy does not know yet
                    row = rows[j]
                    m = len(row.idx)
                    if m and hop:
                        walk_idx, walk_val = self._walk(j)
                        owners.append(r)
                        idx.frombytes(walk_idx.tobytes())
                        val.frombytes(walk_val.tobytes())
                        scale.append(weight)
                        lens.append(walk_idx.shape[0])
                    elif m:
                        owners.append(r)
                        idx.extend(row.idx)
                        val.extend(row.val)
                        scale.append(weight / row.total)
                        lens.append(m)
        peak = np.zeros(b)
        if not owners:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0), peak
        counts = np.array(lens)
        # One (user, item) key per entry; a user's rows may share items, so
        # equal keys are summed (sorted, then one add.reduceat per key).
        key = np.repeat(np.array(owners), counts) * n + np.frombuffer(idx, np.int64)
        key, value = sum_by_key(key, np.frombuffer(val) * np.repeat(np.array(scale), counts))
        ex_users, ex_items = exclude
        if ex_items.size:  # each excluded pair found in the sorted keys (no sort of the exclusions)
            ex = ex_users * n + ex_items
            pos = np.minimum(np.searchsorted(key, ex), key.shape[0] - 1)
            kept = np.ones(key.shape[0], dtype=np.bool_)
            kept[pos[(key[pos] == ex) & (ex_items < n)]] = False
            key, value = key[kept], value[kept]
        user, item = np.divmod(key, n)
        np.maximum.at(peak, user, value)
        return user, item, value, peak

    def dense_scores(self, recent: list[int], n_items: int, exclude: np.ndarray) -> np.ndarray:
        """:meth:`scores` of one user as a dense vector over ``n_items`` items (``exclude``: zeroed).

        For one user, adding each row into a dense vector costs less than
        merging sorted entries (rows hold distinct items, so a fancy-index
        add is exact).
        """
        out = np.zeros(n_items)
        rows = self.rows
        n = len(rows)
        for j, weight in zip(reversed(recent), self.positions):
            if 0 <= j < n and rows[j].n:
                share_idx, share = self.row(j)
                out[share_idx] += share * weight
        out[exclude] = 0.0
        return out

    def export(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``rows`` as flat arrays (snapshots)."""
        n, empty = len(self.rows), _Row()
        have = [self.rows[j] if j < n else empty for j in rows.tolist()]
        idx = [r.idx for r in have]  # joined as bytes: one copy (1.6x faster than extending an array per row)
        lens = np.fromiter(map(len, idx), dtype=np.int64, count=len(have))
        total = np.fromiter(map(attrgetter("total"), have), dtype=np.float64, count=len(have))
        flat_idx = np.frombuffer(b"".join(idx), np.int64)
        return {"len": lens, "idx": flat_idx, "val": np.frombuffer(b"".join([r.val for r in have])), "total": total}

    def set_rows(self, rows: np.ndarray, flat: dict[str, np.ndarray]) -> None:
        """Restore rows written by :meth:`export`."""
        if rows.size:
            self._ensure(int(rows.max()) + 1)
        at = 0
        for j, n, total in zip(rows.tolist(), flat["len"].tolist(), flat["total"].tolist()):
            r = self.rows[j] = _Row()
            if n:
                r.idx = array("q", flat["idx"][at : at + n].astype(np.int64).tobytes())
                r.val = array("d", flat["val"][at : at + n].astype(np.float64).tobytes())
                r.pos = {k: p for p, k in enumerate(r.idx)}
            r.total = total
            at += n
