"""The HTTP API (``freshrec serve``) on real Redis and Kafka, with a real HTTP client."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from state.keys import item_key, popular_key, user_key
from state.redis_store import payload
from support import cli, wait_for


def _topic_messages(brokers: str, topic: str, count: int, timeout: float = 20.0) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=brokers, auto_offset_reset="earliest", group_id=None)
    try:
        got: list = []

        def enough() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
            return len(got) >= count

        wait_for(enough, timeout=timeout)
        return got
    finally:
        consumer.close()


def test_events_are_validated_like_the_flow_and_produced_keyed_by_user(start_server, services, names):
    server = start_server()
    body = [
        {"user": "alice", "item": "sku-1", "type": "click"},
        {"user": 7, "item": "sku-2", "ts": 1_700_000_000},
        {"user": "bob"},
        {"user": "carol", "item": "sku-3", "type": "teleport"},
        "not an object",
        {"user": "dave", "item": "x" * 300},
    ]
    r = server.http.post("/events", content=orjson.dumps(body))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["accepted"] == 2
    assert [(x["index"], x["reason_code"]) for x in doc["rejected"]] == [
        (2, "missing_item"),
        (3, "bad_type"),
        (4, "not_object"),
        (5, "bad_item"),
    ]
    assert "teleport" in doc["rejected"][1]["reason"]
    # One event object (not an array) is fine too.
    assert server.http.post("/events", json={"user": "erin", "item": "sku-9"}).json() == {"accepted": 1, "rejected": []}

    messages = _topic_messages(services["FRESHREC_KAFKA"], names["topic"], 3)
    assert [(m.key, orjson.loads(m.value)) for m in messages] == [
        (b"alice", body[0]),
        (b"7", body[1]),
        (b"erin", {"user": "erin", "item": "sku-9"}),
    ]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"user": 1', 400, "not JSON"),
        (b"[]", 400, "empty array"),
        (b"42", 400, "expected an event object or an array"),
        (orjson.dumps([{"user": 1, "item": 2}] * 1001), 413, "at most 1000"),
        (b"[" + b" " * (5 << 20) + b"]", 413, "--max-body-bytes"),
    ],
)
def test_a_bad_body_gets_a_clear_4xx(start_server, body, status, says):
    server = start_server()
    r = server.http.post("/events", content=body)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]


def test_reads_come_from_redis_with_the_popular_fallback_and_request_time_exclusions(start_server, redis_client, names):
    ns = names["namespace"]
    redis_client.mset(
        {
            user_key(ns, "u1"): payload(["a", "b", "c", "d"], [4.0, 3.0, 2.0, 1.0], 100.0, updated=101.0),
            popular_key(ns): payload(["p", "q", "a"], [9.0, 8.0, 7.0], 90.0, updated=91.0),
            item_key(ns, "a"): payload(["b", "a", "c"], [0.9, 0.8, 0.7], 80.0, updated=81.0),
        }
    )
    server = start_server()
    got = server.http.get("/recommend/u1", params={"k": 2, "exclude": "b"}).json()
    assert got == {
        "user": "u1",
        "items": ["a", "c"],
        "scores": [4.0, 2.0],
        "updated": 101.0,
        "event_ts": 100.0,
        "source": "user",
    }
    unknown = server.http.get("/recommend/nobody").json()
    assert (unknown["source"], unknown["items"]) == ("popular", ["p", "q", "a"])
    # An item is never similar to itself, and an item without a list falls back to popular.
    assert server.http.get("/similar/a").json()["items"] == ["b", "c"]
    assert server.http.get("/similar/zzz").json()["source"] == "popular"
    assert server.http.get("/popular", params={"k": 1}).json()["items"] == ["p"]
    inspected = server.http.get("/inspect/u1", params={"k": 2}).json()
    assert inspected["similar"] == {"a": ["b", "c"]}
    assert server.http.get("/recommend/u1", params={"k": 0}).status_code == 422
    assert server.http.get("/recommend/u1", params={"category": "books"}).status_code == 400


def test_an_event_posted_over_http_reaches_the_users_list(start_flow, start_server):
    flow = start_flow()
    server = start_server("--flow-metrics", f"http://127.0.0.1:{flow.metrics_port}/metrics")
    warm = [{"user": f"w{n % 20}", "item": f"i{n % 37}", "ts": 1_700_000_000 + n} for n in range(400)]
    assert server.http.post("/events", content=orjson.dumps(warm)).json()["accepted"] == 400
    wait_for(lambda: flow.metric("freshrec_events_total", {"outcome": "applied"}) >= 400, timeout=60)
    bought = {"user": "newcomer", "item": "i3", "type": "purchase"}
    assert server.http.post("/events", json=bought).json()["accepted"] == 1
    doc = wait_for(lambda: (d := server.http.get("/recommend/newcomer").json())["source"] == "user" and d, timeout=30)
    assert doc["items"] and "i3" not in doc["items"]
    events = server.http.get("/users/newcomer/events").json()["events"]
    assert [e["event"]["item"] for e in events] == ["i3"]
    stats = wait_for(lambda: len(p := server.http.get("/stats").json()["points"]) >= 2 and p, timeout=10)
    assert stats[-1]["up"] == 1 and stats[-1]["applied"] >= 401


def test_api_keys_guard_writes_and_optionally_reads_and_never_reach_the_log(start_server, tmp_path):
    secret, other = "k" * 8 + "write-key-123", "z" * 20
    keys = tmp_path / "keys"
    keys.write_text(f"# keys of the test\n{secret} ingest\n")
    event = {"user": "u", "item": "i"}
    server = start_server("--api-keys-file", str(keys))
    assert server.http.post("/events", json=event).status_code == 401
    assert server.http.post("/events", json=event).headers["www-authenticate"] == "Bearer"
    assert server.http.post("/events", json=event, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    assert server.http.post("/events", json=event, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert server.http.get("/popular").status_code == 200  # reads are open by default

    closed = start_server("--api-keys-file", str(keys), "--api-reads", "key")
    assert closed.http.get("/popular").status_code == 401
    assert closed.http.get("/recommend/u", headers={"Authorization": f"Bearer {other}"}).status_code == 403
    assert closed.http.get("/recommend/u", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert closed.http.get("/healthz").status_code == 200  # probes need no key
    for s in (server, closed):
        s.stop()
        assert secret not in s.output() and other not in s.output()
        assert "1 API key(s)" in s.output()


def test_health_readiness_docs_and_metrics(start_server, services):
    server = start_server()
    assert server.http.get("/healthz").json() == {"status": "ok"}
    assert wait_for(lambda: server.http.get("/readyz").json() == {"status": "ready"}, timeout=20)
    spec = server.http.get("/openapi.json").json()
    assert {"/recommend/{user}", "/similar/{item}", "/popular", "/events", "/healthz", "/readyz"} <= set(spec["paths"])
    docs = server.http.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs  # no CDN: works offline
    assert server.http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    server.http.get("/recommend/u")
    text = server.http.get("/metrics").text
    assert 'freshrec_api_responses_total{code="200",route="/recommend/{user}"}' in text
    assert "freshrec_events_total" not in text  # the API's own registry, not the flow's

    # Redis down: alive, not ready, and a read says which service is missing.
    dead = start_server(env={"FRESHREC_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert dead.http.get("/healthz").status_code == 200
    r = dead.http.get("/readyz")
    assert r.status_code == 503 and "redis" in r.json() and "kafka" not in r.json()
    r = dead.http.get("/recommend/u")
    assert r.status_code == 503 and "Redis at redis://127.0.0.1:1/0 is unreachable" in r.json()["detail"]


def test_a_bad_setting_of_serve_is_one_line(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("short\n")
    r = cli("serve", "--api-keys-file", str(keys))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"freshrec: --api-keys-file {keys} line 1: expected 'KEY [NAME]' with a KEY of 16 characters or more"
    ]
    r = cli("serve", "--api-reads", "maybe")
    assert r.returncode == 2 and r.stderr.strip() == "freshrec: FRESHREC_API_READS='maybe' must be 'open' or 'key'"


def test_the_catalogue_filters_answers_by_availability_and_category(
    start_server, services, redis_client, producer, names, tmp_path
):
    ns, items_topic, kafka = names["namespace"], names["topic"] + ".items", services["FRESHREC_KAFKA"]
    movies = tmp_path / "movies.csv"
    movies.write_text(
        "movieId,title,genres\n"
        "a,Alpha (1990),Comedy|Drama\n"
        "b,Beta (1991),Drama\n"
        "c,Gamma (1992),Comedy\n"
        'd,"Delta, the Sequel (1993)",Comedy|Action\n'
        "e,Epsilon (1994),(no genres listed)\n"
    )
    r = cli("catalogue", "load", str(movies), "--items-topic", items_topic, "--kafka", kafka)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"5 items sent to {items_topic} on {kafka}; 0 rows skipped"
    redis_client.set(user_key(ns, "u"), payload(list("abcde"), [5.0, 4.0, 3.0, 2.0, 1.0], 1.0, updated=2.0))
    server = start_server("--items-topic", items_topic)
    wait_for(lambda: server.http.get("/readyz").status_code == 200, timeout=20)  # ready: the catalogue is read
    comedies = server.http.get("/recommend/u", params={"category": "Comedy"}).json()["items"]
    assert comedies == ["a", "c", "d"]  # the first genre is the category of a MovieLens row
    # Out of stock, then deleted: each leaves every answer within moments, no re-ranking needed.
    producer.send(items_topic, key=b"a", value=orjson.dumps({"item": "a", "category": "Comedy", "available": False}))
    producer.send(items_topic, key=b"b", value=None)
    producer.flush()
    assert wait_for(lambda: server.http.get("/recommend/u").json()["items"] == ["c", "d", "e"], timeout=10)
    assert server.http.get("/recommend/u", params={"category": "Comedy", "k": 1}).json()["items"] == ["c"]


def test_several_worker_processes_share_the_port(start_server, redis_client, names):
    redis_client.set(popular_key(names["namespace"]), payload(["p"], [1.0], 1.0, updated=2.0))
    server = start_server("--http-workers", "2", "--api-reads", "open")
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")

    def workers() -> list[str]:  # uvicorn's worker processes (multiprocessing's resource tracker aside)
        pids = children.read_text().split()
        return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]

    assert len(wait_for(lambda: len(w := workers()) >= 2 and w, 20)) == 2
    answers = {server.http.get("/recommend/anyone").json()["items"][0] for _ in range(20)}
    assert answers == {"p"}
    assert server.http.post("/events", json={"user": "u", "item": "i"}).json()["accepted"] == 1
    assert server.stop() == 0


def test_impressions_are_counted_and_credited_by_the_flow_and_not_learned(start_flow, start_server):
    flow = start_flow()
    server = start_server()
    shown = [
        {"user": "u1", "type": "impression", "items": ["a", "b", "c"], "list": "user"},
        {"user": "u2", "type": "impression", "items": ["a"], "list": "popular", "context": "home"},
        {"user": "u2", "type": "impression", "items": [], "list": "popular"},
        {"user": "u1", "item": "b", "type": "click"},
        {"user": "u1", "item": "z", "type": "click"},  # never shown: not credited
        {"user": "u2", "item": "a", "type": "purchase", "value": 9.5},
        {"user": "u2", "item": "a", "type": "view"},  # a view is never credited
    ]
    got = server.http.post("/events", content=orjson.dumps(shown)).json()
    assert got["accepted"] == 6 and [r["reason_code"] for r in got["rejected"]] == ["bad_items"]
    wait_for(lambda: flow.metric("freshrec_events_total", {"outcome": "applied"}) >= 4, timeout=60)
    assert flow.metric("freshrec_events_total", {"outcome": "impression"}) == 2
    assert flow.metric("freshrec_impressions_total", {"list": "user"}) == 3
    assert flow.metric("freshrec_impressions_total", {"list": "popular"}) == 1
    assert flow.metric("freshrec_model_events") == 4  # the interactions are learned, the impressions are not
    assert flow.metric("freshrec_attributed_total", {"list": "user", "type": "click"}) == 1
    assert flow.metric("freshrec_attributed_total", {"list": "popular", "type": "purchase"}) == 1
    assert flow.metric("freshrec_attributed_total") == 2


def test_kafka_down_is_a_503_for_writes_and_not_ready(start_server):
    server = start_server(env={"FRESHREC_KAFKA": "127.0.0.1:1"})
    r = server.http.post("/events", json={"user": "u", "item": "i"}, timeout=30)
    assert r.status_code == 503 and "cannot reach Kafka at 127.0.0.1:1" in r.json()["detail"], r.text
    ready = server.http.get("/readyz", timeout=30)
    assert ready.status_code == 503 and "kafka" in ready.json()
    assert server.http.get("/popular").status_code == 200  # reads still work
