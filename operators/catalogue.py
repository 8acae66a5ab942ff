"""The item catalogue: the compacted topic ``freshrec.items``, its schema, a live copy, and a loader.

One message per item, key = item id, JSON value::

    {"item": "sku-1", "title": "...", "category": "shoes", "tags": ["red", "sale"],
     "available": true, "attributes": {...}}

Only ``item`` is required (``available`` defaults to true). A tombstone
(null value) or ``"available": false`` takes the item out of every answer.
The topic is compacted, so reading it from the beginning gives the
current catalogue. :func:`parse_item` validates one message;
:func:`item_changes` is what the rankers' feed makes of it
(``operators/feeds.py``: unavailable items leave the lists, bad messages
go to ``freshrec.items.dlq``);
:class:`Catalogue` keeps the items in memory (the HTTP API's copy follows
the topic: ``operators.feeds.CatalogueTail``), and :func:`load` produces
a CSV or JSONL file (MovieLens ``movies.csv`` as it is: ``genres`` become
tags, the first genre the category).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from models.content import features
from models.ids import item_key
from models.rules import ItemFacts
from operators.kafka_io import ServiceError, client_config, ensure_topics
from operators.parse import Rejected

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "freshrec.items"
COMPACTED = {"cleanup.policy": "compact"}
MAX_TEXT = 1024
MAX_TAGS = 64


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What the catalogue says of one item; ``deleted`` for a tombstone."""

    item: str
    title: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    available: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False


