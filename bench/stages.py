"""Cost of each stage of the flow measured alone, in-process: the single writer's ceiling and what scales.

    python -m bench.stages [--events 200000] [--items 10000] [--json]

On the synthetic stream (100k users, ``--items`` items) it times, per
event, what each step of ``flows/recommend.py`` does, without Bytewax,
Kafka or Redis around it:

- ``users``: a user shard applying the event (``UserTable.learn``), partitioned;
- ``learner``: the item-side learner (``ItemLearner.learn``) plus taking the
  deltas every 1,000 events: the single writer, so its events/s is the
  ceiling of the whole cluster;
- ``replica``: a ranker on another worker applying those deltas (per event);
- ``rank``: ranking each touched user (batches of 4,096 events, each user
  once per batch, 64 users per block), partitioned.

The last line is JSON (per-event microseconds and events/s of each stage).
"""

from __future__ import annotations

import argparse
import pickle
import time

import orjson

from models.config import ModelConfig
from models.items import Replica
from models.learner import ItemLearner
from models.ranking import Ranker
from models.users import UserTable
from operators.synthetic import SyntheticConfig, synthetic_events

BATCH = 4096


def measure(n_events: int, items: int, config: ModelConfig | None = None) -> dict[str, float]:
    config = config or ModelConfig()
    stream = list(synthetic_events(SyntheticConfig(users=100_000, items=items, topics=50, events=n_events, seed=7)))
    users, learner = UserTable(config), ItemLearner(config)
    base = learner.base_delta()
    remote, local = Replica(), Replica()
    remote.apply(pickle.loads(pickle.dumps(base.copied())))
    local.apply(base)
    ranker = Ranker(config, local)
    warm = n_events // 2
    for e in stream[:warm]:  # warm up: a model with history, then time the second half
        learner.learn(users.learn(e))
    remote.apply(pickle.loads(pickle.dumps(learner.take_delta(shared=False))))
    t_users = t_learn = t_replica = t_rank = 0.0
    ranked = 0
    rest = stream[warm:]
    for start in range(0, len(rest), BATCH):
        batch = rest[start : start + BATCH]
        t0 = time.perf_counter()
        inputs = [users.learn(e) for e in batch]
        t1 = time.perf_counter()
        for n, li in enumerate(inputs, 1):
            learner.learn(li)
            if n % 1000 == 0:
                t2 = time.perf_counter()
                delta = pickle.dumps(learner.take_delta(shared=False))
                t3 = time.perf_counter()
                remote.apply(pickle.loads(delta))
                t_replica += time.perf_counter() - t3
                t_learn += t3 - t2
        t4 = time.perf_counter()
        delta = pickle.dumps(learner.take_delta(shared=False))
        t5 = time.perf_counter()
        remote.apply(pickle.loads(delta))
        t6 = time.perf_counter()
        views = [users.view(u) for u in dict.fromkeys(e.user for e in batch)]
        ranker.rank([v for v in views if v is not None], 20)
        t7 = time.perf_counter()
        ranked += len(views)
        t_users += t1 - t0
        t_learn += (t4 - t1) + (t5 - t4)
        t_replica += t6 - t5
        t_rank += t7 - t6
    n = len(rest)
    out: dict[str, float] = {"events": n, "items": items, "users_ranked_per_event": round(ranked / n, 3)}
    for name, spent in (("users", t_users), ("learner", t_learn), ("replica", t_replica), ("rank", t_rank)):
        out[f"{name}_us"] = round(spent / n * 1e6, 2)
        out[f"{name}_eps"] = round(n / spent)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=10_000)
    args = ap.parse_args()
    r = measure(args.events, args.items)
    print(
        f"per event: users {r['users_us']} us, learner {r['learner_us']} us (ceiling {r['learner_eps']:,} events/s), "
        f"replica {r['replica_us']} us, rank {r['rank_us']} us ({r['users_ranked_per_event']} users ranked per event)"
    )
    print(orjson.dumps(r).decode())


if __name__ == "__main__":
    main()
