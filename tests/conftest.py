"""Shared fixtures: real Kafka and Redis, started by scripts/services.sh.

If ``FRESHREC_KAFKA`` and ``FRESHREC_REDIS_URL`` are set, the tests use
those services; otherwise the session starts its own on free loopback
ports and stops them at the end. Every test gets its own topic and Redis
namespace.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import services as services_sh
from support import Flow, Server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "services: needs the real Kafka and Redis (deselect with -m 'not services')")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the services (directly or through another fixture) is marked ``services``."""
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    if os.environ.get("FRESHREC_KAFKA") and os.environ.get("FRESHREC_REDIS_URL"):
        yield {"FRESHREC_KAFKA": os.environ["FRESHREC_KAFKA"], "FRESHREC_REDIS_URL": os.environ["FRESHREC_REDIS_URL"]}
        return
    workdir = Path(tempfile.mkdtemp(prefix="freshrec-services-"))
    try:
        yield services_sh.start(workdir)
    finally:
        services_sh.stop(workdir)


@pytest.fixture
def names() -> dict[str, str]:
    """A fresh topic and Redis namespace for one test."""
    tag = uuid.uuid4().hex[:10]
    return {"topic": f"test.{tag}", "namespace": f"t{tag}"}


@pytest.fixture
def redis_client(services):
    import redis

    client = redis.Redis.from_url(services["FRESHREC_REDIS_URL"])
    yield client
    client.close()


@pytest.fixture
def producer(services):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=services["FRESHREC_KAFKA"], linger_ms=5)
    yield p
    p.close()


@pytest.fixture
def start_flow(services, names):
    flows: list[Flow] = []

    def start(*extra: str, topic: str | None = None, namespace: str | None = None) -> Flow:
        args = ["--topic", topic or names["topic"], "--namespace", namespace or names["namespace"], *extra]
        flow = Flow(dict(services), args)
        flows.append(flow)
        return flow

    yield start
    for flow in flows:
        flow.stop()


class OwnService:
    """A Redis or Kafka of one test's own (scripts/services.sh), to stop and restart."""

    def __init__(self, workdir: Path, which: str) -> None:
        self.workdir, self.which = workdir, which
        self.env: dict[str, str] = {}
        self.start()

    def start(self) -> None:
        self.env.update(services_sh.start(self.workdir, self.which))

    def stop(self) -> None:
        services_sh.stop(self.workdir, self.which, check=True)


@pytest.fixture
def own_service(tmp_path):
    """``own_service("redis")``: a dedicated service the test may stop and start again."""
    started: list[OwnService] = []

    def make(which: str) -> OwnService:
        service = OwnService(tmp_path / which, which)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


@pytest.fixture
def start_server(services, names):
    """``start_server(*args)``: ``freshrec serve`` on this test's topic and namespace, stopped at the end."""
    servers: list[Server] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> Server:
        args = ["--topic", names["topic"], "--namespace", names["namespace"], *extra]
        server = Server({**services, **(env or {})}, args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
