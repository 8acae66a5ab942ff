"""HNSW index over item vectors for maximum-inner-product candidates."""

from __future__ import annotations

import hnswlib
import numpy as np


class ItemIndex:
    """hnswlib index of item vectors, searched by inner product.

    A plain ``ip`` space recalls poorly on vectors that change in place, so
    the index reduces inner product to L2 with one extra coordinate: an
    item ``x`` is stored as ``[x, sqrt(M**2 - |x|**2)]`` and a query ``q``
    as ``[q, 0]``; then ``|q' - x'|**2 = |q|**2 + M**2 - 2 q.x`` and the
    nearest items are those of largest ``q.x``. ``M`` is the largest item
    norm times ``headroom``; an item that outgrows it triggers a rebuild.

    Labels are the model's dense item indexes, so the model's item
    :class:`~models.ids.IdMap` is the label map and is saved with it. The
    hnswlib object itself is not pickled: it is rebuilt from the factors
    on first use after a restore, which keeps snapshots small and fast.
    One writer only: :meth:`refresh` must not run beside :meth:`query`.

    Parameters
    ----------
    dim
        Dimension of the item vectors.
    ef
        Search breadth; raised to at least ``k`` for each query.
    m
        Graph degree (hnswlib ``M``).
    ef_construction
        Build breadth.
    headroom
        Factor over the largest norm used for ``M``.
    seed
        hnswlib random seed.
    """

    def __init__(
        self,
        dim: int,
        ef: int = 100,
        m: int = 16,
        ef_construction: int = 200,
        headroom: float = 1.5,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.ef = ef
        self.m = m
        self.ef_construction = ef_construction
        self.headroom = headroom
        self.seed = seed
        self._index: hnswlib.Index | None = None
        self._max_norm = 0.0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_index"] = None
        state["_count"] = 0
        return state

    def _augment(self, vectors: np.ndarray) -> np.ndarray:
        sq = np.einsum("ij,ij->i", vectors, vectors)
        extra = np.sqrt(np.maximum(self._max_norm**2 - sq, 0.0))
        return np.hstack([vectors, extra[:, None]]).astype(np.float32)

    def rebuild(self, factors: np.ndarray) -> None:
        """Index all of ``factors`` from scratch."""
        n = factors.shape[0]
        norms = np.sqrt(np.einsum("ij,ij->i", factors, factors)) if n else np.zeros(0)
        self._max_norm = float(norms.max() * self.headroom) if n else 1.0
        index = hnswlib.Index(space="l2", dim=self.dim + 1)
        index.init_index(
            max_elements=max(int(n * 1.5), 1024), ef_construction=self.ef_construction, M=self.m, random_seed=self.seed
        )
        index.set_ef(self.ef)
        index.set_num_threads(1)
        if n:
            index.add_items(self._augment(factors), np.arange(n))
        self._index = index
        self._count = n

    def refresh(self, factors: np.ndarray, changed: np.ndarray) -> None:
        """Re-index the ``changed`` rows of ``factors`` and add new items.

        Call once per batch with the deduplicated changed items, not per
        vector update: an hnswlib update costs more than an insert.
        """
        n = factors.shape[0]
        if self._index is None:
            self.rebuild(factors)
            return
        changed = np.union1d(changed, np.arange(self._count, n)).astype(np.int64)
        if changed.size == 0:
            return
        vectors = factors[changed]
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        if norms.max() > self._max_norm:
            self.rebuild(factors)
            return
        if n > self._index.get_max_elements():
            self._index.resize_index(int(n * 1.5))
        self._index.add_items(self._augment(vectors), changed)
        self._count = n

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        """Labels of up to ``k`` items of largest inner product with ``vector``."""
        if self._index is None or self._count == 0:
            return np.zeros(0, dtype=np.int64)
        k = min(k, self._count)
        self._index.set_ef(max(self.ef, k))
        q = np.append(vector, 0.0).astype(np.float32)[None, :]
        labels, _ = self._index.knn_query(q, k=k)
        return labels[0].astype(np.int64)
