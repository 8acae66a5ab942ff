"""replay and eval: the load-test and quality tools."""

from __future__ import annotations

import re
import time

import orjson
import pytest
from kafka import KafkaConsumer

from operators.sessions import SessionConfig, session_events
from operators.synthetic import SyntheticConfig, synthetic_events
from support import cli


def test_synthetic_stream_is_deterministic_and_drifts() -> None:
    cfg = SyntheticConfig(users=50, items=200, topics=5, events=4000, seed=11)
    a, b = list(synthetic_events(cfg)), list(synthetic_events(cfg))
    assert a == b and len(a) == 4000
    assert a != list(synthetic_events(SyntheticConfig(users=50, items=200, topics=5, events=4000, seed=12)))

    # taste drift: a user's most frequent topic differs between the halves
    def main_topic(evs, user):
        topics = [int(e.item[1:]) % 5 for e in evs if e.user == user]
        return max(set(topics), key=topics.count) if topics else None

    users = {e.user for e in a}
    changed = sum(main_topic(a[:2000], u) != main_topic(a[2000:], u) for u in users)
    assert changed > len(users) / 2


def test_synthetic_cover_visits_every_user_first() -> None:
    """``--cover-users``: the first USERS events hold the whole population; without it, a skewed sample."""
    n = 5000
    covered = list(synthetic_events(SyntheticConfig(users=n, events=2 * n, seed=3, cover=True)))
    plain = list(synthetic_events(SyntheticConfig(users=n, events=2 * n, seed=3)))
    assert {e.user for e in covered[:n]} == {f"u{u}" for u in range(n)}
    assert len({e.user for e in plain}) < 0.9 * n
    assert covered[n:] == plain[n:]  # past the cover, the same stream


def test_replay_bad_file_names_the_line(tmp_path, services) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text(
        '{"user": "a", "item": "b", "ts": 1700000000}\n{"user": "a", "item": "b", "ts": 1700000001}\n{"user": "a"}\n'
    )
    out = cli("replay", str(f), "--kafka", services["FRESHREC_KAFKA"], "--topic", "replay.bad", "--rate", "0")
    assert out.returncode == 2 and f"{f}:3:" in out.stderr and "item" in out.stderr, out.stderr
    out = cli("replay", str(tmp_path / "missing.csv"), "--kafka", services["FRESHREC_KAFKA"])
    assert out.returncode == 2 and "no such file" in out.stderr


