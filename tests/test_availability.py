"""The catalogue in the flow, on the real services: unavailable and deleted items leave every list in Redis."""

from __future__ import annotations

import collections
import time

import orjson
from kafka import KafkaConsumer
from test_pipeline import history, send

from state.keys import item_key, popular_key, user_key
from state.metrics import scrape
from support import wait_for

REFRESH_S = 0.5  # the test flows' --refresh-s (tests/support.py): an item must leave every list within it + 1 s


def _lists(redis_client, ns: str) -> dict[str, list[str]]:
    """Every list of the test's users and items, and the popular list, by key."""
    docs = history()
    keys = [user_key(ns, u) for u in sorted({d["user"] for d in docs})]
    keys += [item_key(ns, i) for i in sorted({d["item"] for d in docs})] + [popular_key(ns)]
    return {k: orjson.loads(v)["items"] for k, v in zip(keys, redis_client.mget(keys)) if v is not None}


def _holding(redis_client, ns: str, item: str) -> list[str]:
    return [k for k, items in _lists(redis_client, ns).items() if item in items]


def test_unavailable_and_deleted_items_leave_every_list(start_flow, producer, redis_client, names, services) -> None:
    items_topic = names["topic"] + ".items"
    flow = start_flow("--items-topic", items_topic)
    ns = names["namespace"]
    send(producer, names["topic"], history())
    wait_for(lambda: flow.metric("freshrec_events_total", {"outcome": "applied"}) == len(history()), timeout=30)
    wait_for(lambda: len(_lists(redis_client, ns)) > 6 + 20, timeout=30)  # user, similar-items and popular lists

    # The two items most often listed: one becomes unavailable, the other is deleted (a tombstone).
    counts = collections.Counter(i for items in _lists(redis_client, ns).values() for i in items)
    (gone, n_gone), (deleted, n_deleted) = counts.most_common(2)
    assert n_gone > 3 and n_deleted > 3
    producer.send(items_topic, key=gone.encode(), value=orjson.dumps({"item": gone, "available": False}))
    producer.send(items_topic, key=deleted.encode(), value=None)
    producer.flush()
    sent = time.monotonic()
    assert wait_for(lambda: not _holding(redis_client, ns, gone) and not _holding(redis_client, ns, deleted), 10)
    took = time.monotonic() - sent
    print(f"the items left every list {took:.2f} s after the catalogue messages were sent")
    assert took <= REFRESH_S + 1.0, f"the items left the lists after {took:.2f} s"
    assert flow.metric("freshrec_list_rewrites_total") > 0
    assert flow.metric("freshrec_unavailable_items") == 2

    # Lists ranked from now on leave them out too, although the users' tastes point at them.
    users = sorted({d["user"] for d in history()})
    before = {u: orjson.loads(redis_client.get(user_key(ns, u)))["event_ts"] for u in users}
    send(producer, names["topic"], [{"user": u, "item": "a1", "type": "view"} for u in users])

    def ranked_again() -> bool:
        now = [orjson.loads(raw)["event_ts"] for raw in redis_client.mget([user_key(ns, u) for u in users])]
        return all(ts > before[u] for u, ts in zip(users, now))

    wait_for(ranked_again, timeout=20)
    assert not _holding(redis_client, ns, gone) and not _holding(redis_client, ns, deleted)

    # Available again: lists may hold it once more.
    producer.send(items_topic, key=gone.encode(), value=orjson.dumps({"item": gone, "available": True}))
    producer.flush()
    wait_for(lambda: flow.metric("freshrec_unavailable_items") == 1, timeout=10)
    send(producer, names["topic"], [{"user": u, "item": "b2", "type": "view"} for u in users])
    assert wait_for(lambda: _holding(redis_client, ns, gone), timeout=20)


