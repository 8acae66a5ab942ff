"""The item-side learner: every event updates the factors, popularity and co-occurrence.

One learner sees every event of the cluster (the single writer of the
item side); the user side sends it :class:`~models.users.LearnInput`, and
it hands the rankers :class:`~models.items.ItemDelta` batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.config import ModelConfig
from models.ids import KeyIndex
from models.items import Events, ItemDelta, ItemState
from models.packing import packed_names, unstrings
from models.users import LearnBatch, LearnInput


class ItemLearner:
    """Learns the item side from the user side's :class:`~models.users.LearnInput`.

    Examples
    --------
    >>> from models.users import UserTable
    >>> from models.event import Event
    >>> cfg = ModelConfig(seed=1)
    >>> users, learner = UserTable(cfg), ItemLearner(cfg)
    >>> for user, item in [("a", "x"), ("a", "y"), ("b", "x")]:
    ...     learner.learn(users.learn(Event(user, item, "view", 1.0, 0.0, 0.0)))
    >>> learner.n_events, learner.state.names
    (3, ['x', 'y'])
    >>> d = learner.take_delta(shared=False)
    >>> d.first, d.names, d.events.item.tolist()
    (0, ['x', 'y'], [0, 1, 0])
    """

    def __init__(self, config: ModelConfig, journaled: bool = False) -> None:
        self.config = c = config
        self.state = ItemState(c)
        if journaled:  # snapshots replay co-occurrence and history factors from logs (state/journal.py)
            self.state.cooc.start_log()
            self.state.mf.start_log()
        self.n_events = 0
        self.seq = -1  # of the last delta taken
        self._pool = np.zeros(c.negative_pool, dtype=np.int64)
        self._rng = np.random.default_rng(c.seed)
        self._draws: list[float] = []  # uniform [0, 1) draws for negative sampling
        self._draw_at = 0
        # Since the last delta: the first new item, learned events, changed item and history factor rows.
        self._first = 0
        self._events: list[tuple[int, float, float, tuple[int, ...]]] = []
        self._rows: set[int] = set()
        self._history: set[int] = set()
        # Since the last checkpoint (state/journal.py): the first new item, rows whose item
        # factors or popularity changed. An event changes the item factors of its positive and
        # negatives; co-occurrence and the history factors of the user's recent items log
        # their changes instead (a few hundred bytes an event, where the rows are kilobytes).
        self._j_first = 0
        self._j_items: set[int] = set()
        self._j_pop: set[int] = set()

    def learn(self, li: LearnInput) -> None:
        """Learn one event."""
        self.learn_one(li.item, li.name, li.weight, li.ts, li.recent)

    def learn_batch(self, batch: LearnBatch) -> None:
        """Learn every event of a batch, in order (as :meth:`learn_one` would, one event after another).

        The batch's new items are added first and its histories looked up
        in one vectorised call: at 1M items, twenty dict reads per event
        were a tenth of learning (each a cache miss). An item first seen
        later in the batch is still unknown to the events before it.
        """
        s = self.state
        n = len(s)
        add = s.add
        items = [add(key, name) for key, name in zip(batch.keys.tolist(), batch.names)]
        # Items known at each event: those before the batch, and the batch's up to the event's own.
        known = np.maximum.accumulate(np.maximum(np.array(items, dtype=np.int64) + 1, n))
        history = s.dense(batch.recent.ravel()).reshape(batch.recent.shape)
        history[history >= known[:, None]] = -1
        learn = self._learn
        for i, weight, ts, row, n_items in zip(
            items, batch.weights.tolist(), batch.ts.tolist(), history, known.tolist()
        ):
            learn(i, weight, ts, row, n_items)

    def learn_one(self, key: int, name: str, weight: float, ts: float, recent: np.ndarray) -> None:
        """Learn one event: item ``key`` (id ``name``) of ``weight`` at ``ts``, after the user's ``recent`` items."""
        s = self.state
        i = s.add(key, name)
        get = s.keys.get
        history = np.array([-1 if k < 0 else get(k, -1) for k in recent.tolist()])
        self._learn(i, weight, ts, history, len(s))

    def _learn(self, i: int, weight: float, ts: float, history: np.ndarray, n_items: int) -> None:
        """Learn item ``i`` after the dense ``history`` (-1: empty or unknown), ``n_items`` items known."""
        s, c = self.state, self.config
        window = tuple(history[-c.window :].tolist())
        s.cooc.learn([j for j in window if j >= 0], i, weight)
        s.pop.learn(i, weight, ts)
        s.trend.learn(i, weight, ts)
        negatives = self._sample_negatives(n_items)
        s.mf.learn(history, i, weight, negatives)
        self._pool[self.n_events % c.negative_pool] = i
        self.n_events += 1
        self._events.append((i, weight, ts, window))
        learned, recent = [i, *negatives], history[history >= 0].tolist()
        self._rows.update(learned)
        self._history.update(recent)
        self._j_items.update(learned)
        self._j_pop.add(i)

    def list_items(self, keys: list[int], names: list[str]) -> int:
        """Make catalogue items known before their first event (their lists can hold them); how many were new."""
        s = self.state
        n = len(s)
        for key, name in zip(keys, names):
            s.add(key, name)
        return len(s) - n

    def _sample_negatives(self, n_items: int) -> list[int]:
        k = self.config.negatives
        if self._draw_at + k > len(self._draws):
            self._draws = self._rng.random(1024 * k).tolist()  # one RNG call per 1024 events
            self._draw_at = 0
        r = self._draws[self._draw_at : self._draw_at + k]
        self._draw_at += k
        if self.config.negative_sampling == "popular" and self.n_events >= k:
            filled = min(self.n_events, self.config.negative_pool)
            pool = self._pool
            return [int(pool[int(x * filled)]) for x in r]
        return [int(x * n_items) for x in r]

    @property
    def pending(self) -> int:
        """Events learned and items listed since the last delta."""
        return len(self._events) + len(self.state) - self._first

    def take_delta(self, shared: bool) -> ItemDelta:
        """The changes since the previous delta (``shared``: for a ranker that reads this state itself)."""
        s = self.state
        self.seq += 1
        events = Events.of(self._events, self.config.window)
        rows, history = _sorted(self._rows), _sorted(self._history)
        first, n = self._first, len(s)
        if shared:
            item_rows = history_rows = np.zeros((0, s.mf.n_factors), dtype=np.float32)
        else:
            item_rows = s.mf.items.data[rows]
            history_rows = s.mf.history_factors.data[history]
        delta = ItemDelta(
            self.seq,
            None,
            shared,
            first,
            s.keys.view()[first:n].copy(),
            s.names[first:n],
            events,
            rows,
            item_rows,
            history,
            history_rows,
            np.unique(events.item),
        )
        self._first, self._events, self._rows, self._history = n, [], set(), set()
        return delta

    def base_delta(self) -> ItemDelta:
        """The whole state (the master itself: :meth:`~models.items.ItemDelta.copied` for another thread or process)."""
        self.take_delta(shared=True)  # what it held is in the base
        s = self.state
        empty = Events.of([], self.config.window)
        none = np.zeros(0, dtype=np.int64)
        rows = np.zeros((0, s.mf.n_factors), dtype=np.float32)
        return ItemDelta(self.seq, s, True, 0, none, [], empty, none, rows, none, rows, np.arange(len(s)))

    # ------------------------------------------------ journal (state/journal.py)

    def rows(self) -> int:
        return len(self.state)

    def row_bytes(self) -> int:
        s = self.state
        n = len(s)
        sample = s.cooc.rows[: n : max(1, n // 1000)]  # about 1,000 rows
        entries = sum([len(r.idx) for r in sample]) / len(sample) if sample else 0.0
        return int(8 * s.mf.n_factors + 16 * entries + 64)

    def delta(self) -> dict[str, np.ndarray]:
        s = self.state
        n = len(s)
        first, self._j_first = self._j_first, n
        new = np.arange(first, n)  # their rows as drawn (and changed since): a restore does not redraw them
        items, pop = _sorted(self._j_items), _sorted(self._j_pop)
        items = np.concatenate([items[items < first], new])  # sorted, once each (np.union1d took 6 ms at 1M items)
        self._j_items, self._j_pop = set(), set()
        out = {"first": np.array(first), "keys": s.keys.view()[first:n].copy(), **packed_names(s.names[first:n])}
        out.update({"f/rows": items, "f/items": s.mf.items.data[items]})
        out["h/n"], out["h/log"], out["h/change"] = s.mf.take_log()
        out.update({"h/rows": new, "h/history": s.mf.history_factors.data[new]})
        out["co/row"], out["co/col"], out["co/w"] = s.cooc.take_log()
        out["pop/rows"] = pop
        out["pop/val"], out["trend/val"] = s.pop.raw()[pop], s.trend.raw()[pop]
        out["pop/rescaled"] = np.array([s.pop.take_rescaled(), s.trend.take_rescaled()])
        return out

    def slice(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        s = self.state
        rows = np.arange(lo, hi)
        out = {"keys": s.keys.view()[lo:hi].copy(), **packed_names(s.names[lo:hi])}
        out.update(self._factor_rows(rows))
        out.update({f"co/{k}": v for k, v in s.cooc.export(rows).items()})
        pop_n = min(hi, s.pop.raw().shape[0])
        out["pop/val"], out["trend/val"] = s.pop.raw()[lo:pop_n], s.trend.raw()[lo:pop_n]
        return out

    def _factor_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        mf = self.state.mf
        return {"f/rows": rows, "f/items": mf.items.data[rows], "f/history": mf.history_factors.data[rows]}

    def small(self) -> dict:
        s = self.state
        return {
            "n_events": self.n_events,
            "items": len(s),
            "pool": self._pool.copy(),
            "rng": self._rng.bit_generator.state,
            "draws": list(self._draws),
            "draw_at": self._draw_at,
            "f/items": s.mf.items.meta(),
            "f/history": s.mf.history_factors.meta(),
            "pop": s.pop.scalars(),
            "trend": s.trend.scalars(),
            "co/positions": (list(s.cooc.positions), s.cooc.credited),
        }

    def apply_delta(self, a: dict[str, np.ndarray], stale: Callable[[np.ndarray], np.ndarray]) -> None:
        s = self.state
        self._place_items(int(a["first"]), a["keys"], unstrings(a["name_len"], a["name"]))
        if "h/n" in a:  # the changes first, then the rows of the items new in this delta as they were
            s.mf.replay(a["h/n"], a["h/log"], a["h/change"], stale(a["h/log"]))
        self._set_factors(a)
        keep = ~stale(a["co/row"])  # adds to a row a later slice rewrites are in that slice
        s.cooc.replay(a["co/row"][keep], a["co/col"][keep], a["co/w"][keep])
        pop_factor, trend_factor = a["pop/rescaled"].tolist()
        s.pop.set_rows(a["pop/rows"], a["pop/val"], pop_factor)
        s.trend.set_rows(a["pop/rows"], a["trend/val"], trend_factor)

    def apply_slice(self, lo: int, hi: int, a: dict[str, np.ndarray]) -> None:
        if hi <= lo:
            return
        s = self.state
        self._place_items(lo, a["keys"], unstrings(a["name_len"], a["name"]))
        self._set_factors(a)
        s.cooc.set_rows(np.arange(lo, hi), {k[3:]: v for k, v in a.items() if k.startswith("co/")})
        rows = np.arange(lo, lo + a["pop/val"].shape[0])
        s.pop.set_rows(rows, a["pop/val"])
        s.trend.set_rows(rows, a["trend/val"])

    def apply_small(self, small: dict) -> None:
        s = self.state
        n = small["items"]
        keys, names = s.keys.view()[:n].copy(), s.names[:n]
        s.keys = KeyIndex.of(keys)
        s.names = names
        s.mf.items.restore(small["f/items"])
        s.mf.history_factors.restore(small["f/history"])
        s.mf.relink()
        s.pop.set_scalars(small["pop"])
        s.trend.set_scalars(small["trend"])
        if "co/positions" in small:  # journals written before the weights were learned start from recency ** age
            s.cooc.positions, s.cooc.credited = list(small["co/positions"][0]), small["co/positions"][1]
        self.n_events = small["n_events"]
        self._pool = small["pool"]
        self._rng.bit_generator.state = small["rng"]
        self._draws, self._draw_at = small["draws"], small["draw_at"]
        self._first = self._j_first = n
        self._events, self._rows, self._history = [], set(), set()
        self._j_items, self._j_pop = set(), set()
        s.cooc.take_log()
        s.mf.take_log()

    def _place_items(self, first: int, keys: np.ndarray, names: list[str]) -> None:
        s = self.state
        end = first + len(names)
        if s.keys.keys.shape[0] < end:
            s.keys.keys = np.resize(s.keys.keys, max(end, 2 * s.keys.keys.shape[0]))
        s.keys.keys[first:end] = keys
        s.keys.n = max(s.keys.n, end)
        if len(s.names) < end:
            s.names.extend([""] * (end - len(s.names)))
        s.names[first:end] = names

    def _set_factors(self, a: dict[str, np.ndarray]) -> None:
        """Factor rows of a slice, or of a delta (one written before the history log has no h/: f/ rows hold both)."""
        mf = self.state.mf
        mf.items.set_rows(a["f/rows"], a["f/items"])
        if "h/rows" in a:
            mf.history_factors.set_rows(a["h/rows"], a["h/history"])
        else:
            mf.history_factors.set_rows(a["f/rows"], a["f/history"])


def _sorted(rows: set[int]) -> np.ndarray:
    out = np.fromiter(rows, dtype=np.int64, count=len(rows))
    out.sort()
    return out
