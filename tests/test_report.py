"""``freshrec report``: attribution against a hand-computed log, the CLI, and a time range of a real topic."""

from __future__ import annotations

import orjson
import pytest

from flows.report import report
from operators.datasets import DataError, jsonl_records
from operators.kafka_io import ensure_topics
from support import cli, wait_for

# A log whose attribution is worked out by hand (window 1,800 s):
#   u1 sees a, b, c in their list at 1000, clicks b at 1100, buys b for 20 at 1200 -> user: click, purchase 20
#   u1 sees b again in similar items at 1300 and clicks it at 1400          -> similar: click (latest impression)
#   u1 puts c in the cart at 1700 (c shown in the user list at 1000)        -> user: cart
#   u2 sees a, d in the popular list at 1000, clicks d at 1500              -> popular: click
#   u2 clicks a at 2801, 1,801 s after it was shown                        -> too late, not credited
#   u2 views d at 1600                                                      -> a view is never credited
#   u3 clicks a at 1500, never shown to u3                                  -> not credited
#   u4 clicks e at 900 and sees e in the user list only at 1000             -> before the impression: not credited
LOG = [
    {"user": "u1", "type": "impression", "items": ["a", "b", "c"], "list": "user", "ts": 1000},
    {"user": "u2", "type": "impression", "items": ["a", "d"], "list": "popular", "ts": 1000},
    {"user": "u4", "type": "impression", "items": ["e"], "list": "user", "ts": 1000},
    {"user": "u4", "item": "e", "type": "click", "ts": 900},
    {"user": "u1", "item": "b", "type": "click", "ts": 1100},
    {"user": "u1", "item": "b", "type": "purchase", "value": 20, "ts": 1200},
    {"user": "u1", "type": "impression", "items": ["b"], "list": "similar", "ts": 1300},
    {"user": "u1", "item": "b", "type": "click", "ts": 1400},
    {"user": "u2", "item": "d", "type": "click", "ts": 1500},
    {"user": "u3", "item": "a", "type": "click", "ts": 1500},
    {"user": "u2", "item": "d", "type": "view", "ts": 1600},
    {"user": "u1", "item": "c", "type": "cart", "ts": 1700},
    {"user": "u2", "item": "a", "type": "click", "ts": 2801},
]


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in LOG) + b"\n")
    return path


def test_attribution_matches_the_hand_computed_log(log):
    doc = report(jsonl_records(str(log)), by=("list",))
    rows = {r["list"]: r for r in doc["rows"]}
    assert {k: (r["impressions"], r["clicks"], r["carts"], r["purchases"]) for k, r in rows.items()} == {
        "popular": (2, 1, 0, 0),
        "similar": (1, 1, 0, 0),
        "user": (4, 1, 1, 1),
    }
    assert (rows["user"]["ctr"], rows["user"]["conversion"], rows["user"]["value_per_1000"]) == (0.25, 0.25, 5000.0)
    assert (rows["popular"]["ctr"], rows["similar"]["ctr"]) == (0.5, 1.0)
    # Coverage: of the 5 items the log names, the user lists showed a, b, c, e.
    assert (rows["user"]["coverage"], rows["popular"]["coverage"], rows["similar"]["coverage"]) == (0.8, 0.4, 0.2)
    total = doc["total"]
    assert (total["impressions"], total["clicks"], total["ctr"], total["coverage"]) == (7, 3, round(3 / 7, 6), 1.0)
    # A shorter window credits fewer: the click on d, 500 s after it was shown, no longer counts.
    assert report(jsonl_records(str(log)), by=(), window_s=400)["total"]["clicks"] == 2


def test_the_cli_groups_by_day_and_category_and_draws_a_plot(log, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item,title,category\na,A,books\nb,B,books\nc,C,toys\nd,D,toys\ne,E,toys\n")
    png = tmp_path / "report.png"
    r = cli(
        "report", "--data", str(log), "--by", "day,list,category", "--items", str(items), "--json", "--plot", str(png)
    )
    assert r.returncode == 0, r.stderr
    doc = orjson.loads(r.stdout.strip().splitlines()[-1])
    books = next(x for x in doc["rows"] if (x["list"], x["category"]) == ("user", "books"))
    assert (books["day"], books["impressions"], books["clicks"], books["purchases"]) == ("1970-01-01", 2, 1, 1)
    assert doc["catalogue_items"] == 5 and png.stat().st_size > 5_000
    assert "impressions" in r.stdout.splitlines()[0]
    bad = cli("report", "--data", str(log), "--by", "week")
    assert bad.returncode == 2 and bad.stderr.strip() == "freshrec: --by 'week': group by any of day, list, category"


def test_a_bad_log_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(orjson.dumps(LOG[0]) + b'\n{"user": "u1", "type": "impression", "list": "user", "ts": 5}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: items must be a list of 1 to 100 item ids"):
        report(jsonl_records(str(path)))


def test_a_time_range_of_a_real_topic(producer, services, names):
    topic = names["topic"]
    ensure_topics(services["FRESHREC_KAFKA"], {topic: 2})
    day = 1_796_083_200  # 2026-12-01 00:00 UTC
    for n, rec in enumerate(LOG):
        when = day + rec["ts"]  # the log's times, on that day, as Kafka timestamps too
        producer.send(
            topic, key=rec["user"].encode(), value=orjson.dumps({**rec, "ts": when}), timestamp_ms=when * 1000
        )
        if n == 0:
            producer.send(topic, value=b"not json", timestamp_ms=when * 1000)  # skipped, like the flow's DLQ does
    producer.flush()
    everything = cli("report", "--kafka", services["FRESHREC_KAFKA"], "--topic", topic, "--json")
    assert everything.returncode == 0, everything.stderr
    assert orjson.loads(everything.stdout.splitlines()[-1])["total"]["clicks"] == 3
    # From 1250 on, only the similar-items impression (1300) is in range, so only its click (1400) is credited.
    late = cli("report", "--kafka", services["FRESHREC_KAFKA"], "--topic", topic, "--since", str(day + 1250), "--json")
    doc = orjson.loads(late.stdout.splitlines()[-1])
    assert (doc["total"]["impressions"], doc["total"]["clicks"], doc["total"]["carts"]) == (1, 1, 0)


def test_simulated_shoppers_click_freshrec_lists_more_than_the_popular_list(start_flow, services, names):
    flow = start_flow()
    env = {"FRESHREC_KAFKA": services["FRESHREC_KAFKA"], "FRESHREC_REDIS_URL": services["FRESHREC_REDIS_URL"]}
    where = ["--topic", names["topic"], "--namespace", names["namespace"]]
    sim = ["--synthetic", "--shoppers", "5", "--users", "2000", "--items", "1000", "--rate", "3000", "--limit", "15000"]
    r = cli("replay", *sim, *where, env=env)
    assert r.returncode == 0 and "impressions" in r.stdout, r.stdout + r.stderr
    wait_for(lambda: flow.metric("freshrec_impressions_total") > 0, timeout=30)
    got = cli("report", "--kafka", services["FRESHREC_KAFKA"], "--topic", names["topic"], "--json")
    rows = {row["list"]: row for row in orjson.loads(got.stdout.splitlines()[-1])["rows"]}
    assert rows["user"]["impressions"] > 1000 and rows["popular"]["impressions"] > 1000
    assert rows["user"]["ctr"] > 1.5 * rows["popular"]["ctr"], rows
