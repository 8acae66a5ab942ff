"""Where a background index build runs: Linux's idle scheduling class while hnswlib inserts, nice 10 otherwise.

A build takes a core for seconds to minutes. In the idle class
(``SCHED_IDLE``) it runs only on what the event path, the broker and
Redis leave of the cores; at 1,000 events/s with a 1M-item index
rebuilt, the median of 10-s freshness p99s read 1.51 times lower than
with nice 10 (three alternated pairs, ``bench/RESULTS.md``, 2026-12-07).

But an idle-class thread must never hold or want the GIL. One that is
preempted while holding it stalls every Python thread, and one that
waits for it stalls the thread holding it too: CPython's holder, asked
to drop the GIL, waits until the waiter has taken it, and an idle-class
waiter is scheduled only when a core has nothing else to run. So the
build thread itself only lowers itself to nice 10; the owner's thread
(which holds the GIL when it looks) moves it into the idle class once
hnswlib has released the GIL to insert, and back to nice 10 before the
last rows, before hnswlib takes the GIL again to return
(:class:`IdleUnlessStarved`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

NICE = 10  # a build's niceness outside the idle class, and the inserter's (Linux: per thread)
_STARVED = 4.0  # a build in the idle class that gets under 1/_STARVED of the time it has run ...
_STARVED_AFTER_S = 2.0  # ... for at least this long goes on at NICE
_TAIL = 0.05  # a build leaves the idle class for its last share of rows (at least _TAIL_MIN of them)
_TAIL_MIN = 5000


class IdleUnlessStarved:
    """A build thread's place: nice 10, the idle class while it inserts with the GIL released.

    The build thread calls :meth:`start` once its index is allocated,
    just before the one hnswlib call that inserts every row. The owner
    calls the guard (:meth:`__call__`) between batches: it moves the
    thread into the idle class once more than one row is in (hnswlib
    inserts the first with the GIL held, then releases it), and back to
    nice 10 when all but the last ``_TAIL`` of the rows are in, so that
    the thread takes the GIL back to return at nice 10. If the owner
    looks only rarely (an idle flow) the build simply runs at nice 10.

    An idle-class thread gets almost nothing while normal threads keep
    every core busy (two flows draining on two cores), and a build that
    never ends leaves ever more items outside the index. So once the
    build has had less than ``1/_STARVED`` of the time it has spent in
    the idle class, for at least ``_STARVED_AFTER_S``, it goes on at
    nice 10 and one log line says so. Where there is no idle class, or a
    thread could not be moved back out of it (not root, ``RLIMIT_NICE``
    under 10), it never goes in.
    """

    def __init__(self) -> None:
        self.idle = False
        self.settled = False  # out of the idle class for good: tail reached, or starved
        self._tid = 0
        self._clock = 0
        self._t0 = self._cpu0 = 0.0
        self._progress: Callable[[], int] | None = None
        self._total = 0

    def start(self, progress: Callable[[], int], total: int) -> None:
        """On the build thread, before its inserts: nice 10; the owner watches ``progress()`` (rows in of ``total``)."""
        self._tid = threading.get_native_id()
        nice(self._tid)
        if _may_leave_idle():
            self._clock = time.pthread_getcpuclockid(threading.get_ident())
            self._total = total
            self._progress = progress  # last: the owner acts once it is set

    def __call__(self) -> None:
        """On the owner's thread, while the build runs: move it in or out of the idle class as its inserts go."""
        progress = self._progress
        if progress is None or self.settled:
            return
        done = progress()
        tail = max(_TAIL_MIN, int(self._total * _TAIL))
        if not self.idle:
            if 1 < done < self._total - tail and _idle(self._tid):
                self.idle = True
                self._t0, self._cpu0 = time.perf_counter(), self._cpu()
            return
        if done >= self._total - tail:
            self._leave()
            return
        with contextlib.suppress(OSError):  # the thread has just ended
            self.check(time.perf_counter() - self._t0, self._cpu() - self._cpu0)

    def check(self, wall_s: float, cpu_s: float) -> None:
        """Go on at nice 10 if the build has had under ``1/_STARVED`` of ``wall_s`` in the idle class."""
        if wall_s >= _STARVED_AFTER_S and wall_s > _STARVED * cpu_s:
            self._leave()
            log.info(
                "index build: %.0f%% of a core in the idle class over %.1f s; it goes on at nice %d",
                100 * cpu_s / wall_s,
                wall_s,
                NICE,
            )

    def _cpu(self) -> float:
        return time.clock_gettime(self._clock)

    def _leave(self) -> None:
        nice(self._tid)
        self.idle = False
        self.settled = True


def nice(tid: int) -> None:
    """Lower thread ``tid``'s CPU priority (Linux schedules threads as tasks), out of the idle class if it is in it."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, tid, NICE)  # first: leaving the idle class is allowed at a nice in RLIMIT_NICE
    with contextlib.suppress(OSError, AttributeError):  # no scheduling classes outside Linux: nice still applies
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


def _may_leave_idle() -> bool:
    """Whether a thread put in the idle class could be moved back out (Linux: root, or RLIMIT_NICE)."""
    if not hasattr(os, "SCHED_IDLE") or not hasattr(time, "pthread_getcpuclockid"):
        return False
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or soft >= 20 - NICE


def _idle(tid: int) -> bool:
    """Put thread ``tid`` in Linux's idle class (``SCHED_IDLE``): it runs on what the other threads leave of a core."""
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        return False
    return True
