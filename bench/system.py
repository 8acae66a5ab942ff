"""``freshrec bench``: the whole system on real services, beside a naive pipeline.

Stages, on one Kafka broker and one Redis server (started with
``scripts/services.sh`` unless ``--kafka`` and ``--redis-url`` are given).
Every ``freshrec run`` runs as production does: ``--recovery-dir`` with
5 s snapshots.

1. throughput: a backlog of synthetic events (100k users, 10k items) is
   produced first; ``freshrec run`` drains it. Events/s over the middle 80%
   of the backlog (lag only shrinks, so the rate is sustained).
2. freshness: ``freshrec replay`` at fixed rates (1,000 and 5,000 events/s
   and half the measured maximum); p50/p95/p99 of the flow's own
   ``freshrec_freshness_seconds`` (Kafka timestamp of the event to its
   user's list written), from the histogram's bucket counts.
3. read latency: a separate reader process GETs keys that exist (user
   lists the flow wrote) at a target of 10,000/s while ingestion runs at
   5,000 events/s; the rate it achieved is reported next to the target.
4. the naive baseline (``bench/naive.py``) goes through stages 1 and 2 on
   the same data, measured the same way, right after freshrec in the same
   run; the throughput ratio is the median of the per-run ratios.
5. memory, snapshots and restore of user-side state at 100k and 1M users
   with realistic histories (``bench/memory.py``);
6. restart of ``freshrec run --recovery-dir`` with 1M users of state
   (100k with ``--quick``; ``bench/restart.py``);
7. large catalogues (``bench/catalogue.py``, alone: ``--catalogue``);
8. scale-out on Bytewax's cluster (``bench/scale.py``, alone: ``--scale``);
9. the HTTP API under oha, beside direct Redis and Kafka clients (``bench/api.py``, alone: ``--api``);
10. click-through of simulated shoppers, freshrec's lists against the popular list (``bench/ctr.py``, alone: ``--ctr``);
11. a rules change re-ranking 100k users in the background at 1,000 events/s (``bench/rerank.py``, alone: ``--rerank``);
12. the live hit-rate@10 at 1,000 events/s against ``eval``'s on the same events (``bench/live.py``, alone: ``--live``).

``--core`` runs stages 1-6 only.

Each of 1-4 is repeated (``--runs``, default 3; 1 with ``--quick``) and
the median reported. Plots and a section of ``bench/RESULTS.md`` are written.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson

from bench import services
from bench.api import ApiPlan, run_api
from bench.catalogue import CataloguePlan, run_catalogue
from bench.ctr import CtrPlan, run_ctr
from bench.live import LivePlan, run_live
from bench.measure import Process, drain, fixed_rate, read_latency, replay, start_flow, wait_replay
from bench.rerank import RerankPlan, run_rerank
from bench.scale import ScalePlan, run_scale
from bench.services import ROOT, free_ports, say


@dataclass(frozen=True)
class Plan:
    """Sizes of a benchmark run."""

    runs: int
    backlog: int  # events drained by freshrec for the throughput figure
    baseline_backlog: int
    stage_s: float  # seconds of each fixed-rate stage
    restart_users: int  # state size of the restart stage (bench/restart.py)
    memory_users: tuple[int, ...] = (100_000, 1_000_000)

    @classmethod
    def make(cls, quick: bool, runs: int | None) -> Plan:
        if quick:
            return cls(runs=runs or 1, backlog=40_000, baseline_backlog=8_000, stage_s=8.0, restart_users=100_000)
        return cls(runs=runs or 3, backlog=150_000, baseline_backlog=20_000, stage_s=20.0, restart_users=1_000_000)


def _machine() -> str:
    cpuinfo, meminfo = Path("/proc/cpuinfo").read_text(), Path("/proc/meminfo").read_text()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.machine(),
    )
    mem = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB, Python {platform.python_version()}"


def _services(kafka: str | None, redis_url: str | None, workdir: Path) -> tuple[str, str, bool]:
    if kafka and redis_url:
        return kafka, redis_url, False
    say("starting Kafka and Redis (scripts/services.sh)")
    env = services.start(workdir)
    return env["FRESHREC_KAFKA"], env["FRESHREC_REDIS_URL"], True


def run_bench(
    quick: bool,
    as_json: bool,
    kafka: str | None,
    redis_url: str | None,
    runs: int | None,
    out_dir: str,
    results: str,
    only: str = "",
) -> int:
    """The whole benchmark, or part of it (``only``: a stage's name, or ``core`` for 1-6)."""
    from bench import report

    plan = Plan.make(quick, runs)
    workdir = Path(tempfile.mkdtemp(prefix="freshrec-bench-"))
    kafka, redis_url, own = _services(kafka, redis_url, workdir)
    started = time.monotonic()
    res: dict = {"machine": _machine(), "date": date.today().isoformat()}
    try:
        if only in ("", "catalogue"):
            rows = run_catalogue(CataloguePlan.make(quick), kafka, redis_url, workdir)
            res["catalogue"] = rows
        if only in ("", "scale"):
            res["scale"] = run_scale(ScalePlan.make(quick), kafka, redis_url, workdir)
        if only in ("", "core"):
            res.update(_stages(plan, kafka, redis_url, workdir))
        if only in ("", "api"):
            res.update(run_api(ApiPlan.make(quick), kafka, redis_url, workdir))
        if only in ("", "ctr"):
            res["ctr"] = run_ctr(CtrPlan.make(quick), kafka, redis_url, workdir)
        if only in ("", "rerank"):
            res["rerank"] = run_rerank(RerankPlan.make(quick), kafka, redis_url, workdir)
        if only in ("", "live"):
            res["live"] = run_live(LivePlan.make(quick), kafka, redis_url, workdir)
    finally:
        if own:
            services.stop(workdir)
    res["wall_s"] = round(time.monotonic() - started, 1)
    cmd = "freshrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    plots = report.plot_all(res, Path(out_dir))
    if results:
        with open(results, "a") as f:
            f.write(report.results_section(res, cmd, plots, Path(results).parent))
    report.print_summary(res)
    if as_json:
        doc: dict = dict(res.get("summary", {}))
        if "catalogue" in res:
            doc["catalogue"] = res["catalogue"]
        if "scale" in res:
            doc.update(res["scale"])
        if "api" in res:
            doc["api"] = res["api"]
        if "ctr" in res:
            doc["ctr"] = res["ctr"]
        if "rerank" in res:
            doc["rerank"] = res["rerank"]
        if "live" in res:
            doc["live"] = res["live"]
        print(orjson.dumps(doc).decode())
    return 0


def _stages(plan: Plan, kafka: str, redis_url: str, workdir: Path) -> dict:
    runs = [_one_run(plan, kafka, redis_url, workdir, r) for r in range(plan.runs)]
    say(f"memory and snapshot at {', '.join(f'{u:,}' for u in plan.memory_users)} users")
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--users", ",".join(map(str, plan.memory_users))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    memory = orjson.loads(out.stdout.strip().splitlines()[-1])
    say(f"restart with {plan.restart_users:,} users of recovered state")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.restart",
            "--kafka",
            kafka,
            "--redis-url",
            redis_url,
            "--users",
            str(plan.restart_users),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    restart = orjson.loads(out.stdout.strip().splitlines()[-1])
    return _summarise(runs, memory, restart, plan)


def _one_run(plan: Plan, kafka: str, redis_url: str, workdir: Path, r: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, ns = f"bench.{tag}", f"bench{tag}"
    seed = 100 + r
    say(f"run {r + 1}/{plan.runs}: producing a backlog of {plan.backlog:,} events")
    wait_replay(replay(kafka, topic, 0, plan.backlog, seed))
    recovery = ("--recovery-dir", str(workdir / f"recovery-{tag}"), "--snapshot-interval-s", "5")
    flow = start_flow(kafka, topic, redis_url, ns, workdir, f"freshrec-{tag}", *recovery)
    try:
        eps, series = drain(flow, plan.backlog)
        say(f"freshrec drained at {eps:,.0f} events/s (started in {flow.startup_s:.1f} s)")
        fresh = []
        for rate in (1000.0, 5000.0, round(eps / 2, -2)):
            fresh.append(fixed_rate(flow, kafka, topic, rate, plan.stage_s, seed + int(rate)))
            say(f"freshrec at {rate:,.0f}/s: p50 {fresh[-1]['p50']} ms, p99 {fresh[-1]['p99']} ms")
        reads = read_latency(flow, kafka, redis_url, ns, topic, plan.stage_s, seed + 7)
        say(
            f"reads at {reads['reads_per_s']:,}/s (target {reads['target_per_s']:,}): "
            f"p50 {reads['p50']} ms, p99 {reads['p99']} ms"
        )
    finally:
        flow.stop()

    btopic = f"bench.{tag}.naive"
    say(f"naive baseline: backlog of {plan.baseline_backlog:,} events")
    wait_replay(replay(kafka, btopic, 0, plan.baseline_backlog, seed))
    port = free_ports(1)
    naive = Process(
        [
            sys.executable,
            "-m",
            "bench.naive",
            "--kafka",
            kafka,
            "--topic",
            btopic,
            "--redis-url",
            redis_url,
            "--namespace",
            f"naive{tag}",
            "--metrics-port",
            str(port),
        ],
        port,
        workdir,
        f"naive-{tag}",
    )
    try:
        b_eps, b_series = drain(naive, plan.baseline_backlog)
        say(f"naive drained at {b_eps:,.0f} events/s")
        b_fresh = []
        for rate in (1000.0, 5000.0):
            b_fresh.append(fixed_rate(naive, kafka, btopic, rate, plan.stage_s, seed + int(rate)))
            b = b_fresh[-1]
            say(f"naive at {rate:,.0f}/s: p50 {b['p50']} ms, p99 {b['p99']} ms, caught up: {b['caught_up']}")
    finally:
        naive.stop()
    return {
        "eps": eps,
        "series": series,
        "fresh": fresh,
        "reads": reads,
        "startup_s": flow.startup_s,
        "b_eps": b_eps,
        "b_series": b_series,
        "b_fresh": b_fresh,
    }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _median_fresh(per_run: list[list[dict]]) -> list[dict]:
    """Stage by stage, the median of each figure (the half-of-max stage's rate differs per run: its median too)."""
    return [
        {
            "rate": _median([s["rate"] for s in stage]),
            **{q: _median([s[q] for s in stage]) for q in ("p50", "p95", "p99")},
            "caught_up": all(s["caught_up"] for s in stage),
        }
        for stage in zip(*per_run)
    ]


def _summarise(runs: list[dict], memory: list[dict], restart: dict, plan: Plan) -> dict:
    eps = _median([r["eps"] for r in runs])
    b_eps = _median([r["b_eps"] for r in runs])
    fresh = _median_fresh([r["fresh"] for r in runs])
    b_fresh = _median_fresh([r["b_fresh"] for r in runs])
    by_users = {round(m["users"], -5): m for m in memory}  # the stream reaches a few users fewer than asked
    m100k, m1m = by_users.get(100_000), by_users.get(1_000_000)
    summary = {
        "throughput_eps": round(eps),
        "baseline_throughput_eps": round(b_eps),
        # each run's ratio pairs freshrec with the naive loop measured right after it
        "throughput_ratio": _median([r["eps"] / r["b_eps"] for r in runs]) if b_eps else None,
        "throughput_ratios": [round(r["eps"] / r["b_eps"], 2) for r in runs],
        "freshness_ms": next(f for f in fresh if f["rate"] == 5000.0),
        "freshness_ms_by_rate": fresh,
        "baseline_freshness_ms_by_rate": b_fresh,
        "read_ms": {q: _median([r["reads"][q] for r in runs]) for q in ("p50", "p99")},
        "reads_per_s": _median([r["reads"]["reads_per_s"] for r in runs]),
        "reads_target_per_s": runs[0]["reads"]["target_per_s"],
        "rss_mb_per_100k_users": round((m1m["rss_mb"] - m100k["rss_mb"]) / 9, 1) if m100k and m1m else None,
        "snapshot_s_1m_users": m1m["steady_snapshot_s"] if m1m else None,
        "snapshot_mb_1m_users": m1m["steady_snapshot_mb"] if m1m else None,
        "first_snapshot_s_1m_users": m1m["first_snapshot_s"] if m1m else None,
        "restore_s_1m_users": m1m["restore_s"] if m1m else None,
        "startup_s": _median([r["startup_s"] for r in runs]),
        "restart_users": restart["users"],
        "restart_s": restart["restart_s"],
        "runs": plan.runs,
    }
    return {"summary": summary, "runs": runs, "memory": memory, "restart": restart}
