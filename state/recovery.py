"""Bytewax recovery directories: created once, owner-only."""

from __future__ import annotations

import os
from pathlib import Path

from bytewax.recovery import init_db_dir


class RecoveryError(RuntimeError):
    """The recovery directory holds a state this version cannot resume from; the message says what to do."""


def prepare_recovery_dir(path: Path, partitions: int) -> None:
    """Create and initialise ``path`` if it holds no recovery partitions yet.

    The directory is made ``0700``: snapshots are pickles, and only the
    operator who configured this directory may write what is unpickled.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    if not any(path.glob("part-*.sqlite3")):
        init_db_dir(path, max(partitions, 1))
    for part in path.glob("part-*.sqlite3*"):
        os.chmod(part, 0o600)
