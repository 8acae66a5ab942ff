"""Test helpers: polling, the CLI and ``freshrec run`` as subprocesses."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.services import free_ports, stop_process

ROOT = Path(__file__).resolve().parent.parent


T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 20.0, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def need(*pairs: str) -> list[str]:
    """Paths of the commands of ``COMMAND=DEBIAN_PACKAGE`` pairs, installed if missing (scripts/need.sh)."""
    got = subprocess.run([str(ROOT / "scripts" / "need.sh"), *pairs], check=True, capture_output=True, text=True)
    return got.stdout.split()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``freshrec ARGS`` (the real CLI) to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        check=False,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Flow:
    """``freshrec run`` as a subprocess (the real CLI), stopped at the end of the test.

    With ``--processes N`` among ``args`` it is a cluster: metrics are
    summed over the N processes (ports PORT..PORT+N-1), and
    :meth:`children` are its processes.
    """

    def __init__(self, env: dict[str, str], args: list[str]) -> None:
        processes = int(args[args.index("--processes") + 1]) if "--processes" in args else 1
        self.metrics_port = free_ports(processes)
        self.ports = [self.metrics_port + i for i in range(processes)]
        self.log = tempfile.NamedTemporaryFile(prefix="freshrec-run-", suffix=".log", delete=False)  # noqa: SIM115 (kept for output())
        cmd = [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "--metrics-port",
            str(self.metrics_port),
            "--refresh-s",
            "0.5",
            *args,
        ]
        if processes > 1 and "--cluster-port" not in args:
            cmd += ["--cluster-port", str(free_ports(processes))]
        self.cmd = " ".join(shlex.quote(c) for c in cmd)
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of ``name`` matching ``labels`` on the /metrics endpoints of every process."""
        from state.metrics import scrape, total

        return sum(total(scrape(port), name, labels) for port in self.ports)

    def children(self) -> list[int]:
        """PIDs of the processes a ``--processes N`` parent started."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self, sig: int = 15) -> int:
        return stop_process(self.proc, sig)


class Server:
    """``freshrec serve`` as a subprocess (the real CLI) on a free port, ready when ``/healthz`` answers."""

    def __init__(self, env: dict[str, str], args: list[str]) -> None:
        self.port = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="freshrec-serve-", suffix=".log", delete=False)  # noqa: SIM115 (kept for output())
        cmd = [sys.executable, "-m", "flows.cli", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        import httpx

        self.http = httpx.Client(base_url=self.url, timeout=10.0)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"freshrec serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                return self.http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=30)

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self) -> int:
        self.http.close()
        return stop_process(self.proc)
