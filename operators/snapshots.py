"""Recovery snapshots of the journaled steps (user shards, the learner): where, and how to restore."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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


__all__ = ["Manifest", "Snapshots"]
