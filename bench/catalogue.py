"""``freshrec bench --catalogue``: large catalogues, two-stage ranking against exact, on the production paths.

For each catalogue size (10k, 100k and 1M items by default; ``--quick``:
10k and 100k) of the synthetic stream (100k users, Zipf 0.6 item
popularity). Every size is warmed with the same stream: as many events as
the largest catalogue needs (twice as many events as its items, which
shows about 74% of them), the item ids drawn from each size's catalogue.
The users then carry the same history (20 events each) at every size, so
the sizes differ in the catalogue alone. A warm-up in proportion to each
catalogue would leave the 10k stage's users with 0.2 events each, most of
the backlog their first, and its cost per event would measure short
histories, not a small catalogue (``bench/RESULTS.md``, 2026-12-07):

In-process, on the model classes the flow runs (``models/``), the index
kept the production way (built in the background, new items inserted):

- ``recall_at_20``: the two-stage list against the exact blended top-20
  over the whole catalogue, at the same moment, for 1,000 sampled users,
  after 20k more events have moved the factors on since the last build;
- ``index_recall_at_20``: the index's own share, the exact inner-product
  top-20 of the user vectors found among its candidates;
- ``hr_at_10`` / ``exact_hr_at_10``: prequential HR@10 of both paths on the
  same events (each event is checked against both lists, then learned);
- ``index_build_s`` / ``index_mb``: the index's parts (``models/index.py``):
  what building all of them took, and their memory;
- ``index_skipped_share``: the share of the sampled users' lists for which
  the bound (``models/candidates.py``) proved that neither the index nor
  the items outside it could change the list, so no query ran.

Through the real flow (``freshrec run`` on Kafka and Redis, recovery on,
5 s snapshots):

- ``events_per_s``: the drain rate of a backlog produced after the warm-up;
- ``freshness_p99_ms_during_rebuild``: freshness p99 at 1,000 events/s
  while the whole index is rebuilt. Past the first build, a build makes one
  part of the index (``models/index.py``; at 1M items, 743k of them seen,
  three parts), so the count runs from the start of a build under this
  load until as many builds as the index has parts (``index_parts``,
  ``rebuilds_observed``) have been swapped in, the rests between them
  included, and ``AFTER_SWAP_S`` more; at most ``rebuild_stage_s``. Null
  at a size ranked exactly, where there is no index;
- ``index_swap_ms``, ``index_swaps_over_50_ms``: what those swaps held the
  flow's worker on average, and how many held it over 50 ms
  (``freshrec_index_swap_seconds``): mostly hnswlib freeing the part
  replaced, with the GIL held.

The last line of ``freshrec bench --catalogue --json`` is one JSON object
``{"catalogue": [{"items": ..., ...}, ...]}``.

``python -m bench.catalogue --sizes 10000,15000,20000`` measures where
two-stage ranking starts to pay (the ``exact_max_items`` default).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaProducer

from bench.measure import Process, freshness_buckets, quantiles, settle, start_flow
from bench.services import say
from models import ModelConfig, Recommender
from models.ids import item_key
from operators.kafka_io import ensure_topics
from operators.local_io import event_json
from operators.synthetic import SyntheticConfig, synthetic_events
from state.metrics import total

USERS = 100_000
AFTER_SWAP_S = 10.0  # freshness still counted this long after a build is swapped in
ZIPF = 0.6


@dataclass(frozen=True)
class CataloguePlan:
    """Sizes of a catalogue run."""

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    warm_factor: float = 2.0  # warm-up events per item of the largest size; every size gets the same
    after_events: int = 20_000  # events between the last build and the recall measurement
    sample_users: int = 1000
    hr_events: int = 10_000
    backlog: int = 60_000  # drained through the flow after the warm-up
    # Most seconds at 1,000 events/s, until every part of the index has been rebuilt under it. At
    # 1M items (three parts) that is three builds and the rests before them (three build-lengths
    # each): 1M-item builds, whole, took about 300 s beside the flow (2026-12-07).
    rebuild_stage_s: float = 3600.0

    @classmethod
    def make(cls, quick: bool) -> CataloguePlan:
        if quick:
            return cls(
                sizes=(10_000, 100_000), after_events=10_000, hr_events=3000, backlog=20_000, rebuild_stage_s=60.0
            )
        return cls()

    @property
    def warm(self) -> int:
        """Warm-up events, the same at every size."""
        return int(self.warm_factor * max(self.sizes))


def stream(items: int, events: int, seed: int) -> SyntheticConfig:
    return SyntheticConfig(users=USERS, items=items, topics=50, events=events, zipf=ZIPF, seed=seed)


def _say(msg: str) -> None:
    say(msg, "catalogue")


def in_process(items: int, plan: CataloguePlan, config: ModelConfig | None = None) -> dict[str, float]:
    """Recall, prequential HR@10 of both paths, and the index, on the model classes the flow runs."""
    cfg = replace(config or ModelConfig(), exact_max_items=min((config or ModelConfig()).exact_max_items, items // 2))
    m = Recommender(cfg)
    warm = plan.warm
    t0 = time.perf_counter()
    for e in synthetic_events(stream(items, warm, seed=1)):
        m.learn(e)
    m.sync()
    _say(
        f"{items:,} items: warm-up of {warm:,} events in {time.perf_counter() - t0:.0f} s, "
        f"{len(m.learner.state):,} items seen"
    )
    # Prequential HR@10 on the next events: each checked against both lists, then learned.
    hits = hits_exact = 0
    for e in synthetic_events(stream(items, plan.hr_events, seed=2)):
        view = m.users.view(e.user)
        if view is not None:
            target = item_key(e.item)
            hits += target in m.ranker.rank([view], 10, exact=False)[0].keys
            hits_exact += target in m.ranker.rank([view], 10, exact=True)[0].keys
        m.learn(e)
    # The recall figure: the index built from factors that have moved on since, new items inserted.
    m.ranker.index.wait()
    m.sync()
    for e in synthetic_events(stream(items, plan.after_events, seed=3)):
        m.learn(e)
    m.sync()
    index = m.ranker.index
    assert index.ready
    rng = np.random.default_rng(0)
    names = m.users.users.names
    users = [names[i] for i in rng.choice(len(names), min(plan.sample_users, len(names)), replace=False)]
    views = [v for v in (m.users.view(u) for u in users) if v is not None]
    lists = m.ranker.candidates.lists
    lists.update(bound=0, index=0)
    t0 = time.perf_counter()
    two = m.ranker.rank(views, 20, exact=False)
    two_us = (time.perf_counter() - t0) / len(views) * 1e6
    skipped = lists["bound"] / max(lists["bound"] + lists["index"], 1)
    t0 = time.perf_counter()
    exact = m.ranker.rank(views, 20, exact=True)
    exact_us = (time.perf_counter() - t0) / len(views) * 1e6
    recall = np.mean([len(set(a.keys) & set(b.keys)) / max(len(b.keys), 1) for a, b in zip(two, exact)])
    vectors = m.ranker.vectors(views[:256])
    found = index.query(vectors, cfg.candidates)
    top_ip = np.argsort(-(vectors @ m.ranker.state.mf.item_factors[: index.size].T), axis=1)[:, :20]
    index_recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 20 for f, t in zip(found, top_ip)])
    n_hr = plan.hr_events
    return {
        "items": items,
        "items_seen": len(m.learner.state),
        "warm_up_events": warm,
        "two_stage_in_production": len(m.learner.state) > (config or ModelConfig()).exact_max_items,
        "recall_at_20": round(float(recall), 4),
        "index_recall_at_20": round(float(index_recall), 4),
        "hr_at_10": round(hits / n_hr, 4),
        "exact_hr_at_10": round(hits_exact / n_hr, 4),
        "index_skipped_share": round(skipped, 3),  # lists the bound proved the index could not change
        "two_stage_us_per_user": round(two_us, 1),
        "exact_us_per_user": round(exact_us, 1),
        "index_build_s": round(index.build_s, 2),
        "index_mb": round(index.memory_bytes / 1e6, 1),
        "index_items": index.size,
    }


def _produce(
    kafka: str, topic: str, config: SyntheticConfig, rate: float = 0.0, stop: threading.Event | None = None
) -> None:
    ensure_topics(kafka, {topic: 1, f"{topic}.dlq": 1})
    # A paced stream lingers 5 ms, as `freshrec replay` does (freshness counts from the send);
    # a backlog is sent in large batches.
    linger = 5 if rate > 0 else 20
    producer = KafkaProducer(bootstrap_servers=kafka.split(","), linger_ms=linger, batch_size=1 << 18, acks=1)
    start = time.monotonic()
    for n, event in enumerate(synthetic_events(config)):
        if stop is not None and stop.is_set():
            break
        ev = event
        if rate > 0:
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0.001:
                time.sleep(ahead)
            now = time.time()
            ev = event._replace(ts=now, source_ts=now)
        producer.send(topic, key=ev.user.encode(), value=event_json(ev))
    producer.flush()
    producer.close()


def through_flow(items: int, plan: CataloguePlan, kafka: str, redis_url: str, workdir: Path) -> dict[str, float | None]:
    """Drain rate after the warm-up, and freshness at 1,000 events/s while the index is rebuilt."""
    tag = uuid.uuid4().hex[:8]
    topic, ns = f"catalogue.{tag}", f"cat{tag}"
    warm = plan.warm
    _say(f"{items:,} items: producing {warm:,} warm-up and {plan.backlog:,} backlog events")
    _produce(kafka, topic, stream(items, warm + plan.backlog, seed=1))
    extra = ("--recovery-dir", str(workdir / f"recovery-{tag}"), "--snapshot-interval-s", "5")
    flow: Process = start_flow(kafka, topic, redis_url, ns, workdir, f"catalogue-{tag}", *extra)
    try:
        series = []
        t0 = time.monotonic()
        target = warm + plan.backlog
        while True:
            n = flow.applied()
            series.append((time.monotonic() - t0, n))
            if n >= target:
                break
            if flow.proc.poll() is not None or time.monotonic() - t0 > 7200:
                raise RuntimeError(f"the catalogue flow stalled at {n:,.0f} events; see {flow.log.name}")
            time.sleep(0.25)
        lo, hi = warm + 0.1 * plan.backlog, warm + 0.9 * plan.backlog
        t_lo = next(t for t, n in series if n >= lo)
        t_hi = next(t for t, n in series if n >= hi)
        eps = (hi - lo) / max(t_hi - t_lo, 1e-9)
        _say(f"{items:,} items: drained the backlog at {eps:,.0f} events/s (warm-up {series[-1][0]:.0f} s in all)")
        # 1,000 events/s while the whole index is rebuilt: freshness counted from the start of a build
        # under this load until as many builds as the index has parts (models/index.py: one part a
        # build, stalest first, each after a rest of three times the last one's length) have been
        # swapped in, and AFTER_SWAP_S more (events a pause at the swap delayed are observed once the
        # flow goes on). The stage starts once the backlog's own freshness (seconds in the backlog)
        # is observed; it ends there, or after rebuild_stage_s. A build already running at the
        # start is not counted: its last seconds alone would say little (2 s of a 162 s build).
        before = settle(flow, timeout=60)
        indexed = total(before, "freshrec_index_items")
        if indexed == 0:  # exact ranking at this size: no index, no rebuild
            return {
                "events_per_s": round(eps),
                "freshness_p99_ms_during_rebuild": None,
                "index_swap_ms": None,
                "rebuilds_observed": 0,
            }
        parts = -(-int(indexed) // ModelConfig().index_part_items)
        stop = threading.Event()
        producer = threading.Thread(
            target=_produce,
            args=(kafka, topic, stream(items, int(1000 * plan.rebuild_stage_s), seed=5), 1000.0, stop),
            daemon=True,
        )
        producer.start()
        start = before
        during: dict[float, float] = {}
        building_s = 0.0
        builds_seen = 0
        watching = False  # a build started during the stage
        swapped_at = 0.0
        while producer.is_alive():
            time.sleep(1.0)
            after = flow.samples()
            was, now = total(before, "freshrec_index_building"), total(after, "freshrec_index_building")
            watching = watching or (was == 0 and now > 0)
            if watching and was > 0:
                building_s += 1.0
                if now == 0:
                    builds_seen += 1
                    swapped_at = time.monotonic()
            if watching:
                for edge, count in freshness_buckets(after).items():
                    during[edge] = during.get(edge, 0.0) + count - freshness_buckets(before).get(edge, 0.0)
            if builds_seen >= parts and time.monotonic() - swapped_at >= AFTER_SWAP_S:
                stop.set()
            before = after
        producer.join()
        p99 = quantiles({}, during, (0.99,))[0] if during else float("nan")

        def swaps(name: str, labels: dict[str, str] | None = None) -> float:
            full = f"freshrec_index_swap_seconds_{name}"
            return total(before, full, labels) - total(start, full, labels)

        return {
            "events_per_s": round(eps),
            "freshness_p99_ms_during_rebuild": round(p99 * 1000, 1),
            "index_swap_ms": round(1000 * swaps("sum") / swaps("count"), 1) if swaps("count") else None,
            "index_swaps_over_50_ms": swaps("count") - swaps("bucket", {"le": "0.05"}),
            "index_parts": parts,
            "rebuild_seconds_observed": building_s,
            "rebuilds_observed": builds_seen,
        }
    finally:
        flow.stop()


def run_catalogue(plan: CataloguePlan, kafka: str | None, redis_url: str | None, workdir: Path) -> list[dict]:
    rows = []
    for items in plan.sizes:
        row: dict[str, float | None] = dict(in_process(items, plan))
        _say(
            f"{items:,} items: recall@20 {row['recall_at_20']}, index {row['index_recall_at_20']}, HR@10 "
            f"{row['hr_at_10']} vs exact {row['exact_hr_at_10']}, build {row['index_build_s']} s"
        )
        if kafka and redis_url:
            row.update(through_flow(items, plan, kafka, redis_url, workdir))
        rows.append(row)
    return rows


def switch_point(sizes: list[int], repeat: int, config: ModelConfig | None = None) -> list[dict]:
    """Two-stage against exact ranking cost per user, in-process, for sizes around ``exact_max_items``.

    Each size is warmed and timed ``repeat`` times (both paths on the same
    users of the same model); the figure is the median of the paired
    ratios exact / two-stage.
    """
    plan = CataloguePlan(sizes=tuple(sizes), warm_factor=2.0, after_events=5000, sample_users=1000, hr_events=500)
    rows = []
    for items in sizes:
        ratios, two, exact = [], [], []
        for _ in range(repeat):
            row = in_process(items, plan, config)
            two.append(row["two_stage_us_per_user"])
            exact.append(row["exact_us_per_user"])
            ratios.append(row["exact_us_per_user"] / row["two_stage_us_per_user"])
        rows.append(
            {
                "items": items,
                "items_seen": row["items_seen"],
                "two_stage_us_per_user": statistics.median(two),
                "exact_us_per_user": statistics.median(exact),
                "exact_over_two_stage": round(statistics.median(ratios), 2),
                "recall_at_20": row["recall_at_20"],
                "index_recall_at_20": row["index_recall_at_20"],
            }
        )
        _say(f"switch point: {rows[-1]}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description="Where two-stage ranking starts to pay: cost per user against exact.")
    ap.add_argument("--sizes", default="10000,15000,20000,30000,50000", help="catalogue sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size (median of paired ratios)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="model setting, e.g. index_ef=128")
    args = ap.parse_args()
    base = ModelConfig()
    pairs = [kv.split("=", 1) for kv in args.set]
    config = replace(base, **{k: type(getattr(base, k))(v) for k, v in pairs})
    rows = switch_point([int(x) for x in args.sizes.split(",")], args.repeat, config)
    print(orjson.dumps({"switch_point": rows}).decode())


if __name__ == "__main__":
    main()
