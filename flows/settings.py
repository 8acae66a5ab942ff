"""Typed settings, read once: defaults < ``--config`` file < ``FRESHREC_*`` environment < CLI flags.

Each field of :class:`Settings` is one row of the settings table: its flag
is ``--name-with-dashes`` and its environment variable
``FRESHREC_NAME_UPPER``. Every field of :class:`~models.config.ModelConfig`
is a setting too: ``--model-name`` / ``FRESHREC_MODEL_NAME``, or the
``[model]`` table of the TOML file ``--config`` names (its
``[weights]`` table sets the learning weight of each event type).
``freshrec run --help`` prints them all.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from models.config import ModelConfig
from operators.parse import DEFAULT_WEIGHTS, ParseConfig
from operators.rank import ServeConfig
from state.keys import DEFAULT_NAMESPACE

ENV_PREFIX = "FRESHREC_"
MODEL_PREFIX = "model_"
_MODEL_FIELDS = {f.name: f for f in fields(ModelConfig)}


def _kv(text: str, what: str) -> dict[str, Any]:
    """Parse ``key=value[,key=value]`` (ints where numeric)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{what}: expected key=value, got {part!r}")
        out[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return out


@dataclass(frozen=True)
class Settings:
    """Everything ``freshrec run`` needs. Field metadata: help text."""

    kafka: str = field(default="127.0.0.1:9092", metadata={"help": "Kafka bootstrap servers HOST:PORT[,...]"})
    topic: str = field(
        default="freshrec.events", metadata={"help": "topic of interaction events; rejects go to TOPIC.dlq"}
    )
    kafka_config: str = field(default="", metadata={"help": "extra kafka-python settings key=value,... (SASL/SSL)"})
    kafka_config_file: str = field(default="", metadata={"help": "file of key=value lines merged into --kafka-config"})
    partitions: int = field(default=1, metadata={"help": "partitions to create the topic with if it is missing"})
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata={"help": "Redis URL (redis://user:pass@host:port/db, rediss:// for TLS)"},
    )
    namespace: str = field(default=DEFAULT_NAMESPACE, metadata={"help": "Redis key prefix"})
    k: int = field(default=20, metadata={"help": "length of each user's list"})
    refresh_s: float = field(default=2.0, metadata={"help": "seconds between popular / similar-items refreshes"})
    broadcast_s: float = field(
        default=0.1, metadata={"help": "most seconds between the learner's item updates to the rankers"}
    )
    recovery_dir: str = field(
        default="", metadata={"help": "Bytewax recovery directory (created if missing); empty: no recovery"}
    )
    snapshot_interval_s: float = field(default=5.0, metadata={"help": "seconds between recovery snapshots"})
    backup_interval_s: float = field(default=0.0, metadata={"help": "seconds to keep superseded snapshots"})
    metrics_port: int = field(
        default=9464, metadata={"help": "Prometheus /metrics port of process 0; process i serves on PORT+i (0: off)"}
    )
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "address the metrics endpoint binds to"})
    workers: int = field(default=1, metadata={"help": "Bytewax worker threads per process"})
    processes: int = field(
        default=1, metadata={"help": "processes to start on this machine (a cluster on 127.0.0.1, --cluster-port)"}
    )
    cluster_port: int = field(
        default=2101, metadata={"help": "first port of the processes started by --processes (PORT, PORT+1, ...)"}
    )
    process_id: int = field(default=-1, metadata={"help": "this process's index in --addresses (several machines)"})
    addresses: str = field(
        default="", metadata={"help": "HOST:PORT of every process of the cluster, ';'-separated, the same everywhere"}
    )
    learner_share: float = field(
        default=0.3,
        metadata={"help": "users of the learner's worker (worker 0) relative to another worker's, in (0, 1]"},
    )
    gc_freeze_s: float = field(
        default=1.0,
        metadata={"help": "seconds between freezes of the model's objects out of the garbage collector (0: off)"},
    )
    max_batch: int = field(
        default=4096, metadata={"help": "most events per poll, learned as one batch (a user in it is ranked once)"}
    )
    max_message_bytes: int = field(default=65536, metadata={"help": "larger messages are rejected (too_large)"})
    max_id_bytes: int = field(default=256, metadata={"help": "longest user/item id in bytes"})
    weights: str = field(
        default="", metadata={"help": "learning weight per event type, type=weight,... (default view=1,click=2,...)"}
    )
    config: str = field(default="", metadata={"help": "TOML file with [model] settings and [weights] per event type"})
    attribution_window_s: float = field(
        default=1800.0, metadata={"help": "seconds from an impression to a click credited to it (live counters)"}
    )
    items_topic: str = field(
        default="freshrec.items",
        metadata={"help": "compacted topic of the item catalogue (key = item id); bad messages go to TOPIC.dlq"},
    )
    users_topic: str = field(
        default="freshrec.users",
        metadata={"help": "compacted topic of user attributes for rules (key = user id); bad messages: TOPIC.dlq"},
    )
    rules: str = field(
        default="", metadata={"help": "TOML file of business rules, reloaded when it changes; empty: no rules"}
    )
    rerank_per_s: float = field(
        default=5000.0,
        metadata={"help": "users each shard re-ranks per second in the background after the rules change"},
    )
    host: str = field(default="127.0.0.1", metadata={"help": "address `freshrec serve` listens on"})
    port: int = field(default=8000, metadata={"help": "port of `freshrec serve` (HTTP API and console)"})
    http_workers: int = field(
        default=1, metadata={"help": "processes of `freshrec serve` sharing the port (uvicorn workers)"}
    )
    api_keys_file: str = field(
        default="", metadata={"help": "file of API keys, one 'KEY [NAME]' per line; empty: no keys, no auth"}
    )
    api_reads: str = field(
        default="open", metadata={"help": "'open': GET endpoints need no key; 'key': they need one too"}
    )
    max_body_bytes: int = field(default=4 << 20, metadata={"help": "largest POST /events body, bytes"})
    flow_metrics: str = field(
        default="http://127.0.0.1:9464/metrics",
        metadata={"help": "the flow's /metrics URL(s), ','-separated, that the console charts"},
    )
    model: tuple[tuple[str, Any], ...] = field(default=(), metadata={"help": ""})  # --model-* / FRESHREC_MODEL_*

    def __post_init__(self) -> None:
        positive = ("k", "workers", "processes", "max_batch", "max_message_bytes", "max_id_bytes", "partitions")
        for name in (*positive, "port", "http_workers", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_env(name)}={getattr(self, name)} must be >= 1")
        if self.api_reads not in ("open", "key"):
            raise ValueError(f"FRESHREC_API_READS={self.api_reads!r} must be 'open' or 'key'")
        if not 0 < self.learner_share <= 1:
            raise ValueError(f"FRESHREC_LEARNER_SHARE={self.learner_share} must be in (0, 1]")
        for name in ("refresh_s", "broadcast_s", "snapshot_interval_s", "attribution_window_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{_env(name)}={value} must be a number of seconds > 0")
        if not (math.isfinite(self.gc_freeze_s) and self.gc_freeze_s >= 0):
            raise ValueError(f"FRESHREC_GC_FREEZE_S={self.gc_freeze_s} must be a number of seconds >= 0 (0: off)")

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def items_dlq_topic(self) -> str:
        return f"{self.items_topic}.dlq"

    @property
    def users_dlq_topic(self) -> str:
        return f"{self.users_topic}.dlq"

    def kafka_extra(self) -> dict[str, Any]:
        """kafka-python settings from the file, then ``--kafka-config`` on top."""
        extra: dict[str, Any] = {}
        if self.kafka_config_file:
            lines = Path(self.kafka_config_file).read_text().splitlines()
            content = ",".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
            extra.update(_kv(content, self.kafka_config_file))
        extra.update(_kv(self.kafka_config, "--kafka-config"))
        return extra

    def _file(self) -> dict[str, Any]:
        if not self.config:
            return {}
        path = Path(self.config)
        try:
            return tomllib.loads(path.read_text())
        except OSError as ex:
            raise ValueError(f"--config {path}: cannot read it ({ex.strerror})") from ex
        except tomllib.TOMLDecodeError as ex:
            raise ValueError(f"--config {path}: not valid TOML ({ex})") from ex

    def parse_config(self) -> ParseConfig:
        weights = dict(DEFAULT_WEIGHTS)
        sources = (
            (f"--config {self.config} [weights]", self._file().get("weights", {})),
            ("--weights", _kv(self.weights, "--weights")),
        )
        for source, given in sources:
            for kind, value in given.items():
                weight = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
                if isinstance(value, str):
                    with contextlib.suppress(ValueError):
                        weight = float(value)
                if not (math.isfinite(weight) and weight > 0):
                    raise ValueError(f"{source}: the weight of {kind!r} must be a number > 0, got {value!r}")
                weights[str(kind)] = float(weight)
        return ParseConfig(max_message_bytes=self.max_message_bytes, max_id_bytes=self.max_id_bytes, weights=weights)

    def serve_config(self) -> ServeConfig:
        return ServeConfig(k=self.k, refresh_s=self.refresh_s)

    def model_config(self) -> ModelConfig:
        """The model settings: defaults < the TOML ``[model]`` table < environment and flags."""
        values: dict[str, Any] = {}
        table = self._file().get("model", {})
        unknown = sorted(set(table) - set(_MODEL_FIELDS))
        if unknown:
            raise ValueError(
                f"--config {self.config} [model]: unknown setting {unknown[0]!r}; known: {', '.join(_MODEL_FIELDS)}"
            )
        for name, value in table.items():
            values[name] = _typed(_MODEL_FIELDS[name].default, value, f"--config {self.config} [model] {name}")
        values.update(dict(self.model))
        try:
            return replace(ModelConfig(), **values)
        except ValueError as ex:
            raise ValueError(f"model settings: {ex}") from ex

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by ``FRESHREC_*`` variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(_env(f.name))
            if raw is not None and f.name != "model":
                values[f.name] = _convert(_env(f.name), type(f.default), raw)
        model = []
        for name, f in _MODEL_FIELDS.items():
            raw = environ.get(_env(MODEL_PREFIX + name))
            if raw is not None:
                model.append((name, _convert(_env(MODEL_PREFIX + name), type(f.default), raw)))
        return cls(**values, model=tuple(model))

    def to_env(self) -> dict[str, str]:
        """The ``FRESHREC_*`` variables that give these settings (those not at their default), for child processes.

        >>> Settings(port=9000).to_env()
        {'FRESHREC_PORT': '9000'}
        """
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "model" and value != f.default:
                env[_env(f.name)] = str(value)
        for name, value in self.model:
            env[_env(MODEL_PREFIX + name)] = str(value)
        return env

    @classmethod
    def add_arguments(
        cls,
        parser: argparse.ArgumentParser,
        only: tuple[str, ...] | None = None,
        exclude: tuple[str, ...] = (),
        model: bool | None = None,
    ) -> None:
        """One ``--flag`` per field (default: unset, so the environment applies); ``--model-*`` with all of them.

        ``model``: add the ``--model-*`` flags (default: only when ``only`` is None).
        """
        for f in fields(cls):
            if (only is not None and f.name not in only) or f.name == "model" or f.name in exclude:
                continue
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                default=None,
                type=type(f.default),
                help=f"{f.metadata['help']} [env {_env(f.name)}, default {f.default!r}]",
            )
        if not (only is None if model is None else model):
            return
        group = parser.add_argument_group("model settings (also [model] in --config, FRESHREC_MODEL_*)")
        for name, f in _MODEL_FIELDS.items():
            group.add_argument(
                "--model-" + name.replace("_", "-"),
                dest=MODEL_PREFIX + name,
                default=None,
                type=type(f.default),
                help=f"default {f.default!r}",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        base = cls.from_env(environ)
        given = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
        given.pop("model", None)
        model = dict(base.model)
        for name in _MODEL_FIELDS:
            value = getattr(args, MODEL_PREFIX + name, None)
            if value is not None:
                model[name] = value
        return replace(base, **given, model=tuple(model.items()))


SERVE_ONLY = (*("host", "port", "http_workers", "api_keys_file", "api_reads", "max_body_bytes", "flow_metrics"),)
"""Settings of ``freshrec serve`` alone (``freshrec run`` has no such flags)."""
SERVE = (
    *("kafka", "topic", "kafka_config", "kafka_config_file", "partitions", "redis_url", "namespace", "items_topic"),
    *("max_message_bytes", "max_id_bytes", "weights", "config", *SERVE_ONLY),
)
"""Every setting of ``freshrec serve``."""


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _convert(name: str, kind: type, raw: str) -> Any:
    try:
        return kind(raw)
    except ValueError as ex:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from ex


def _typed(default: Any, value: Any, where: str) -> Any:
    """A TOML value as the type of the setting's default (an int is a fine float)."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != isinstance(default, bool):
        raise ValueError(f"{where}: expected a {kind.__name__}, got {value!r}")
    return value
