"""Settings table, key layout, the payload contract."""

from __future__ import annotations

import argparse

import orjson
import pytest

from flows.settings import Settings
from operators.kafka_io import ServiceError, ensure_topics
from state.keys import item_key, popular_key, user_key
from state.redis_store import payload, redact


def test_env_then_flags() -> None:
    env = {"FRESHREC_KAFKA": "k:1", "FRESHREC_K": "7", "FRESHREC_TOPIC": "events"}
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    s = Settings.from_args(parser.parse_args(["--topic", "other"]), env)
    assert (s.kafka, s.k, s.topic, s.dlq_topic) == ("k:1", 7, "other", "other.dlq")


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="FRESHREC_K='many'"):
        Settings.from_env({"FRESHREC_K": "many"})


def test_kafka_config_file_and_flag(tmp_path) -> None:
    f = tmp_path / "kafka.properties"
    f.write_text("# SASL\nsecurity_protocol=SASL_SSL\nsasl_mechanism=PLAIN\n")
    s = Settings(kafka_config_file=str(f), kafka_config="sasl_mechanism=SCRAM-SHA-256,request_timeout_ms=5000")
    assert s.kafka_extra() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "request_timeout_ms": 5000,
    }


def test_a_kafka_setting_one_client_does_not_take_is_named_as_such() -> None:
    # A consumer-only setting fails in the admin client first: the line says --kafka-config, not "cannot reach Kafka".
    with pytest.raises(ServiceError, match=r"^--kafka-config: .*max_partition_fetch_bytes.*every Kafka client takes"):
        ensure_topics("127.0.0.1:1", {"t": 1}, {"max_partition_fetch_bytes": 1 << 20})


def test_key_layout_and_payload() -> None:
    assert (user_key("ns", "7"), item_key("ns", "a:b"), popular_key("ns")) == ("ns:u:7", "ns:i:a:b", "ns:popular")
    doc = orjson.loads(payload(["x", "y"], [0.9, 0.5], event_ts=12.5))
    assert set(doc) == {"items", "scores", "updated", "event_ts"} and doc["event_ts"] == 12.5


def test_redact_hides_password_only() -> None:
    assert redact("rediss://u:pw@h:6380/1") == "rediss://u:***@h:6380/1"
    assert "pw" not in redact("redis://:pw@h")
