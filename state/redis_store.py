"""Redis: connect from a URL, write lists with MSET, read them like an app.

Writes survive outages: a failed write is retried with exponential
backoff (the flow waits, Kafka keeps the events), one log line when the
outage starts and one when it ends, and ``freshrec_outage{service="redis"}``
is 1 meanwhile. Writes are idempotent ``MSET``s, so a retry or a recovery
replay is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis

from state import metrics
from state.keys import DEFAULT_NAMESPACE, list_key, popular_key, user_key

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    """The URL without its password, for logs and errors.

    >>> redact("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> redact("redis://127.0.0.1:6379")
    'redis://127.0.0.1:6379'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisUnavailable(RuntimeError):
    """Redis cannot be reached or refused us; the message is one actionable line."""


def connect(url: str, check: bool = True) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``), pinged.

    Raises :class:`RedisUnavailable` with the (redacted) address when the
    server does not answer or refuses the credentials.
    """
    try:
        client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=3.0)
    except ValueError as ex:
        raise RedisUnavailable(f"bad Redis URL {redact(url)!r}: {ex}") from ex
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as ex:
            raise RedisUnavailable(f"Redis at {redact(url)} refused the credentials: {ex}") from ex
        except redis.RedisError as ex:
            raise RedisUnavailable(
                f"cannot reach Redis at {redact(url)}: {ex}; start Redis or pass --redis-url"
            ) from ex
    return client


class ListWrite(NamedTuple):
    """One list to write: what the rankers emit and the Redis sink turns into a key and a payload."""

    kind: str  # state.keys.USER, ITEM or POPULAR
    name: str  # the user or item id ("" for the popular list)
    items: list[str]
    scores: list[float]
    event_ts: float  # newest event time the list reflects
    updated: float  # when it was computed
    source_ts: tuple[float, ...] = ()  # Kafka timestamps of the events it reflects (freshness)

    def key_value(self, namespace: str) -> tuple[str, bytes]:
        """The Redis key and JSON value of this list.

        >>> ListWrite("user", "7", ["a"], [0.5], 10.0, 11.0).key_value("ns")
        ('ns:u:7', b'{"items":["a"],"scores":[0.5],"updated":11.0,"event_ts":10.0}')
        """
        return list_key(namespace, self.kind, self.name), payload(self.items, self.scores, self.event_ts, self.updated)


def payload(items: Sequence[str], scores: Sequence[float], event_ts: float, updated: float | None = None) -> bytes:
    """The JSON value of every list key (the app contract).

    >>> payload(["a"], [0.5], 10.0, updated=11.0)
    b'{"items":["a"],"scores":[0.5],"updated":11.0,"event_ts":10.0}'
    """
    doc = {
        "items": list(items),
        "scores": list(scores),
        "updated": time.time() if updated is None else updated,
        "event_ts": event_ts,
    }
    return orjson.dumps(doc)


class RedisWriter:
    """``MSET`` of many keys at once, retried through outages.

    Parameters
    ----------
    url
        Redis URL.
    max_backoff
        Longest wait between retries, seconds.
    """

    def __init__(self, url: str, max_backoff: float = 5.0) -> None:
        self.url = url
        self.max_backoff = max_backoff
        self.client = connect(url)

    def write(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Set every ``(key, value)`` in one command; returns once written."""
        # One MSET: a single command to pack and a single reply to parse
        # (a pipeline of SETs spent about 10 us per key in redis-py).
        flat = [x for pair in pairs for x in pair]
        if not flat:
            return
        backoff = 0.05
        outage_start: float | None = None
        while True:
            t0 = time.perf_counter()
            try:
                self.client.execute_command("MSET", *flat)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as ex:
                if outage_start is None:
                    outage_start = time.monotonic()
                    metrics.OUTAGE.labels("redis").set(1)
                    log.error(
                        "Redis at %s unreachable (%s); retrying with backoff, the flow waits", redact(self.url), ex
                    )
                metrics.RETRIES.labels("redis").inc()
                time.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            metrics.REDIS_WRITE.observe(time.perf_counter() - t0)
            if outage_start is not None:
                metrics.OUTAGE.labels("redis").set(0)
                log.warning("Redis at %s is back after %.1f s", redact(self.url), time.monotonic() - outage_start)
            return

    def close(self) -> None:
        self.client.close()


def read_recs(
    client: redis.Redis,
    user: str,
    namespace: str = DEFAULT_NAMESPACE,
    k: int | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """What an app reads for ``user``, in one round trip.

    One ``MGET`` of the user's key and the popular key: the user's list if
    there is one, else the popular list (``"source"`` says which), with
    ``exclude``\\ d items removed and cut to ``k``. An empty list if
    neither key exists yet.
    """
    mine, popular = client.mget([user_key(namespace, user), popular_key(namespace)])
    return pick(mine, popular, "user", k, exclude)


def pick(
    mine: bytes | str | None,
    popular: bytes | str | None,
    source: str,
    k: int | None = None,
    exclude: Iterable[str] = (),
    keep: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """The answer from two list values: ``mine`` if it exists (``"source": source``), else ``popular``.

    Items in ``exclude`` or for which ``keep`` is false are left out, then the list is cut to ``k``.

    >>> mine = payload(["a", "b", "c"], [3.0, 2.0, 1.0], 10.0, updated=11.0)
    >>> pick(mine, None, "user", k=1, exclude=["a"])
    {'items': ['b'], 'scores': [2.0], 'updated': 11.0, 'event_ts': 10.0, 'source': 'user'}
    >>> pick(None, mine, "user", keep=lambda item: item != "b")["items"], pick(None, None, "user")["source"]
    (['a', 'c'], 'none')
    """
    raw, source = (mine, source) if mine is not None else (popular, "popular")
    if raw is None:
        return {"items": [], "scores": [], "updated": None, "event_ts": None, "source": "none"}
    doc: dict[str, Any] = orjson.loads(raw)
    drop = set(exclude)
    if drop or keep is not None:
        pairs = [
            (item, score)
            for item, score in zip(doc["items"], doc["scores"])
            if item not in drop and (keep is None or keep(item))
        ]
        doc["items"], doc["scores"] = [p[0] for p in pairs], [p[1] for p in pairs]
    if k is not None:
        doc["items"], doc["scores"] = doc["items"][:k], doc["scores"][:k]
    doc["source"] = source
    return doc
