"""Processes and measurements behind ``freshrec bench`` (``bench/system.py``).

A :class:`Process` is a pipeline that exports metrics (``freshrec run`` or
the naive loop); :func:`drain` measures how fast it empties a backlog,
:func:`fixed_rate` the freshness quantiles while ``freshrec replay``
produces at a set rate, :func:`read_latency` what an app's GET sees.
``bench/restart.py`` and ``bench/drain.py`` use them too.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import redis
from kafka import KafkaProducer

from bench.services import ROOT, free_ports, stop_process
from state.keys import user_key
from state.metrics import scrape, total


class Process:
    """A metrics-exporting pipeline (``freshrec run``, several processes of it, or the naive loop)."""

    def __init__(
        self, cmd: list[str], port: int, log_dir: Path, name: str, cwd: Path = ROOT, processes: int = 1
    ) -> None:
        self.ports = [port + i for i in range(processes)]  # process i serves on PORT+i
        self.log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not all(scrape(p) for p in self.ports):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {self.log.name}")
            time.sleep(0.1)
        self.startup_s = time.monotonic() - self.started

    def samples(self) -> list:
        """The samples of every process, together (sums over them are the cluster's)."""
        return [sample for p in self.ports for sample in scrape(p)]

    def applied(self) -> float:
        return total(self.samples(), "freshrec_events_total", {"outcome": "applied"})

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def start_flow(
    kafka: str,
    topic: str,
    redis_url: str,
    namespace: str,
    log_dir: Path,
    name: str,
    *extra: str,
    cwd: Path = ROOT,
    processes: int = 1,
) -> Process:
    """``freshrec run`` from the source tree ``cwd`` with metrics on free ports; returns once they answer."""
    port = free_ports(processes)
    cmd = [sys.executable, "-m", "flows.cli", "run", "--kafka", kafka, "--topic", topic, "--redis-url", redis_url]
    cmd += ["--namespace", namespace, "--metrics-port", str(port), *extra]
    if processes > 1:
        cmd += ["--processes", str(processes), "--cluster-port", str(free_ports(processes))]
    return Process(cmd, port, log_dir, name, cwd=cwd, processes=processes)


def replay(kafka: str, topic: str, rate: float, limit: int, seed: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "replay",
        "--synthetic",
        "--kafka",
        kafka,
        "--topic",
        topic,
        "--rate",
        str(rate),
        "--limit",
        str(limit),
        "--seed",
        str(seed),
        *extra,
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_replay(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"replay failed: {out.strip()}")
    return out.strip()


def drain(proc: Process, target: float, timeout: float = 600) -> tuple[float, list[tuple[float, float]]]:
    """Wait until ``target`` events are applied; events/s over the middle 80%, and the series."""
    series: list[tuple[float, float]] = []
    t0 = time.monotonic()
    while True:
        n = proc.applied()
        series.append((time.monotonic() - t0, n))
        if n >= target:
            break
        if time.monotonic() - t0 > timeout or proc.proc.poll() is not None:
            raise RuntimeError(f"drain stalled at {n:,.0f} of {target:,.0f} events; see {proc.log.name}")
        time.sleep(0.2)
    base = series[0][1]
    lo, hi = base + 0.1 * (target - base), base + 0.9 * (target - base)
    t_lo = next(t for t, n in series if n >= lo)
    t_hi = next(t for t, n in series if n >= hi)
    return (hi - lo) / max(t_hi - t_lo, 1e-9), series


def settle(proc: Process, timeout: float = 10.0) -> list:
    """Samples once every applied event's freshness is observed.

    The sink observes freshness after the Redis write, a moment after the
    learn step counted the event applied; without this wait, the tail of
    the previous stage (a backlog) would land in the next stage's figures.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = proc.samples()
        applied = total(samples, "freshrec_events_total", {"outcome": "applied"})
        if total(samples, "freshrec_freshness_seconds_count") >= applied or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def freshness_buckets(samples: list) -> dict[float, float]:
    """The cumulative buckets of the flow's freshness histogram in one scrape: upper bound -> count."""
    return {float(lab["le"]): v for n, lab, v in samples if n == "freshrec_freshness_seconds_bucket"}


def quantiles(
    before: dict[float, float], after: dict[float, float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> list[float]:
    """Quantiles (seconds) of the observations between two scrapes of a histogram.

    Linear interpolation inside a bucket, as Prometheus' histogram_quantile does.

    >>> quantiles({0.01: 0, 0.02: 0, float("inf"): 0}, {0.01: 50, 0.02: 100, float("inf"): 100}, (0.5, 0.75))
    [0.01, 0.015]
    """
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    n = counts[-1] if counts else 0.0
    out = []
    for q in qs:
        if n <= 0:
            out.append(float("nan"))
            continue
        rank = q * n
        prev_edge, prev_count = 0.0, 0.0
        for edge, count in zip(edges, counts):
            if count >= rank:
                if edge == float("inf"):
                    out.append(prev_edge)
                else:
                    share = (rank - prev_count) / (count - prev_count) if count > prev_count else 1.0
                    out.append(round(prev_edge + share * (edge - prev_edge), 6))
                break
            prev_edge, prev_count = edge, count
    return out


def fixed_rate(proc: Process, kafka: str, topic: str, rate: float, seconds: float, seed: int) -> dict:
    """Produce at ``rate`` for ``seconds``; freshness quantiles of the events applied meanwhile."""
    before = settle(proc)
    start_applied = total(before, "freshrec_events_total", {"outcome": "applied"})
    n = int(rate * seconds)
    p = replay(kafka, topic, rate, n, seed)
    summary = wait_replay(p)
    caught_up = True
    try:
        drain(proc, start_applied + n, timeout=10)
    except RuntimeError:
        caught_up = False  # fell behind: the quantiles cover what was applied
    after = settle(proc)
    p50, p95, p99 = quantiles(freshness_buckets(before), freshness_buckets(after))
    applied = total(after, "freshrec_events_total", {"outcome": "applied"}) - start_applied
    return {
        "rate": rate,
        "p50": _ms(p50),
        "p95": _ms(p95),
        "p99": _ms(p99),
        "applied": applied,
        "caught_up": caught_up,
        "replay": summary,
    }


def _ms(s: float) -> float:
    return round(s * 1000.0, 2)


def _reader(url: str, keys: list[str], rate: float, seconds: float, out: multiprocessing.Queue) -> None:
    client = redis.Redis.from_url(url)
    lat = []
    get = client.get
    t0 = time.monotonic()
    n = 0
    while (now := time.monotonic()) - t0 < seconds:
        ahead = t0 + n / rate - now
        if ahead > 0.001:
            time.sleep(ahead)
        a = time.perf_counter()
        get(keys[n % len(keys)])
        lat.append(time.perf_counter() - a)
        n += 1
    lat.sort()
    out.put(
        {
            "reads": n,
            "reads_per_s": round(n / (time.monotonic() - t0)),
            "target_per_s": round(rate),
            "p50": _ms(lat[len(lat) // 2]),
            "p99": _ms(lat[int(len(lat) * 0.99)]),
        }
    )


def read_latency(
    proc: Process, kafka: str, redis_url: str, namespace: str, topic: str, seconds: float, seed: int
) -> dict:
    """GET latency of existing user lists at a target of 10,000 reads/s from another process, ingesting 5,000 events/s.

    The reader asks only for keys the flow has written (sampled with
    SCAN first), so every GET returns a list, as an app's would. A single
    synchronous client may fall short of the target rate on a loaded
    machine: the rate it achieved is reported beside the target.
    """
    client = redis.Redis.from_url(redis_url)
    keys = []
    for key in client.scan_iter(match=user_key(namespace, "*"), count=1000):
        keys.append(key.decode())
        if len(keys) >= 4096:
            break
    client.close()
    if not keys:
        raise RuntimeError(f"no user lists under {namespace} to read")
    q: multiprocessing.Queue = multiprocessing.Queue()
    p = replay(kafka, topic, 5000, int(5000 * (seconds + 2)), seed)
    time.sleep(1.0)
    reader = multiprocessing.Process(target=_reader, args=(redis_url, keys, 10_000.0, seconds, q))
    reader.start()
    got = q.get(timeout=seconds + 60)
    reader.join()
    wait_replay(p)
    return got


def probe_latency(
    kafka: str, topic: str, redis_url: str, namespace: str, seconds: float, every_s: float = 0.05
) -> dict:
    """End-to-end latency of probe events, one user's, every ``every_s``, while the flow runs its load.

    Each probe is stamped with its send time; Redis is polled every
    millisecond for the probe user's list, and a probe counts as served
    when the list's ``event_ts`` reaches its stamp. The worst probe bounds
    the longest stall of the flow (a snapshot, a collection, an index swap)
    from above, plus the flow's normal latency.
    """
    user = f"probe-{time.monotonic_ns()}"
    key = user_key(namespace, user)
    client = redis.Redis.from_url(redis_url)
    producer = KafkaProducer(bootstrap_servers=kafka.split(","), linger_ms=0, acks=1)
    sent: list[tuple[float, float]] = []  # (stamp, monotonic send time)
    lat: list[float] = []
    done = threading.Event()

    def poll() -> None:
        served = 0
        while not done.is_set() or served < len(sent):
            raw = client.get(key)
            now = time.monotonic()
            if raw is not None:
                newest = orjson.loads(raw)["event_ts"]
                while served < len(sent) and sent[served][0] <= newest + 1e-9:
                    lat.append(now - sent[served][1])
                    served += 1
            if done.is_set() and now - sent[-1][1] > 30:
                break  # a probe that never shows up is reported as lost
            time.sleep(0.001)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        stamp = time.time()
        doc = {"user": user, "item": f"probe-item-{n % 97}", "type": "view", "ts": stamp}
        producer.send(topic, key=user.encode(), value=orjson.dumps(doc))
        producer.flush()
        sent.append((stamp, time.monotonic()))
        n += 1
        time.sleep(max(0.0, start + n * every_s - time.monotonic()))
    done.set()
    poller.join(60)
    producer.close()
    client.close()
    lat.sort()
    return {
        "probes": len(sent),
        "served": len(lat),
        "p50_ms": _ms(lat[len(lat) // 2]) if lat else None,
        "p99_ms": _ms(lat[int(len(lat) * 0.99)]) if lat else None,
        "max_ms": _ms(lat[-1]) if lat else None,
    }
