"""Where an index build runs: the idle class only while hnswlib inserts without the GIL (models/priority.py)."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import hnswlib
import numpy as np
import pytest

import models.priority as priority
from models.index import BackgroundIndex, ItemIndex
from models.priority import IdleUnlessStarved

root_linux = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE") or os.geteuid() != 0, reason="Linux's idle class, left again as root"
)


def where(tid: int) -> tuple[int, int]:
    """Thread ``tid``'s scheduling class and nice."""
    return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)


@root_linux
def test_a_build_holds_the_gil_only_outside_the_idle_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # The allocation runs where the build thread started; hnswlib's call is entered and left (the
    # GIL taken back) at nice 10; the owner's polls put the thread in the idle class in between.
    # The inserter, which holds the lock queries take, stays in the normal class at nice 10.
    seen: dict[str, tuple[int, int]] = {}
    init, add, insert = hnswlib.Index.init_index, hnswlib.Index.add_items, ItemIndex.insert

    class Watched(hnswlib.Index):
        def init_index(self, *args: object, **kw: object) -> None:
            seen.setdefault("allocate", where(threading.get_native_id()))
            init(self, *args, **kw)  # type: ignore[arg-type]

        def add_items(self, *args: object, **kw: object) -> None:
            seen.setdefault("enter", where(threading.get_native_id()))
            add(self, *args, **kw)  # type: ignore[arg-type]
            seen.setdefault("leave", where(threading.get_native_id()))

    def watched_insert(self: ItemIndex, factors: np.ndarray, budget_s: float) -> int:
        seen["insert"] = where(threading.get_native_id())
        return insert(self, factors, budget_s)

    caller = where(threading.get_native_id())
    monkeypatch.setattr(hnswlib, "Index", Watched)
    monkeypatch.setattr(ItemIndex, "insert", watched_insert)
    factors = np.random.default_rng(0).normal(size=(40_000, 8)).astype(np.float32)
    index = BackgroundIndex(m=8, ef_construction=40, ef=32, rebuild_s=1e9, seed=0)
    index.poll(factors[:30_000], changed=False)
    during = set()
    while index.building:
        index.poll(factors[:30_000], changed=False)
        tid = index._guard._tid
        if tid:
            with contextlib.suppress(ProcessLookupError):  # the thread has just ended
                during.add(where(tid))
        time.sleep(0.001)
    index.poll(factors, changed=False)  # swapped in before; wakes the inserter for the 10k new items
    deadline = time.monotonic() + 30
    while "insert" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert caller[0] == os.SCHED_OTHER and seen["allocate"] == caller
    assert seen["enter"] == seen["leave"] == (os.SCHED_OTHER, 10)
    assert (os.SCHED_IDLE, 10) in during
    assert seen["insert"] == (os.SCHED_OTHER, 10)
    assert where(threading.get_native_id()) == caller  # the caller's own thread is untouched


def _guarded(guard: IdleUnlessStarved, done: list[int], total: int) -> tuple[threading.Thread, threading.Event]:
    """A thread standing in for a build: it starts the guard and waits (as if in hnswlib) until released."""
    entered, release = threading.Event(), threading.Event()

    def build() -> None:
        guard.start(lambda: done[0], total)
        entered.set()
        release.wait(30)

    thread = threading.Thread(target=build)
    thread.start()
    entered.wait(30)
    return thread, release


@root_linux
def test_a_build_starved_in_the_idle_class_goes_on_at_nice_10() -> None:
    guard = IdleUnlessStarved()
    done = [1]
    thread, release = _guarded(guard, done, 100_000)
    tid = thread.native_id
    assert tid is not None
    seen = {"start": (guard.idle, *where(tid))}
    guard()  # one row in: hnswlib may still hold the GIL
    seen["first row"] = (guard.idle, *where(tid))
    done[0] = 10
    guard()
    seen["inserting"] = (guard.idle, *where(tid))
    guard.check(wall_s=1.0, cpu_s=0.0)  # too soon to tell
    seen["soon"] = (guard.idle, *where(tid))
    guard.check(wall_s=10.0, cpu_s=3.0)  # 30% of a core: fed
    seen["fed"] = (guard.idle, *where(tid))
    guard.check(wall_s=10.0, cpu_s=2.0)  # 20%: starved
    seen["starved"] = (guard.idle, *where(tid))
    guard()
    seen["after"] = (guard.idle, *where(tid))  # settled: not put back
    release.set()
    thread.join()
    idle, nice10 = (True, os.SCHED_IDLE, 10), (False, os.SCHED_OTHER, 10)
    assert seen["start"] == seen["first row"] == nice10
    assert seen["inserting"] == seen["soon"] == seen["fed"] == idle
    assert seen["starved"] == seen["after"] == nice10


@root_linux
def test_a_build_leaves_the_idle_class_before_its_last_rows() -> None:
    guard = IdleUnlessStarved()
    total = 1_000_000
    done = [100]
    thread, release = _guarded(guard, done, total)
    tid = thread.native_id
    assert tid is not None
    guard()
    inserting = where(tid)
    done[0] = int(total - priority._TAIL * total) + 1  # into the tail: hnswlib will want the GIL soon
    guard()
    tail = where(tid)
    release.set()
    thread.join()
    assert inserting == (os.SCHED_IDLE, 10) and tail == (os.SCHED_OTHER, 10)


def test_a_build_that_could_not_leave_the_idle_class_runs_at_nice_10(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not root and RLIMIT_NICE under 10: the guard could not move it out, so it never goes in.
    monkeypatch.setattr(priority, "_may_leave_idle", lambda: False)
    guard = IdleUnlessStarved()
    done = [100]
    thread, release = _guarded(guard, done, 1_000_000)
    tid = thread.native_id
    assert tid is not None
    guard()
    seen = where(tid)
    release.set()
    thread.join()
    assert not guard.idle
    assert seen == (os.SCHED_OTHER, 10)
