"""Kafka and Redis from ``scripts/services.sh``, for ``freshrec bench`` and the tests.

``start(workdir)`` starts both (or one: ``which="redis"`` / ``"kafka"``) on
free loopback ports and returns the ``FRESHREC_*`` variables the script
wrote; ``stop(workdir)`` stops them. A restart in the same directory reuses
the ports and the data.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "services.sh"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive TCP ports free on 127.0.0.1 right now."""
    for _ in range(100):
        base = free_port()
        if base + n > 65535:
            continue
        try:
            holders = []
            for port in range(base, base + n):
                sock = socket.socket()
                holders.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in holders:
                sock.close()
        return base
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1")


def read_env(path: Path) -> dict[str, str]:
    """The ``export KEY=VALUE`` lines scripts/services.sh writes."""
    return dict(line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line)


def start(workdir: Path, which: str = "") -> dict[str, str]:
    """Start the services (installing them if missing); their ``FRESHREC_*`` settings."""
    subprocess.run([str(SCRIPT), "start", str(workdir), *([which] if which else [])], check=True)
    return read_env(workdir / (f"{which}.env" if which else "env"))


def stop(workdir: Path, which: str = "", check: bool = False) -> None:
    subprocess.run([str(SCRIPT), "stop", str(workdir), *([which] if which else [])], check=check)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send ``sig`` to ``proc`` if it still runs, wait up to ``timeout`` s, then kill it; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def say(msg: str, who: str = "bench") -> None:
    """One progress line of a benchmark on stderr: ``[who HH:MM:SS] msg``."""
    print(f"[{who} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