def test_bad_catalogue_messages_go_to_the_items_dead_letter_topic(start_flow, producer, services, names) -> None:
    items_topic = names["topic"] + ".items"
    flow = start_flow("--items-topic", items_topic)
    wait_for(lambda: scrape(flow.metrics_port), timeout=30)  # up: the items topic exists
    bad = {
        (b"x", b"not json"): "not_json",
        (b"x", b'{"item": "y"}'): "bad_item",
        (b"z", b'{"item": "z", "available": "no"}'): "bad_value",
    }
    for key, value in bad:
        producer.send(items_topic, key=key, value=value)
    producer.send(items_topic, key=b"ok", value=b'{"item": "ok", "category": "shoes"}')
    producer.flush()
    wait_for(lambda: flow.metric("freshrec_catalogue_messages_total", {"outcome": "rejected"}) == len(bad), timeout=30)
    assert flow.metric("freshrec_catalogue_messages_total", {"outcome": "applied"}) == 1
    consumer = KafkaConsumer(
        items_topic + ".dlq", bootstrap_servers=services["FRESHREC_KAFKA"], auto_offset_reset="earliest"
    )
    got: dict[bytes, str] = {}
    deadline = time.monotonic() + 20
    while len(got) < len(bad) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                got[r.value] = dict(r.headers)["reason_code"].decode()
    consumer.close()
    assert got == {value: reason for (_, value), reason in bad.items()}


def test_a_new_item_with_tags_reaches_the_lists_of_users_whose_profile_matches(
    start_flow, producer, redis_client, names
) -> None:
    # The catalogue describes the two taste groups' items (a*: alpha/red, b*: beta/blue); then a new
    # alpha item is listed that nobody has interacted with. Each user's next event ranks them again:
    # the even (alpha) users' lists must hold it, ahead of where the odd users' lists put it, if at all.
    items_topic = names["topic"] + ".items"
    flow = start_flow("--items-topic", items_topic, "--k", "30")
    ns = names["namespace"]
    for group, category, tag in (("a", "alpha", "red"), ("b", "beta", "blue")):
        for j in range(30):
            item = f"{group}{j}"
            doc = {"item": item, "title": f"{category.title()} {j}", "category": category, "tags": [tag]}
            producer.send(items_topic, key=item.encode(), value=orjson.dumps(doc))
    send(producer, names["topic"], history())
    wait_for(lambda: flow.metric("freshrec_events_total", {"outcome": "applied"}) == len(history()), timeout=30)
    new = {"item": "a-new", "title": "Alpha premiere", "category": "alpha", "tags": ["red"]}
    producer.send(items_topic, key=b"a-new", value=orjson.dumps(new))
    producer.flush()
    wait_for(lambda: flow.metric("freshrec_catalogue_messages_total", {"outcome": "applied"}) == 61, timeout=30)
    wait_for(lambda: flow.metric("freshrec_items") >= 61, timeout=30)  # the learner knows it before any event
    users = [f"user{u}" for u in range(6)]
    before = {u: orjson.loads(redis_client.get(user_key(ns, u)))["event_ts"] for u in users}
    nudge = [{"user": u, "item": f"{'ab'[i % 2]}0", "type": "view"} for i, u in enumerate(users)]
    send(producer, names["topic"], nudge)

    def lists() -> dict[str, list[str]] | None:
        docs = {u: orjson.loads(redis_client.get(user_key(ns, u))) for u in users}
        fresh = all(d["event_ts"] > before[u] for u, d in docs.items())
        return {u: d["items"] for u, d in docs.items()} if fresh else None

    ranked = wait_for(lists, timeout=20)
    assert ranked is not None
    position = {u: items.index("a-new") if "a-new" in items else len(items) for u, items in ranked.items()}
    print("position of the new item:", position)
    alpha, beta = [position[u] for u in users[0::2]], [position[u] for u in users[1::2]]
    assert all(p < 30 for p in alpha), ranked
    assert max(alpha) < min(beta), position
    similar = wait_for(lambda: redis_client.get(item_key(ns, "a-new")), timeout=10)  # content neighbours
    assert similar is not None
    top = orjson.loads(similar)["items"][:10]
    assert sum(x.startswith("a") for x in top) >= 8, top
