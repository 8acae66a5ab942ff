"""``freshrec bench --api``: the HTTP API under a real load generator, beside direct Redis and Kafka clients.

On real Redis and Kafka, with ``freshrec serve`` as a subprocess (uvicorn,
one process) and `oha <https://github.com/hatoo/oha>`_ as the load
generator (``cargo install oha`` if it is missing):

- ``GET /recommend/{user}`` at fixed rates (1,000 and 5,000 requests/s)
  over 10,000 users whose lists (20 items) are in Redis: p50/p99 with
  oha's latency correction (measured from when a request was due, so a
  stall is not hidden), and side by side in the same run a direct Redis
  ``GET`` of the same keys at the same rate from a paced redis-py client,
  timed the same way;
- ``POST /events`` in batches of 100 events as fast as 32 connections go:
  events/s acknowledged by Kafka, beside one kafka-python producer sending
  the same events directly (``acks=all``).

With 1 and 2 worker processes (``--http-workers``). Each pair is measured
``runs`` times; ratios are medians of the per-run ratios.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import redis
from kafka import KafkaProducer

from bench.services import ROOT, free_ports, say, stop_process
from state.keys import popular_key, user_key
from state.redis_store import payload


@dataclass(frozen=True)
class ApiPlan:
    runs: int
    seconds: float
    rates: tuple[int, ...] = (1000, 5000)
    workers: tuple[int, ...] = (1, 2)  # --http-workers
    users: int = 10_000
    batch: int = 100  # events per POST (the body is made once)

    @classmethod
    def make(cls, quick: bool) -> ApiPlan:
        return cls(runs=1, seconds=8.0) if quick else cls(runs=3, seconds=15.0)


def oha_path() -> str:
    """The oha binary, installed with cargo on first use."""
    found = shutil.which("oha") or shutil.which(str(Path.home() / ".cargo/bin/oha"))
    if found:
        return found
    if not shutil.which("cargo"):
        raise RuntimeError("bench --api needs the load generator oha: install Rust's cargo, then `cargo install oha`")
    say("installing the load generator oha (cargo install oha, once, a few minutes)")
    subprocess.run(["cargo", "install", "oha", "--locked"], check=True, capture_output=True)
    return str(Path.home() / ".cargo/bin/oha")


def _oha(oha: str, args: list[str], seconds: float) -> dict:
    cmd = [oha, "-z", f"{seconds}s", "--no-tui", "--output-format", "json", *args]
    got = subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)
    return orjson.loads(got.stdout)


def _ms(x: float) -> float:
    return round(x * 1000, 3)


def _redis_paced(url: str, keys: list[str], rate: int, seconds: float) -> dict:
    """GET random ``keys`` at ``rate``/s from one client; latency from each request's due time."""
    client = redis.Redis.from_url(url)
    client.ping()
    rng = random.Random(1)
    latencies = []
    start = time.perf_counter()
    n = 0
    while True:
        due = start + n / rate
        now = time.perf_counter()
        if due - start > seconds:
            break
        if due > now:
            time.sleep(due - now)
        client.get(keys[rng.randrange(len(keys))])
        latencies.append(time.perf_counter() - due)
        n += 1
    elapsed = time.perf_counter() - start
    client.close()
    latencies.sort()
    return {
        "p50_ms": _ms(latencies[len(latencies) // 2]),
        "p99_ms": _ms(latencies[int(len(latencies) * 0.99)]),
        "achieved_rps": round(n / elapsed),
    }


def _kafka_direct(brokers: str, topic: str, messages: list[tuple[bytes, bytes]], seconds: float) -> float:
    """Events/s of one kafka-python producer sending ``messages`` over and over, every one acknowledged."""
    producer = KafkaProducer(bootstrap_servers=brokers.split(","), acks="all", linger_ms=2)
    sent = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        for f in futures:
            f.get(timeout=30)
        sent += len(futures)
    rate = sent / (time.perf_counter() - start)
    producer.close()
    return rate


def _seed(redis_url: str, ns: str, users: int) -> list[str]:
    """Lists of 20 items for ``users`` users and a popular list; the user keys."""
    store = redis.Redis.from_url(redis_url)
    items = [f"item-{i}" for i in range(5000)]
    rng = random.Random(7)
    now = time.time()
    keys = [user_key(ns, f"u{u}") for u in range(users)]
    for lo in range(0, users, 1000):
        store.mset(
            {
                keys[u]: payload(rng.sample(items, 20), sorted((rng.random() for _ in range(20)), reverse=True), now)
                for u in range(lo, min(lo + 1000, users))
            }
        )
    store.set(popular_key(ns), payload(items[:20], [1.0] * 20, now))
    store.close()
    return keys


def run_api(plan: ApiPlan, kafka: str, redis_url: str, workdir: Path) -> dict:
    oha = oha_path()
    tag = uuid.uuid4().hex[:8]
    ns, topic = f"bapi{tag}", f"bench.api.{tag}"
    keys = _seed(redis_url, ns, plan.users)
    rng = random.Random(8)
    batch = [
        {"user": f"u{rng.randrange(plan.users)}", "item": f"item-{rng.randrange(5000)}"} for _ in range(plan.batch)
    ]
    body = workdir / "events-100.json"
    body.write_bytes(orjson.dumps(batch))
    messages = [(str(e["user"]).encode(), orjson.dumps(e)) for e in batch]
    rows: dict[int, dict[str, list]] = {w: {"gets": [], "posts": []} for w in plan.workers}
    for r in range(plan.runs):
        for workers in plan.workers:
            port = free_ports(1)
            log = tempfile.NamedTemporaryFile(prefix="freshrec-serve-", suffix=".log", delete=False, dir=workdir)  # noqa: SIM115
            cmd = [sys.executable, "-m", "flows.cli", "serve", "--port", str(port), "--http-workers", str(workers)]
            cmd += ["--namespace", ns, "--topic", topic]
            env = {**os.environ, "FRESHREC_KAFKA": kafka, "FRESHREC_REDIS_URL": redis_url}
            server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
            base = f"http://127.0.0.1:{port}"
            try:
                _wait_up(base, server)
                httpx.post(base + "/events", content=body.read_bytes(), timeout=30).raise_for_status()  # topic made
                got = _one_run(plan, oha, base, redis_url, keys, kafka, topic, body, messages)
            finally:
                stop_process(server)
                log.close()
            rows[workers]["gets"].append(got["gets"])
            rows[workers]["posts"].append(got["post"])
            say(f"run {r + 1}, {workers} worker(s): {got}")
    return {"api": [_summary(plan, w, rows[w]["gets"], rows[w]["posts"]) for w in plan.workers]}


def _one_run(
    plan: ApiPlan,
    oha: str,
    base: str,
    redis_url: str,
    keys: list[str],
    kafka: str,
    topic: str,
    body: Path,
    messages: list[tuple[bytes, bytes]],
) -> dict:
    width = len(str(plan.users - 1))
    url = f"{base}/recommend/u[1-9][0-9]{{{width - 1}}}"  # u1000..u9999 of 10,000 users: all have lists
    gets = {}
    for rate in plan.rates:
        got = _oha(oha, ["-q", str(rate), "-c", "64", "--latency-correction", "--rand-regex-url", url], plan.seconds)
        api = {
            "p50_ms": _ms(got["latencyPercentiles"]["p50"]),
            "p99_ms": _ms(got["latencyPercentiles"]["p99"]),
            "achieved_rps": round(got["summary"]["requestsPerSec"]),
            "non_200": sum(n for code, n in got["statusCodeDistribution"].items() if code != "200"),
        }
        gets[rate] = {"api": api, "redis": _redis_paced(redis_url, keys, rate, plan.seconds)}
    posting = ["-c", "32", "-m", "POST", "-D", str(body), "-T", "application/json", base + "/events"]
    got = _oha(oha, posting, plan.seconds)
    post = {
        "api_eps": round(got["statusCodeDistribution"].get("200", 0) * plan.batch / got["summary"]["total"]),
        "direct_eps": round(_kafka_direct(kafka, topic, messages, plan.seconds)),
        "non_200": sum(n for code, n in got["statusCodeDistribution"].items() if code != "200"),
    }
    return {"gets": gets, "post": post}


def _wait_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"freshrec serve exited {server.returncode}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("freshrec serve did not answer /healthz within 30 s")


def _summary(plan: ApiPlan, workers: int, gets: list[dict[int, dict]], posts: list[dict]) -> dict:
    med = statistics.median
    rows = []
    for rate in plan.rates:
        runs = [g[rate] for g in gets]
        rows.append(
            {
                "rate": rate,
                "api_p50_ms": med(x["api"]["p50_ms"] for x in runs),
                "api_p99_ms": med(x["api"]["p99_ms"] for x in runs),
                "api_achieved_rps": med(x["api"]["achieved_rps"] for x in runs),
                "api_non_200": sum(x["api"]["non_200"] for x in runs),
                "redis_p50_ms": med(x["redis"]["p50_ms"] for x in runs),
                "redis_p99_ms": med(x["redis"]["p99_ms"] for x in runs),
                "redis_achieved_rps": med(x["redis"]["achieved_rps"] for x in runs),
                "p99_ratio": round(med(x["api"]["p99_ms"] / max(x["redis"]["p99_ms"], 1e-3) for x in runs), 2),
                "runs_api_p99_ms": [x["api"]["p99_ms"] for x in runs],
            }
        )
    return {
        "workers": workers,
        "get": rows,
        "post": {
            "batch": plan.batch,
            "api_eps": med(p["api_eps"] for p in posts),
            "direct_eps": med(p["direct_eps"] for p in posts),
            "ratio": round(med(p["api_eps"] / p["direct_eps"] for p in posts), 2),
            "non_200": sum(p["non_200"] for p in posts),
            "runs_api_eps": [p["api_eps"] for p in posts],
        },
        "runs": plan.runs,
        "seconds": plan.seconds,
    }
