"""Log readers (CSV with ratings or event types, seconds or milliseconds, ties) and the synthetic session logs."""

from __future__ import annotations

from collections import Counter

import pytest

from operators.datasets import DataError, read_log, synthetic_log
from operators.parse import DEFAULT_WEIGHTS
from operators.sessions import CLICKS, SHOP, SessionConfig, session_events


def test_a_typed_csv_with_a_header_in_any_column_order_and_milliseconds(tmp_path) -> None:
    f = tmp_path / "shop.csv"
    f.write_text(
        "Timestamp,visitorid,event,itemid\n"
        "1700000002000,v1,cart,p9\n"
        "1700000001000,v1,view,p9\n"
        "1700000003500,v2,purchase,p9\n"
    )
    log = read_log(f)
    assert [(e.user, e.item, e.kind, e.ts) for e in log.events] == [
        ("v1", "p9", "view", 1700000001.0),
        ("v1", "p9", "cart", 1700000002.0),
        ("v2", "p9", "purchase", 1700000003.5),
    ]
    assert [e.weight for e in log.events] == [DEFAULT_WEIGHTS[k] for k in ("view", "cart", "purchase")]
    assert log.ms_rows == 3
    assert "milliseconds (detected)" in log.describe()


def test_a_headerless_csv_takes_a_word_in_the_third_column_for_the_type(tmp_path) -> None:
    f = tmp_path / "log.csv"
    f.write_text("u1,i1,purchase,1700000000\nu1,i2,4.5,1700000001\n")
    first, second = read_log(f).events
    assert (first.kind, first.weight, first.value) == ("purchase", DEFAULT_WEIGHTS["purchase"], None)
    assert (second.kind, second.weight, second.value) == ("rating", 1.0, 4.5)
    assert read_log(f).ms_rows == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,item,type,ts\nu1,i1,wishlist,1700000000\n", r"log.csv:2: type 'wishlist' is not one of cart, click"),
        ("user,sku,ts\nu1,i1,1700000000\n", r"log.csv:1: header 'user,sku,ts' names no item column \(one of item,"),
        ("user,item,ts\nu1,i1,soon\n", r"log.csv:2: could not convert string to float: 'soon'"),
    ],
)
def test_a_bad_csv_names_the_line_and_the_value(tmp_path, text: str, message: str) -> None:
    f = tmp_path / "log.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=message):
        read_log(f)


def test_equal_timestamps_are_ordered_by_a_seeded_shuffle_not_by_the_file(tmp_path) -> None:
    f = tmp_path / "ties.csv"
    f.write_text("".join(f"u1,i{j},1700000000\n" for j in range(50)) + "u1,last,1700000001\n")
    orders = {seed: [e.item for e in read_log(f, seed=seed).events] for seed in (0, 1)}
    assert orders[0] == [e.item for e in read_log(f, seed=0).events]  # repeatable
    assert orders[0] != orders[1]
    assert orders[0][:50] != [f"i{j}" for j in range(50)]  # not the file's order
    assert sorted(orders[0][:50]) == sorted(f"i{j}" for j in range(50)) and orders[0][-1] == "last"
    assert read_log(f).ties == 49


def test_the_shop_log_has_sessions_with_carts_and_purchases_of_viewed_items() -> None:
    cfg = SessionConfig(users=100, items=400, categories=8, events=5000, seed=3)
    log = session_events(cfg)
    assert log == session_events(cfg)  # deterministic
    viewed = set()
    for e in log:
        if e.kind == "view":
            viewed.add((e.user, e.item))
        else:  # a cart or a purchase follows a view of the same item by the same user
            assert (e.user, e.item) in viewed
    kinds = Counter(e.kind for e in log)
    assert kinds["view"] > kinds["cart"] > kinds["purchase"] > 0
    assert len({e.user for e in log}) <= cfg.users


def test_the_click_log_makes_every_session_a_user_of_clicks_only() -> None:
    cfg = SessionConfig(users=100, items=400, categories=8, events=5000, seed=3, sessions_as_users=True, typed=False)
    log = session_events(cfg)
    assert {e.kind for e in log} == {"click"}
    sessions = Counter(e.user for e in log)
    assert len(sessions) > cfg.users  # users come back, each visit is its own session
    assert 3 < sum(sessions.values()) / len(sessions) < 12  # short sessions
    assert CLICKS.sessions_as_users and not CLICKS.typed and SHOP.typed


def test_an_unknown_synthetic_log_is_named() -> None:
    with pytest.raises(DataError, match="unknown synthetic log 'nope'; choose one of stream, shop, clicks"):
        synthetic_log("nope")
