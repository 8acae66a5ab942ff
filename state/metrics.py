"""Every Prometheus metric freshrec exports, declared once.

Names carry the ``freshrec_`` prefix, base units and ``_total`` for
counters; labels are bounded (never a user or item id).
"""

from __future__ import annotations

import functools
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families

# Messages consumed, by outcome: applied to the model, an impression
# (counted, not learned), or rejected to the dead-letter topic (reason = a
# code from operators.parse.REASONS). applied + impression + rejected ==
# consumed, always.
EVENTS = Counter("freshrec_events", "Event messages by outcome", ["outcome", "reason"])
# Items shown in impression events, by list (user, similar, popular): the
# denominator of click-through (README, "Analytics").
IMPRESSIONS = Counter("freshrec_impressions", "Items shown, from impression events", ["list"])
# Clicks, carts and purchases credited to the latest impression of the item
# to the user within --attribution-window-s (models/attribution.py). CTR =
# rate(attributed{type="click"}) / rate(impressions), by list.
ATTRIBUTED = Counter("freshrec_attributed", "Interactions credited to an impression", ["list", "type"])

# Catalogue messages (freshrec.items) the flow read: applied, or rejected to
# freshrec.items.dlq (reason = a code of operators.parse.REASONS); and the
# lists the rankers rewrote without an item the catalogue took away.
CATALOGUE = Counter("freshrec_catalogue_messages", "Catalogue messages read by the flow", ["outcome", "reason"])
UNAVAILABLE = Gauge("freshrec_unavailable_items", "Items the catalogue marks unavailable or deleted (rankers' view)")
USER_MESSAGES = Counter("freshrec_user_messages", "User-attribute messages read by the flow", ["outcome", "reason"])
# Business rules (--rules, models/rules.py): rules in force, and reloads of the file by outcome (a rejected
# reload leaves the previous rules in force).
RULES = Gauge("freshrec_rules", "Business rules in force")
RULE_RELOADS = Counter("freshrec_rule_reloads", "Reloads of the rules file", ["outcome"])
RERANK_PENDING = Gauge(
    "freshrec_rerank_pending_users",
    "Users of each shard still to look at (re-ranked if the change affects them) after a rules change",
    ["shard"],
)
LIST_REWRITES = Counter("freshrec_list_rewrites", "Stored lists rewritten without an unavailable item", ["kind"])

# Seconds from an event's Kafka timestamp to the Redis write of its user's list.
FRESHNESS = Histogram(
    "freshrec_freshness_seconds",
    "Event Kafka timestamp to its user's list written in Redis",
    buckets=(
        0.001,
        0.0025,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        60.0,
    ),
)

# Prequential checks: before an event is learned, was its item in the list
# last served to that user? hits / checks is the live hit-rate@10.
PREQ_CHECKS = Counter("freshrec_prequential_checks", "Events of users that had a served list")
PREQ_HITS = Counter("freshrec_prequential_hits", "Events whose item was in the user's served top-10")
# The same over the last 10,000 checks, for a dashboard.
HIT_RATE = Gauge("freshrec_hit_rate_at_10", "Live prequential hit-rate@10 over the last 10,000 checks")

# Events per learn batch (how well the flow amortises per-batch work).
BATCH_SIZE = Histogram(
    "freshrec_batch_events", "Events per learn batch", buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384)
)

