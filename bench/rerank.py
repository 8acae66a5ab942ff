"""``freshrec bench --rules``: a rules change re-ranks every user in the background while events flow.

On real Kafka and Redis, one process with ``--rules`` and recovery on (5 s
snapshots), as production runs: the state of ``users`` users is built
(each visited, ``replay --cover-users``, 2 events each), then events
arrive at 1,000/s; after ``warm_s`` the rules file changes (a boost rule
is added to a diversity rule). Measured:

- ``rerank_s``: from the change until every user of the state was ranked
  again (``freshrec_rankings_total{reason="rules"}``, read every 0.2 s);
- ``freshness_p50_ms``/``freshness_p99_ms``: the flow's freshness histogram
  over the events written meanwhile, and ``baseline_p99_ms`` over the
  ``warm_s`` before the change (the same load and rules, no re-rank);
- ``reranked``: the users ranked again.

The last line of ``freshrec bench --rules --json`` is one JSON object.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.measure import drain, freshness_buckets, quantiles, replay, start_flow, wait_replay
from bench.services import say
from state.metrics import total

RULES = """
[[rule]]
name = "variety"
kind = "diversity"
max = 3
top = 10
"""

CHANGED = (
    RULES
    + """
[[rule]]
name = "campaign"
kind = "boost"
factor = 1.5
where = { items = ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8"] }
"""
)


@dataclass(frozen=True)
class RerankPlan:
    users: int = 100_000
    events_per_user: int = 2
    load_s: float = 60.0
    warm_s: float = 10.0

    @classmethod
    def make(cls, quick: bool) -> RerankPlan:
        return cls(users=20_000, load_s=30.0) if quick else cls()


def _say(msg: str) -> None:
    say(msg, "rules")


def run_rerank(plan: RerankPlan, kafka: str, redis_url: str, workdir: Path) -> dict:
    tag = uuid.uuid4().hex[:6]
    topic, rules = f"rerank.{tag}", workdir / f"rules-{tag}.toml"
    rules.write_text(RULES)
    n = plan.users * plan.events_per_user
    users = ("--users", str(plan.users))
    _say(f"building {plan.users:,} users of state: {n:,} events")
    wait_replay(replay(kafka, topic, 0, n, seed=51, extra=(*users, "--cover-users")))
    recovery = ("--recovery-dir", str(workdir / f"recovery-rerank-{tag}"), "--snapshot-interval-s", "5")
    flow = start_flow(kafka, topic, redis_url, f"rr{tag}", workdir, f"rerank-{tag}", *recovery, "--rules", str(rules))
    try:
        drain(flow, n, timeout=1800)
        state = total(flow.samples(), "freshrec_users")
        time.sleep(6)  # a snapshot covers the state before the stage
        load = replay(kafka, topic, 1000, int(1000 * plan.load_s), seed=53, extra=users)
        time.sleep(2.0)  # past the load's start
        start = flow.samples()
        time.sleep(plan.warm_s)
        before = flow.samples()
        done_before = total(before, "freshrec_rankings_total", {"reason": "rules"})
        rules.write_text(CHANGED)
        changed = time.monotonic()
        _say(f"rules changed; {state:,.0f} users to re-rank while events arrive at 1,000/s")
        while True:
            after = flow.samples()
            reranked = total(after, "freshrec_rankings_total", {"reason": "rules"}) - done_before
            if reranked >= state or time.monotonic() - changed > 300:
                break
            time.sleep(0.2)
        took = time.monotonic() - changed
        wait_replay(load)
    finally:
        flow.stop()
    p50, p99 = quantiles(freshness_buckets(before), freshness_buckets(after), (0.5, 0.99))
    (base,) = quantiles(freshness_buckets(start), freshness_buckets(before), (0.99,))
    _say(f"{reranked:,.0f} users re-ranked in {took:.1f} s; freshness p50 {p50 * 1000:.1f}, p99 {p99 * 1000:.1f} ms")
    return {
        "users": int(state),
        "reranked": int(reranked),
        "rerank_s": round(took, 1),
        "rate": 1000,
        "freshness_p50_ms": round(p50 * 1000, 1),
        "freshness_p99_ms": round(p99 * 1000, 1),
        "baseline_p99_ms": round(base * 1000, 1),
    }
