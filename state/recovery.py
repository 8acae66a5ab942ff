"""Bytewax recovery directories: this process's partitions, created once, owner-only."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bytewax.recovery import init_db_dir


class RecoveryError(RuntimeError):
    """The recovery directory holds a state this run cannot resume from; the message says what to do."""


def prepare_recovery_dir(path: Path, workers: int, local: range) -> None:
    """Create ``path`` (``0700``) with the recovery partitions of the workers in ``local``, where missing.

    Bytewax needs one partition per worker of the whole cluster
    (``part-{w}.sqlite3``), each reachable by at least one process. Each
    process creates those of its own workers, so one shared directory and
    one local directory per machine both work. The files are ``0600``:
    snapshots are pickles, and only the operator who configured this
    directory may write what is unpickled.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    missing = [w for w in local if not (path / f"part-{w}.sqlite3").exists()]
    if missing:
        with tempfile.TemporaryDirectory(dir=path) as tmp:
            init_db_dir(Path(tmp), workers)
            for w in missing:
                shutil.move(str(Path(tmp) / f"part-{w}.sqlite3"), path / f"part-{w}.sqlite3")
    for part in path.glob("part-*.sqlite3*"):
        os.chmod(part, 0o600)
