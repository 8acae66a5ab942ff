"""``freshrec report``: what the recommendations earned, from impressions and the interactions after them.

Reads a JSONL log or a time range of a Kafka topic (the event schema,
impressions included), attributes clicks, carts and purchases to the latest
impression that showed the item to the user within the window
(``models/attribution.py``), and reports per group (``--by day,list,category``):

- ``impressions``: items shown;
- ``clicks`` and ``ctr`` (clicks / impressions);
- ``carts``, ``purchases`` and ``conversion`` (purchases / impressions);
- ``value_per_1000``: the ``value`` of attributed purchases per 1,000 impressions;
- ``coverage``: distinct items shown / the catalogue (``--items``, else every
  item the log names).

An impression counts on the day it was shown; a click on the day it happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.attribution import Attributor
from models.event import Event, Impression
from operators.parse import ParseConfig, Rejected, parse

GROUPS = ("day", "list", "category")


class ReportError(ValueError):
    """Bad input or options for the report, in one line."""


@dataclass
class _Cell:
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    value: float = 0.0
    shown: set[str] = field(default_factory=set)


def read_topic(
    brokers: str, topic: str, since: float | None, until: float | None, extra: Mapping[str, Any] | None = None
) -> Iterator[Event | Impression]:
    """The events and impressions of ``topic`` whose Kafka timestamps fall in [since, until); bad messages skipped."""
    from kafka import KafkaConsumer, TopicPartition

    from operators.kafka_io import client_config

    consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, **client_config(brokers, extra or {}))
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise ReportError(f"topic {topic!r} does not exist on Kafka at {brokers}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.offsets_for_times({tp: int((since or 0) * 1000) for tp in tps})
        todo = {}
        for tp in tps:
            found = starts.get(tp)
            if found is not None and found.offset < ends[tp]:
                consumer.seek(tp, found.offset)
                todo[tp] = ends[tp]
        config = ParseConfig()
        while todo:
            for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                for r in records:
                    ts = r.timestamp / 1000.0
                    if r.offset >= todo.get(tp, 0) or (until is not None and ts >= until):
                        todo.pop(tp, None)
                        break
                    got = parse(r.value, ts, config)
                    if not isinstance(got, Rejected):
                        yield got
                if tp in todo and consumer.position(tp) >= todo[tp]:
                    todo.pop(tp)
    finally:
        consumer.close()


def when(text: str | None) -> float | None:
    """``--since`` / ``--until``: seconds since the epoch, or an ISO date or time (UTC unless it says).

    >>> when("2026-12-01"), when("1700000000"), when(None)
    (1796083200.0, 1700000000.0, None)
    """
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as ex:
        raise ReportError(f"{text!r} is not a time: give seconds since the epoch or an ISO date (2026-12-01)") from ex
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def report(
    records: Iterable[Event | Impression],
    by: tuple[str, ...] = ("list",),
    window_s: float = 1800.0,
    categories: Mapping[str, str] | None = None,
    catalogue_size: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, Any]:
    """The report of ``records`` (sorted here by event time, stably), grouped ``by``."""
    unknown = sorted(set(by) - set(GROUPS))
    if unknown:
        raise ReportError(f"--by {unknown[0]!r}: group by any of {', '.join(GROUPS)}")
    started = time.perf_counter()
    ordered = sorted(records, key=lambda r: r.ts)
    cats = categories or {}
    attributor = Attributor(window_s)
    cells: dict[tuple[str, ...], _Cell] = {}
    named: set[str] = set()
    total = _Cell()

    days: dict[int, str] = {}

    def day(ts: float) -> str:
        d = int(ts // 86_400)
        text = days.get(d)
        if text is None:
            text = days[d] = datetime.fromtimestamp(d * 86_400, UTC).date().isoformat()
        return text

    parts = {
        "day": lambda ts, kind, item: day(ts),
        "list": lambda ts, kind, item: kind,
        "category": lambda ts, kind, item: cats.get(item, "(none)"),
    }
    getters = [parts[g] for g in by]

    def key(ts: float, list_kind: str, item: str) -> tuple[str, ...]:
        return tuple(get(ts, list_kind, item) for get in getters)

    per_item = "category" in by
    n = 0
    for r in ordered:
        if (since is not None and r.ts < since) or (until is not None and r.ts >= until):
            continue
        n += 1
        if isinstance(r, Impression):
            attributor.shown(r)
            total.impressions += len(r.items)
            total.shown.update(r.items)
            named.update(r.items)
            if per_item:
                for item in r.items:
                    cell = cells.setdefault(key(r.ts, r.list_kind, item), _Cell())
                    cell.impressions += 1
                    cell.shown.add(item)
            else:
                cell = cells.setdefault(key(r.ts, r.list_kind, ""), _Cell())
                cell.impressions += len(r.items)
                cell.shown.update(r.items)
            continue
        named.add(r.item)
        got = attributor.interact(r)
        if got is None:
            continue
        for cell in (cells.setdefault(key(r.ts, got.list_kind, r.item), _Cell()), total):
            if got.kind == "click":
                cell.clicks += 1
            elif got.kind == "cart":
                cell.carts += 1
            else:
                cell.purchases += 1
                cell.value += got.value
    size = catalogue_size or len(named)
    rows = [{**dict(zip(by, k)), **_figures(c, size)} for k, c in sorted(cells.items())]
    return {
        "by": list(by),
        "rows": rows,
        "total": _figures(total, size),
        "records": n,
        "catalogue_items": size,
        "window_s": window_s,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _figures(c: _Cell, catalogue: int) -> dict[str, Any]:
    def per(x: float) -> float | None:
        return round(x / c.impressions, 6) if c.impressions else None

    return {
        "impressions": c.impressions,
        "clicks": c.clicks,
        "ctr": per(c.clicks),
        "carts": c.carts,
        "purchases": c.purchases,
        "conversion": per(c.purchases),
        "value_per_1000": round(1000 * c.value / c.impressions, 4) if c.impressions else None,
        "coverage": round(len(c.shown) / catalogue, 6) if catalogue else None,
    }


def table(doc: dict[str, Any]) -> str:
    """The report as aligned text, one row per group and a total."""
    cols = ["impressions", "clicks", "ctr", "carts", "purchases", "conversion", "value_per_1000", "coverage"]
    head = [*doc["by"], *cols]
    lines = [[*(str(r[g]) for g in doc["by"]), *(_cell(r[c]) for c in cols)] for r in doc["rows"]]
    lines.append(
        [*(["total"] + [""] * (len(doc["by"]) - 1) if doc["by"] else []), *(_cell(doc["total"][c]) for c in cols)]
    )
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in lines]
    return "\n".join(out)


def _cell(x: object) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4f}" if math.isfinite(x) else "-"
    return f"{x:,}" if isinstance(x, int) else str(x)


def plot(doc: dict[str, Any], path: str) -> None:
    """A PNG: click-through by list (by day too, when grouped by day)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rows = [r for r in doc["rows"] if r["ctr"] is not None]
    if "day" in doc["by"] and "list" in doc["by"]:
        for kind in sorted({r["list"] for r in rows}):
            mine = [r for r in rows if r["list"] == kind]
            ax.plot([r["day"] for r in mine], [r["ctr"] for r in mine], marker="o", label=kind)
        ax.legend(title="list")
        ax.set_xlabel("day")
    else:
        labels = [" / ".join(str(r[g]) for g in doc["by"]) or "all" for r in rows]
        ax.bar(labels, [r["ctr"] for r in rows], color="#2f6fde")
    ax.set_ylabel("click-through rate")
    ax.set_title(f"freshrec report: {doc['total']['impressions']:,} impressions, CTR {_cell(doc['total']['ctr'])}")
    fig.autofmt_xdate()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
