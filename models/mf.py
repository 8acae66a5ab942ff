"""River matrix factorisation on implicit feedback, with contiguous factors.

This is the only module that touches River. River's ``FunkMF`` does the
learning; its latent vectors are the rows of one float32 numpy matrix per
side (:class:`Factors`), handed to it in place of its dicts. River's SGD
indexes the matrix and updates rows in place (``w[i] -= lr * g``), so
ranking, the HNSW index and snapshots read the factors as one contiguous
array with no copy and no per-id objects, and the learner pays numpy's C
indexing instead of a Python mapping (about a third of a ``learn_one``).
float32 halves the memory and the snapshot, and makes the ranking product
three times faster than float64 (it is memory bound); SGD steps of
``lr * g`` lose nothing at that precision.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from river import optim, reco

from models.arrays import grow


class Factors:
    """Latent rows of a growable float32 matrix, initialised like River's (seeded normal draws).

    Rows are drawn a buffer-growth at a time, so adding a row is O(1).
    A pickle holds only the rows in use and the RNG state before the last
    draw; unpickling redraws the spare rows identically, so a restored
    model goes on learning exactly like the original.
    """

    def __init__(self, n_factors: int, sigma: float, seed: int) -> None:
        self.sigma = sigma
        self._rng = np.random.default_rng(seed)
        self.data = np.zeros((0, n_factors), dtype=np.float32)
        self.n = 0
        self._drawn_from = 0  # first row of the last draw
        self._drawn_state = self._rng.bit_generator.state

    @property
    def matrix(self) -> np.ndarray:
        """The ``(n, n_factors)`` view of the rows in use."""
        return self.data[: self.n]

    def ensure(self, n: int) -> bool:
        """Make rows ``0..n-1`` exist; True when the buffer moved (holders of :attr:`data` must re-read it)."""
        if n <= self.n:
            return False
        moved = n > self.data.shape[0]
        if moved:
            start = self.data.shape[0]
            self.data = grow(self.data, n)
            self._draw(start)
        self.n = n
        return moved

    def _draw(self, start: int) -> None:
        self._drawn_from = start
        self._drawn_state = self._rng.bit_generator.state
        self.data[start:] = self._rng.normal(0.0, self.sigma, (self.data.shape[0] - start, self.data.shape[1]))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["data"] = self.data[: self.n].copy()
        state["capacity"] = self.data.shape[0]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        capacity = state.pop("capacity")
        used = state.pop("data")
        self.__dict__.update(state)
        self.data = np.zeros((capacity, used.shape[1]), dtype=np.float32)
        self._rng.bit_generator.state = self._drawn_state
        self._draw(self._drawn_from)
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


class ImplicitMF:
    """River ``FunkMF`` fed positives and sampled negatives.

    Parameters
    ----------
    n_factors
        Latent dimensions.
    lr
        SGD learning rate.
    l2
        L2 regularisation.
    seed
        Seed for initialisation.

    Examples
    --------
    >>> mf = ImplicitMF(n_factors=4, lr=0.1, seed=1)
    >>> for _ in range(50):
    ...     mf.learn(user=0, item=1, weight=1.0, negatives=[0, 2])
    >>> scores = mf.scores(0)
    >>> int(np.argmax(scores))
    1
    """

    def __init__(self, n_factors: int = 32, lr: float = 0.1, l2: float = 0.01, seed: int = 0) -> None:
        self.n_factors = n_factors
        sigma = 0.1
        self._users = Factors(n_factors, sigma, seed)
        self._items = Factors(n_factors, sigma, seed + 1)
        self._river = reco.FunkMF(
            n_factors=n_factors,
            optimizer=optim.SGD(lr),
            loss=WeightedLog(),
            l2=l2,
            seed=seed,
        )
        self._link()

    def _link(self) -> None:
        """Hand River the current buffers (again after one moved)."""
        self._river.u_latents = self._users.data  # type: ignore[assignment]
        self._river.i_latents = self._items.data  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, object]:
        # River's references to the buffers are restored by _link, so the
        # spare rows are not pickled a second time.
        state = self.__dict__.copy()
        river = state["_river"] = copy.copy(self._river)
        river.u_latents = river.i_latents = None  # type: ignore[assignment]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._link()

    @property
    def item_factors(self) -> np.ndarray:
        """``(n_items, n_factors)`` view of the item vectors."""
        return self._items.matrix

    @property
    def user_factors(self) -> np.ndarray:
        """``(n_users, n_factors)`` view of the user vectors."""
        return self._users.matrix

    def learn(self, user: int, item: int, weight: float, negatives: list[int]) -> None:
        """One positive of ``weight`` and one negative per sampled item."""
        if self._users.ensure(user + 1) | self._items.ensure(max(item, max(negatives, default=item)) + 1):
            self._link()
        learn_one = self._river.learn_one
        learn_one(user, item, weight)
        for neg in negatives:
            if neg != item:
                learn_one(user, neg, 0.0)

    def scores(self, user: int) -> np.ndarray:
        """Raw scores (logits) of every item for a learned user."""
        return self._items.matrix @ self._users.matrix[user]
