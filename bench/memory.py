"""Resident memory, snapshot and restore of the model state per number of users.

``freshrec bench`` runs this in a fresh process so resident memory is the
model's own::

    python -m bench.memory --users 100000,1000000

Users arrive one event each over 10,000 items (the model's per-user state
is what grows with users); at each checkpoint it records the process's
resident memory, the recovery snapshot (the exact ``pickle.dumps`` the
flow's ``snapshot()`` does) time and size, and the restore
(``pickle.loads``, what a restart does first) time. The last line is JSON.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Iterator

import orjson

from models import HybridRecommender
from models.event import Event

ITEMS = 10_000


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def one_event_per_user(start: int, stop: int) -> Iterator[Event]:
    """Events ``start..stop-1``; event ``n`` is user ``n``'s only one (the per-user state is what grows)."""
    for n in range(start, stop):
        yield Event(f"u{n}", f"i{(n * 7919) % ITEMS}", "view", 1.0, 1.7e9 + n * 0.001, 1.7e9)


def measure(checkpoints: list[int]) -> list[dict[str, float]]:
    """Grow one model to each number of users in turn; figures at each."""
    base = rss_mb()
    model = HybridRecommender()
    out = []
    n = 0
    t_learn = 0.0
    for users in sorted(checkpoints):
        t0 = time.perf_counter()
        for event in one_event_per_user(n, users):
            model.learn(event)
        n = max(n, users)
        t_learn += time.perf_counter() - t0
        rss = rss_mb() - base
        t0 = time.perf_counter()
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        snap = time.perf_counter() - t0
        t0 = time.perf_counter()
        restored = pickle.loads(blob)
        restore = time.perf_counter() - t0
        assert len(restored.users) == users
        del restored
        out.append(
            {
                "users": users,
                "rss_mb": round(rss, 1),
                "snapshot_s": round(snap, 3),
                "snapshot_mb": round(len(blob) / 1e6, 1),
                "restore_s": round(restore, 3),
                "learn_events_per_s": round(n / t_learn, 0),
            }
        )
        del blob
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", default="100000,1000000", help="comma-separated checkpoints")
    args = ap.parse_args()
    rows = measure([int(x) for x in args.users.split(",")])
    for r in rows:
        print(
            f"{r['users']:>9,} users: RSS +{r['rss_mb']:,.0f} MB, snapshot {r['snapshot_s']:.2f} s ({r['snapshot_mb']:,.0f} MB), restore {r['restore_s']:.2f} s"
        )
    print(orjson.dumps(rows).decode())


if __name__ == "__main__":
    main()
