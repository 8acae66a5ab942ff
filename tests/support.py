"""Test helpers: polling, ``freshrec run`` as a subprocess."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.services import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], object], timeout: float = 20.0, every: float = 0.1) -> object:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


class Flow:
    """``freshrec run`` as a subprocess (the real CLI), stopped at the end of the test."""

    def __init__(self, env: dict[str, str], args: list[str]) -> None:
        self.metrics_port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="freshrec-run-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "flows.cli", "run", "--metrics-port", str(self.metrics_port), "--refresh-s", "0.5", *args]
        self.cmd = " ".join(shlex.quote(c) for c in cmd)
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of ``name`` matching ``labels`` on the /metrics endpoint."""
        from state.metrics import scrape, total

        return total(scrape(self.metrics_port), name, labels)

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self, sig: int = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
