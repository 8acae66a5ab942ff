"""Read interaction logs: MovieLens ``u.data`` / ``ratings.csv``, CSV, JSONL.

Every reader yields :class:`~models.event.Event`. JSONL lines go through
the same parser as Kafka messages, so a log that ``eval`` accepts is one
the live flow accepts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.event import Event, Impression
from operators.parse import DEFAULT_WEIGHTS, TS_MAX, ParseConfig, Rejected, parse

FORMATS = ("auto", "movielens", "csv", "jsonl")


class DataError(ValueError):
    """A log file that cannot be read, with the line and the reason."""


def detect_format(path: Path) -> str:
    """Guess ``movielens`` (tab-separated u.data, or ratings.csv), ``csv`` or ``jsonl``."""
    with open(path, "rb") as f:
        head = f.readline().strip()
    if head.startswith(b"{"):
        return "jsonl"
    if b"\t" in head or head.lower().startswith(b"userid,movieid"):
        return "movielens"
    if b"," in head:
        return "csv"
    raise DataError(f"{path}:1: cannot detect the format (expected JSON lines, tab- or comma-separated); pass --format")


class Log(NamedTuple):
    """A whole log, in event-time order: its events, and what reading it found."""

    events: list[Event]
    ms_rows: int  # rows whose timestamp was milliseconds (above 2100-01-01 in seconds), read as seconds
    ties: int  # events that shared their timestamp with the one before (their order is a seeded shuffle)

    def describe(self) -> str:
        """One line for a report: the timestamp unit and the ties."""
        unit = "milliseconds (detected), read as seconds" if self.ms_rows else "seconds"
        return f"timestamps in {unit}; {self.ties:,} events tie with the one before, ordered by a seeded shuffle"


def read_log(path: str | Path, fmt: str = "auto", seed: int = 0) -> Log:
    """Load a whole log in event-time order; events with equal timestamps in a seeded random order.

    File order among ties would leak how the file was written (MovieLens
    lists a user's ratings of one second by movie id); a shuffle with a
    fixed ``seed`` makes the order neutral and repeatable.
    """
    unit = _Unit()
    events = list(iter_events(path, fmt, unit))
    if not events:
        return Log(events, unit.ms_rows, 0)
    ts = np.fromiter((e.ts for e in events), dtype=np.float64, count=len(events))
    order = np.lexsort((np.random.default_rng(seed).permutation(len(events)), ts))
    ties = int((np.diff(ts[order]) == 0).sum())
    return Log([events[i] for i in order.tolist()], unit.ms_rows, ties)


def read_events(path: str | Path, fmt: str = "auto", seed: int = 0) -> list[Event]:
    """The events of :func:`read_log`."""
    return read_log(path, fmt, seed).events


def iter_events(path: str | Path, fmt: str = "auto", unit: _Unit | None = None) -> Iterator[Event]:
    """Stream the events of a log in file order; raises :class:`DataError`.

    ``unit`` counts the CSV rows whose timestamp was read as milliseconds.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "jsonl":
        yield from _jsonl(path)
    elif fmt in ("movielens", "csv"):
        yield from _delimited(path, unit or _Unit())
    else:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _jsonl(path: Path) -> Iterator[Event]:
    # Impressions are for `freshrec report`; there is nothing in them to learn.
    return (r for r in jsonl_records(path) if isinstance(r, Event))


def jsonl_records(path: str | Path) -> Iterator[Event | Impression]:
    """The events and impressions of a JSONL log (``ts`` required), in file order; raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    config = ParseConfig()
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            got = parse(line, 0.0, config)
            if isinstance(got, Rejected):
                raise DataError(f"{path}:{n}: {got.detail}")
            if got.ts == 0.0:
                raise DataError(f"{path}:{n}: ts is required in a log file")
            yield got


class _Unit:
    """Rows whose timestamp a reader took for milliseconds."""

    def __init__(self) -> None:
        self.ms_rows = 0


_NAMES = {
    "user": ("user", "userid", "user_id", "session", "sessionid", "session_id", "visitorid", "visitor_id"),
    "item": ("item", "itemid", "item_id", "movieid", "movie_id", "product", "productid", "product_id"),
    "type": ("type", "event", "event_type", "kind", "action"),
    "rating": ("rating", "value", "score"),
    "ts": ("timestamp", "ts", "time", "event_time"),
}
"""Header names a CSV column is known by (any case)."""


def _delimited(path: Path, unit: _Unit) -> Iterator[Event]:
    """``user, item[, rating | type][, timestamp]``, with a header row naming them or in that order."""
    with open(path, newline="", encoding="utf-8", errors="strict") as f:
        first = f.readline()
        delim = "\t" if "\t" in first else ","
        cols = [c.strip().lower() for c in first.split(delim)]
        has_header = not cols[0].lstrip("-").isdigit() and len(cols) >= 2 and not _is_number(cols[-1])
        columns = _header(cols, path) if has_header else None
        if not has_header:
            f.seek(0)
        start = 2 if has_header else 1
        try:
            for n, row in enumerate(csv.reader(f, delimiter=delim), start):
                if not row:
                    continue
                yield _row_event(row, columns, path, n, unit)
        except UnicodeDecodeError as ex:
            raise DataError(f"{path}: not UTF-8 ({ex.reason} at byte {ex.start})") from ex


def _header(cols: list[str], path: Path) -> dict[str, int]:
    """Column positions by role; a header without a user and an item column is an error naming it."""
    found = {}
    for role, names in _NAMES.items():
        at = [p for p, c in enumerate(cols) if c in names]
        if at:
            found[role] = at[0]
    for role in ("user", "item"):
        if role not in found:
            raise DataError(
                f"{path}:1: header {','.join(cols)!r:.120} names no {role} column (one of {', '.join(_NAMES[role])})"
            )
    return found


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _row_event(row: list[str], columns: dict[str, int] | None, path: Path, n: int, unit: _Unit) -> Event:
    if columns is None:  # positional: user, item[, rating or type][, timestamp]
        columns = {"user": 0, "item": 1}
        if len(row) >= 4:
            columns["rating" if _is_number(row[2]) else "type"] = 2
            columns["ts"] = 3
        elif len(row) == 3:
            columns["ts"] = 2
    cell = {role: row[p].strip() for role, p in columns.items() if p < len(row)}
    user, item = cell.get("user", ""), cell.get("item", "")
    if not user or not item:
        raise DataError(f"{path}:{n}: expected user, item[, rating or type][, timestamp], got {row!r:.80}")
    try:
        value = float(cell["rating"]) if cell.get("rating") else None
        ts = float(cell["ts"]) if cell.get("ts") else float(n)
    except ValueError as ex:
        raise DataError(f"{path}:{n}: {ex}") from ex
    if ts > TS_MAX:
        ts /= 1000.0
        unit.ms_rows += 1
    kind = cell.get("type") or ("rating" if value is not None else "view")
    weight = DEFAULT_WEIGHTS.get(kind)  # a rating is one implicit positive (weight 1), whatever its value
    if weight is None:
        raise DataError(f"{path}:{n}: type {kind!r:.40} is not one of {', '.join(sorted(DEFAULT_WEIGHTS))}")
    return Event(user, item, kind, weight, ts, ts, value)


SYNTHETIC = ("stream", "shop", "clicks")
"""The synthetic logs ``eval`` and the sweeps know by name."""


def synthetic_log(name: str) -> list[Event]:
    """A named synthetic log: ``stream`` (stable tastes, 50,000 events), ``shop`` or ``clicks`` (sessions)."""
    from operators.sessions import LOGS, session_events
    from operators.synthetic import SyntheticConfig, synthetic_events

    if name == "stream":
        return list(synthetic_events(SyntheticConfig(events=50_000, seed=11)))
    if name in LOGS:
        return session_events(LOGS[name])
    raise DataError(f"unknown synthetic log {name!r}; choose one of {', '.join(SYNTHETIC)}")