def test_replay_holds_the_rate(services, names) -> None:
    t0 = time.monotonic()
    out = cli(
        "replay",
        "--synthetic",
        "--kafka",
        services["FRESHREC_KAFKA"],
        "--topic",
        names["topic"],
        "--rate",
        "1000",
        "--limit",
        "10000",
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert "sent 10,000 events" in out.stdout
    achieved = float(out.stdout.split("s: ")[1].split(" events/s")[0].replace(",", ""))
    assert abs(achieved - 1000) / 1000 <= 0.10, out.stdout
    assert elapsed >= 9.0
    consumer = KafkaConsumer(
        names["topic"],
        bootstrap_servers=services["FRESHREC_KAFKA"],
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    msgs = []
    for m in consumer:
        msgs.append(m)
        if len(msgs) == 10000:
            break
    consumer.close()
    assert len(msgs) == 10000
    doc = orjson.loads(msgs[0].value)
    assert msgs[0].key == doc["user"].encode() and doc["ts"] > 1.7e9


def test_eval_prints_the_json_contract(tmp_path) -> None:
    f = tmp_path / "log.csv"
    rows = ["userId,movieId,rating,timestamp"]
    for n, e in enumerate(synthetic_events(SyntheticConfig(users=60, items=120, topics=6, events=6000, seed=3))):
        rows.append(f"{e.user[1:]},{e.item[1:]},4.0,{1_600_000_000 + n}")
    f.write_text("\n".join(rows) + "\n")
    png = tmp_path / "hr.png"
    out = cli("eval", "--data", str(f), "--json", "--plot", str(png), "--batch-every", "1000")
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert (
        doc["events"] == 6000
        and doc["kinds"] == {"rating": 6000}
        and set(doc["models"])
        == {
            *(
                "freshrec",
                "popularity",
                "decayed_popularity",
                "item_knn",
                "item_knn_popularity",
                "batch_mf",
                "als_fold_in",
            ),
            "funk_mf",
        }
    )
    for row in doc["models"].values():
        assert set(row) == {"hr@10", "hr@10_cold", "hr@20", "mrr@20", "hr@10_second_half", "coverage", "events_per_s"}
        assert 0 <= row["hr@10"] <= row["hr@20"] <= 1
    assert png.stat().st_size > 10_000
    # On a stream with stable tastes the online model beats popularity and the nightly batch MF by a
    # clear margin (measured: HR@10 0.133 against 0.087, all-time popularity). The item-kNN baselines
    # beat it on this tiny stream (0.148 with popularity): issue 15, recorded in bench/RESULTS.md.
    ours = doc["models"].pop("freshrec")
    plain = {m: doc["models"][m] for m in ("popularity", "decayed_popularity", "batch_mf")}
    best = max(plain.values(), key=lambda row: row["hr@10"])
    assert ours["hr@10"] >= 1.3 * best["hr@10"], (ours, plain)
    for metric in ("mrr@20", "hr@10_second_half"):
        assert ours[metric] > max(row[metric] for row in plain.values()), (metric, ours, plain)


def test_eval_with_a_catalogue_scores_cold_events_with_and_without_content(tmp_path) -> None:
    log, items = tmp_path / "log.csv", tmp_path / "movies.csv"
    rows = ["userId,movieId,rating,timestamp"]
    for n, e in enumerate(synthetic_events(SyntheticConfig(users=60, items=300, topics=6, events=4000, seed=3))):
        rows.append(f"{e.user[1:]},{e.item[1:]},4.0,{1_600_000_000 + n}")
    log.write_text("\n".join(rows) + "\n")
    movies = ["movieId,title,genres"] + [f"{j},Film {j} (19{90 + j % 6}),Topic{j % 6}" for j in range(300)]
    items.write_text("\n".join(movies) + "\n")
    out = cli("eval", "--data", str(log), "--items", str(items), "--json", "--plot", "", "--batch-every", "1000")
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert doc["items"] == str(items) and 0 < doc["cold_events"] < 4000
    ours, off, before = (doc["models"][m] for m in ("freshrec", "freshrec_no_content", "freshrec_no_catalogue"))
    print({m: (doc["models"][m]["hr@10"], doc["models"][m]["hr@10_cold"]) for m in doc["models"]})
    assert ours["hr@10_cold"] > max(off["hr@10_cold"], before["hr@10_cold"]), (ours, off, before)
    items.write_text("movieId,title,genres\n1,Heat (1995),Action\n2," + "x" * 2000 + ",Drama\n")
    out = cli("eval", "--data", str(log), "--items", str(items), "--plot", "")
    assert out.returncode != 0 and f"{items} row 2: title is longer than" in out.stderr, out.stderr


def test_eval_takes_model_settings_and_names_a_bad_one(tmp_path) -> None:
    log = tmp_path / "clicks.csv"
    sessions = SessionConfig(users=100, items=300, categories=6, events=3000, sessions_as_users=True, typed=False)
    log.write_text(
        "session_id,item_id,event,timestamp\n"
        + "".join(f"{e.user},{e.item},{e.kind},{e.ts}\n" for e in session_events(sessions))
    )
    out = cli("eval", "--data", str(log), "--json", "--plot", "", "--ablations")
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout.strip().splitlines()[-1])
    ablations = {"no_mf", "no_cooc", "no_pop", "fixed_positions", "session", "lasting"}
    assert {f"freshrec_{a}" for a in ablations} <= set(doc["models"]) and "model_settings" not in doc
    # On session clicks the session setting wins (measured on this log: 0.469 against 0.441).
    assert doc["models"]["freshrec_session"]["hr@10"] > 1.03 * doc["models"]["freshrec"]["hr@10"], doc["models"]
    out = cli("eval", "--data", str(log), "--json", "--plot", "", "--model-window", "1", "--model-cooc-hop", "2")
    assert out.returncode == 0, out.stderr
    assert "model settings: window=1, cooc_hop=2.0" in out.stderr
    doc2 = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert doc2["model_settings"] == {"window": 1, "cooc_hop": 2.0}
    assert doc2["models"]["freshrec"]["hr@10"] == doc["models"]["freshrec_session"]["hr@10"]  # the same model
    out = cli("eval", "--data", str(log), "--plot", "", "--model-cooc-hop", "-1")
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1].endswith("cooc_hop must be >= 0, got -1.0")


