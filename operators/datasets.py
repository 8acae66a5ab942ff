"""Read interaction logs: MovieLens ``u.data`` / ``ratings.csv``, CSV, JSONL.

Every reader yields :class:`~models.event.Event`. JSONL lines go through
the same parser as Kafka messages, so a log that ``eval`` accepts is one
the live flow accepts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from models.event import Event, Impression
from operators.parse import ParseConfig, Rejected, parse

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


def read_events(path: str | Path, fmt: str = "auto", sort: bool = True) -> list[Event]:
    """Load a whole log; sorted by event time (stable) unless ``sort=False``."""
    events = list(iter_events(path, fmt))
    if sort:
        events.sort(key=lambda e: e.ts)
    return events


def iter_events(path: str | Path, fmt: str = "auto") -> Iterator[Event]:
    """Stream the events of a log in file order; raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "jsonl":
        yield from _jsonl(path)
    elif fmt in ("movielens", "csv"):
        yield from _delimited(path)
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


def _delimited(path: Path) -> Iterator[Event]:
    """``user, item[, rating][, timestamp]`` with or without a header row."""
    with open(path, newline="", encoding="utf-8", errors="strict") as f:
        first = f.readline()
        delim = "\t" if "\t" in first else ","
        cols = [c.strip().lower() for c in first.split(delim)]
        has_header = not cols[0].lstrip("-").isdigit() and len(cols) >= 2 and not _is_number(cols[-1])
        if not has_header:
            f.seek(0)
        start = 2 if has_header else 1
        try:
            for n, row in enumerate(csv.reader(f, delimiter=delim), start):
                if not row:
                    continue
                yield _row_event(row, path, n)
        except UnicodeDecodeError as ex:
            raise DataError(f"{path}: not UTF-8 ({ex.reason} at byte {ex.start})") from ex


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _row_event(row: list[str], path: Path, n: int) -> Event:
    if len(row) < 2 or not row[0].strip() or not row[1].strip():
        raise DataError(
            f"{path}:{n}: expected user{',' if len(row) else ''} item[, rating][, timestamp], got {row!r:.80}"
        )
    user, item = row[0].strip(), row[1].strip()
    value: float | None = None
    ts = float(n)
    try:
        if len(row) >= 4:
            value, ts = float(row[2]), float(row[3])
        elif len(row) == 3:
            ts = float(row[2])
    except ValueError as ex:
        raise DataError(f"{path}:{n}: {ex}") from ex
    kind = "rating" if value is not None else "view"
    return Event(user, item, kind, 1.0, ts, ts, value)
