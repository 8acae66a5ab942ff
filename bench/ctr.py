"""``freshrec bench --ctr``: what simulated shoppers click, freshrec's lists against the popular list.

On real Kafka and Redis, ``freshrec run`` with recovery on, as production
runs: the synthetic stream (5,000 users, 2,000 items) at 1,000 events/s
with ``--shoppers 5`` (``bench/shoppers.py``: one event in five opens the
app, which shows the user's list or, half of the time, the popular list,
and the shopper clicks by hidden taste). Then ``freshrec report`` over the
topic (``flows/report.py``) and the flow's live counters: CTR, conversion
and coverage of each list, side by side.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.measure import drain, replay, start_flow, wait_replay
from bench.services import say
from flows.report import read_topic, report
from state.metrics import total


@dataclass(frozen=True)
class CtrPlan:
    events: int

    @classmethod
    def make(cls, quick: bool) -> CtrPlan:
        return cls(events=20_000 if quick else 100_000)


def run_ctr(plan: CtrPlan, kafka: str, redis_url: str, workdir: Path) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, ns = f"bench.ctr.{tag}", f"bctr{tag}"
    wait_replay(replay(kafka, topic, 0, 1, seed=97))  # the topic, before the flow
    flow = start_flow(kafka, topic, redis_url, ns, workdir, "ctr", "--recovery-dir", str(workdir / f"rec-ctr-{tag}"))
    try:
        shoppers = ("--shoppers", "5", "--users", "5000", "--items", "2000", "--redis-url", redis_url)
        out = wait_replay(replay(kafka, topic, 1000, plan.events, seed=53, extra=(*shoppers, "--namespace", ns)))
        say(out)
        drain(flow, plan.events, timeout=300)
        samples = flow.samples()
    finally:
        flow.stop()
    doc = report(read_topic(kafka, topic, None, None), by=("list",))
    rows = {r["list"]: r for r in doc["rows"]}

    def live(kind: str) -> float | None:
        shown = total(samples, "freshrec_impressions_total", {"list": kind})
        clicks = total(samples, "freshrec_attributed_total", {"list": kind, "type": "click"})
        return round(clicks / shown, 4) if shown else None

    keep = ("impressions", "clicks", "ctr", "purchases", "conversion", "value_per_1000", "coverage")
    result = {
        "events": plan.events,
        "report": {kind: {k: rows[kind][k] for k in keep} for kind in ("user", "popular") if kind in rows},
        "live_ctr": {kind: live(kind) for kind in ("user", "popular")},
        "report_s": doc["seconds"],
    }
    user, popular = result["report"].get("user", {}), result["report"].get("popular", {})
    if user.get("ctr") and popular.get("ctr"):
        result["ctr_ratio"] = round(user["ctr"] / popular["ctr"], 2)
    say(f"CTR user lists {user.get('ctr')}, popular list {popular.get('ctr')}; live {result['live_ctr']}")
    return result
