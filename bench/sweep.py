"""Sweep freshrec's model hyper-parameters prequentially on a log.

    python -m bench.sweep --data ../shared/data/ml-latest-small/ratings.csv \\
        --grid half_life_s=86400,2592000,31536000 w_pop=0.1,0.3
    python -m bench.sweep --synthetic --one-at-a-time --grid window=3,10 lr=0.02,0.1

Runs the freshrec model alone (same protocol as ``freshrec eval``) and
prints one Markdown row per run for bench/RESULTS.md: every combination of
the grid, or with ``--one-at-a-time`` the defaults plus each value of each
parameter with the others at their defaults. ``--synthetic`` sweeps on the
synthetic stream (topics, Zipf popularity, taste drift) instead of a file,
as a second dataset for robustness.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import fields, replace

import numpy as np

from models import ModelConfig, Recommender
from models.ids import item_key
from operators.datasets import read_events
from operators.synthetic import SyntheticConfig, synthetic_events


def hr_at(events, config: ModelConfig, k: int = 10) -> tuple[float, float, float]:
    """(HR@k, HR@k over the second half, events/s) of the model on ``events``."""
    m = Recommender(config)
    hits = np.zeros(len(events), dtype=np.bool_)
    t0 = time.perf_counter()
    for t, e in enumerate(events):
        hits[t] = item_key(e.item) in m.recommend(e.user, k).keys
        m.learn(e)
    eps = len(events) / (time.perf_counter() - t0)
    return float(hits.mean()), float(hits[len(events) // 2 :].mean()), eps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="event log (formats as in freshrec eval)")
    src.add_argument("--synthetic", action="store_true", help="100,000 synthetic events, 2,000 users and items")
    ap.add_argument("--grid", nargs="+", default=[], help="name=v1,v2 for ModelConfig fields")
    ap.add_argument("--one-at-a-time", action="store_true", help="vary one parameter at a time around the defaults")
    args = ap.parse_args()
    kinds: dict[str, type] = {f.name: type(f.default) for f in fields(ModelConfig)}
    grid: dict[str, list] = {}
    for spec in args.grid:
        name, _, values = spec.partition("=")
        grid[name] = [kinds[name](v) for v in values.split(",")]
    events = list(synthetic_events(SyntheticConfig())) if args.synthetic else read_events(args.data)
    if args.one_at_a_time:
        base = ModelConfig()
        combos = [tuple(getattr(base, n) for n in grid)]
        for pos, (name, values) in enumerate(grid.items()):
            combos += [(*c[:pos], v, *c[pos + 1 :]) for c in combos[:1] for v in values if v != getattr(base, name)]
    else:
        combos = list(itertools.product(*grid.values()))
    print("| " + " | ".join([*grid, "HR@10", "HR@10 2nd half", "events/s"]) + " |")
    print("|" + "---|" * (len(grid) + 3))
    for combo in combos:
        cfg = replace(ModelConfig(), **dict(zip(grid, combo)))
        hr, hr2, eps = hr_at(events, cfg)
        print(
            "| " + " | ".join([*(str(v) for v in combo), f"{hr:.4f}", f"{hr2:.4f}", f"{eps:,.0f}"]) + " |", flush=True
        )


if __name__ == "__main__":
    main()
