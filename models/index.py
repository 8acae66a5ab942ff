"""HNSW index over item factors for maximum-inner-product candidates, rebuilt in the background, in parts.

An hnswlib index updated in place loses recall as vectors move (0.68 of
the exact top-20 at 12.5k items, ARCHITECTURE), and ``add_items`` is not
safe beside ``knn_query`` on another thread. So the vectors of an index
are never updated: a new index is built from the factors in a background
thread (hnswlib releases the GIL while it builds) and swapped in when
complete; ranking scores the candidates with the current factors. Items
added since the build are inserted into the current index by a second
background thread, a few at a time under a lock that queries take too
(``BackgroundIndex``), and scored apart until then (``models/ranking.py``).
A build takes a core while it runs (10 s at 100k items, minutes at 1M),
so builds are spaced to use at most a quarter of one on average (``DUTY``).

The index comes in *parts* of at most ``part_items`` items each (item
ranges ``[lo, hi)``), rebuilt one at a time, stalest first. hnswlib frees
an index with the GIL held, at every swap: in fresh processes on a quiet
machine, 81 ms for a 1M-item index and 17-25 ms for a 262k part
(``bench/RESULTS.md``, twelfth round), stretched on the event path under
load. Each swap's pause is exported (``freshrec_index_swap_seconds``). A
build needs one part's memory beside the index. A query asks every part
for fewer neighbours at a lower ``ef`` (:meth:`BackgroundIndex.query`):
about 1.4 times the time of one index, for the same recall.

The index searches inner product directly (hnswlib's ``ip`` space). The
usual reduction of inner product to L2 (one extra coordinate
``sqrt(M**2 - |x|**2)``) is exact, but on these factors it recalled much
less at the same cost: on a fresh build of 77k items the ``ip`` index
found 0.84 of the exact inner-product top-20 at ``ef`` 64 and 0.94 at
128, the L2-reduced one 0.42 and 0.58 (``bench/RESULTS.md``); the extra
coordinate, nearly the same for every item, dominates the distances.
Rebuilt rather than updated, the ``ip`` graph does not decay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import hnswlib
import numpy as np

from models.priority import IdleUnlessStarved, nice

_INSERT = 4  # new items inserted per step of ItemIndex.insert (each costs tens to hundreds of us)
_HEADROOM = 1.25  # capacity of a build over the items it indexes
_INSERT_HOLD_S = 0.001  # the inserter holds the index (queries wait) at most about this long at a time
_INSERT_DUTY = 0.5  # most share of a core the inserter takes
DUTY = 0.25  # most share of a core the background builds take, on average


class ItemIndex:
    """One immutable hnswlib index of the item vectors ``lo..hi-1`` (a part), searched by inner product.

    Queries answer dense item indexes; hnswlib's own labels count from 0.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> items = rng.normal(size=(500, 8)).astype(np.float32)
    >>> index = ItemIndex.build(items, 100, 500, m=16, ef_construction=100, ef=64, seed=0)
    >>> q = rng.normal(size=8).astype(np.float32)
    >>> exact = set((100 + np.argsort(-(items[100:] @ q))[:10]).tolist())
    >>> len(exact & set(index.query(q[None, :], 10)[0].tolist())) >= 9
    True
    """

    def __init__(self, index: hnswlib.Index, lo: int, hi: int, ef: int, build_s: float, started: float) -> None:
        self._index = index
        self.lo = lo
        self.hi = hi  # grows as items are inserted
        self.ef = ef
        self.build_s = build_s
        self.started = started  # time.monotonic() when its build began: the factors it holds are about that old

    @classmethod
    def build(
        cls,
        factors: np.ndarray,
        lo: int,
        hi: int,
        m: int,
        ef_construction: int,
        ef: int,
        seed: int,
        start: Callable[[Callable[[], int], int], object] | None = None,
        capacity: int = 0,
    ) -> ItemIndex:
        """Index rows ``lo..hi-1`` of float32 ``factors``, room for ``capacity`` in all; run it in a background thread.

        ``factors`` may be the live matrix: hnswlib copies each row as it
        inserts it, all rows in one call with the GIL released, so the
        owner's thread runs meanwhile. A row the owner rewrites then may be
        indexed old or new: candidates are scored again with the current
        factors. Only the allocation (about 25 ms for 1.25M rows) and the
        return hold the GIL. ``start(progress, rows)`` is called between the
        two (:class:`BackgroundIndex` hands the thread to its
        :class:`~models.priority.IdleUnlessStarved` there).
        """
        t0, started = time.perf_counter(), time.monotonic()
        n, dim = hi - lo, factors.shape[1]
        index = hnswlib.Index(space="ip", dim=dim)
        capacity = max(int(n * _HEADROOM), n + 1024, capacity)  # room for items added until the next build
        index.init_index(max_elements=capacity, ef_construction=ef_construction, M=m, random_seed=seed)
        index.set_num_threads(1)  # this build's and every later insert's (hnswlib's default: a thread per core)
        rows = np.ascontiguousarray(factors[lo:hi], dtype=np.float32)
        if start is not None:
            start(index.get_current_count, n)
        index.add_items(rows)  # labels 0..n-1
        index.set_ef(ef)
        return cls(index, lo, hi, ef, time.perf_counter() - t0, started)

    def insert(self, factors: np.ndarray, budget_s: float) -> int:
        """Add items ``hi, hi+1, ...`` of ``factors`` until the budget or the capacity is spent; how many.

        New items only: an insert is a normal step of HNSW construction and
        leaves the graph as good as a build would (updating a vector in
        place is what degrades it). Never beside a query of this index
        (:class:`BackgroundIndex` holds a lock for both).
        """
        deadline = time.perf_counter() + budget_s
        room = self._index.get_max_elements() - (self.hi - self.lo)
        added = 0
        while added < room and self.hi < factors.shape[0] and time.perf_counter() < deadline:
            hi = min(factors.shape[0], self.hi + _INSERT, self.hi + room - added)
            self._index.add_items(np.ascontiguousarray(factors[self.hi : hi]), np.arange(self.hi, hi) - self.lo)
            added += hi - self.hi
            self.hi = hi
        return added

    @property
    def memory_bytes(self) -> int:
        """hnswlib's footprint: vectors, graph links and labels (its own accounting, level 0 dominant)."""
        idx = self._index
        per = idx.dim * 4 + idx.M * 2 * 4 + 8 + 4  # vector, level-0 links, label, link count
        return int((self.hi - self.lo) * per * 1.1)  # upper levels: about 1/M of the elements, a few links each

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> np.ndarray:
        """``(len(vectors), k')`` items of largest inner product, ``k' = min(k, items)``, searched at ``ef``."""
        k = min(k, self.hi - self.lo)
        if k == 0:
            return np.zeros((vectors.shape[0], 0), dtype=np.int64)
        self._index.set_ef(max(self.ef if ef is None else ef, k))
        labels, _ = self._index.knn_query(np.ascontiguousarray(vectors, dtype=np.float32), k=k, num_threads=1)
        return labels.astype(np.int64) + self.lo


