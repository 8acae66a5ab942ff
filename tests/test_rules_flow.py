"""Business rules in the flow, on the real services: segments from freshrec.users, items from the catalogue."""

from __future__ import annotations

import orjson
from test_pipeline import history, send

from state.keys import user_key
from support import wait_for

RULES = """
[[rule]]
name = "no A for kids"
kind = "filter"
who = { segment = "kids" }
where = { category = "A" }

[[rule]]
name = "pick for France"
kind = "pin"
item = "b29"
position = 1
who = { country = "FR" }

[[rule]]
name = "variety"
kind = "diversity"
max = 2
top = 4
"""


def _items(redis_client, ns: str, user: str) -> list[str]:
    raw = redis_client.get(user_key(ns, user))
    return orjson.loads(raw)["items"] if raw else []


def test_rules_shape_the_lists_in_redis_and_a_bad_reload_keeps_them(
    start_flow, producer, redis_client, names, tmp_path
) -> None:
    topic, ns = names["topic"], names["namespace"]
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    items_topic, users_topic = f"{topic}.items", f"{topic}.users"
    flow = start_flow("--items-topic", items_topic, "--users-topic", users_topic, "--rules", str(rules))
    catalogue = [{"item": f"{g}{n}", "category": g.upper()} for g in "ab" for n in range(30)]
    for doc in catalogue:
        producer.send(items_topic, key=doc["item"].encode(), value=orjson.dumps(doc))
    producer.send(users_topic, key=b"user0", value=b'{"segment": "kids"}')
    producer.send(users_topic, key=b"user2", value=b'{"country": "FR"}')
    producer.flush()
    wait_for(lambda: flow.metric("freshrec_catalogue_messages_total", {"outcome": "applied"}) == 60, timeout=30)
    wait_for(lambda: flow.metric("freshrec_user_messages_total", {"outcome": "applied"}) == 2, timeout=30)
    assert flow.metric("freshrec_rules") == 3

    send(producer, topic, history())  # even users like a-items, odd users b-items
    wait_for(lambda: flow.metric("freshrec_freshness_seconds_count") >= len(history()), timeout=30)
    kids, france, other = (_items(redis_client, ns, u) for u in ("user0", "user2", "user4"))
    assert kids and not [i for i in kids if i.startswith("a")], kids  # filtered for the segment
    assert france[0] == "b29", france  # pinned for the country
    assert sum(i.startswith("a") for i in other[:4]) == 2, other  # at most 2 of a category in the top 4
    assert other[0].startswith("a")  # the user's taste still leads

    # A bad file: one log line, the rules in force stay.
    rules.write_text(RULES.replace('kind = "filter"', 'kind = "filtre"'))
    wait_for(lambda: flow.metric("freshrec_rule_reloads_total", {"outcome": "rejected"}) == 1, timeout=10)
    lines = [line for line in flow.output().splitlines() if "rules not reloaded" in line]
    assert len(lines) == 1 and "rule 'no A for kids' (#1): kind: must be one of" in lines[0], lines
    assert str(rules) in lines[0]
    before = orjson.loads(redis_client.get(user_key(ns, "user0")))["event_ts"]
    send(producer, topic, [{"user": "user0", "item": "a3", "type": "click"}])
    wait_for(lambda: orjson.loads(redis_client.get(user_key(ns, "user0")))["event_ts"] > before, timeout=20)
    assert not [i for i in _items(redis_client, ns, "user0") if i.startswith("a")]

    # A good change re-ranks the users it affects in the background: their lists obey it with no new event.
    kids_rule, _, variety = RULES.replace('category = "A"', 'category = "B"').partition('[[rule]]\nname = "pick')
    rules.write_text(kids_rule + "[[rule]]" + variety.partition("[[rule]]")[2])  # no pin; B, not A, for kids
    wait_for(lambda: flow.metric("freshrec_rule_reloads_total", {"outcome": "applied"}) == 1, timeout=10)
    assert flow.metric("freshrec_rules") == 2

    def obeyed() -> bool:
        kids, france = _items(redis_client, ns, "user0"), _items(redis_client, ns, "user2")
        no_b = kids[0].startswith("a") and not [i for i in kids if i.startswith("b")]
        return no_b and france[0].startswith("a")  # no pin any more: the user's taste leads

    assert wait_for(obeyed, timeout=10), (_items(redis_client, ns, "user0"), _items(redis_client, ns, "user2"))
    # the changed rules (the kids' filter, the French pin) apply to user0 and user2 only: nobody else is ranked again
    assert flow.metric("freshrec_rankings_total", {"reason": "rules"}) == 2
    assert flow.metric("freshrec_rerank_pending_users") == 0
