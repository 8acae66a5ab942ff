"""End to end on the real services: Kafka -> freshrec run -> Redis."""

from __future__ import annotations

import orjson
from kafka import KafkaConsumer

from bench.services import free_port
from state.keys import item_key, popular_key, user_key
from state.redis_store import read_recs
from support import cli, wait_for


def send(producer, topic: str, docs: list) -> None:
    for doc in docs:
        raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        producer.send(topic, value=raw)
    producer.flush()


def history(n_users: int = 6, per_user: int = 8) -> list[dict]:
    """Two taste groups: even users like items a0..a29, odd users b0..b29."""
    docs = []
    for step in range(per_user):
        for u in range(n_users):
            group = "a" if u % 2 == 0 else "b"
            docs.append({"user": f"user{u}", "item": f"{group}{(step + 2 * u) % 30}", "type": "click"})
    return docs


def test_events_become_lists_in_redis(start_flow, producer, redis_client, names) -> None:
    flow = start_flow()
    send(producer, names["topic"], history())
    ns = names["namespace"]

    def all_lists():
        values = redis_client.mget([user_key(ns, f"user{u}") for u in range(6)])
        return values if all(values) else None

    wait_for(lambda: flow.metric("freshrec_events_total", {"outcome": "applied"}) == len(history()), timeout=30)
    values = wait_for(all_lists)
    for u, raw in enumerate(values):
        doc = orjson.loads(raw)
        assert set(doc) == {"items", "scores", "updated", "event_ts"}
        assert len(doc["items"]) == len(doc["scores"]) > 0
        assert doc["scores"] == sorted(doc["scores"], reverse=True)
        group = "a" if u % 2 == 0 else "b"
        assert doc["items"][0].startswith(group), (u, doc["items"])  # learned the taste
    popular = wait_for(lambda: redis_client.get(popular_key(ns)))
    assert orjson.loads(popular)["items"]
    assert wait_for(lambda: redis_client.get(item_key(ns, "a1")))
    assert flow.metric("freshrec_events_total", {"outcome": "applied"}) == len(history())
    assert flow.metric("freshrec_freshness_seconds_count") >= len(history())


def test_list_changes_after_new_events(start_flow, producer, redis_client, names) -> None:
    flow = start_flow()
    send(producer, names["topic"], history())
    key = user_key(names["namespace"], "user0")
    # every event's list written (its freshness observed), not just the events applied
    wait_for(lambda: flow.metric("freshrec_freshness_seconds_count") >= len(history()), timeout=30)
    before = orjson.loads(redis_client.get(key))
    taken = before["items"][:3]
    send(producer, names["topic"], [{"user": "user0", "item": item, "type": "purchase"} for item in taken])
    after = wait_for(
        lambda: (d := orjson.loads(redis_client.get(key)))["event_ts"] > before["event_ts"] and d, timeout=20
    )
    assert not set(taken) & set(after["items"]), "items the user just interacted with must leave the list"
    assert after["items"] != before["items"]


def test_invalid_messages_go_to_the_dead_letter_topic(start_flow, producer, services, names) -> None:
    flow = start_flow()
    good = [{"user": f"u{i}", "item": f"i{i % 3}"} for i in range(20)]
    bad = {
        b"not json at all": "not_json",
        b'{"user": "x"}': "missing_item",
        b'{"user": "x", "item": "y", "type": "teleport"}': "bad_type",
        b"\xff\xfe\x00": "not_utf8",
        b"[1, 2]": "not_object",
        b'{"user": "x", "item": "y", "ts": 1700000000000}': "bad_ts",
        b'{"user": "x", "type": "impression", "items": []}': "bad_items",
        b'{"user": "x", "type": "impression", "items": ["y"], "list": "search"}': "bad_list",
    }
    mixed: list = []
    for i, doc in enumerate(good):
        mixed.append(doc)
        if i < len(bad):
            mixed.append(list(bad)[i])
    send(producer, names["topic"], mixed)
    wait_for(lambda: flow.metric("freshrec_events_total") == len(mixed), timeout=30)
    assert flow.metric("freshrec_events_total", {"outcome": "applied"}) == len(good)
    for reason in bad.values():
        assert flow.metric("freshrec_events_total", {"outcome": "rejected", "reason": reason}) == 1, reason

    consumer = KafkaConsumer(
        names["topic"] + ".dlq",
        bootstrap_servers=services["FRESHREC_KAFKA"],
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    got = {}
    for msg in consumer:
        headers = dict(msg.headers)
        got[msg.value] = headers["reason_code"].decode()
        assert headers["reason"]
        if len(got) == len(bad):
            break
    consumer.close()
    assert got == bad


def test_recs_for_unknown_user_is_the_popular_list(start_flow, producer, redis_client, services, names) -> None:
    start_flow()
    send(producer, names["topic"], history())
    ns = names["namespace"]
    wait_for(lambda: redis_client.get(popular_key(ns)), timeout=30)
    out = cli("recs", "never-seen", "--k", "5", "--namespace", ns, env=services)
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout)
    assert doc["source"] == "popular" and 0 < len(doc["items"]) <= 5
    assert doc["items"] == read_recs(redis_client, "never-seen", ns, k=5)["items"]
    known = orjson.loads(cli("recs", "user1", "--namespace", ns, env=services).stdout)
    assert known["source"] == "user"


def test_unreachable_services_fail_in_one_line(services) -> None:
    port = free_port()
    out = cli("run", "--redis-url", f"redis://127.0.0.1:{port}/0", "--metrics-port", "0", env=services)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port}" in out.stderr, out.stderr
    out = cli("run", "--kafka", f"127.0.0.1:{port}", "--metrics-port", "0", env=services)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
