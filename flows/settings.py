"""Typed settings, read once: defaults < ``FRESHREC_*`` environment < CLI flags.

Each field of :class:`Settings` is one row of the settings table: its flag
is ``--name-with-dashes`` and its environment variable
``FRESHREC_NAME_UPPER``. ``freshrec run --help`` prints them all.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from models import ModelConfig
from operators.learn import ServeConfig
from operators.parse import ParseConfig

ENV_PREFIX = "FRESHREC_"


def _kv(text: str) -> dict[str, Any]:
    """Parse ``key=value[,key=value]`` into kafka-python settings (ints where numeric)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {part!r}")
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
    namespace: str = field(default="freshrec", metadata={"help": "Redis key prefix"})
    k: int = field(default=20, metadata={"help": "length of each user's list"})
    refresh_s: float = field(default=2.0, metadata={"help": "seconds between popular / similar-items refreshes"})
    recovery_dir: str = field(
        default="", metadata={"help": "Bytewax recovery directory (created if missing); empty: no recovery"}
    )
    snapshot_interval_s: float = field(default=5.0, metadata={"help": "seconds between recovery snapshots"})
    backup_interval_s: float = field(default=0.0, metadata={"help": "seconds to keep superseded snapshots"})
    metrics_port: int = field(default=9464, metadata={"help": "Prometheus /metrics port (0: off)"})
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "address the metrics endpoint binds to"})
    workers: int = field(default=1, metadata={"help": "Bytewax worker threads in this process"})
    max_batch: int = field(
        default=4096, metadata={"help": "most events per poll, learned as one batch (a user in it is ranked once)"}
    )
    max_message_bytes: int = field(default=65536, metadata={"help": "larger messages are rejected (too_large)"})
    max_id_bytes: int = field(default=256, metadata={"help": "longest user/item id in bytes"})

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    def kafka_extra(self) -> dict[str, Any]:
        """kafka-python settings from the file, then ``--kafka-config`` on top."""
        extra: dict[str, Any] = {}
        if self.kafka_config_file:
            lines = Path(self.kafka_config_file).read_text().splitlines()
            extra.update(_kv(",".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))))
        extra.update(_kv(self.kafka_config))
        return extra

    def parse_config(self) -> ParseConfig:
        return ParseConfig(max_message_bytes=self.max_message_bytes, max_id_bytes=self.max_id_bytes)

    def serve_config(self) -> ServeConfig:
        return ServeConfig(namespace=self.namespace, k=self.k, refresh_s=self.refresh_s)

    def model_config(self) -> ModelConfig:
        return ModelConfig()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by ``FRESHREC_*`` variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.name, type(f.default), raw)
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
        """One ``--flag`` per field (default: unset, so the environment applies)."""
        for f in fields(cls):
            if only is not None and f.name not in only:
                continue
            env = ENV_PREFIX + f.name.upper()
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                default=None,
                type=type(f.default),
                help=f"{f.metadata['help']} [env {env}, default {f.default!r}]",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        base = cls.from_env(environ)
        given = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
        return replace(base, **given)


def _convert(name: str, kind: type, raw: str) -> Any:
    try:
        return kind(raw)
    except ValueError as ex:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}") from ex
