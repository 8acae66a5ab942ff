"""``freshrec bench --scale``: one process against two on Bytewax's cluster, recovery on, and the single writer.

On real Kafka (topics of 2 partitions) and Redis, every flow with
``--recovery-dir`` and 5 s snapshots, as production runs:

- ``scale``: drain rate of the same backlog with 1 and 2 processes
  (``freshrec run --processes N``), runs paired: the ratio is the median of
  the per-run ratios;
- ``hit_rate_at_10``: the live hit-rate with 1 and 2 processes on the same
  synthetic stream (5,000 users, so that most events have a list to check)
  produced at 1,000 events/s while each runs (hits and checks summed over
  the processes);
- ``freshness_recovery_ms``: one process holding 1M users of state (every
  user visited, ``replay --cover-users``, and 2 events each), at 1,000
  events/s: freshness p50/p99 from the flow's histogram; the longest pause,
  the longest single call that held the worker (a step, a snapshot or a
  garbage collection: the upper bound of its histogram bucket, as
  ``longest_call_ms`` details); and probe events sent every 50 ms and timed
  until their user's list shows them in Redis (``probe_p99_ms``,
  ``probe_max_ms``: end-to-end, through the producer, the broker and Redis
  on the same cores);
- ``single_writer_ceiling_eps``: the learner alone, in-process
  (``bench/stages.py``), the ceiling of any cluster.

The last line of ``freshrec bench --scale --json`` is one JSON object.

``python -m bench.scale --shares 0.15,0.3`` drains the backlog with 1
process and then with 2 for each ``--learner-share`` given, paired per
run, to choose the share for a machine (its last line is JSON too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.measure import (
    Process,
    drain,
    freshness_buckets,
    probe_latency,
    quantiles,
    replay,
    settle,
    start_flow,
    wait_replay,
)
from bench.services import say
from bench.stages import measure as stage_costs
from state.metrics import total

SNAPSHOT = ("--snapshot-interval-s", "5")


@dataclass(frozen=True)
class ScalePlan:
    runs: int = 3
    backlog: int = 150_000
    hit_events: int = 60_000  # at 1,000 events/s
    state_users: int = 1_000_000
    events_per_user: int = 2
    probe_s: float = 60.0

    @classmethod
    def make(cls, quick: bool) -> ScalePlan:
        if quick:
            return cls(runs=1, backlog=60_000, hit_events=20_000, state_users=200_000, probe_s=20.0)
        return cls()


def _say(msg: str) -> None:
    say(msg, "scale")


def _replay(
    kafka: str, topic: str, rate: float, limit: int, seed: int, users: int = 100_000, cover: bool = False
) -> subprocess.Popen:
    extra = ("--partitions", "2", "--users", str(users), *(("--cover-users",) if cover else ()))
    return replay(kafka, topic, rate, limit, seed, extra=extra)


def _flow(kafka: str, topic: str, redis_url: str, workdir: Path, processes: int, name: str, *extra: str) -> Process:
    tag = uuid.uuid4().hex[:6]
    recovery = ("--recovery-dir", str(workdir / f"recovery-{name}-{tag}"), *SNAPSHOT)
    return start_flow(
        kafka, topic, redis_url, f"sc{tag}", workdir, f"{name}-{tag}", *recovery, *extra, processes=processes
    )


def throughput(plan: ScalePlan, kafka: str, redis_url: str, workdir: Path) -> tuple[list[dict], float]:
    """Drain rates of 1 and 2 processes on one backlog; the median of the paired ratios."""
    runs, ratios = drain_pairs(plan, kafka, redis_url, workdir, [None])
    rows = [{"processes": p, "throughput_eps": round(statistics.median(v)), "runs": v} for p, v in zip((1, 2), runs)]
    return rows, ratios[0]


def drain_pairs(
    plan: ScalePlan, kafka: str, redis_url: str, workdir: Path, shares: list[float | None]
) -> tuple[list[list[float]], list[float]]:
    """Each run drains one backlog with 1 process, then with 2 for each learner share (None: the default).

    Returns the drain rates (1 process, then each share's) and, per
    share, the median of its ratios to the same run's 1 process.
    """
    topic = f"scale.{uuid.uuid4().hex[:8]}"
    _say(f"producing a backlog of {plan.backlog:,} events on 2 partitions")
    wait_replay(_replay(kafka, topic, 0, plan.backlog, seed=21))
    configs = [(1, None), *((2, share) for share in shares)]
    runs: list[list[float]] = [[] for _ in configs]
    for r in range(plan.runs):
        for (processes, share), rates in zip(configs, runs):
            extra = () if share is None else ("--learner-share", str(share))
            flow = _flow(kafka, topic, redis_url, workdir, processes, f"drain{processes}", *extra)
            try:
                eps, _ = drain(flow, plan.backlog)
            finally:
                flow.stop()
            rates.append(eps)
            named = "" if share is None else f", learner share {share}"
            _say(f"run {r + 1}: {processes} process(es){named} drained at {eps:,.0f} events/s")
    ratios = [round(statistics.median(b / a for a, b in zip(runs[0], rates)), 3) for rates in runs[1:]]
    return runs, ratios


def hit_rates(plan: ScalePlan, kafka: str, redis_url: str, workdir: Path) -> dict[str, float]:
    """Live hit-rate@10 of 1 and 2 processes on the same stream, produced at 1,000 events/s while each runs."""
    out = {}
    for processes in (1, 2):
        topic = f"scale.hit.{uuid.uuid4().hex[:8]}"
        wait_replay(_replay(kafka, topic, 0, 1, seed=99))  # create the topic (2 partitions) before the flow
        flow = _flow(kafka, topic, redis_url, workdir, processes, f"hit{processes}")
        try:
            p = _replay(kafka, topic, 1000, plan.hit_events, seed=31, users=5000)
            wait_replay(p)
            drain(flow, plan.hit_events + 1, timeout=120)
            samples = flow.samples()
            checks = total(samples, "freshrec_prequential_checks_total")
            hits = total(samples, "freshrec_prequential_hits_total")
        finally:
            flow.stop()
        out[str(processes)] = round(hits / checks, 4) if checks else 0.0
        _say(f"{processes} process(es): live hit-rate@10 {out[str(processes)]} over {checks:,.0f} checks")
    return out


def freshness_with_state(plan: ScalePlan, kafka: str, redis_url: str, workdir: Path) -> dict:
    """One process, recovery on, ``state_users`` users of state: freshness and the longest pause at 1,000 events/s."""
    topic = f"scale.state.{uuid.uuid4().hex[:8]}"
    n = plan.state_users * plan.events_per_user
    _say(f"building {plan.state_users:,} users of state: {n:,} events")
    wait_replay(_replay(kafka, topic, 0, n, seed=41, users=plan.state_users, cover=True))
    flow = _flow(kafka, topic, redis_url, workdir, 1, "state")
    try:
        eps, _ = drain(flow, n, timeout=3600)
        users = total(flow.samples(), "freshrec_users")
        _say(f"state of {users:,.0f} users built at {eps:,.0f} events/s; now 1,000 events/s with probes")
        time.sleep(6)  # a snapshot covers the state before the stage
        before = settle(flow)
        load = _replay(kafka, topic, 1000, int(1000 * plan.probe_s), seed=43, users=plan.state_users)
        probes: dict = {}
        prober = threading.Thread(
            target=lambda: probes.update(probe_latency(kafka, topic, redis_url, _namespace(flow), plan.probe_s)),
            daemon=True,
        )
        prober.start()
        wait_replay(load)
        prober.join(120)
        after = settle(flow)
        p50, p99 = quantiles(freshness_buckets(before), freshness_buckets(after), (0.5, 0.99))
        worst = _max_bucket(freshness_buckets(before), freshness_buckets(after))
        longest = {
            metric: _max_bucket(*(_summed_buckets(x, f"freshrec_{metric}_seconds") for x in (before, after)))
            for metric in ("step", "snapshot", "gc")
        }
    finally:
        flow.stop()
    return {
        "rate": 1000,
        "users": int(users),
        "p50": round(p50 * 1000, 1),
        "p99": round(p99 * 1000, 1),
        "max_pause_ms": max((v for v in longest.values() if v is not None), default=None),
        "longest_call_ms": longest,
        "probe_p99_ms": probes.get("p99_ms"),
        "probe_max_ms": probes.get("max_ms"),
        "probes": probes.get("probes"),
        "freshness_max_bucket_ms": worst,
    }


def _namespace(flow: Process) -> str:
    cmd = [str(a) for a in flow.proc.args]  # type: ignore[union-attr]
    return cmd[cmd.index("--namespace") + 1]


def _summed_buckets(samples: list, metric: str) -> dict[float, float]:
    """The buckets of histogram ``metric``, its labels (steps, generations) summed."""
    edges: dict[float, float] = {}
    for name, lab, value in samples:
        if name == f"{metric}_bucket":
            edges[float(lab["le"])] = edges.get(float(lab["le"]), 0.0) + value
    return edges


def _max_bucket(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound (ms) of the bucket the largest observation between two scrapes fell in."""
    count = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    for edge in sorted(after):
        if count and after[edge] - before.get(edge, 0.0) >= count:
            return edge * 1000
    return None


def run_scale(plan: ScalePlan, kafka: str, redis_url: str, workdir: Path) -> dict:
    rows, ratio = throughput(plan, kafka, redis_url, workdir)
    hits = hit_rates(plan, kafka, redis_url, workdir)
    fresh = freshness_with_state(plan, kafka, redis_url, workdir)
    costs = stage_costs(100_000 if plan.runs == 1 else 200_000, 10_000)
    _say(f"single writer alone: {costs['learner_eps']:,} events/s")
    return {
        "scale": [{k: v for k, v in row.items() if k != "runs"} for row in rows],
        "scale_runs": {str(row["processes"]): [round(x) for x in row["runs"]] for row in rows},
        "scale_ratio": ratio,
        "hit_rate_at_10": hits,
        "freshness_recovery_ms": fresh,
        "single_writer_ceiling_eps": costs["learner_eps"],
        "stage_costs_us": {k: v for k, v in costs.items() if k.endswith("_us")},
    }


def main() -> None:
    """``python -m bench.scale --shares 0.15,0.3``: which ``--learner-share`` drains fastest with 2 processes."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--shares", default="0.15,0.3", help="learner shares to try, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="runs, each a 1-process drain then one per share")
    ap.add_argument("--backlog", type=int, default=ScalePlan.backlog)
    ap.add_argument("--kafka", default=os.environ.get("FRESHREC_KAFKA", "127.0.0.1:9092"))
    ap.add_argument("--redis-url", default=os.environ.get("FRESHREC_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    shares: list[float | None] = [float(x) for x in args.shares.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="freshrec-shares-"))  # flow logs and recovery directories
    plan = ScalePlan(runs=args.runs, backlog=args.backlog)
    runs, ratios = drain_pairs(plan, args.kafka, args.redis_url, workdir, shares)
    print(f"1 process: {', '.join(f'{x:,.0f}' for x in runs[0])} events/s")
    for share, rates, ratio in zip(shares, runs[1:], ratios):
        print(f"2 processes, learner share {share}: {', '.join(f'{x:,.0f}' for x in rates)}; median ratio {ratio}")
    print(
        orjson.dumps(
            {"one": runs[0], "shares": {str(s): {"runs": r, "ratio": q} for s, r, q in zip(shares, runs[1:], ratios)}}
        ).decode()
    )


if __name__ == "__main__":
    main()
