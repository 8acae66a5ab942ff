"""Parse and validate raw event messages (the producer contract).

Bad input is data, not an exception: :func:`parse` returns either an
:class:`~models.event.Event` or a :class:`Rejected` carrying the original
bytes, a reason code (a bounded set, used as a metric label) and a detail
for the producer (sent as the dead-letter ``reason`` header).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from models.event import LISTS, Event, Impression

REASONS = (
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_user",
    "missing_item",
    "bad_user",
    "bad_item",
    "bad_type",
    "bad_value",
    "bad_ts",
    "bad_items",
    "bad_list",
)
"""Every reason code a rejection can carry."""

MAX_SHOWN = 100
"""Most items in one impression."""
TS_MAX = 4102444800.0  # 2100-01-01: a larger ts is almost surely milliseconds
DEFAULT_WEIGHTS = {"view": 1.0, "click": 2.0, "cart": 3.0, "purchase": 5.0, "rating": 1.0}
"""Learning weight of each event type (``--weights`` and the ``[weights]`` table of ``--config`` change them)."""


class Message(NamedTuple):
    """One consumed message, what every source hands the parse step: its bytes and Kafka timestamp (seconds)."""

    value: bytes
    ts: float


@dataclass(frozen=True)
class ParseConfig:
    """Limits and weights of the event schema.

    Parameters
    ----------
    max_message_bytes
        Larger messages are rejected before decoding (bounded memory).
    max_id_bytes
        Longest ``user`` or ``item`` id, in UTF-8 bytes.
    weights
        Learning weight of each event ``type``; the keys are the accepted types.
    """

    max_message_bytes: int = 65536
    max_id_bytes: int = 256
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


@dataclass(slots=True, frozen=True)
class Rejected:
    """A message that failed validation, kept whole for the dead-letter topic."""

    reason: str
    detail: str
    raw: bytes
    source_ts: float = 0.0


def _bad_number(x: object) -> bool:
    return isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)


def _id(obj: dict, name: str, limit: int) -> str | tuple[str, str]:
    """The id field ``name`` as a string, or a ``(reason, detail)`` pair."""
    value = obj.get(name)
    if value is None:
        return f"missing_{name}", f"{name} is missing or null"
    if isinstance(value, str):
        if not value:
            return f"bad_{name}", f"{name} is empty"
        if len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
            return f"bad_{name}", f"{name} is longer than {limit} bytes"
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"bad_{name}", f"{name} must be a string or an integer, got {type(value).__name__}"


def parse(raw: bytes, source_ts: float, config: ParseConfig) -> Event | Impression | Rejected:
    """Validate one message.

    Parameters
    ----------
    raw
        The message value as received.
    source_ts
        The message's Kafka timestamp in seconds; the default event time.
    config
        Limits and weights.

    Examples
    --------
    >>> cfg = ParseConfig()
    >>> parse(b'{"user": 7, "item": "sku-1", "type": "cart"}', 1.0e9, cfg)
    Event(user='7', item='sku-1', kind='cart', weight=3.0, ts=1000000000.0, source_ts=1000000000.0, value=None)
    >>> parse(b'{"user": 7}', 1.0e9, cfg).reason
    'missing_item'
    >>> parse(b'\\xff', 1.0e9, cfg).reason
    'not_utf8'
    """
    if raw is None or len(raw) > config.max_message_bytes:
        size = 0 if raw is None else len(raw)
        return Rejected(
            "too_large", f"message is {size} bytes, limit {config.max_message_bytes}", raw or b"", source_ts
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as ex:
        reason = "not_utf8" if "UTF-8" in str(ex) else "not_json"
        return Rejected(reason, f"{reason}: {str(ex)[:200]}", raw, source_ts)
    return check(obj, raw, source_ts, config)


def check(obj: object, raw: bytes, source_ts: float, config: ParseConfig) -> Event | Impression | Rejected:
    """Validate one decoded message ``obj`` (``raw``: its bytes, kept by a rejection).

    :func:`parse` after decoding; ``POST /events`` calls it on each element of a JSON array.

    >>> check({"user": "u1", "item": "i1", "type": "buy"}, b"", 1.0, ParseConfig()).reason
    'bad_type'
    >>> check([1], b"[1]", 1.0, ParseConfig()).detail
    'expected a JSON object, got list'
    """
    if not isinstance(obj, dict):
        return Rejected("not_object", f"expected a JSON object, got {type(obj).__name__}", raw, source_ts)
    user = _id(obj, "user", config.max_id_bytes)
    if isinstance(user, tuple):
        return Rejected(user[0], user[1], raw, source_ts)
    if obj.get("type") == "impression":
        return _impression(obj, user, raw, source_ts, config)
    item = _id(obj, "item", config.max_id_bytes)
    if isinstance(item, tuple):
        return Rejected(item[0], item[1], raw, source_ts)
    kind = obj.get("type", "view")
    weight = config.weights.get(kind) if isinstance(kind, str) else None
    if weight is None:
        shown = repr(kind)[:64]
        return Rejected("bad_type", f"type {shown} is not one of {sorted(config.weights)}", raw, source_ts)
    value = obj.get("value")
    if value is not None:
        if _bad_number(value):
            return Rejected("bad_value", f"value must be a finite number, got {repr(value)[:64]}", raw, source_ts)
        value = float(value)
        if kind != "rating":
            if value <= 0:
                return Rejected("bad_value", f"value of a {kind} must be > 0, got {value}", raw, source_ts)
            weight *= min(value, 100.0)
    ts = _ts(obj, raw, source_ts)
    if isinstance(ts, Rejected):
        return ts
    return Event(user, item, kind, weight, ts, source_ts, value)


def _ts(obj: dict, raw: bytes, source_ts: float) -> float | Rejected:
    ts = obj.get("ts")
    if ts is None:
        return source_ts
    if _bad_number(ts) or not 0 < ts < TS_MAX:
        return Rejected(
            "bad_ts", f"ts must be seconds since the epoch before 2100, got {repr(ts)[:64]}", raw, source_ts
        )
    return float(ts)


def _impression(obj: dict, user: str, raw: bytes, source_ts: float, config: ParseConfig) -> Impression | Rejected:
    """``{"user", "type": "impression", "items": [...], "list": "user"|"similar"|"popular", "ts"?, "context"?}``.

    >>> _impression({"items": ["a", 7], "list": "user"}, "u", b"", 1.0, ParseConfig())
    Impression(user='u', items=('a', '7'), list_kind='user', ts=1.0, source_ts=1.0, context=None)
    >>> _impression({"items": [], "list": "user"}, "u", b"", 1.0, ParseConfig()).reason
    'bad_items'
    """
    shown = obj.get("items")
    if not isinstance(shown, list) or not 0 < len(shown) <= MAX_SHOWN:
        return Rejected("bad_items", f"items must be a list of 1 to {MAX_SHOWN} item ids", raw, source_ts)
    items = []
    for n, value in enumerate(shown):
        got = _id({"item": value}, "item", config.max_id_bytes)
        if isinstance(got, tuple):
            return Rejected("bad_items", f"items[{n}]: {got[1]}", raw, source_ts)
        items.append(got)
    kind = obj.get("list")
    if kind not in LISTS:
        return Rejected("bad_list", f"list {repr(kind)[:64]} is not one of {list(LISTS)}", raw, source_ts)
    context = obj.get("context")
    if context is not None and not isinstance(context, str):
        return Rejected("bad_value", f"context must be a string, got {type(context).__name__}", raw, source_ts)
    ts = _ts(obj, raw, source_ts)
    if isinstance(ts, Rejected):
        return ts
    return Impression(user, tuple(items), str(kind), ts, source_ts, context)
