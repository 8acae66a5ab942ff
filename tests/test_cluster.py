"""A cluster of two processes on the real services: partitioned users, one learner, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import redis
from kafka import KafkaProducer
from test_pipeline import history
from test_reliability import Steady, applied, assert_every_user_current

from bench.services import free_ports
from state.keys import item_key, popular_key, user_key
from state.metrics import scrape, total
from support import ROOT, wait_for


def test_two_processes_write_a_correct_list_for_every_user(start_flow, producer, redis_client, names) -> None:
    flow = start_flow("--processes", "2", "--partitions", "2")
    docs = history(n_users=40, per_user=10)
    for doc in docs:
        producer.send(names["topic"], key=doc["user"].encode(), value=orjson.dumps(doc))
    producer.flush()
    wait_for(lambda: flow.metric("freshrec_model_events") == len(docs), timeout=60)
    ns = names["namespace"]

    def taste(u: int, doc: dict) -> bool:
        return bool(doc["items"]) and doc["items"][0].startswith("a" if u % 2 == 0 else "b")

    def lists():
        values = redis_client.mget([user_key(ns, f"user{u}") for u in range(40)])
        if not all(values):
            return None
        docs = [orjson.loads(raw) for raw in values]
        return docs if all(taste(u, d) for u, d in enumerate(docs)) else None

    # A list ranked before the learner's item rows reached this process is provisional: it is
    # ranked again (settled) once they have, so every list ends up with the user's taste.
    for u, doc in enumerate(wait_for(lists, timeout=30)):
        mine = {d["item"] for d in docs if d["user"] == f"user{u}"}
        assert not mine & set(doc["items"]), "a user's own items are excluded"
    assert wait_for(lambda: redis_client.get(popular_key(ns)))
    assert wait_for(lambda: redis_client.get(item_key(ns, "a1")))
    # Each process serves its own metrics; the users are split between them.
    users = [total(scrape(port), "freshrec_users") for port in flow.ports]
    assert all(u > 0 for u in users) and sum(users) == 40, users
    assert total(scrape(flow.ports[1]), "freshrec_model_events") == 0  # the learner is on process 0


def test_kill_9_of_one_process_loses_nothing_and_learns_nothing_twice(
    start_flow, services, names, redis_client, tmp_path
) -> None:
    rate, total_events = 2000.0, 16_000
    args = ["--processes", "2", "--partitions", "2", "--recovery-dir", str(tmp_path / "recovery")]
    args += ["--snapshot-interval-s", "1"]
    first = start_flow(*args)
    producer = Steady(services["FRESHREC_KAFKA"], names["topic"], total_events, rate)
    producer.start()
    wait_for(lambda: applied(first) > 5000, timeout=60)
    children = first.children()
    assert len(children) == 2
    os.kill(children[1], signal.SIGKILL)  # one process of the cluster dies
    first.proc.wait(60)  # the cluster goes down with it (the supervisor stops the other one)
    assert first.proc.returncode != 0

    second = start_flow(*args)
    producer.finish()
    wait_for(lambda: second.metric("freshrec_model_events") == total_events, timeout=90)
    assert_every_user_current(redis_client, names["namespace"], total_events)
    time.sleep(2.0)
    assert second.metric("freshrec_model_events") == total_events  # every event learned once, none twice
    assert "Traceback" not in second.output()


def test_bytewax_run_starts_the_same_process_as_freshrec_run(services, names, tmp_path) -> None:
    """``python -m bytewax.run "flows.recommend:build_flow()"``: metrics endpoint, topics, recovery dir, lists."""
    port = free_ports(1)
    env = {
        **os.environ,
        **services,
        "FRESHREC_TOPIC": names["topic"],
        "FRESHREC_NAMESPACE": names["namespace"],
        "FRESHREC_METRICS_PORT": str(port),
    }
    recovery = tmp_path / "recovery"
    cmd = [sys.executable, "-m", "bytewax.run", "flows.recommend:build_flow()", "-r", str(recovery)]
    cmd += ["-s", "1", "-b", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: scrape(port), timeout=60)  # the metrics endpoint, as freshrec run serves it
        producer = KafkaProducer(bootstrap_servers=services["FRESHREC_KAFKA"])  # the topic was created for us
        for doc in history():
            producer.send(names["topic"], value=orjson.dumps(doc))
        producer.close()
        wait_for(lambda: total(scrape(port), "freshrec_model_events") == len(history()), timeout=60)
        client = redis.Redis.from_url(services["FRESHREC_REDIS_URL"])
        assert wait_for(lambda: client.get(user_key(names["namespace"], "user0")))
        client.close()
        assert (recovery / "part-0.sqlite3").exists() and (recovery / "journal").is_dir()
        samples = scrape(port)  # the garbage collector and every step are timed
        steps = {lab["step"] for name, lab, _ in samples if name == "freshrec_step_seconds_count"}
        assert steps == {"input", "users", "learner", "rank", "redis"}
        assert wait_for(lambda: total(scrape(port), "freshrec_gc_seconds_count") > 0, timeout=10)  # once a second
    finally:
        proc.terminate()
        proc.wait(30)
