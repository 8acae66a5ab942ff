"""``python -m bench.analytics``: ``freshrec report`` on a large log, beside the cost of only parsing it.

Writes a seeded synthetic JSONL log (``--records``, default 1,000,000: 20%
impressions of 10 items, 30% clicks, 5% carts, 5% purchases, 40% views;
20,000 users, 10,000 items, over a day, so a user acts every half hour;
half the interactions are with an item of the user's last impression),
then times, ``--runs``
times each and alternating, the real CLI (``freshrec report --data LOG
--by day,list``, a subprocess: start-up included) and the floor under it,
reading and validating every line with the flow's parser and nothing else.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.services import ROOT
from operators.datasets import jsonl_records


def write_log(path: Path, records: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    start = 1_796_083_200.0  # 2026-12-01 UTC
    lists = ("user", "similar", "popular")
    last: dict[str, list[str]] = {}  # each user's last impression: half the interactions pick from it
    with path.open("wb") as f:
        for n in range(records):
            user = f"u{rng.randrange(20_000)}"
            ts = start + n * (86_400 / records)
            roll = rng.random()
            if roll < 0.2:
                items = last[user] = [f"i{rng.randrange(10_000)}" for _ in range(10)]
                doc = {"user": user, "type": "impression", "items": items, "list": lists[n % 3], "ts": ts}
            else:
                kind = "click" if roll < 0.5 else "cart" if roll < 0.55 else "purchase" if roll < 0.6 else "view"
                shown = last.get(user)
                item = rng.choice(shown) if shown and rng.random() < 0.5 else f"i{rng.randrange(10_000)}"
                doc = {"user": user, "item": item, "type": kind, "ts": ts}
                if kind == "purchase":
                    doc["value"] = round(rng.uniform(5, 100), 2)
            f.write(orjson.dumps(doc) + b"\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        write_log(log, args.records)
        report_s, parse_s = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            got = subprocess.run(
                [sys.executable, "-m", "flows.cli", "report", "--data", str(log), "--by", "day,list", "--json"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            report_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n = sum(1 for _ in jsonl_records(str(log)))
            parse_s.append(time.perf_counter() - t0)
        doc = orjson.loads(got.stdout.splitlines()[-1])
    out = {
        "records": args.records,
        "parsed": n,
        "report_s": round(statistics.median(report_s), 2),
        "runs_report_s": [round(x, 2) for x in report_s],
        "parse_only_s": round(statistics.median(parse_s), 2),
        "ratio": round(statistics.median(r / p for r, p in zip(report_s, parse_s)), 2),
        "total": doc["total"],
        "rows": len(doc["rows"]),
    }
    print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
