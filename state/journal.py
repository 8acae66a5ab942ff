"""Incremental recovery snapshots: a journal of segment files, and a small manifest in Bytewax's store.

Bytewax stores, for each touched key at every epoch, whatever the
logic's ``snapshot()`` returns, whole. A shard of a million users or an
item side of a million items would be pickled whole every epoch (0.7-1.0 s
at 1M users, ARCHITECTURE). Instead each snapshot writes one *segment*
file holding

- the *delta*: what changed since the previous snapshot (the owner tracks it), and
- a *slice* of the base: every row in ``[cursor, cursor + n)``, the cursor
  moving on each snapshot, so that every row is rewritten once per rotation.
  The slice is about as large as the delta (within ``min_slice_bytes`` and
  ``max_slice_bytes``): a snapshot then costs twice what changed, and the
  deltas a restore needs (those since the last full rotation) stay about
  as large as the state itself, whatever the event rate,

and returns a :class:`Manifest` (a few hundred bytes) naming the segments
a restore needs. Restoring applies them in order. Once a rotation
completes, segments older than its start are no longer needed. A
snapshot costs what changed plus one slice, never the whole state.

Consistency with Bytewax: the manifest of epoch E names only segments
written at or before E, and segment files are never rewritten (each name
carries a per-run token and a sequence number), so whichever epoch
Bytewax resumes from, its manifest finds its files. Files no manifest
needs any more are deleted ``keep_s`` after the last manifest that
named them (longer than Bytewax keeps an older epoch resumable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

log = logging.getLogger(__name__)

VERSION = 1
Arrays = dict[str, np.ndarray]


class Journaled(Protocol):
    """State that a :class:`Journal` can snapshot incrementally: rows ``0..rows()-1`` plus a small rest."""

    def rows(self) -> int:
        """Current number of rows (rows are only ever appended)."""
        ...

    def row_bytes(self) -> int:
        """About how many bytes one row takes in a slice (sizes the slices)."""
        ...

    def delta(self) -> Arrays:
        """What changed since the previous call; resets the change tracking."""
        ...

    def slice(self, lo: int, hi: int) -> Arrays:
        """Rows ``lo..hi-1`` in full."""
        ...

    def small(self) -> Any:
        """The rest of the state (counters, RNG states): small and picklable."""
        ...

    def apply_delta(self, arrays: Arrays, stale: Callable[[np.ndarray], np.ndarray]) -> None:
        """Restore: replay a :meth:`delta`, but not the rows ``stale(rows)`` marks (a later slice rewrites them)."""
        ...

    def apply_slice(self, lo: int, hi: int, arrays: Arrays) -> None:
        """Restore: overwrite rows ``lo..hi-1`` from a :meth:`slice`."""
        ...

    def apply_small(self, small: Any) -> None:
        """Restore: the :meth:`small` part, last."""
        ...


@dataclass(frozen=True)
class Manifest:
    """What Bytewax stores for a journaled key: the segments to restore from, in order, and the small state."""

    directory: str  # relative to the recovery directory
    segments: tuple[str, ...]
    seq: int
    cursor: int
    rotation_start: int  # seq of the first slice of the rotation in progress
    small: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION


class RecoveryMismatch(RuntimeError):
    """A snapshot that cannot be restored here (another version, topology or directory); the message says what to do."""


class Journal:
    """Writes segments for one journaled state and returns manifests.

    Parameters
    ----------
    root
        The recovery directory.
    name
        This state's subdirectory of ``root`` (created, ``0700``): its segments live there.
    meta
        Stored in every manifest and checked on restore (the worker count,
        the shard): a restore that does not match raises :class:`RecoveryMismatch`.
    min_slice_bytes, max_slice_bytes
        Bounds of how much of the base one snapshot rewrites.
    keep_s
        How long a segment no manifest needs any more is kept.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        meta: dict[str, Any],
        min_slice_bytes: int = 512 << 10,
        max_slice_bytes: int = 8 << 20,
        keep_s: float = 120.0,
    ):
        self.name = name
        self.directory = directory = root / name
        self.meta = meta
        self.min_slice_bytes = min_slice_bytes
        self.max_slice_bytes = max_slice_bytes
        self.keep_s = keep_s
        self._token = secrets.token_hex(4)
        self._seq = -1
        self._cursor = 0
        self._rotation_start = 0
        self._segments: list[tuple[int, str]] = []  # (seq, file) of the segments the manifest names
        self._retired: list[tuple[float, str]] = []  # (when no longer needed, file)
        self.last_bytes = 0
        self.last_s = 0.0
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def resume(self, manifest: Manifest) -> None:
        """Continue the sequence of a restored manifest (its segments stay needed until a rotation supersedes them)."""
        self._seq = manifest.seq
        self._cursor = manifest.cursor
        self._rotation_start = manifest.rotation_start
        self._segments = [(_seq_of(name), name) for name in manifest.segments]
        named = {name for _, name in self._segments}
        now = time.monotonic()
        # Segments of runs that did not commit (or were superseded): never needed again.
        self._retired = [(now, p.name) for p in self.directory.glob("seg-*") if p.name not in named]

    def checkpoint(self, state: Journaled) -> Manifest:
        """Write one segment (delta and the next slice) and return the manifest of the state now."""
        t0 = time.perf_counter()
        self._seq += 1
        seq = self._seq
        rows = state.rows()
        arrays = {f"d/{k}": v for k, v in state.delta().items()}
        budget = min(max(sum(v.nbytes for v in arrays.values()), self.min_slice_bytes), self.max_slice_bytes)
        lo = min(self._cursor, rows)
        hi = min(lo + max(64, budget // max(state.row_bytes(), 1)), rows)
        arrays.update({f"s/{k}": v for k, v in state.slice(lo, hi).items()})
        arrays["lo"], arrays["hi"] = np.array(lo), np.array(hi)
        name = f"seg-{self._token}-{seq:09d}.seg"
        self.last_bytes = _write(self.directory / name, arrays)
        self._segments.append((seq, name))
        if lo == 0:
            self._rotation_start = seq
        self._cursor = hi
        if hi >= rows:  # the rotation that started at _rotation_start is complete
            self._retire(self._rotation_start)
            self._cursor = 0
        self._collect()
        manifest = Manifest(
            self.name,
            tuple(n for _, n in self._segments),
            seq,
            self._cursor,
            self._rotation_start,
            pickle.dumps(state.small(), protocol=pickle.HIGHEST_PROTOCOL),
            dict(self.meta),
        )
        self.last_s = time.perf_counter() - t0
        return manifest

    def _retire(self, first_needed: int) -> None:
        now = time.monotonic()
        keep = [(s, n) for s, n in self._segments if s >= first_needed]
        self._retired += [(now, n) for s, n in self._segments if s < first_needed]
        self._segments = keep

    def _collect(self) -> None:
        cutoff = time.monotonic() - self.keep_s
        due = [n for t, n in self._retired if t < cutoff]
        self._retired = [(t, n) for t, n in self._retired if t >= cutoff]
        for name in due:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()


def restore(
    manifest: Any, make: Callable[[], Journaled], meta: dict[str, Any], root: Path
) -> tuple[Journaled, Manifest]:
    """Rebuild a state from its manifest: a fresh ``make()`` with every named segment applied in order."""
    if not isinstance(manifest, Manifest) or manifest.version != VERSION:
        raise RecoveryMismatch(
            f"the recovery snapshot holds a {type(manifest).__name__} (version "
            f"{getattr(manifest, 'version', '?')}), not a freshrec {VERSION} journal manifest; it was written by "
            "another freshrec version"
        )
    for key, want in meta.items():
        got = manifest.meta.get(key)
        if got != want:
            raise RecoveryMismatch(
                f"the recovery snapshot was written with {key}={got}, this run has {key}={want}; run with the same "
                "topology (workers and processes) or start afresh"
            )
    directory = root / manifest.directory
    segments = []
    for name in manifest.segments:
        path = directory / name
        try:
            segments.append(_read(path))
        except FileNotFoundError as ex:
            raise RecoveryMismatch(
                f"segment {path} named by the recovery snapshot is missing; the journal directory must move with "
                "the recovery directory"
            ) from ex
    # The last segment whose slice rewrites each row: a delta's entries for
    # a row that a slice of the same or a later segment rewrites are skipped.
    last_slice = np.full(max([int(a["hi"]) for a in segments], default=0), -1, dtype=np.int64)
    for n, a in enumerate(segments):
        last_slice[int(a["lo"]) : int(a["hi"])] = n
    state = make()
    for n, a in enumerate(segments):

        def stale(rows: np.ndarray, n: int = n) -> np.ndarray:
            inside = rows < last_slice.shape[0]
            out = np.zeros(rows.shape[0], dtype=np.bool_)
            out[inside] = last_slice[rows[inside]] >= n
            return out

        state.apply_delta({k[2:]: v for k, v in a.items() if k.startswith("d/")}, stale)
        state.apply_slice(int(a["lo"]), int(a["hi"]), {k[2:]: v for k, v in a.items() if k.startswith("s/")})
    state.apply_small(pickle.loads(manifest.small))
    return state, manifest


def _seq_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1].split(".")[0])


