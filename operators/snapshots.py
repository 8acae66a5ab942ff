"""Recovery snapshots of the journaled steps (user shards, the learner): where, and how to restore."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from state import metrics
from state.journal import Journal, Journaled, Manifest, RecoveryMismatch, restore
from state.recovery import RecoveryError

T = TypeVar("T", bound=Journaled)


@dataclass(frozen=True)
class Snapshots:
    """Journals under ``<recovery dir>/journal``; ``meta`` (the topology) is checked on restore."""

    root: Path
    meta: dict[str, Any] = field(default_factory=dict)
    keep_s: float = 120.0

    def journal(self, name: str, **meta: Any) -> Journal:
        """The journal of one state; ``meta`` is stored with it besides the checked topology."""
        return Journal(self.root / "journal", name, {**self.meta, **meta}, keep_s=self.keep_s)

    def restore(self, manifest: Any, make: Callable[[], T], journal: Journal | None) -> T:
        """The state of ``manifest``; ``journal`` continues its sequence. A foreign snapshot raises RecoveryError."""
        try:
            state, m = restore(manifest, make, self.meta, self.root / "journal")
        except RecoveryMismatch as ex:
            raise RecoveryError(
                f"cannot restore from the recovery snapshot: {ex}. Move the --recovery-dir away to start afresh: "
                "the flow then reads the topic from the beginning."
            ) from ex
        if journal is not None:
            journal.resume(m)
        return state  # type: ignore[return-value]


def checkpoint(step: str, journal: Journal, state: Journaled) -> Manifest:
    """Snapshot ``state`` into ``journal``; record its cost and time under the ``step`` label."""
    manifest = journal.checkpoint(state)
    metrics.SNAPSHOT_SECONDS.labels(step).observe(journal.last_s)
    metrics.SNAPSHOT_BYTES.labels(step).inc(journal.last_bytes)
    metrics.SNAPSHOT_TIME.labels(step).set(time.time())
    return manifest


__all__ = ["Manifest", "Snapshots", "checkpoint"]
