"""User-side state per number of users, with realistic histories: memory, snapshots, restore.

``freshrec bench`` runs this in a fresh process so resident memory is the
state's own::

    python -m bench.memory --users 100000,1000000

Users come from the synthetic stream (Zipf activity, ``EVENTS_PER_USER``
events per user on average, so recent items and seen rings fill as they
do in production). At each size it records the process's resident
memory, the first snapshot (every row is new: what the first epoch
after a cold start writes), a steady snapshot (5,000 more events: what
one epoch at 1,000 events/s writes), and the restore of the whole
journal. The item side is the learner's and scales with the catalogue,
not the users (``bench/catalogue.py``). The last line is JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from models.config import ModelConfig
from models.users import UserTable
from operators.synthetic import SyntheticConfig, synthetic_events
from state.journal import Journal, restore

EVENTS_PER_USER = 10


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(users: int, root: Path) -> dict[str, float]:
    base = rss_mb()
    config = ModelConfig()
    table = UserTable(config)
    stream = SyntheticConfig(users=users, items=10_000, topics=50, events=users * EVENTS_PER_USER, seed=1)
    t0 = time.perf_counter()
    for e in synthetic_events(stream):
        table.learn(e)
    learn_s = time.perf_counter() - t0
    rss = rss_mb() - base
    journal = Journal(root, f"users-{users}", {}, keep_s=0)
    t0 = time.perf_counter()
    journal.checkpoint(table)
    first_s, first_mb = time.perf_counter() - t0, journal.last_bytes / 1e6
    for e in synthetic_events(SyntheticConfig(users=users, items=10_000, topics=50, events=5000, seed=2)):
        table.learn(e)
    journal.checkpoint(table)
    steady_s, steady_mb = journal.last_s, journal.last_bytes / 1e6
    manifest = journal.checkpoint(table)
    t0 = time.perf_counter()
    restored, _ = restore(manifest, lambda: UserTable(config), {}, root)
    restore_s = time.perf_counter() - t0
    assert len(restored.users) == len(table)  # type: ignore[attr-defined]
    return {
        "users": len(table),
        "events": table.n_events,
        "rss_mb": round(rss, 1),
        "first_snapshot_s": round(first_s, 3),
        "first_snapshot_mb": round(first_mb, 1),
        "steady_snapshot_s": round(steady_s, 4),
        "steady_snapshot_mb": round(steady_mb, 2),
        "restore_s": round(restore_s, 2),
        "learn_events_per_s": round(table.n_events / learn_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", default="100000,1000000", help="comma-separated sizes")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="freshrec-memory-") as tmp:
        for users in (int(x) for x in args.users.split(",")):
            rows.append(measure(users, Path(tmp)))
            r = rows[-1]
            print(
                f"{r['users']:>9,} users ({r['events']:,} events): RSS +{r['rss_mb']:,.0f} MB; first snapshot "
                f"{r['first_snapshot_s']:.2f} s ({r['first_snapshot_mb']:,.0f} MB), steady snapshot "
                f"{r['steady_snapshot_s'] * 1000:.1f} ms ({r['steady_snapshot_mb']:.2f} MB), "
                f"restore {r['restore_s']:.2f} s",
                flush=True,
            )
    print(orjson.dumps(rows).decode())


if __name__ == "__main__":
    main()
