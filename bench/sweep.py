"""Sweep freshrec's model hyper-parameters prequentially on a log.

    python -m bench.sweep --data ../shared/data/ml-latest-small/ratings.csv \\
        --grid half_life_s=86400,2592000,31536000 w_pop=0.1,0.3

Runs the freshrec model alone (same protocol as ``freshrec eval``) for
every combination and prints one Markdown row per run for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import fields, replace

import numpy as np

from bench.datasets import read_events
from models import HybridRecommender, ModelConfig


def hr_at(events, config: ModelConfig, k: int = 10) -> tuple[float, float, float]:
    """(HR@k, HR@k over the second half, events/s) of the model on ``events``."""
    m = HybridRecommender(config)
    hits = np.zeros(len(events), dtype=np.bool_)
    t0 = time.perf_counter()
    for t, e in enumerate(events):
        u = m.users.get(e.user)
        top = m.pop.top(k) if u is None else m.recommend_indexes(u, k)
        i = m.items.get(e.item)
        hits[t] = i is not None and i in top
        m.learn(e)
    eps = len(events) / (time.perf_counter() - t0)
    return float(hits.mean()), float(hits[len(events) // 2 :].mean()), eps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--grid", nargs="+", default=[], help="name=v1,v2 for ModelConfig fields")
    args = ap.parse_args()
    kinds = {f.name: type(f.default) for f in fields(ModelConfig)}
    grid = {}
    for spec in args.grid:
        name, _, values = spec.partition("=")
        grid[name] = [kinds[name](v) for v in values.split(",")]
    events = read_events(args.data)
    print("| " + " | ".join([*grid, "HR@10", "HR@10 2nd half", "events/s"]) + " |")
    print("|" + "---|" * (len(grid) + 3))
    for combo in itertools.product(*grid.values()):
        cfg = replace(ModelConfig(), **dict(zip(grid, combo)))
        hr, hr2, eps = hr_at(events, cfg)
        print("| " + " | ".join([*(str(v) for v in combo), f"{hr:.4f}", f"{hr2:.4f}", f"{eps:,.0f}"]) + " |", flush=True)


if __name__ == "__main__":
    main()
