"""Sweep freshrec's model hyper-parameters prequentially on a log, tuned on its first half.

    python -m bench.sweep --data ../shared/data/ml-latest-small/ratings.csv \\
        --grid half_life_s=86400,2592000,31536000 w_pop=0.1,0.3
    python -m bench.sweep --synthetic clicks --one-at-a-time --grid window=3,10 cooc_recency=0.5,0.9

Runs the freshrec model alone (same protocol as ``freshrec eval``, ties
ordered by the same seeded shuffle) over the whole log for every
combination of the grid, or with ``--one-at-a-time`` the defaults plus
each value of each parameter with the others at their defaults. The
protocol cannot overfit the figure it reports: a setting is chosen by
HR@10 over the first half of the log alone, and reported by HR@10 over
the second half (prequential hits in the first half do not depend on
anything later). Prints one Markdown row per run for bench/RESULTS.md,
then the choice against the defaults on the held-out half.
``--synthetic NAME`` sweeps on a synthetic log (``stream``, ``shop``,
``clicks``) instead of a file.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import fields, replace

import numpy as np

from models import ModelConfig, Recommender
from models.ids import item_key
from operators.datasets import SYNTHETIC, read_events, synthetic_log


def hits_of(events, config: ModelConfig, k: int = 10) -> tuple[np.ndarray, float]:
    """Prequential hits (is the event's item in the user's top-k before it is learned?) and events/s."""
    m = Recommender(config)
    hits = np.zeros(len(events), dtype=np.bool_)
    t0 = time.perf_counter()
    for t, e in enumerate(events):
        hits[t] = item_key(e.item) in m.recommend(e.user, k).keys
        m.learn(e)
    return hits, len(events) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="event log (formats as in freshrec eval)")
    src.add_argument("--synthetic", choices=SYNTHETIC, help="a synthetic log by name, as in freshrec eval")
    ap.add_argument("--grid", nargs="+", default=[], help="name=v1,v2 for ModelConfig fields")
    ap.add_argument("--one-at-a-time", action="store_true", help="vary one parameter at a time around the defaults")
    args = ap.parse_args()
    kinds: dict[str, type] = {f.name: type(f.default) for f in fields(ModelConfig)}
    grid: dict[str, list] = {}
    for spec in args.grid:
        name, _, values = spec.partition("=")
        grid[name] = [kinds[name](v) for v in values.split(",")]
    events = synthetic_log(args.synthetic) if args.synthetic else read_events(args.data)
    base = ModelConfig()
    defaults = tuple(getattr(base, n) for n in grid)
    if args.one_at_a_time:
        combos = [defaults]
        for pos, (name, values) in enumerate(grid.items()):
            combos += [(*defaults[:pos], v, *defaults[pos + 1 :]) for v in values if v != getattr(base, name)]
    else:
        combos = list(itertools.product(*grid.values()))
    half = len(events) // 2
    print("| " + " | ".join([*grid, "HR@10 first half (tuning)", "HR@10 second half (held out)", "events/s"]) + " |")
    print("|" + "---|" * (len(grid) + 3))
    results = {}
    for combo in combos:
        hits, eps = hits_of(events, replace(base, **dict(zip(grid, combo))))
        results[combo] = (float(hits[:half].mean()), float(hits[half:].mean()))
        cells = [*(str(v) for v in combo), *(f"{x:.4f}" for x in results[combo]), f"{eps:,.0f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
    best = max(combos, key=lambda c: results[c][0])
    print(f"\nchosen on the first half: {dict(zip(grid, best))}; second half {results[best][1]:.4f}", end="")
    if defaults in results:
        print(f" (the defaults: {results[defaults][1]:.4f})")
    else:
        print()


if __name__ == "__main__":
    main()
