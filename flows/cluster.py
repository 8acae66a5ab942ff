"""One process of a freshrec cluster: its place in the topology, and what it sets up before the flow runs.

``freshrec run`` and ``python -m bytewax.run "flows.recommend:build_flow()"``
start the same process: both call :func:`prepare`, which serves this
process's metrics (port ``metrics_port + process id``), creates the
topics, initialises this process's share of the recovery partitions and
sets the garbage collector (:func:`tune_gc`). The BLAS thread count is set on import of the
``flows`` package, before numpy loads.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flows.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    """Where this process sits: its id, every process's address (empty: a single process), workers per process.

    >>> t = Topology(1, ("a:2101", "b:2101", "c:2101"), 2)
    >>> t.processes, t.workers, t.first_worker
    (3, 6, 2)
    """

    process: int = 0
    addresses: tuple[str, ...] = ()
    workers_per_process: int = 1

    def __post_init__(self) -> None:
        if self.workers_per_process < 1:
            raise ValueError(f"workers per process must be >= 1, got {self.workers_per_process}")
        if self.addresses and not 0 <= self.process < len(self.addresses):
            raise ValueError(
                f"process id {self.process} is not an index into the {len(self.addresses)} addresses "
                f"{';'.join(self.addresses)}; pass --process-id 0..{len(self.addresses) - 1}"
            )

    @property
    def processes(self) -> int:
        return max(len(self.addresses), 1)

    @property
    def workers(self) -> int:
        """Workers in the whole cluster: Bytewax numbers them process by process."""
        return self.processes * self.workers_per_process

    @property
    def first_worker(self) -> int:
        return self.process * self.workers_per_process

    @classmethod
    def of(cls, settings: Settings) -> Topology:
        addresses = tuple(a.strip() for a in settings.addresses.split(";") if a.strip())
        return cls(max(settings.process_id, 0), addresses, settings.workers)


@dataclass(frozen=True)
class BytewaxRun:
    """What ``python -m bytewax.run`` was given (its own flags), when it is the launcher."""

    topology: Topology
    recovery_dir: str
    snapshot_interval_s: float | None


def bytewax_run_args(argv: Sequence[str] | None = None) -> BytewaxRun | None:
    """The topology and recovery flags of ``python -m bytewax.run``, or None under another launcher."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if argv is None and getattr(spec, "name", None) != "bytewax.run":
        return None
    from bytewax import run

    parser = run._create_arg_parser()
    parser.add_argument("-w", "--workers-per-process", type=int, default=os.environ.get("BYTEWAX_WORKERS_PER_PROCESS"))
    parser.add_argument("-i", "--process-id", type=int, default=os.environ.get("BYTEWAX_PROCESS_ID"))
    parser.add_argument("-a", "--addresses", default=os.environ.get("BYTEWAX_ADDRESSES"))
    args, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    addresses = tuple(a for a in (args.addresses or "").split(";") if a)
    topology = Topology(int(args.process_id or 0), addresses, int(args.workers_per_process or 1))
    interval = args.snapshot_interval.total_seconds() if args.snapshot_interval else None
    return BytewaxRun(topology, str(args.recovery_directory or ""), interval)


def prepare(settings: Settings, topology: Topology, environ: Mapping[str, str] | None = None) -> None:
    """Set up this process before the flow starts; raise with one actionable line on a misconfiguration."""
    from operators.catalogue import COMPACTED
    from operators.kafka_io import ensure_topics
    from operators.rules import RulesFile
    from state import metrics
    from state.recovery import prepare_recovery_dir
    from state.redis_store import connect

    connect(settings.redis_url).close()
    topics = {settings.topic: settings.partitions, settings.dlq_topic: settings.partitions}
    topics |= {
        settings.items_topic: 1,
        settings.items_dlq_topic: 1,
        settings.users_topic: 1,
        settings.users_dlq_topic: 1,
    }
    compacted = {settings.items_topic: COMPACTED, settings.users_topic: COMPACTED}
    ensure_topics(settings.kafka, topics, settings.kafka_extra(), compacted)
    if settings.rules:
        RulesFile.shared(settings.rules)  # a bad rules file stops the run here, in one line
    if settings.recovery_dir:
        local = range(topology.first_worker, topology.first_worker + topology.workers_per_process)
        prepare_recovery_dir(Path(settings.recovery_dir), topology.workers, local)
    if settings.metrics_port:
        port = settings.metrics_port + topology.process
        try:
            metrics.serve(port, settings.metrics_host)
        except OSError as ex:
            raise OSError(
                f"cannot serve metrics on {settings.metrics_host}:{port} ({ex.strerror}); pass another --metrics-port "
                "(process i of a cluster serves on PORT+i) or 0 for none"
            ) from ex
    tune_gc(settings.gc_freeze_s)


_FREEZER: list[threading.Thread] = []


def tune_gc(every_s: float) -> None:
    """Keep the garbage collector's pauses short, time every collection, once per process.

    The model lives in a few huge lists and dicts and millions of small
    objects, and makes no reference cycles. A full collection walks all of
    them: about 140 ms with 1M users of state, a stall of the whole flow
    (bench/RESULTS.md). So every ``every_s`` a thread collects the young
    generations (cheap: only what was allocated since) and freezes the
    survivors (``gc.freeze``): they are still freed by reference counting
    but never walked again, and a full collection only sees the objects of
    the last second. Cyclic garbage made of objects older than a second is
    not reclaimed; the flow makes none (``every_s`` 0: no freezing). Collecting young objects every
    100,000 allocations instead of 700 gave the drain 3% (bench/RESULTS.md).
    """
    if _FREEZER:
        return
    from state.metrics import GC_SECONDS

    started: dict[int, float] = {}

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[threading.get_ident()] = time.perf_counter()
        elif (t0 := started.pop(threading.get_ident(), None)) is not None:
            GC_SECONDS.labels(str(info["generation"])).observe(time.perf_counter() - t0)

    def freeze() -> None:
        while True:
            time.sleep(every_s)
            gc.collect(1)
            gc.freeze()

    gc.set_threshold(100_000, 50, 100)
    gc.callbacks.append(timed)
    _FREEZER.append(threading.Thread(target=freeze, name="freshrec-gc-freeze", daemon=True))
    if every_s:
        _FREEZER[0].start()


def epoch_interval(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.snapshot_interval_s)
