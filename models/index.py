"""HNSW index over item factors for maximum-inner-product candidates, rebuilt in the background.

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

import contextlib
import logging
import os
import resource
import threading
import time
from collections.abc import Callable

import hnswlib
import numpy as np

log = logging.getLogger(__name__)

_INSERT = 4  # new items inserted per step of ItemIndex.insert (each costs tens to hundreds of us)
_HEADROOM = 1.25  # capacity of a build over the items it indexes
_INSERT_HOLD_S = 0.001  # the inserter holds the index (queries wait) at most about this long at a time
_INSERT_DUTY = 0.5  # most share of a core the inserter takes
_NICE = 10  # the inserter's niceness (Linux: per thread); a build runs in the idle class where there is one
_STARVED = 4.0  # a build in the idle class that gets under 1/_STARVED of the time it has run ...
_STARVED_AFTER_S = 2.0  # ... for at least this long goes on at _NICE
DUTY = 0.25  # most share of a core the background builds take, on average


class ItemIndex:
    """One immutable hnswlib index of item vectors, searched by inner product.

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
    def build(
        cls,
        factors: np.ndarray,
        m: int,
        ef_construction: int,
        ef: int,
        seed: int,
        before_insert: Callable[[], object] | None = None,
    ) -> ItemIndex:
        """Index the rows of float32 ``factors``; run it in a background thread.

        ``factors`` may be the live matrix: hnswlib copies each row as it
        inserts it, all rows in one call with the GIL released, so the
        owner's thread runs meanwhile. A row the owner rewrites then may be
        indexed old or new: candidates are scored again with the current
        factors. Only the allocation (about 25 ms for 1.25M rows) and the
        return hold the GIL. ``before_insert`` is called between the two
        (:class:`BackgroundIndex` moves the thread to the idle class there).
        """
        t0 = time.perf_counter()
        n, dim = factors.shape
        index = hnswlib.Index(space="ip", dim=dim)
        capacity = max(int(n * _HEADROOM), n + 1024)  # room for the items added until the next build
        index.init_index(max_elements=capacity, ef_construction=ef_construction, M=m, random_seed=seed)
        index.set_num_threads(1)  # this build's and every later insert's (hnswlib's default: a thread per core)
        if before_insert is not None:
            before_insert()
        index.add_items(np.ascontiguousarray(factors, dtype=np.float32))  # labels 0..n-1
        index.set_ef(ef)
        return cls(index, n, ef, time.perf_counter() - t0)

    def insert(self, factors: np.ndarray, budget_s: float) -> int:
        """Add items ``size, size+1, ...`` of ``factors`` until the budget or the capacity is spent; how many.

        New items only: an insert is a normal step of HNSW construction and
        leaves the graph as good as a build would (updating a vector in
        place is what degrades it). Never beside a query of this index
        (:class:`BackgroundIndex` holds a lock for both).
        """
        deadline = time.perf_counter() + budget_s
        room = self._index.get_max_elements() - self.size
        added = 0
        while added < room and self.size < factors.shape[0] and time.perf_counter() < deadline:
            hi = min(factors.shape[0], self.size + _INSERT, self.size + room - added)
            self._index.add_items(np.ascontiguousarray(factors[self.size : hi]), np.arange(self.size, hi))
            added += hi - self.size
            self.size = hi
        return added

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
        labels, _ = self._index.knn_query(np.ascontiguousarray(vectors, dtype=np.float32), k=k, num_threads=1)
        return labels.astype(np.int64)


