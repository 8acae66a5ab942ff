"""Drain rate of ``freshrec run`` on a topic that already holds a backlog: for A/B runs of two source trees.

    freshrec replay --synthetic --kafka HOST:PORT --topic backlog --rate 0 --limit 100000 --seed 5
    python -m bench.drain --kafka HOST:PORT --redis-url URL --topic backlog --events 100000 [--tree PATH] [--runs 3]

Each run starts ``python -m flows.cli run`` from ``--tree`` (default: this
checkout; a ``git worktree`` of another commit for the baseline) with a
fresh Redis namespace, reads the topic from the start and prints the
events/s over the middle 80% of the backlog, as ``freshrec bench`` does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

from bench.measure import drain, start_flow
from bench.services import ROOT


def drain_rate(tree: Path, kafka: str, redis_url: str, topic: str, events: int, extra: list[str]) -> float:
    log_dir = Path(tempfile.mkdtemp(prefix="freshrec-drain-"))
    flow = start_flow(kafka, topic, redis_url, f"drain{uuid.uuid4().hex[:8]}", log_dir, "flow", *extra, cwd=tree)
    try:
        return drain(flow, events)[0]
    finally:
        flow.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", type=int, required=True, help="events in the backlog")
    ap.add_argument("--tree", type=Path, default=ROOT, help="source tree to run (default: this checkout)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("run_args", nargs="*", help="more freshrec run flags, after --")
    args = ap.parse_args()
    rates = []
    for _ in range(args.runs):
        rates.append(
            drain_rate(args.tree.resolve(), args.kafka, args.redis_url, args.topic, args.events, args.run_args)
        )
        print(f"{args.tree}: {rates[-1]:,.0f} events/s", flush=True)
    if args.runs > 1:
        print(f"{args.tree}: median {statistics.median(rates):,.0f} events/s over {args.runs} runs")


if __name__ == "__main__":
    main()
