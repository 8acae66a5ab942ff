"""The event schema: what is accepted, what is rejected and why."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.event import LISTS, Event, Impression
from operators.parse import REASONS, ParseConfig, Rejected, parse

CFG = ParseConfig()
TS = 1_700_000_000.0


def test_valid_event_with_defaults() -> None:
    ev = parse(b'{"user": "alice", "item": 42}', TS, CFG)
    assert ev == Event("alice", "42", "view", 1.0, TS, TS, None)


def test_an_impression_is_parsed_and_needs_no_item() -> None:
    raw = b'{"user": 3, "type": "impression", "items": ["a", 9], "list": "similar", "context": "pdp", "ts": 7}'
    assert parse(raw, TS, CFG) == Impression("3", ("a", "9"), "similar", 7.0, TS, "pdp")


def test_weights_values_and_unknown_fields() -> None:
    ev = parse(b'{"user": 1, "item": "a", "type": "purchase", "value": 2, "ts": 5, "extra": [1]}', TS, CFG)
    assert isinstance(ev, Event)
    assert (ev.kind, ev.weight, ev.ts, ev.value) == ("purchase", 10.0, 5.0, 2.0)
    rating = parse(b'{"user": 1, "item": "a", "type": "rating", "value": 4.5}', TS, CFG)
    assert isinstance(rating, Event) and rating.weight == 1.0 and rating.value == 4.5


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not_utf8"),
        (b'{"user": "a", "item": "b"', "not_json"),
        (b"", "not_json"),
        (b'{"user": NaN, "item": "b"}', "not_json"),
        (b'{"user": "a", "item": "b", "value": Infinity}', "not_json"),
        (b"[" * 5000 + b"]" * 5000, "not_json"),
        (b"[1]", "not_object"),
        (b'"text"', "not_object"),
        (b'{"item": "b"}', "missing_user"),
        (b'{"user": null, "item": "b"}', "missing_user"),
        (b'{"user": "a"}', "missing_item"),
        (b'{"user": "", "item": "b"}', "bad_user"),
        (b'{"user": true, "item": "b"}', "bad_user"),
        (b'{"user": 1.5, "item": "b"}', "bad_user"),
        (b'{"user": {"id": 1}, "item": "b"}', "bad_user"),
        (b'{"user": "a", "item": ["b"]}', "bad_item"),
        (b'{"user": "a", "item": "' + b"x" * 257 + b'"}', "bad_item"),
        (b'{"user": "a", "item": "b", "type": "teleport"}', "bad_type"),
        (b'{"user": "a", "item": "b", "type": 3}', "bad_type"),
        (b'{"user": "a", "item": "b", "value": "5"}', "bad_value"),
        (b'{"user": "a", "item": "b", "value": -1}', "bad_value"),
        (b'{"user": "a", "item": "b", "value": true}', "bad_value"),
        (b'{"user": "a", "item": "b", "ts": "yesterday"}', "bad_ts"),
        (b'{"user": "a", "item": "b", "ts": -1}', "bad_ts"),
        (b'{"user": "a", "item": "b", "ts": 1700000000000}', "bad_ts"),
        (b'{"user": "a", "item": "b", "ts": 1e400}', "not_json"),
        (b'{"user": "a", "type": "impression", "list": "user"}', "bad_items"),
        (b'{"user": "a", "type": "impression", "items": "b", "list": "user"}', "bad_items"),
        (b'{"user": "a", "type": "impression", "items": ["b", ""], "list": "user"}', "bad_items"),
        (orjson.dumps({"user": "a", "type": "impression", "items": list(range(101)), "list": "user"}), "bad_items"),
        (b'{"user": "a", "type": "impression", "items": ["b"]}', "bad_list"),
        (b'{"user": "a", "type": "impression", "items": ["b"], "list": "search"}', "bad_list"),
        (b'{"user": "a", "type": "impression", "items": ["b"], "list": "user", "context": 3}', "bad_value"),
        (b'{"user": "a", "type": "impression", "items": ["b"], "list": "user", "ts": "now"}', "bad_ts"),
        (b'{"type": "impression", "items": ["b"], "list": "user"}', "missing_user"),
    ],
)
def test_rejections(raw: bytes, reason: str) -> None:
    got = parse(raw, TS, CFG)
    assert isinstance(got, Rejected), got
    assert got.reason == reason and got.raw == raw and got.detail


def test_size_limits_are_configurable() -> None:
    small = ParseConfig(max_message_bytes=40, max_id_bytes=4)
    big = b'{"user": "a", "item": "b", "pad": "' + b"x" * 40 + b'"}'
    assert parse(big, TS, small).reason == "too_large"  # type: ignore[union-attr]
    assert parse(b'{"user": "abcde", "item": "b"}', TS, small).reason == "bad_user"  # type: ignore[union-attr]
    # 2 characters but 6 UTF-8 bytes: the limit is in bytes.
    assert parse('{"user": "\u20ac\u20ac", "item": "b"}'.encode(), TS, small).reason == "bad_user"  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    got = parse(raw, TS, CFG)
    assert isinstance(got, (Event, Rejected))
    if isinstance(got, Rejected):
        assert got.reason in REASONS and got.raw == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "user": json_values | st.text(max_size=300),
        "item": json_values | st.integers(),
        "type": st.sampled_from(["view", "click", "cart", "purchase", "rating", "bogus", ""]) | json_values,
        "value": json_values,
        "ts": json_values | st.floats(allow_nan=True, allow_infinity=True),
    },
)


@settings(max_examples=400, deadline=None)
@given(near_valid, st.integers(min_value=0, max_value=3))
def test_near_valid_json(doc: dict, cut: int) -> None:
    try:
        raw = orjson.dumps(doc)
    except (orjson.JSONEncodeError, TypeError):
        raw = repr(doc).encode()
    if cut:
        raw = raw[:-cut]  # truncated JSON
    got = parse(raw, TS, CFG)
    if isinstance(got, Event):
        assert got.user and got.item and math.isfinite(got.ts) and got.weight > 0
        assert len(got.user.encode()) <= CFG.max_id_bytes
    elif isinstance(got, Impression):
        assert got.items and got.list_kind in LISTS and math.isfinite(got.ts)
    else:
        assert got.reason in REASONS
