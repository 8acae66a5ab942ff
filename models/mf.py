"""River matrix factorisation on implicit feedback, with contiguous factors.

This is the only module that touches River. River's ``FunkMF`` does the
learning; its latent vectors live in :class:`MatrixLatents`, a mapping
whose rows are views into one float32 numpy matrix. River's SGD updates
rows in place (``w[i] -= lr * g``), so ranking, the HNSW index and
snapshots read the factors as one contiguous array with no copy and no
per-id objects. float32 halves the memory and the snapshot, and makes the
per-event ranking product three times faster than float64 (it is memory
bound); SGD steps of ``lr * g`` lose nothing at that precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, MutableMapping

import numpy as np
from river import optim, reco

from models.arrays import grow


class MatrixLatents(MutableMapping[int, np.ndarray]):
    """River latent storage: dense rows of a growable float32 matrix.

    Keys are dense integer indexes. Reading a key beyond the last row
    creates the rows up to it, initialised like River's ``defaultdict``
    would (a seeded normal draw). Only the learner reads through this
    mapping; ranking code reads :attr:`matrix` and never creates rows.
    """

    def __init__(self, n_factors: int, sigma: float, seed: int) -> None:
        self.n_factors = n_factors
        self.sigma = sigma
        self._rng = np.random.default_rng(seed)
        self._data = np.zeros((0, n_factors), dtype=np.float32)
        self.n = 0

    @property
    def matrix(self) -> np.ndarray:
        """The ``(n, n_factors)`` view of all learned rows."""
        return self._data[: self.n]

    def ensure(self, n: int) -> None:
        """Make rows ``0..n-1`` exist."""
        if n <= self.n:
            return
        self._data = grow(self._data, n)
        self._data[self.n : n] = self._rng.normal(0.0, self.sigma, (n - self.n, self.n_factors))
        self.n = n

    def __getitem__(self, key: int) -> np.ndarray:
        if key >= self.n:
            self.ensure(key + 1)
        return self._data[key]

    def __setitem__(self, key: int, value: np.ndarray) -> None:
        row = self[key]
        if value is not row:
            row[:] = value

    def __delitem__(self, key: int) -> None:
        raise TypeError("latent rows cannot be deleted")

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_data"] = self._data[: self.n].copy()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)


class WeightedLog(optim.losses.Log):
    """Logistic loss where the target carries the sample weight.

    ``y > 0`` is a positive of weight ``y``; ``y == 0`` is a negative of
    weight one. River's ``FunkMF.learn_one`` takes no sample weight, so
    the weight travels in the target.
    """

    def gradient(self, y_true: float, y_pred: float) -> float:  # type: ignore[override]
        if y_true > 0:
            z = y_pred if y_pred < 30.0 else 30.0
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

    def __init__(self, n_factors: int = 32, lr: float = 0.05, l2: float = 0.01, seed: int = 0) -> None:
        self.n_factors = n_factors
        sigma = 0.1
        self._users = MatrixLatents(n_factors, sigma, seed)
        self._items = MatrixLatents(n_factors, sigma, seed + 1)
        self._river = reco.FunkMF(
            n_factors=n_factors,
            optimizer=optim.SGD(lr),
            loss=WeightedLog(),
            l2=l2,
            seed=seed,
        )
        self._river.u_latents = self._users  # type: ignore[assignment]
        self._river.i_latents = self._items  # type: ignore[assignment]

    @property
    def item_factors(self) -> np.ndarray:
        """``(n_items, n_factors)`` view of the item vectors."""
        return self._items.matrix

    @property
    def user_factors(self) -> np.ndarray:
        """``(n_users, n_factors)`` view of the user vectors."""
        return self._users.matrix

    def ensure(self, n_users: int, n_items: int) -> None:
        """Create (initialise) rows up to the given counts."""
        self._users.ensure(n_users)
        self._items.ensure(n_items)

    def learn(self, user: int, item: int, weight: float, negatives: "np.ndarray | list[int]") -> None:
        """One positive of ``weight`` and one negative per sampled item."""
        learn_one = self._river.learn_one
        learn_one(user, item, weight)
        for neg in negatives:
            if neg != item:
                learn_one(user, int(neg), 0.0)

    def scores(self, user: int) -> np.ndarray:
        """Raw scores (logits) of every item for a learned user."""
        return self._items.matrix @ self._users.matrix[user]
