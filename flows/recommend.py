"""The recommendation dataflow: Kafka -> parse -> learn/rank -> Redis.

Run it with the CLI (``freshrec run``) or directly::

    python -m bytewax.run "flows.recommend:build_flow()"

(settings then come from ``FRESHREC_*`` environment variables).
"""

from __future__ import annotations

from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink

from flows.settings import Settings
from models.event import Event
from operators.kafka_io import DeadLetterSink, KafkaSource, Message
from operators.learn import LearnLogic
from operators.parse import Rejected, parse
from operators.serve import RedisSink, Write

MODEL_KEY = "model"  # one model partition: every event goes to the same learner


def _is_event(x: Event | Rejected) -> TypeGuard[Event]:
    return isinstance(x, Event)


def build_flow(
    settings: Settings | None = None,
    source: Source[Message] | None = None,
    dead_letters: DynamicSink[Rejected] | None = None,
) -> Dataflow:
    """Wire the steps; ``source``/``dead_letters`` replace Kafka (the embedded demo)."""
    s = settings or Settings.from_env()
    parse_config = s.parse_config()
    model_config, serve_config = s.model_config(), s.serve_config()
    if source is None:
        source = KafkaSource(s.kafka, s.topic, s.kafka_extra(), max_records=s.max_batch)
    if dead_letters is None:
        dead_letters = DeadLetterSink(s.kafka, s.dlq_topic, s.kafka_extra())

    flow = Dataflow("freshrec")
    messages = op.input("input", flow, source)
    parsed = op.map("parse", messages, lambda m: parse(m.value, m.ts, parse_config))
    branch = op.branch("valid", parsed, _is_event)
    op.output("dead_letters", cast(op.Stream[Rejected], branch.falses), dead_letters)  # all that is not an Event
    keyed = op.key_on("one_model", branch.trues, lambda _e: MODEL_KEY)
    snapshots = bool(s.recovery_dir)
    writes = op.stateful_batch("learn", keyed, lambda resume: LearnLogic(model_config, serve_config, resume, snapshots))
    out: op.Stream[Write] = op.key_rm("unkey", writes)
    op.output("redis", out, RedisSink(s.redis_url))
    return flow