# One pipelined Redis write of a batch of lists.
REDIS_WRITE = Histogram(
    "freshrec_redis_write_seconds",
    "Duration of one pipelined Redis write",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
REDIS_KEYS_WRITTEN = Counter("freshrec_redis_keys_written", "Keys written to Redis", ["kind"])

# 1 while a service is unreachable and the flow is retrying, else 0.
OUTAGE = Gauge("freshrec_outage", "1 while the service is unreachable and writes are retried", ["service"])
RETRIES = Counter("freshrec_retries", "Retried operations against a service", ["service"])

# Messages in Kafka not yet consumed, per partition (high watermark - position).
LAG = Gauge("freshrec_consumer_lag_messages", "Kafka consumer lag", ["partition"])

# Events in the model state; restored with it from a recovery snapshot, so
# after a restart it counts every event exactly once (replays included).
MODEL_EVENTS = Gauge("freshrec_model_events", "Events learned by the model state, across restarts")
USERS = Gauge("freshrec_users", "Users in this process's user shards")
ITEMS = Gauge("freshrec_items", "Items known to the learner (on the process that runs it)")

# User lists ranked: after the user's events ("event"), or again once the
# item side has caught up with them ("settle", operators/rank.py).
RANKINGS = Counter("freshrec_rankings", "User lists ranked", ["reason"])

# Item deltas the learner sent to rankers (one per ranker per broadcast).
DELTAS = Counter("freshrec_item_deltas", "Item deltas sent by the learner to the rankers")

# Incremental recovery snapshots (state/journal.py): the time one snapshot
# of a journaled step blocks its worker, and the bytes written.
SNAPSHOT_SECONDS = Histogram(
    "freshrec_snapshot_seconds",
    "Time one recovery snapshot of a step blocks its worker",
    ["step"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SNAPSHOT_BYTES = Counter("freshrec_snapshot_bytes", "Bytes of recovery snapshot segments written", ["step"])
# When the last one was taken: an epoch closes only between batches, so under
# load snapshots come further apart than --snapshot-interval-s, and a restart
# re-applies more (README "Recovery").
SNAPSHOT_TIME = Gauge(
    "freshrec_snapshot_timestamp_seconds", "Unix time of the last recovery snapshot of a step", ["step"]
)

# The rankers' HNSW indexes (models/index.py), built in the background;
# items added since a build are inserted into it between batches.
INDEX_BUILDS = Counter("freshrec_index_builds", "HNSW index builds swapped in (each of one or more parts of an index)")
INDEX_BUILDING = Gauge("freshrec_index_building", "Background HNSW builds running in this process")
INDEX_ITEMS = Gauge("freshrec_index_items", "Items in the current HNSW index of each ranker", ["shard"])
TWO_STAGE_LISTS = Counter(
    "freshrec_two_stage_lists", "Lists ranked on candidates, by path (bound: the index could not change them)", ["path"]
)
INDEX_BYTES = Gauge("freshrec_index_bytes", "Memory of the current HNSW index of each ranker", ["shard"])
INDEX_BUILD_SECONDS = Histogram(
    "freshrec_index_build_seconds",
    "Duration of one background HNSW build, every part it made",
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
INDEX_SWAP_SECONDS = Histogram(
    "freshrec_index_swap_seconds",
    "Time a build's swap held its ranker's worker: mostly hnswlib freeing the replaced part, with the GIL held",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


# Every call of a dataflow step holds its worker thread: the steps of one
# worker run one after the other, so a long call here is a stall of every
# event behind it (operators/*: the step's on_batch, on_notify, writes).
STEP_SECONDS = Histogram(
    "freshrec_step_seconds",
    "Duration of one call of a dataflow step on its worker",
    ["step", "call"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

F = TypeVar("F", bound=Callable[..., Any])


def timed(step: str, call: str) -> Callable[[F], F]:
    """Observe each call of the decorated method in ``freshrec_step_seconds{step, call}``."""
    child = STEP_SECONDS.labels(step, call)

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - started)

        return inner  # type: ignore[return-value]

    return wrap


# Collections of Python's cyclic garbage collector stop every thread of the
# process; a full one over millions of long-lived objects took ~140 ms
# (flows/cluster.py freezes the model's objects to keep them short).
GC_SECONDS = Histogram(
    "freshrec_gc_seconds",
    "Duration of one collection of the cyclic garbage collector, by generation",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

# `freshrec serve` (flows/api.py) exports its own registry at GET /metrics,
# so its series never mix with a flow's (zero-valued flow series would).
API_REGISTRY = CollectorRegistry(auto_describe=True)
API_SECONDS = Histogram(
    "freshrec_api_request_seconds",
    "Time to answer one HTTP request, by route template",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    registry=API_REGISTRY,
)
API_RESPONSES = Counter(
    "freshrec_api_responses", "HTTP responses by route and status code", ["route", "code"], registry=API_REGISTRY
)
# Events posted to POST /events: accepted (produced to Kafka, acknowledged)
# or rejected (reason = a code from operators.parse.REASONS, answered to the caller).
API_EVENTS = Counter(
    "freshrec_api_events", "Events posted to the HTTP API by outcome", ["outcome", "reason"], registry=API_REGISTRY
)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``host:port`` (loopback by default)."""
    start_http_server(port, addr=host)


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> list[tuple[str, dict[str, str], float]]:
    """The samples ``(name, labels, value)`` a ``/metrics`` endpoint serves; [] if it does not answer.

    Used by the tests and ``freshrec bench`` to read a running flow.
    """

    return scrape_url(f"http://{host}:{port}/metrics", timeout)


def scrape_url(url: str, timeout: float = 2.0) -> list[tuple[str, dict[str, str], float]]:
    """The samples of the ``/metrics`` endpoint at ``url``; [] if it does not answer."""
    try:
        text = urllib.request.urlopen(url, timeout=timeout).read().decode()
    except (OSError, ValueError):
        return []
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = (labels or {}).items()
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in want))