_MAGIC = b"freshrec-segment-1\n"
_ALIGN = 64  # every array starts at a multiple of this many bytes


def _write(path: Path, arrays: Arrays) -> int:
    """Write a segment atomically (temporary file, fsync, rename); its size in bytes.

    The layout: a magic line, the length of a JSON header, the header
    (each array's name, dtype, shape, offset and byte count), then the
    arrays' bytes, each at a multiple of ``_ALIGN``, written from the
    arrays' own memory. An ``.npz`` (what segments were before) copied
    every array and checksummed it in its zip container: a third of a
    1M-item learner's snapshot, all of it a pause of the flow.
    """
    parts = [a if a.flags.c_contiguous else a.copy() for a in arrays.values()]
    fields, at = [], 0
    for name, a in zip(arrays, parts):
        fields.append((name, a.dtype.str, a.shape, at, a.nbytes))
        at += -(-a.nbytes // _ALIGN) * _ALIGN
    header = orjson.dumps(fields)  # JSON, not pickle: reading a segment runs no code from it
    head = _MAGIC + len(header).to_bytes(8, "little") + header
    head += bytes(-len(head) % _ALIGN)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(head)
        for a in parts:
            if a.nbytes:
                f.write(a.data)
                f.write(bytes(-a.nbytes % _ALIGN))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path.stat().st_size


def _read(path: Path) -> Arrays:
    """The arrays of a segment :func:`_write` wrote (or the ``.npz`` of an earlier version: a zip file)."""
    data = bytearray(path.read_bytes())
    if data[:4] == b"PK\x03\x04":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    head = len(_MAGIC) + 8
    if data[: len(_MAGIC)] != _MAGIC:
        raise RecoveryMismatch(f"segment {path} is not a freshrec journal segment")
    size = int.from_bytes(data[len(_MAGIC) : head], "little")
    fields = orjson.loads(bytes(data[head : head + size]))
    base = head + size + (-(head + size) % _ALIGN)
    out = {}
    for name, dtype, shape, at, nbytes in fields:
        if base + at + nbytes > len(data):
            raise RecoveryMismatch(f"segment {path} is {len(data)} bytes, shorter than its header says: damaged")
        t = np.dtype(dtype)
        flat = np.frombuffer(data, t, nbytes // t.itemsize, base + at) if nbytes else np.zeros(0, t)
        out[name] = flat.reshape(tuple(shape))
    return out