def _text(value: object, name: str, limit: int = MAX_TEXT) -> str | Rejected:
    """``value`` as text (a missing one is ""), or the rejection of its field."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return Rejected("bad_value", f"{name} must be a string, got {type(value).__name__}", b"")
    text = str(value)
    if len(text) > limit:
        return Rejected("bad_value", f"{name} is longer than {limit} characters", b"")
    return text


def parse_item(key: bytes | None, value: bytes | None, max_bytes: int = 65536) -> ItemInfo | Rejected:
    """Validate one catalogue message (a rejection's reason code is one of ``operators.parse.REASONS``).

    >>> parse_item(b"sku-1", b'{"item": "sku-1", "category": "shoes", "tags": ["red"]}')
    ItemInfo(item='sku-1', title='', category='shoes', tags=('red',), available=True, attributes={}, deleted=False)
    >>> parse_item(b"sku-1", None).deleted
    True
    >>> parse_item(b"sku-1", b'{"item": "sku-2"}').detail
    "the key 'sku-1' and the item 'sku-2' differ"
    >>> parse_item(None, b'{"item": "a", "available": "no"}').detail
    "available must be true or false, got 'no'"
    """
    if value is None:
        if not key:
            return Rejected("missing_item", "a tombstone needs the item id as its key", b"")
        return ItemInfo(key.decode("utf-8", "replace"), available=False, deleted=True)
    obj = json_object(value, max_bytes)
    if isinstance(obj, Rejected):
        return obj
    got = _item(key, obj)
    return got if isinstance(got, ItemInfo) else Rejected(got.reason, got.detail, value)


def json_object(value: bytes, max_bytes: int = 65536) -> dict[str, Any] | Rejected:
    """The JSON object a side-topic message holds (catalogue, user attributes), or why not."""
    if len(value) > max_bytes:
        return Rejected("too_large", f"message is {len(value)} bytes, limit {max_bytes}", value)
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as ex:
        return Rejected("not_json", f"not_json: {str(ex)[:200]}", value)
    if not isinstance(obj, dict):
        return Rejected("not_object", f"expected a JSON object, got {type(obj).__name__}", value)
    return obj


def _item(key: bytes | None, obj: dict[str, Any]) -> ItemInfo | Rejected:
    item = _text(obj.get("item"), "item", 256)
    if isinstance(item, Rejected):
        return Rejected("bad_item", item.detail, b"")
    keyed = key.decode("utf-8", "replace") if key else ""
    if not item and not keyed:
        return Rejected("missing_item", "item is missing and the message has no key", b"")
    if item and keyed and keyed != item:
        return Rejected("bad_item", f"the key {keyed!r} and the item {item!r} differ", b"")
    tags = obj.get("tags") or []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        return Rejected("bad_value", f"tags must be a list of at most {MAX_TAGS} strings", b"")
    available = obj.get("available", True)
    if not isinstance(available, bool):
        return Rejected("bad_value", f"available must be true or false, got {repr(available)[:64]}", b"")
    attributes = obj.get("attributes") or {}
    if not isinstance(attributes, dict):
        return Rejected("bad_value", "attributes must be an object", b"")
    texts = [_text(obj.get("title"), "title"), _text(obj.get("category"), "category", 256)]
    texts += [_text(t, "a tag", 256) for t in tags]
    bad = next((t for t in texts if isinstance(t, Rejected)), None)
    if bad is not None:
        return bad
    title, category, *tag_texts = (str(t) for t in texts)
    return ItemInfo(item or keyed, title, category, tuple(tag_texts), available, attributes)


class Catalogue:
    """The items, in memory: the latest message of each, tombstones applied."""

    def __init__(self) -> None:
        self._items: dict[str, ItemInfo] = {}

    def __len__(self) -> int:
        return len(self._items)

    def apply(self, info: ItemInfo) -> None:
        # A tombstone is kept (as unavailable): a deleted item must leave answers, not become unknown.
        self._items[info.item] = info

    def get(self, item: str) -> ItemInfo | None:
        return self._items.get(item)

    def keep(self, category: str = "") -> Callable[[str], bool] | None:
        """A filter for answers: drops unavailable items and, given ``category``, items of another or none.

        An item the catalogue does not know is kept unless a category is asked for.

        >>> c = Catalogue()
        >>> for key, msg in ((b"a", b'{"category": "x"}'), (b"b", b'{"available": false}'), (b"c", None)):
        ...     c.apply(parse_item(key, msg))
        >>> [i for i in "abcd" if c.keep()(i)], [i for i in "abcd" if c.keep("x")(i)]
        (['a', 'd'], ['a'])
        """
        items = self._items
        if not items and not category:
            return None
        if category:
            return lambda i: (info := items.get(i)) is not None and info.available and info.category == category
        return lambda i: (info := items.get(i)) is None or info.available


class ItemMessage(NamedTuple):
    """One record of a side topic (catalogue, user attributes); ``replayed``: dead-lettered before a restart."""

    key: bytes | None
    value: bytes | None
    replayed: bool
    ts: float  # the record's Kafka timestamp, seconds


class Availability(NamedTuple):
    """Catalogue changes for the learner and the rankers, by item key (``models.ids.item_key``).

    ``blocked`` are now unavailable, ``allowed`` available (again);
    ``names`` are the ids of ``allowed``, which the learner makes known
    before their first event. ``keys`` and ``features`` are the content
    features (``models.content.features``) of every item of the batch.
    """

    blocked: np.ndarray
    allowed: np.ndarray
    names: list[str]
    facts: dict[str, ItemFacts]  # what rules need of each item in the message (models/rules.py)
    keys: np.ndarray
    features: list[tuple[np.ndarray, np.ndarray]]


def item_changes(parsed: list[tuple[ItemMessage, ItemInfo]]) -> Availability | None:
    """What the learner and the rankers do with a batch of valid catalogue messages; the last message of an item wins.

    A tombstone or ``"available": false`` blocks the item.
    """
    latest: dict[str, ItemInfo] = {}
    facts: dict[str, ItemFacts] = {}
    for m, got in parsed:
        latest.pop(got.item, None)
        latest[got.item] = got
        facts[got.item] = ItemFacts(got.category, frozenset(got.tags), m.ts)
    if not latest:
        return None
    names = [i for i, got in latest.items() if got.available]
    blocked = np.array([item_key(i) for i, got in latest.items() if not got.available], dtype=np.int64)
    keys = np.array([item_key(i) for i in latest], dtype=np.int64)
    rows = [features(got.title, got.category, got.tags) for got in latest.values()]
    return Availability(blocked, np.array([item_key(i) for i in names], dtype=np.int64), names, facts, keys, rows)


def read_file(path: str) -> Iterator[dict[str, Any] | str]:
    """Catalogue rows of a CSV (header row) or JSONL file: dicts, or the text of a line that is not an object.

    CSV columns: ``item`` (or MovieLens ``movieId``), ``title``, ``category``,
    ``tags`` (``|``-separated; MovieLens ``genres``), ``available``.
    """
    p = Path(path)
    with p.open(newline="", encoding="utf-8") as f:
        if p.suffix in (".jsonl", ".json", ".ndjson"):
            for line in f:
                if line.strip():
                    try:
                        obj = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        obj = line.strip()
                    yield obj if isinstance(obj, dict) else line.strip()
            return
        for row in csv.DictReader(f):
            tags = row.get("tags") or row.get("genres") or ""
            tag_list = [t for t in tags.split("|") if t and t != "(no genres listed)"]
            doc: dict[str, Any] = {"item": row.get("item") or row.get("movieId") or ""}
            if row.get("title"):
                doc["title"] = row["title"]
            category = row.get("category") or (tag_list[0] if tag_list else "")
            if category:
                doc["category"] = category
            if tag_list:
                doc["tags"] = tag_list
            if row.get("available"):
                doc["available"] = row["available"].strip().lower() not in ("0", "false", "no")
            yield doc


def read_items(path: str) -> Iterator[tuple[int, bytes, ItemInfo | Rejected]]:
    """Each row of a catalogue file: its number, its message value, and the item (or why not)."""
    for line, row in enumerate(read_file(path), 1):
        value = orjson.dumps(row) if isinstance(row, dict) else row.encode()
        yield line, value, parse_item(None, value)


def load(path: str, brokers: str, topic: str, extra: Mapping[str, Any] | None = None) -> tuple[int, list[str]]:
    """Produce the catalogue file at ``path`` to ``topic`` (created compacted); (items sent, problems)."""
    ensure_topics(brokers, {topic: 1}, extra, configs={topic: COMPACTED})
    try:
        producer = KafkaProducer(**client_config(brokers, extra or {}), acks="all", linger_ms=5)
    except KafkaError as ex:
        raise ServiceError(f"cannot reach Kafka at {brokers}: {ex}") from ex
    sent, problems = 0, []
    started = time.monotonic()
    try:
        for line, value, got in read_items(path):
            if isinstance(got, Rejected):
                problems.append(f"{path} row {line}: {got.detail}")
                continue
            producer.send(topic, key=got.item.encode(), value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    log.info("catalogue: %d items from %s to %s in %.1f s", sent, path, topic, time.monotonic() - started)
    return sent, problems
