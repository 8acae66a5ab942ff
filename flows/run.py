"""``freshrec run``: one process of the flow, or a cluster of them on this machine, until a signal stops it."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from datetime import timedelta

from flows.settings import Settings


def fail(message: str) -> int:
    """Print the CLI's one-line error (``freshrec: ...``) and give exit code 2."""
    print(f"freshrec: {message}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    """Consume Kafka, keep Redis current, until interrupted."""
    from bytewax.errors import BytewaxRuntimeError
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from flows.cluster import Topology, prepare
    from flows.recommend import build_flow
    from operators.kafka_io import ServiceError
    from state.recovery import RecoveryError
    from state.redis_store import RedisUnavailable

    try:
        s = Settings.from_args(args)
        s.model_config(), s.parse_config()  # a bad setting fails here, in one line
        if s.processes > 1:
            if s.addresses or s.process_id >= 0:
                return fail(
                    f"--processes {s.processes} starts a cluster on this machine; across machines run one "
                    "`freshrec run --process-id I --addresses 'HOST:PORT;...'` per machine instead"
                )
            return _run_local_cluster(s)
        topology = Topology.of(s)
        prepare(s, topology)
    except (ServiceError, RedisUnavailable, OSError, ValueError) as ex:
        return fail(str(ex))
    recovery = None
    if s.recovery_dir:
        recovery = RecoveryConfig(s.recovery_dir, backup_interval=timedelta(seconds=s.backup_interval_s))
    log = logging.getLogger(__name__)
    log.info(
        "freshrec run: process %d of %d, %d worker(s); %s topic %s -> Redis namespace %s; metrics on %s:%s",
        topology.process,
        topology.processes,
        topology.workers_per_process,
        s.kafka,
        s.topic,
        s.namespace,
        s.metrics_host,
        s.metrics_port + topology.process if s.metrics_port else 0,
    )
    # SIGTERM stops like Ctrl-C: the interrupt unwinds Bytewax, which closes
    # sources and sinks. It may surface wrapped in a BytewaxRuntimeError
    # (raised inside a step), so a requested stop is remembered.
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        cli_main(
            build_flow(s, topology),
            workers_per_process=s.workers,
            process_id=topology.process if topology.addresses else None,
            addresses=list(topology.addresses) or None,
            epoch_interval=timedelta(seconds=s.snapshot_interval_s),
            recovery_config=recovery,
        )
    except RecoveryError as ex:
        return fail(f"{ex} ({s.recovery_dir})")
    except (KeyboardInterrupt, BytewaxRuntimeError):
        if not stop_requested:
            raise
        log.info("freshrec run: stopped by %s", signal.Signals(stop_requested[0]).name)
    return 0


def _run_local_cluster(s: Settings) -> int:
    """``--processes N``: N processes of one cluster on 127.0.0.1, supervised; a signal stops them all."""
    addresses = ";".join(f"127.0.0.1:{s.cluster_port + i}" for i in range(s.processes))
    argv = list(sys.argv[1:])
    base = [sys.executable, "-m", "flows.cli", *_without(argv, "--processes"), "--processes", "1"]
    children = [subprocess.Popen([*base, "--process-id", str(i), "--addresses", addresses]) for i in range(s.processes)]
    log = logging.getLogger(__name__)
    log.info("freshrec run: %d processes on %s", s.processes, addresses)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # The cluster lives and dies together: when one process ends, the others are stopped.
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    first = next(c for c in children if c.poll() is not None)
    forward(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    failed = [c for c in codes if c != 0]
    if first.returncode != 0:
        return first.returncode
    return failed[0] if failed else 0


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag V`` or ``--flag=V``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out
