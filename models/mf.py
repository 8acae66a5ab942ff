"""River matrix factorisation on implicit feedback, users represented by their recent items.

This is the only module that touches River. River's ``FunkMF`` does every
SGD step; its item latents are the rows of one float32 numpy matrix
(:class:`Factors`), handed to it in place of its dict, so ranking, the
HNSW index and the snapshots read them with no copy.

A user has no factor of their own. Their vector is the recency-weighted
mean of the *history factors* of their recent items (FISM, Kabbur et al.
2013): it exists from the first event, follows the user's latest actions
at once, and is computed wherever the user's recent items are, so the
item side (this learner) and the user side (one shard per worker) never
have to exchange user factors. For each event River learns one
``(user vector, item)`` pair per positive and sampled negative; the change
River makes to the user vector is passed on to the history factors of the
items it was built from.
"""

from __future__ import annotations

import math
import threading
from array import array
from typing import Any

import numpy as np
from river import optim, reco

from models.arrays import grow, grown

_PREFAULT_AT = 0.8  # the next buffer is made once the drawn rows pass this share of the growth point ...
_PREFAULT_MIN = 65536  # ... in a buffer of more rows than this (smaller copies cost little)
_PENDING = np.zeros((0, 0), dtype=np.float32)  # the spare being made


class Factors:
    """Rows of a growable float32 matrix, initialised like River's (seeded normal draws).

    Rows are drawn ``DRAW_ROWS`` at a time as they come into use, so adding
    a row is O(1) and never stalls: drawing a whole buffer growth at once
    held the event path 1.2-1.4 s when a 1M-item catalogue grew (a py-spy
    dump in the flow, ``bench/RESULTS.md``). The draws follow one another
    in order, so two copies that ensure the same rows hold the same values
    whenever they call (a replica and its learner). A snapshot keeps the
    rows in use and the RNG state before the last draw (:meth:`meta`); a
    restore redraws the spare rows identically (:meth:`restore`), so a
    restored model goes on exactly like the original.

    ``grow_at``: the buffer grows once the drawn rows pass this share of
    it. The history factors grow at 0.75, the item factors when full, so
    the two buffers (128 MB each at 1M items, a 30-ms copy of the drawn
    rows) never grow on the same event.
    """

    DRAW_ROWS = 4096

    def __init__(self, n_factors: int, sigma: float, seed: int, grow_at: float = 1.0) -> None:
        self.sigma = sigma
        self.grow_at = grow_at
        self._rng = np.random.default_rng(seed)
        self.data = np.zeros((0, n_factors), dtype=np.float32)
        self.n = 0
        self._drawn = 0  # rows drawn so far
        self._drawn_from = 0  # first row of the last draw
        self._drawn_state = self._rng.bit_generator.state
        self._spare: np.ndarray | None = None  # the next buffer, its pages faulted in by a thread (_prefault)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(n, n_factors)`` view of the rows in use."""
        return self.data[: self.n]

    def ensure(self, n: int) -> bool:
        """Make rows ``0..n-1`` exist; True when the buffer moved (holders of :attr:`data` must re-read it)."""
        if n <= self.n:
            return False
        end = self._drawn + -(-max(0, n - self._drawn) // self.DRAW_ROWS) * self.DRAW_ROWS
        grow_at = self.data.shape[0] * self.grow_at
        moved = end > grow_at
        if moved:  # only the drawn rows are copied: reading the untouched ones would fault their pages in
            rows = max(end, self._next_capacity())
            spare, self._spare = self._spare, None
            if spare is None or spare.shape[0] != rows:  # none made (or not yet): fresh pages, faulted on the copy
                spare = np.zeros((rows, self.data.shape[1]), dtype=np.float32)
            spare[: self._drawn] = self.data[: self._drawn]
            self.data = spare
        elif end > grow_at * _PREFAULT_AT and self._drawn > _PREFAULT_MIN and not self._spare_for_next():
            self._prefault()
        while self._drawn < n:
            self._draw(self._drawn, self._drawn + self.DRAW_ROWS)
        self.n = n
        return moved

    def _next_capacity(self) -> int:
        return grown(self.data.shape[0])

    def _spare_for_next(self) -> bool:
        """Whether a spare for the next growth is made or being made."""
        spare = self._spare
        return spare is _PENDING or (spare is not None and spare.shape[0] == self._next_capacity())

    def _prefault(self) -> None:
        """Make the next buffer in a thread, its pages for the drawn rows faulted in (a growth then only copies).

        A 1.35M-row growth copied into fresh memory took 356 ms where the
        same copy into pages already in took 40 ms (the kernel zeroes and
        maps each page on its first write); numpy writes without the GIL.
        """
        self._spare = _PENDING
        rows, cols, touch = self._next_capacity(), self.data.shape[1], self.data.shape[0]

        def run() -> None:
            spare = np.zeros((rows, cols), dtype=np.float32)
            spare[:touch] = 0.0  # a write faults a page in, zero or not
            self._spare = spare

        threading.Thread(target=run, name="freshrec-factors-prefault", daemon=True).start()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_spare"] = None  # a copy (a replica's, a snapshot's) makes its own
        return state

    def _draw(self, start: int, end: int) -> None:
        self._drawn_from, self._drawn = start, end
        self._drawn_state = self._rng.bit_generator.state
        self.data[start:end] = self._rng.normal(0.0, self.sigma, (end - start, self.data.shape[1]))

    def meta(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "capacity": self.data.shape[0],
            "drawn_from": self._drawn_from,
            "drawn": self._drawn,
            "state": self._drawn_state,
        }

    def set_rows(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Restore: rows from a snapshot (the buffer grows as needed; :meth:`restore` completes it)."""
        if rows.size:
            self.reserve(int(rows.max()) + 1)
            self.data[rows] = values

    def reserve(self, n: int) -> None:
        """Restore: room for ``n`` rows (new ones zero until set)."""
        if n > self.data.shape[0]:
            self.data = grow(self.data, n)

    def restore(self, meta: dict[str, Any]) -> None:
        """Restore: the capacity and spare rows of the snapshot's buffer, around the rows already set."""
        used = self.data[: meta["n"]].copy()
        self.data = np.zeros((meta["capacity"], self.data.shape[1]), dtype=np.float32)
        self._rng.bit_generator.state = meta["state"]
        self._draw(meta["drawn_from"], meta.get("drawn", meta["capacity"]))  # before 2026-12-07: a growth at a time
        self.n = meta["n"]
        self.data[: self.n] = used


class WeightedLog(optim.losses.Log):
    """Logistic loss where the target carries the sample weight.

    ``y > 0`` is a positive of weight ``y``; ``y == 0`` is a negative of
    weight one. River's ``FunkMF.learn_one`` takes no sample weight, so
    the weight travels in the target.
    """

    def gradient(self, y_true: float, y_pred: float) -> float:  # type: ignore[override]
        if y_true > 0:
            z = min(30.0, y_pred)
            return -y_true / (math.exp(z) + 1.0)
        z = -y_pred if y_pred > -30.0 else 30.0
        return 1.0 / (math.exp(z) + 1.0)


class PairGradient(optim.losses.RegressionLoss):
    """A loss whose gradient is the target: a pairwise (BPR) step computed by :meth:`HistoryMF.learn`.

    BPR's gradient depends on the margin between a positive and a negative
    item, which River's pointwise ``learn_one`` never sees; the learner
    works it out and hands it over as the target, so River still makes
    every SGD step (and applies L2).
    """

    def __call__(self, y_true: float, y_pred: float) -> float:  # type: ignore[override]
        return 0.0

    def gradient(self, y_true: float, y_pred: float) -> float:  # type: ignore[override]
        return y_true


def bound(rows: np.ndarray, cap: float) -> np.ndarray:
    """``rows`` (2-D), those longer than ``cap`` scaled back to length ``cap``, in place.

    >>> bound(np.array([[3.0, 4.0], [0.3, 0.4]], dtype=np.float32), 1.0).astype(float).round(3).tolist()
    [[0.6, 0.8], [0.3, 0.4]]
    """
    square = np.einsum("ij,ij->i", rows, rows)
    if square.max(initial=0.0) > cap * cap:
        over = square > cap * cap
        rows[over] *= (cap / np.sqrt(square[over]))[:, None]
    return rows


def history_weights(history: int, decay: float) -> np.ndarray:
    """Weight of each slot of a recent-items row (oldest first): ``decay ** age``, newest 1.

    >>> history_weights(3, 0.5).tolist()
    [0.25, 0.5, 1.0]
    """
    return (decay ** np.arange(history - 1, -1, -1)).astype(np.float32)


def user_vectors(history: np.ndarray, factors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """User vectors of many recent-items rows ``(users, history)`` of dense indexes (-1: empty or unknown).

    Each is the weighted mean of the rows of ``factors`` its known items
    index, the newest known item weighing ``weights[-1]``, the one before
    ``weights[-2]`` and so on (as :meth:`HistoryMF.user_vector`); a user with
    no known item gets a zero vector.
    """
    valid = history >= 0
    age = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]  # 1 for the newest known item, 2 for the one before, ...
    w = np.where(valid, weights[np.clip(weights.shape[0] - age, 0, weights.shape[0] - 1)], np.float32(0.0))
    w /= np.maximum(w.sum(axis=1, keepdims=True), np.float32(1e-12))
    gathered = factors[np.where(valid, history, 0)]  # (users, history, n_factors)
    return np.einsum("uh,uhf->uf", w, gathered).astype(np.float32, copy=False)


class HistoryMF:
    """River ``FunkMF`` on item factors, fed positives and sampled negatives.

    Parameters
    ----------
    n_factors
        Latent dimensions.
    lr
        SGD learning rate.
    l2
        L2 regularisation.
    history, decay
        Slots of a user's recent-items row and the weight ``decay ** age``
        of an item ``age`` places back.
    loss
        ``"logistic"``: each positive and each negative a pointwise logistic
        step; ``"bpr"``: one pairwise step per (positive, negative) pair, on
        the log-sigmoid of the margin ``p . (q_pos - q_neg)`` (Rendle et al.
        2009), so only the order of the two items is learned.
    seed
        Seed of the initial factors.
    max_norm
        With ``loss="bpr"``, the longest a factor row may grow (0:
        unbounded): a row a step takes past it is scaled back onto it.
        Pairwise steps of ``lr x weight`` above about one feed on each other
        (a user vector is made of the rows it moves) and overflowed float32
        within 15,000 events of the synthetic stream. Logistic steps stay
        put at the same ``lr`` (norms about 5), so they skip the check,
        which would cost them a tenth of their learning time.

    Examples
    --------
    >>> mf = HistoryMF(n_factors=4, lr=0.2, l2=0.0, history=2, decay=1.0, seed=1)
    >>> mf.ensure(3)
    >>> for _ in range(100):
    ...     mf.learn(np.array([-1, 0]), item=1, weight=1.0, negatives=[2])
    >>> scores = mf.item_factors @ mf.user_vector(np.array([-1, 0]))
    >>> int(np.argmax(scores[1:])) + 1
    1
    """

    def __init__(
        self,
        n_factors: int,
        lr: float,
        l2: float,
        history: int,
        decay: float,
        seed: int,
        loss: str = "logistic",
        max_norm: float = 0.0,
    ) -> None:
        self.n_factors = n_factors
        self.pairwise = loss == "bpr"
        self.max_norm = max_norm if self.pairwise else 0.0
        self.items = Factors(n_factors, 0.1, seed)  # River's item latents: "output" factors
        self.history_factors = Factors(n_factors, 0.1, seed + 1, grow_at=0.75)  # "input" factors a user is built from
        self.weights = history_weights(history, decay)
        # _norm[m]: the weights of a history whose last m slots are filled, summing to one
        self._norm = [np.zeros(0, dtype=np.float32)] + [
            (self.weights[-m:] / self.weights[-m:].sum()).astype(np.float32) for m in range(1, history + 1)
        ]
        self._user = np.zeros((1, n_factors), dtype=np.float32)  # River's one user: the current user vector
        # The history updates since the log was last taken (snapshots), when on: per event the
        # number of rows, the rows, and the change of the user vector they share (start_log).
        self.log: tuple[array, array, array] | None = None
        river_loss = PairGradient() if self.pairwise else WeightedLog()
        self._river = reco.FunkMF(n_factors=n_factors, optimizer=optim.SGD(lr), loss=river_loss, l2=l2, seed=seed)
        self._link()

    def relink(self) -> None:
        """After a restore replaced the buffers."""
        self._link()

    def _link(self) -> None:
        """Hand River the current buffers (again after one moved)."""
        self._river.u_latents = self._user  # type: ignore[assignment]
        self._river.i_latents = self.items.data  # type: ignore[assignment]

    @property
    def item_factors(self) -> np.ndarray:
        """``(n_items, n_factors)`` view of the item ("output") factors."""
        return self.items.matrix

    def ensure(self, n_items: int) -> None:
        """Make factors exist for items ``0..n_items-1``."""
        self.history_factors.ensure(n_items)
        if self.items.ensure(n_items):
            self._link()

    def user_vector(self, history: np.ndarray) -> np.ndarray:
        """The vector of one recent-items row of dense indexes (-1: empty)."""
        rows = history[history >= 0]
        if rows.shape[0] == 0:
            return np.zeros(self.n_factors, dtype=np.float32)
        return self._norm[rows.shape[0]] @ self.history_factors.data[rows]

    def learn(self, history: np.ndarray, item: int, weight: float, negatives: list[int]) -> None:
        """One positive of ``weight`` and one negative per sampled item, for the user ``history`` describes."""
        rows = history[history >= 0]
        m = rows.shape[0]
        if m:
            w = self._norm[m]
            start = w @ self.history_factors.data[rows]
        else:
            start = np.zeros(self.n_factors, dtype=np.float32)
        self._user[0] = start
        learn_one = self._river.learn_one
        if self.pairwise:
            user, q = self._user[0], self.items.data
            for neg in negatives:
                if neg != item:
                    margin = float(user @ (q[item] - q[neg]))
                    g = weight / (1.0 + math.exp(min(30.0, margin)))  # weight x sigmoid(-margin)
                    learn_one(0, item, -g)
                    learn_one(0, neg, g)
        else:
            learn_one(0, item, weight)
            for neg in negatives:
                if neg != item:
                    learn_one(0, neg, 0.0)
        if self.max_norm:  # a row at a time: a few rows, each a view (cheaper than a gather here)
            q, cap = self.items.data, self.max_norm
            for r in (item, *negatives):
                v = q[r]
                if float(v @ v) > cap * cap:
                    bound(v[None, :], cap)
        if m:
            change = self._user[0] - start
            self._add_history(rows, w[:, None] * change)
            if self.log is not None:
                self.log[0].append(m)
                self.log[1].frombytes(rows.astype(np.int64, copy=False).tobytes())
                self.log[2].frombytes(change.tobytes())

    def _add_history(self, rows: np.ndarray, step: np.ndarray) -> None:
        # The bound is applied here, so that a replay of the log bounds the same rows the same way.
        data, cap = self.history_factors.data, self.max_norm
        if len(set(rows.tolist())) == rows.shape[0]:
            if cap:
                data[rows] = bound(data[rows] + step, cap)
            else:
                data[rows] += step
        else:  # an item twice in the history: add.at sums both shares
            np.add.at(data, rows, step)
            if cap:
                data[rows] = bound(data[rows], cap)

    # ------------------------------------------------ snapshots (state/journal.py)

    def start_log(self) -> None:
        """Log every change of the history factors from now on (:meth:`take_log`, :meth:`replay`).

        A change is one vector per event, shared by its rows with fixed
        weights, so the log of an event is a few hundred bytes where its
        changed rows are 2.5 KB: a snapshot of a 1M-item model writes what
        happened, not every row it touched.
        """
        self.log = (array("q"), array("q"), array("f"))

    def take_log(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The logged changes ``(rows per event, rows, change per event)``; the log starts over."""
        if self.log is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.n_factors), np.float32)
        counts, rows, change = self.log
        self.start_log()
        return (
            np.frombuffer(counts, np.int64),
            np.frombuffer(rows, np.int64),
            np.frombuffer(change, np.float32).reshape(-1, self.n_factors),
        )

    def replay(self, counts: np.ndarray, rows: np.ndarray, change: np.ndarray, skip: np.ndarray) -> None:
        """Apply logged changes in order (a restore), but not to the rows ``skip`` marks; the same floats to the bit."""
        if rows.size:
            self.history_factors.reserve(int(rows.max()) + 1)
        at = 0
        for e, m in enumerate(counts.tolist()):
            keep = ~skip[at : at + m]
            step = self._norm[m][:, None] * change[e]
            self._add_history(rows[at : at + m][keep], step[keep])
            at += m
