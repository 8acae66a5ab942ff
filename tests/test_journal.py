"""Incremental snapshots (state/journal.py): exact restores, bounded segments, refusals that say what to do."""

from __future__ import annotations

import copy
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.config import ModelConfig
from models.event import Event
from models.learner import ItemLearner
from models.users import UserTable
from operators.snapshots import Snapshots
from operators.synthetic import SyntheticConfig, synthetic_events
from state import journal as journal_module
from state.journal import Journal, RecoveryMismatch, restore
from state.recovery import RecoveryError

CFG = ModelConfig(seed=3, seen_cap=64)


def events(n: int, users: int = 500, items: int = 800, seed: int = 1) -> list[Event]:
    return list(synthetic_events(SyntheticConfig(users=users, items=items, events=n, seed=seed)))


def same_users(a: UserTable, b: UserTable) -> None:
    assert a.users.names == b.users.names and a.n_events == b.n_events
    for u in range(len(a)):
        x, y = a.view_row(u), b.view_row(u)
        assert np.array_equal(x.recent, y.recent) and np.array_equal(x.seen, y.seen), u


def test_user_shard_restores_exactly_across_rotations(tmp_path: Path) -> None:
    table = UserTable(CFG)
    journal = Journal(tmp_path, "users-0", {"workers": 1}, min_slice_bytes=4000, max_slice_bytes=4000, keep_s=0)
    manifest = None
    for n, e in enumerate(events(30_000)):
        table.learn(e)
        if n % 700 == 0:
            manifest = journal.checkpoint(table)
    manifest = journal.checkpoint(table)
    restored, _ = restore(manifest, lambda: UserTable(CFG), {"workers": 1}, tmp_path)
    same_users(table, restored)  # type: ignore[arg-type]
    # Superseded segments are deleted: what is left is what the manifest names.
    assert sorted(p.name for p in (tmp_path / "users-0").glob("seg-*")) == sorted(manifest.segments)
    assert len(manifest.segments) < 45 / 2  # about two rotations, not every snapshot


# The second takes pairwise steps and bounds the factor rows at 1.0, which this stream reaches (without the
# bound in the replay it fails): a restore replays the logged history changes, and must bound the same rows.
@pytest.mark.parametrize("cfg", [CFG, replace(CFG, mf_loss="bpr", mf_max_norm=1.0)], ids=["defaults", "bounded"])
def test_learner_restores_exactly_and_goes_on_identically(tmp_path: Path, cfg: ModelConfig) -> None:
    stream = events(30_000)
    users, learner = UserTable(cfg), ItemLearner(cfg, journaled=True)
    journal = Journal(tmp_path, "learner", {"workers": 1}, min_slice_bytes=20_000, max_slice_bytes=20_000, keep_s=0)
    for n, e in enumerate(stream[:25_000]):
        learner.learn(users.learn(e))
        if n % 1499 == 0:
            manifest = journal.checkpoint(learner)
        if n % 2000 == 0:
            learner.take_delta(shared=False)  # the rankers' deltas do not disturb the journal's
    manifest = journal.checkpoint(learner)
    restored, _ = restore(manifest, lambda: ItemLearner(cfg, journaled=True), {"workers": 1}, tmp_path)
    assert isinstance(restored, ItemLearner)
    a, b = learner.state, restored.state
    assert a.names == b.names and np.array_equal(a.keys.view(), b.keys.view())
    assert np.array_equal(a.pop.raw(), b.pop.raw()) and np.array_equal(a.trend.raw(), b.trend.raw())
    for i in range(len(a)):
        assert all(np.array_equal(x, y) for x, y in zip(a.cooc.row(i), b.cooc.row(i)))
    assert (a.cooc.positions, a.cooc.credited) == (b.cooc.positions, b.cooc.credited)
    u1, u2 = copy.deepcopy(users), copy.deepcopy(users)
    for e in stream[25_000:]:
        learner.learn(u1.learn(e))
        restored.learn(u2.learn(e))
    assert np.array_equal(learner.state.mf.item_factors, restored.state.mf.item_factors)
    assert np.array_equal(learner.state.mf.history_factors.matrix, restored.state.mf.history_factors.matrix)
    assert learner.n_events == restored.n_events == 30_000


def test_a_journal_of_the_previous_version_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before 2026-12-06 segments were .npz files, and a delta held both factor matrices for one
    # set of rows (f/rows, f/items, f/history). A recovery directory of that version restores.
    stream = events(12_000)
    users, learner = UserTable(CFG), ItemLearner(CFG, journaled=True)

    def old_write(path: Path, arrays: dict[str, np.ndarray]) -> int:
        if "d/h/rows" in arrays:
            mf = learner.state.mf
            rows = np.union1d(arrays.pop("d/f/rows"), arrays.pop("d/h/rows"))
            del arrays["d/f/items"], arrays["d/h/history"]
            arrays.update(
                {"d/f/rows": rows, "d/f/items": mf.items.data[rows], "d/f/history": mf.history_factors.data[rows]}
            )
        with open(path, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        return path.stat().st_size

    monkeypatch.setattr(journal_module, "_write", old_write)
    journal = Journal(tmp_path, "learner", {"workers": 1}, min_slice_bytes=20_000, max_slice_bytes=20_000, keep_s=0)
    for n, e in enumerate(stream):
        learner.learn(users.learn(e))
        if n % 1499 == 0:
            journal.checkpoint(learner)
    manifest = journal.checkpoint(learner)
    monkeypatch.undo()
    restored, _ = restore(manifest, lambda: ItemLearner(CFG, journaled=True), {"workers": 1}, tmp_path)
    assert isinstance(restored, ItemLearner)
    assert np.array_equal(learner.state.mf.item_factors, restored.state.mf.item_factors)
    assert np.array_equal(learner.state.mf.history_factors.matrix, restored.state.mf.history_factors.matrix)


def test_a_snapshot_writes_what_changed_not_the_whole_state(tmp_path: Path) -> None:
    table = UserTable(CFG)
    journal = Journal(tmp_path, "users-0", {"workers": 1}, min_slice_bytes=64_000, max_slice_bytes=64_000, keep_s=0)
    for e in events(60_000, users=20_000):
        table.learn(e)
    journal.checkpoint(table)
    full = sum(p.stat().st_size for p in (tmp_path / "users-0").glob("seg-*"))
    for e in events(100, users=20_000, seed=2):
        table.learn(e)
    journal.checkpoint(table)
    assert journal.last_bytes < 64_000 + full / 20, (journal.last_bytes, full)


def test_a_snapshot_of_another_topology_or_version_says_what_to_do(tmp_path: Path) -> None:
    table = UserTable(CFG)
    table.learn(Event("u", "i", "view", 1.0, 0.0, 0.0))
    manifest = Journal(tmp_path / "journal", "users-0", {"workers": 2, "shard": 0}).checkpoint(table)
    snapshots = Snapshots(tmp_path, {"workers": 3})
    with pytest.raises(RecoveryError, match="workers=2, this run has workers=3"):
        snapshots.restore(manifest, lambda: UserTable(CFG), None)
    with pytest.raises(RecoveryError, match=r"another freshrec version.*Move the --recovery-dir away"):
        snapshots.restore(pickle.dumps({"a": 1}), lambda: UserTable(CFG), None)
    for seg in (tmp_path / "journal" / "users-0").glob("seg-*"):
        seg.unlink()
    with pytest.raises(RecoveryMismatch, match="is missing"):
        restore(manifest, lambda: UserTable(CFG), {"workers": 2}, tmp_path / "journal")