def test_the_demo_runs_the_flow_end_to_end_with_simulated_shoppers() -> None:
    r = cli("demo", "--events", "12000", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    applied = int(re.search(r"events applied\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert applied > 12000 - 200  # the stream, and the shoppers' clicks on top
    assert re.search(r"events rejected\s+\d+ \(to the dead-letter sink; reasons: \w", out)
    ctr = re.search(r"click-through\s+user lists ([\d.]+), popular list ([\d.]+) \(([\d,]+) impressions", out)
    assert ctr and 0 < float(ctr.group(1)) <= 1 and 0 <= float(ctr.group(2)) <= 1
    assert int(ctr.group(3).replace(",", "")) > 500
    assert out.count("    before: ") == 3 and "unknown user -> popular list: ['" in out


def test_the_demo_on_a_log_is_paced_and_prints_the_live_figure_beside_evals(tmp_path) -> None:
    log = tmp_path / "shop.csv"
    rows = ["user,item,type,timestamp"]  # a typed log, timestamps in milliseconds
    for n, e in enumerate(synthetic_events(SyntheticConfig(users=80, items=150, topics=6, events=3000, seed=5))):
        rows.append(f"{e.user},{e.item},{e.kind},{1_600_000_000_000 + 1000 * n}")
    log.write_text("\n".join(rows) + "\n")
    t0 = time.monotonic()
    r = cli("demo", "--data", str(log), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"events applied\s+3,000\b", r.stdout), r.stdout
    took = re.search(r"throughput\s+[\d,]+ events/s \(([\d.]+) s", r.stdout)
    assert took and float(took.group(1)) >= 2.5, r.stdout  # paced at 1,000 messages/s by default
    live = float(re.search(r"live hit-rate@10 ([\d.]+)", r.stdout).group(1))  # type: ignore[union-attr]
    ours = float(re.search(r"eval's figure\s+([\d.]+)", r.stdout).group(1))  # type: ignore[union-attr]
    assert ours > 0.05 and live >= 0.8 * ours, r.stdout  # measured: 0.198 against 0.200
    assert time.monotonic() - t0 < 120


def test_the_paced_in_process_source_sends_what_is_due_not_batches_of_64() -> None:
    from operators.local_io import EventSource

    events = list(synthetic_events(SyntheticConfig(users=50, items=50, events=400, seed=2)))
    reader = EventSource(lambda: iter(events), batch=500, rate=1000.0).build_part("s", "0", None)
    sizes: list[int] = []
    start = time.monotonic()
    while sum(sizes) < len(events):
        awake = reader.next_awake()
        if awake is not None:
            time.sleep(max((awake.timestamp() - time.time()), 0.0))
        sizes.append(len(reader.next_batch()))
    took = time.monotonic() - start
    assert 0.3 < took < 1.5  # 400 messages at 1,000/s
    assert max(sizes) <= 20, sizes  # a Kafka-like poll: what arrived since the last one


def test_the_live_stage_scores_eval_on_the_events_as_the_flow_parses_them() -> None:
    from bench.live import as_parsed, offline, served_late
    from models.event import Event

    log = [Event("u1", "a", "rating", 1.0, 5.0, 5.0, 4.0), Event("u1", "b", "purchase", 5.0, 5.0, 5.0, 3.0)]
    replayed = as_parsed(log, rate=1000.0)
    assert [e.weight for e in replayed] == [1.0, 15.0]  # a value scales a purchase, not a rating, as in the flow
    assert replayed[1].ts - replayed[0].ts == pytest.approx(0.001, abs=1e-6)  # stamped as replay sends them
    assert [e.ts for e in as_parsed(log)] == [5.0, 5.0]  # the demo's source keeps the log's times
    stream = as_parsed(list(synthetic_events(SyntheticConfig(users=40, items=60, topics=4, events=3000, seed=4))))
    fresh, late = served_late(stream, 0), served_late(stream, 200)
    assert fresh > 0.1 and late < fresh, (fresh, late)  # lists served late hit less
    assert offline(stream) > 0.1
