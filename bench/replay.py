"""``freshrec replay``: produce a log or a synthetic stream to Kafka at a target rate.

Events are keyed by user, stamped with their send time (``ts``), and paced
against a monotonic clock so the achieved rate tracks the target over any
stretch (``--rate 0``: as fast as the producer goes). With ``--shoppers``
(synthetic only), simulated users also read their lists from Redis and
send impressions and the clicks they earn (``bench/shoppers.py``); those
come on top of the target rate.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from bench.shoppers import Shoppers
from models.event import Event
from operators.datasets import iter_events
from operators.kafka_io import ServiceError, ensure_topics
from operators.local_io import event_json
from operators.synthetic import SyntheticConfig, synthetic_events


def _source(path: str | None, fmt: str, synthetic: SyntheticConfig | None, loop: bool) -> Iterator[Event]:
    while True:
        if synthetic is not None:
            yield from synthetic_events(synthetic)
        else:
            assert path is not None
            yield from iter_events(path, fmt)
        if not loop:
            return


def run_replay(
    kafka: str,
    topic: str,
    extra: dict[str, Any],
    partitions: int,
    path: str | None,
    fmt: str,
    synthetic: SyntheticConfig | None,
    rate: float,
    limit: int,
    loop: bool,
    shoppers: Shoppers | None = None,
) -> int:
    events = _source(path, fmt, synthetic, loop)
    first = next(events, None)  # a bad file fails here, before Kafka is touched
    if first is None:
        print("replay: nothing to send")
        return 0
    events = itertools.chain([first], events)
    ensure_topics(kafka, {topic: partitions, f"{topic}.dlq": partitions}, extra)
    try:
        producer = KafkaProducer(
            bootstrap_servers=kafka.split(","), bootstrap_timeout_ms=5000, linger_ms=5, acks=1, **extra
        )
    except KafkaError as ex:
        raise ServiceError(f"cannot reach Kafka at {kafka}: {ex}") from ex
    if limit:
        events = itertools.islice(events, limit)
    errors = 0

    def failed(_ex: BaseException) -> None:
        nonlocal errors
        errors += 1

    sent = 0
    start = time.monotonic()
    last_report = start
    tty = sys.stderr.isatty()
    try:
        for ev in events:
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0.001:
                    time.sleep(ahead)
            now = time.time()
            doc = Event(ev.user, ev.item, ev.kind, ev.weight, now, now, ev.value)
            producer.send(topic, key=ev.user.encode(), value=event_json(doc)).add_errback(failed)
            sent += 1
            if shoppers is not None:
                for extra_doc in shoppers.after(ev, now):
                    producer.send(topic, key=ev.user.encode(), value=orjson.dumps(extra_doc)).add_errback(failed)
            mono = time.monotonic()
            if mono - last_report >= 1.0:
                last_report = mono
                line = f"sent {sent:,}  rate {sent / (mono - start):,.0f}/s  errors {errors}"
                if shoppers is not None:
                    line += f"  impressions {shoppers.impressions:,}  clicks {shoppers.clicks:,}"
                sys.stderr.write(("\r" + line) if tty else line + "\n")
                sys.stderr.flush()
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
        if shoppers is not None:
            shoppers.close()
    elapsed = time.monotonic() - start
    if tty:
        sys.stderr.write("\n")
    target = f"{rate:,.0f}/s" if rate > 0 else "max"
    print(
        f"replay: sent {sent:,} events to {topic} on {kafka} in {elapsed:.1f} s: "
        f"{sent / max(elapsed, 1e-9):,.0f} events/s (target {target}), {errors} errors"
        + (
            f"; shoppers: {shoppers.impressions:,} impressions, {shoppers.clicks:,} clicks"
            if shoppers is not None
            else ""
        )
    )

    return 1 if errors else 0
