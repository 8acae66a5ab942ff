"""HNSW index over item factors for maximum-inner-product candidates, rebuilt in the background.

An hnswlib index updated in place loses recall as vectors move (0.68 of
the exact top-20 at 12.5k items, ARCHITECTURE), and ``add_items`` is not
safe beside ``knn_query``. So an index is never changed once built: a new
one is built from a copy of the factors in a background thread (hnswlib
releases the GIL while it builds) and swapped in when complete; ranking
scores the candidates with the current factors, and items added since
the copy are candidates of every query until the next swap.
"""

from __future__ import annotations

import threading
import time

import hnswlib
import numpy as np

_CHUNK = 32768  # rows copied or inserted per step of a build


class ItemIndex:
    """One immutable hnswlib index of item vectors, searched by inner product.

    Inner product is reduced to L2 with one extra coordinate: an item
    ``x`` is stored as ``[x, sqrt(M**2 - |x|**2)]`` with ``M`` the largest
    norm, and a query ``q`` as ``[q, 0]``; then ``|q' - x'|**2 = |q|**2 +
    M**2 - 2 q.x``, so the nearest items are those of largest ``q.x``.
    Labels are dense item indexes ``0..size-1``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> items = rng.normal(size=(500, 8)).astype(np.float32)
    >>> index = ItemIndex.build(items, m=16, ef_construction=100, ef=64, seed=0)
    >>> q = rng.normal(size=8).astype(np.float32)
    >>> exact = set(np.argsort(-(items @ q))[:10].tolist())
    >>> len(exact & set(index.query(q[None, :], 10)[0].tolist())) >= 9
    True
    """

    def __init__(self, index: hnswlib.Index, size: int, ef: int, build_s: float) -> None:
        self._index = index
        self.size = size
        self.ef = ef
        self.build_s = build_s

    @classmethod
    def build(cls, factors: np.ndarray, m: int, ef_construction: int, ef: int, seed: int) -> ItemIndex:
        """Index the rows of ``factors``; run it in a background thread.

        ``factors`` may be the live matrix: it is read in slices of
        ``_CHUNK`` rows, so the owner's thread gets the GIL between slices
        (a million rows copied at once would hold it for tens of ms). A
        row the owner rewrites meanwhile may be indexed half old, half
        new: candidates are scored again with the current factors.
        """
        t0 = time.perf_counter()
        n, dim = factors.shape
        aug = np.empty((n, dim + 1), dtype=np.float32)
        for lo in range(0, n, _CHUNK):
            aug[lo : lo + _CHUNK, :dim] = factors[lo : lo + _CHUNK]
            time.sleep(0)  # let the owner's thread run
        sq = np.empty(n, dtype=np.float64)
        for lo in range(0, n, _CHUNK):
            part = aug[lo : lo + _CHUNK, :dim]
            sq[lo : lo + _CHUNK] = np.einsum("ij,ij->i", part, part)
            time.sleep(0)
        top = float(sq.max()) if n else 1.0
        aug[:, dim] = np.sqrt(np.maximum(top - sq, 0.0))
        index = hnswlib.Index(space="l2", dim=dim + 1)
        index.init_index(max_elements=max(n, 1), ef_construction=ef_construction, M=m, random_seed=seed)
        index.set_num_threads(1)
        for lo in range(0, n, _CHUNK):  # hnswlib releases the GIL while it inserts
            index.add_items(aug[lo : lo + _CHUNK], np.arange(lo, min(lo + _CHUNK, n)))
        index.set_ef(ef)
        return cls(index, n, ef, time.perf_counter() - t0)

    @property
    def memory_bytes(self) -> int:
        """hnswlib's footprint: vectors, graph links and labels (its own accounting, level 0 dominant)."""
        idx = self._index
        per = idx.dim * 4 + idx.M * 2 * 4 + 8 + 4  # vector, level-0 links, label, link count
        return int(self.size * per * 1.1)  # upper levels: about 1/M of the elements, a few links each

    def query(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """``(len(vectors), k')`` labels of the items of largest inner product, ``k' = min(k, size)``."""
        k = min(k, self.size)
        if k == 0:
            return np.zeros((vectors.shape[0], 0), dtype=np.int64)
        self._index.set_ef(max(self.ef, k))
        q = np.zeros((vectors.shape[0], vectors.shape[1] + 1), dtype=np.float32)
        q[:, :-1] = vectors
        labels, _ = self._index.knn_query(q, k=k, num_threads=1)
        return labels.astype(np.int64)


class BackgroundIndex:
    """The current :class:`ItemIndex` and at most one build of its successor in a background thread.

    The owner (one ranker) calls :meth:`poll` between batches: it swaps a
    finished build in, and starts a new build when the factors have moved
    on for ``rebuild_s`` or many items were added. Queries only ever see a
    complete index.
    """

    def __init__(self, m: int, ef_construction: int, ef: int, rebuild_s: float, seed: int) -> None:
        self.m, self.ef_construction, self.ef, self.rebuild_s, self.seed = m, ef_construction, ef, rebuild_s, seed
        self.current: ItemIndex | None = None
        self.builds = 0
        self.building_since: float | None = None
        self._thread: threading.Thread | None = None
        self._result: ItemIndex | None = None
        self._started_at = 0.0

    @property
    def building(self) -> bool:
        return self._thread is not None

    def poll(self, factors: np.ndarray, changed: bool) -> bool:
        """Swap in a finished build; start the next one if due. True when a new index was swapped in."""
        swapped = False
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
            self.building_since = None
            if self._result is not None:
                self.current, self._result = self._result, None
                self.builds += 1
                swapped = True
        if self._thread is None and self._due(factors.shape[0], changed):
            self._start(factors)
        return swapped

    def _due(self, n: int, changed: bool) -> bool:
        if self.current is None:
            return n > 0
        fresh = n - self.current.size
        if fresh > max(1000, self.current.size // 20):
            return True  # too many items outside the index: they are scored exactly, query by query
        return changed and time.monotonic() - self._started_at >= self.rebuild_s

    def _start(self, factors: np.ndarray) -> None:
        self._started_at = time.monotonic()
        self.building_since = self._started_at

        def run() -> None:
            self._result = ItemIndex.build(factors, self.m, self.ef_construction, self.ef, self.seed)

        self._thread = threading.Thread(target=run, name="freshrec-index-build", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until a running build has finished (tests and benchmarks); then :meth:`poll` swaps it in."""
        if self._thread is not None:
            self._thread.join()