class BackgroundIndex:
    """The index's parts (:class:`ItemIndex`), new items inserted into the last, at most one build in the background.

    The owner (one ranker) calls :meth:`poll` between batches: it swaps a
    finished build in, hands the inserter the newest factors, and starts
    a new build when one is due (:meth:`_plan`), once the last build has
    had its rest (``DUTY``). Queries (:meth:`query`) only ever see
    complete parts.

    The inserter is a thread of its own (started with the first items
    outside the index): it adds the items newer than the last part a
    few at a time, holding a lock that :meth:`query` takes too, so a query
    waits at most about ``_INSERT_HOLD_S``. hnswlib releases the GIL while
    it inserts, so the owner goes on with its own work meanwhile; inserts
    cost 100-300 us an item at 1M items, a sixth of the event path when
    the owner did them itself. None run while a build runs: the part the
    build swaps in might not hold them.
    """

    def __init__(
        self, m: int, ef_construction: int, ef: int, rebuild_s: float, seed: int, part_items: int = 1 << 18
    ) -> None:
        self.m, self.ef_construction, self.ef, self.rebuild_s, self.seed = m, ef_construction, ef, rebuild_s, seed
        self.part_items = part_items
        self.parts: list[ItemIndex] = []  # item ranges in order, together 0..size-1
        self.last_build_s = 0.0  # the last build swapped in, all its parts
        self.last_swap_s = 0.0  # what its swap held the owner: mostly hnswlib freeing the part(s) it replaced
        self._thread: threading.Thread | None = None
        self._guard = IdleUnlessStarved()  # the running build's, for the part it builds now
        self._result: list[ItemIndex] | None = None
        self._job_s = 0.0
        self._finished_at = -float("inf")
        self._changed_at = -float("inf")  # when the factors last moved
        self._lock = threading.Lock()  # the parts: one query or one insert step at a time
        self._factors: np.ndarray | None = None  # the newest factors, for the inserter
        self._wake = threading.Event()
        self._inserter: threading.Thread | None = None

    @property
    def building(self) -> bool:
        return self._thread is not None

    @property
    def ready(self) -> bool:
        """Whether any index has been swapped in yet."""
        return bool(self.parts)

    @property
    def size(self) -> int:
        """Items ``0..size-1`` are in the index."""
        return self.parts[-1].hi if self.parts else 0

    @property
    def build_s(self) -> float:
        """What building every part took (a whole rebuild's cost)."""
        return sum(p.build_s for p in self.parts)

    @property
    def memory_bytes(self) -> int:
        return sum(p.memory_bytes for p in self.parts)

    def query(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` best of each vector from one part; of ``s`` parts, ``3k/2s`` from each at ``ef`` scaled alike.

        A part is searched in about the time of a whole index of its size.
        At 743k random vectors in 3 parts, 25 from each at ef 32 held 0.925
        of the exact top-20 in 1.43 times the time of one index asked for
        50 at ef 64 (0.921); 17 at ef 22 held 0.867, 34 at ef 44 0.959
        (``bench/RESULTS.md``, eleventh round). Never beside an insert.
        """
        with self._lock:
            parts = self.parts
            assert parts
            each = min(k, -(-3 * k // (2 * len(parts))))
            ef = max(each, -(-self.ef * each // k))
            return np.hstack([p.query(vectors, each, ef) for p in parts])

    def poll(self, factors: np.ndarray, changed: bool) -> bool:
        """Swap in a finished build, hand the inserter ``factors``, start the next build if due. True when swapped."""
        swapped = False
        if changed:
            self._changed_at = time.monotonic()
        if self._thread is not None and self._thread.is_alive():
            self._guard()
        elif self._thread is not None:
            self._thread = None
            self._finished_at = time.monotonic()
            built, self._result = self._result, None
            if built:
                t0 = time.perf_counter()
                lo, hi = built[0].lo, built[-1].hi
                with self._lock:
                    old = self.parts
                    self.parts = [p for p in old if p.hi <= lo] + built + [p for p in old if p.lo >= hi]
                del old, built  # hnswlib frees the part(s) replaced here, with the GIL held
                self.last_swap_s = time.perf_counter() - t0
                self.last_build_s = self._job_s
                swapped = True
        self._factors = factors
        if self.parts and factors.shape[0] > self.size and self._thread is None:
            if self._inserter is None:
                self._inserter = threading.Thread(target=self._insert_loop, name="freshrec-index-insert", daemon=True)
                self._inserter.start()
            self._wake.set()
        if self._thread is None:
            ranges = self._plan(factors.shape[0])
            if ranges:
                self._start(factors, ranges)
        return swapped

    def _insert_loop(self) -> None:
        """The inserter: wait to be woken, then insert what is outside the index, a step at a time."""
        nice(threading.get_native_id())  # not the idle class: it holds the lock queries take (and the GIL)
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._thread is None:  # none while a build runs
                with self._lock:
                    factors = self._factors
                    if not self.parts or factors is None:
                        break
                    t0 = time.perf_counter()
                    added = self.parts[-1].insert(factors, _INSERT_HOLD_S)
                    spent = time.perf_counter() - t0
                if not added:
                    break  # all in, or the last part is full (a build is due)
                time.sleep(spent * (1 / _INSERT_DUTY - 1))

    def _plan(self, n: int) -> list[tuple[int, int]]:
        """The item ranges the next build makes parts of; none while none is due.

        The first build indexes every item. Then, once the last build has
        had its rest: the last part with the items outside the index once
        they are too many for the inserter (the part is full), else the
        stalest part once it is ``rebuild_s`` old and the factors have
        moved since it was built.
        """
        if not self.parts:
            return _split(0, n, self.part_items)
        now = time.monotonic()
        if now - self._finished_at < self.last_build_s * (1 / DUTY - 1):
            return []  # builds take at most DUTY of a core
        last = self.parts[-1]
        if n - last.hi > max(1000, (last.hi - last.lo) // 20):
            return _split(last.lo, n, self.part_items)  # items outside are scored apart, query by query
        stalest = min(self.parts, key=lambda p: p.started)
        if self._changed_at > stalest.started and now - stalest.started >= self.rebuild_s:
            return _split(stalest.lo, n if stalest is last else stalest.hi, self.part_items)
        return []

    def _start(self, factors: np.ndarray, ranges: list[tuple[int, int]]) -> None:
        n = factors.shape[0]

        def run() -> None:
            t0 = time.perf_counter()
            built = []
            for lo, hi in ranges:
                guard = self._guard = IdleUnlessStarved()
                room = self.part_items if hi == n else 0  # the last part grows to a whole one by inserts
                built.append(
                    ItemIndex.build(
                        factors, lo, hi, self.m, self.ef_construction, self.ef, self.seed, guard.start, room
                    )
                )
            self._job_s = time.perf_counter() - t0
            self._result = built

        self._thread = threading.Thread(target=run, name="freshrec-index-build", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until a running build has finished (tests and benchmarks); then :meth:`poll` swaps it in."""
        if self._thread is not None:
            self._thread.join()


def _split(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` in ranges of ``size`` items, the last one shorter; none if empty."""
    return [(a, min(a + size, hi)) for a in range(lo, hi, size)]
