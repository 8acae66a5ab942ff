"""The recommendation dataflow: Kafka -> parse -> user shards -> learner -> rankers -> Redis.

Run it with the CLI (``freshrec run``) or directly, one command per process::

    python -m bytewax.run "flows.recommend:build_flow()" -w 1 -i 0 -a "host-a:2101;host-b:2101"

(settings then come from ``FRESHREC_*`` environment variables, the
topology and recovery directory from bytewax.run's own flags).

Every worker runs a user shard and a ranker, keyed so that they land on
that worker (``operators/routing.py``); worker 0 also runs the learner::

    input -> route (parse, group by shard) -> users[shard] -+-> learner (one key) -> item deltas -+
                 \\-> dead letters                          |                                   v
                                                            +-------- rank batches -----> rank[shard] -> Redis

The catalogue and the user attributes reach the learner and every ranker
outside the dataflow, from a thread per process (``operators/feeds.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink

from flows.cluster import Topology, bytewax_run_args, prepare
from flows.settings import Settings
from operators.feeds import side_feeds
from operators.kafka_io import DeadLetterSink, KafkaSource
from operators.learn import LearnerLogic
from operators.parse import Message, Rejected
from operators.rank import RankerLogic
from operators.routing import shard_bounds, worker_keys
from operators.serve import RedisSink
from operators.snapshots import Snapshots
from operators.users import EventBatch, ToLearn, UserShardLogic, route


def _is_rejected(x: object) -> TypeGuard[Rejected]:
    return isinstance(x, Rejected)


def build_flow(
    settings: Settings | None = None,
    topology: Topology | None = None,
    source: Source[Message] | None = None,
    dead_letters: DynamicSink[Rejected] | None = None,
) -> Dataflow:
    """Wire the steps; ``source``/``dead_letters`` replace Kafka (the embedded demo).

    Called with no settings it is the entry point of ``python -m
    bytewax.run``: it reads the settings from the environment, the
    topology from bytewax.run's flags, and prepares this process as
    ``freshrec run`` does (``flows/cluster.py``).
    """
    if settings is None:
        s = Settings.from_env()
        run = bytewax_run_args()
        if run is not None:
            topology = run.topology
            if run.recovery_dir:
                s = Settings(**{**s.__dict__, "recovery_dir": run.recovery_dir})
        topology = topology or Topology.of(s)
        prepare(s, topology)
    else:
        s = settings
    topology = topology or Topology.of(s)
    workers = topology.workers
    keys = worker_keys("shard", workers)  # keys[w] lands on worker w: its user shard and its ranker
    learner_key = keys[0]
    bounds = shard_bounds(workers, s.learner_share if workers > 1 else 1.0)
    model, serve = s.model_config(), s.serve_config()
    parse_config = s.parse_config()
    topology_meta = {"workers": workers, "shard_bounds": bounds}
    snapshots = Snapshots(Path(s.recovery_dir), topology_meta) if s.recovery_dir else None
    catalogue = source is None  # the embedded demo has no catalogue topic
    if source is None:
        source = KafkaSource(s.kafka, s.topic, s.kafka_extra(), max_records=s.max_batch)
    if dead_letters is None:
        dead_letters = DeadLetterSink(s.kafka, s.dlq_topic, s.kafka_extra())

    flow = Dataflow("freshrec")
    messages = op.input("input", flow, source)
    routed = op.flat_map_batch("route", messages, lambda batch: route(batch, parse_config, keys, bounds))
    valid = op.branch("valid", routed, _is_rejected)
    op.output("dead_letters", valid.trues, dead_letters)
    users = op.stateful_batch(
        "users",
        cast(op.KeyedStream[EventBatch], valid.falses),
        lambda resume: UserShardLogic(
            model, bounds, snapshots, resume, s.attribution_window_s, s.rules, s.rerank_per_s
        ),
    )
    split = op.branch("split", users, lambda kv: isinstance(kv[1], ToLearn))
    to_learner = op.map("to_learner", split.trues, lambda kv: (learner_key, kv[1]))
    side = side_feeds(s, topology.process == 0) if catalogue else ()
    deltas = op.stateful_batch(
        "learner",
        cast(op.KeyedStream, to_learner),
        lambda resume: LearnerLogic(model, keys, 0, s.broadcast_s, snapshots, resume, side[:1]),
    )
    broadcast = op.map("broadcast", deltas, lambda kv: kv[1])  # (ranker key, delta)
    rank_in = op.merge("rank_in", broadcast, split.falses)
    writes = op.stateful_batch(
        "rank", cast(op.KeyedStream, rank_in), lambda _resume: RankerLogic(workers, model, serve, s.rules, side, bounds)
    )
    op.output("redis", op.key_rm("unkey", writes), RedisSink(s.redis_url, s.namespace))
    return flow