class BackgroundIndex:
    """The current :class:`ItemIndex`, new items inserted into it, and at most one rebuild in the background.

    The owner (one ranker) calls :meth:`poll` between batches: it swaps a
    finished build in, hands the inserter the newest factors, and starts
    a new build when the factors have moved on for ``rebuild_s`` or the
    index is full, once the last build has had its rest (``DUTY``).
    Queries (:meth:`query`) only ever see a complete index.

    The inserter is a thread of its own (started with the first items
    outside an index): it adds the items newer than the current index a
    few at a time, holding a lock that :meth:`query` takes too, so a query
    waits at most about ``_INSERT_HOLD_S``. hnswlib releases the GIL while
    it inserts, so the owner goes on with its own work meanwhile; inserts
    cost 100-300 us an item at 1M items, a sixth of the event path when
    the owner did them itself. None run while a build runs: the index the
    build swaps in would not hold them.
    """

    def __init__(self, m: int, ef_construction: int, ef: int, rebuild_s: float, seed: int) -> None:
        self.m, self.ef_construction, self.ef, self.rebuild_s, self.seed = m, ef_construction, ef, rebuild_s, seed
        self.current: ItemIndex | None = None
        self.builds = 0
        self.building_since: float | None = None
        self._thread: threading.Thread | None = None
        self._guard = IdleUnlessStarved()  # the running build's
        self._result: ItemIndex | None = None
        self._started_at = 0.0
        self._finished_at = -float("inf")
        self._lock = threading.Lock()  # the current index: one query or one insert step at a time
        self._factors: np.ndarray | None = None  # the newest factors, for the inserter
        self._wake = threading.Event()
        self._inserter: threading.Thread | None = None

    @property
    def building(self) -> bool:
        return self._thread is not None

    def query(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """:meth:`ItemIndex.query` of the current index (never one an insert is changing)."""
        with self._lock:
            assert self.current is not None
            return self.current.query(vectors, k)

    def poll(self, factors: np.ndarray, changed: bool) -> bool:
        """Swap in a finished build, hand the inserter ``factors``, start the next build if due. True when swapped."""
        swapped = False
        if self._thread is not None and self._thread.is_alive():
            self._guard()
        elif self._thread is not None:
            self._thread = None
            self.building_since = None
            self._finished_at = time.monotonic()
            if self._result is not None:
                with self._lock:
                    self.current, self._result = self._result, None
                self.builds += 1
                swapped = True
        self._factors = factors
        if self.current is not None and factors.shape[0] > self.current.size and self._thread is None:
            if self._inserter is None:
                self._inserter = threading.Thread(target=self._insert_loop, name="freshrec-index-insert", daemon=True)
                self._inserter.start()
            self._wake.set()
        if self._thread is None and self._due(factors.shape[0], changed):
            self._start(factors)
        return swapped

    def _insert_loop(self) -> None:
        """The inserter: wait to be woken, then insert what is outside the current index, a step at a time."""
        _nice(threading.get_native_id())  # not the idle class: it holds the lock queries take (and the GIL)
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._thread is None:  # none while a build runs
                with self._lock:
                    index, factors = self.current, self._factors
                    if index is None or factors is None:
                        break
                    t0 = time.perf_counter()
                    added = index.insert(factors, _INSERT_HOLD_S)
                    spent = time.perf_counter() - t0
                if not added:
                    break  # all in, or the index is full (a build is due)
                time.sleep(spent * (1 / _INSERT_DUTY - 1))

    def _due(self, n: int, changed: bool) -> bool:
        if self.current is None:
            return n > 0
        if time.monotonic() - self._finished_at < self.current.build_s * (1 / DUTY - 1):
            return False  # builds take at most DUTY of a core
        if n - self.current.size > max(1000, self.current.size // 20):
            return True  # the index is full: the items outside it are scored apart, query by query
        return changed and time.monotonic() - self._started_at >= self.rebuild_s

    def _start(self, factors: np.ndarray) -> None:
        self._started_at = time.monotonic()
        self.building_since = self._started_at
        guard = self._guard = IdleUnlessStarved()

        def run() -> None:
            self._result = ItemIndex.build(
                factors, self.m, self.ef_construction, self.ef, self.seed, before_insert=guard.enter
            )

        self._thread = threading.Thread(target=run, name="freshrec-index-build", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until a running build has finished (tests and benchmarks); then :meth:`poll` swaps it in."""
        if self._thread is not None:
            self._thread.join()


def _nice(tid: int) -> None:
    """Lower thread ``tid``'s CPU priority (Linux schedules threads as tasks), out of the idle class if it is in it."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, tid, _NICE)  # first: leaving the idle class is allowed at a nice in RLIMIT_NICE
    with contextlib.suppress(OSError, AttributeError):  # no scheduling classes outside Linux: nice still applies
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


def _may_leave_idle() -> bool:
    """Whether a thread put in the idle class could be watched and moved back out (Linux: root, or RLIMIT_NICE)."""
    if not hasattr(os, "SCHED_IDLE") or not hasattr(time, "pthread_getcpuclockid"):
        return False
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or soft >= 20 - _NICE


class IdleUnlessStarved:
    """A build thread's place: the idle class while hnswlib inserts, nice 10 if that starves it.

    The build thread calls :meth:`enter` once the index is allocated:
    from there it holds the GIL only to return. An idle-class thread gives
    way at once to any normal one (:data:`DUTY`'s cost is then spent on
    what the event path, the broker and Redis leave of the cores); at
    1,000 events/s with a 1M-item index rebuilt, the median of 10-s
    freshness p99s read 1.51 times lower than with nice 10 (three
    alternated pairs, ``bench/RESULTS.md``, 2026-12-07). What holds the
    GIL runs in the normal class: a thread preempted while it holds it
    stalls every other Python thread, the event path first.

    An idle-class thread gets almost nothing while normal threads keep
    every core busy (two flows draining on two cores), and a build that
    never ends leaves ever more items outside the index. So the owner
    calls the guard now and then (:meth:`BackgroundIndex.poll`): once the
    build has had less than ``1/_STARVED`` of the time it has run, for at
    least ``_STARVED_AFTER_S``, it goes on at nice 10, and one log line
    says so. Where there is no idle class, or a thread could not be moved
    back out of it (not root, ``RLIMIT_NICE`` under 10), the build runs
    at nice 10 throughout.
    """

    def __init__(self) -> None:
        self.idle = False
        self._tid = 0
        self._clock = 0
        self._t0 = self._cpu0 = 0.0

    def enter(self) -> None:
        """On the build thread: move it to the idle class (or nice 10) and start watching its CPU time."""
        self._tid = threading.get_native_id()
        self.idle = _may_leave_idle() and _idle(self._tid)
        if self.idle:
            self._clock = time.pthread_getcpuclockid(threading.get_ident())
            self._t0, self._cpu0 = time.perf_counter(), time.thread_time()
        else:
            _nice(self._tid)

    def __call__(self) -> None:
        """On the owner's thread, while the build runs: go on at nice 10 if the build is starved."""
        if self.idle:
            with contextlib.suppress(OSError):  # the thread has just ended
                self.check(time.perf_counter() - self._t0, time.clock_gettime(self._clock) - self._cpu0)

    def check(self, wall_s: float, cpu_s: float) -> None:
        if wall_s >= _STARVED_AFTER_S and wall_s > _STARVED * cpu_s:
            _nice(self._tid)
            self.idle = False
            log.info(
                "index build: %.0f%% of a core in the idle class over %.1f s; it goes on at nice %d",
                100 * cpu_s / wall_s,
                wall_s,
                _NICE,
            )


def _idle(tid: int) -> bool:
    """Put thread ``tid`` in Linux's idle class (``SCHED_IDLE``): it runs on what the other threads leave of a core."""
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        return False
    return True
