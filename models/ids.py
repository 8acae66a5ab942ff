"""Identities: external string ids, stable 63-bit item keys, and dense indexes.

User-side state (one shard per worker) and item-side state (the learner
and every ranker's replica) live in different steps, possibly in
different processes. They agree on items through :func:`item_key`, a
stable hash of the item id: no step has to ask another for an index.
Each item-side copy gives the keys dense indexes ``0..n-1`` in the order
the learner saw them (:class:`KeyIndex`), so its arrays stay contiguous.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

EMPTY = -1
"""The item key of an empty slot (a real key is never negative)."""


def item_key(item: str) -> int:
    """Stable 63-bit key of an item id, the same in every process and run.

    >>> item_key("sku-1") == item_key("sku-1"), item_key("sku-1") >= 0
    (True, True)
    """
    return int.from_bytes(hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little") >> 1


class IdMap:
    """A bidirectional map between external ids and dense indexes ``0..n-1``.

    Examples
    --------
    >>> ids = IdMap()
    >>> ids.add("alice"), ids.add("bob"), ids.add("alice")
    (0, 1, 0)
    >>> ids.get("carol") is None, ids.names[1], len(ids)
    (True, 'bob', 2)
    """

    __slots__ = ("index", "names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = list(names)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def get(self, name: str) -> int | None:
        """The index of ``name``, or None; never creates an entry."""
        return self.index.get(name)

    def add(self, name: str) -> int:
        """The index of ``name``, created if it is new."""
        idx = self.index.get(name)
        if idx is None:
            idx = len(self.names)
            self.index[name] = idx
            self.names.append(name)
        return idx

    def __getstate__(self) -> list[str]:
        return self.names  # the dict is rebuilt on load: half the pickle

    def __setstate__(self, names: list[str]) -> None:
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}


class KeyIndex:
    """Dense indexes for item keys in arrival order, with vectorised lookup.

    :meth:`lookup` maps a whole array of keys at once (a user's recent
    and seen items, for every ranking) through an open-addressing hash
    table kept as two numpy arrays, at most half full: a key's slot is its
    low bits (keys are hashes already), so a lookup is one or two random
    reads, where a binary search over a million sorted keys was twenty.
    Single keys go through a dict (the learner's hot path).

    Examples
    --------
    >>> ix = KeyIndex()
    >>> [ix.add(k) for k in (70, 10, 70, 40)]
    [0, 1, 0, 2]
    >>> ix.lookup(np.array([40, 99, 70, -1])).tolist()
    [2, -1, 0, -1]
    """

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)  # dense index -> key (capacity grows)
        self.n = 0
        self._dense: dict[int, int] = {}
        self._slot_key = np.full(1024, EMPTY, dtype=np.int64)
        self._slot_dense = np.zeros(1024, dtype=np.int64)

    def __len__(self) -> int:
        return self.n

    def get(self, key: int, default: int | None = None) -> int | None:
        return self._dense.get(key, default)

    def add(self, key: int) -> int:
        """The dense index of ``key``, created (``n``) if it is new."""
        d = self._dense.get(key)
        if d is not None:
            return d
        d = self.n
        if d == self.keys.shape[0]:
            self.keys = np.resize(self.keys, max(16, 2 * d))
        self.keys[d] = key
        self._dense[key] = d
        self.n = d + 1
        slots = self._slot_key
        if 2 * self.n > slots.shape[0]:
            self._rehash(2 * slots.shape[0])
        else:
            mask = slots.shape[0] - 1
            slot = key & mask
            while slots[slot] != EMPTY:
                slot = (slot + 1) & mask
            slots[slot] = key
            self._slot_dense[slot] = d
        return d

    def view(self) -> np.ndarray:
        """Keys of dense indexes ``0..n-1``."""
        return self.keys[: self.n]

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Dense index of each key, ``-1`` where unknown (or ``EMPTY``)."""
        out = np.full(keys.shape[0], -1, dtype=np.int64)
        mask = self._slot_key.shape[0] - 1
        todo = np.flatnonzero(keys >= 0)
        slot = keys[todo] & mask
        for _ in range(2):  # most keys sit in their slot or the next
            if not todo.size:
                return out
            found = self._slot_key[slot]
            hit = found == keys[todo]
            out[todo[hit]] = self._slot_dense[slot[hit]]
            go_on = ~hit & (found != EMPTY)  # an empty slot ends the probe: unknown
            todo, slot = todo[go_on], (slot[go_on] + 1) & mask
        if todo.size:  # the few longer probes: one dict read each beats rounds of whole-array steps
            get = self._dense.get
            out[todo] = [get(key, -1) for key in keys[todo].tolist()]
        return out

    def _place(self, keys: np.ndarray, dense: np.ndarray) -> None:
        """Insert keys known to be absent (linear probing, vectorised over the batch)."""
        mask = self._slot_key.shape[0] - 1
        slot = keys & mask
        pending = np.arange(keys.shape[0])
        while pending.size:
            s = slot[pending]
            free = self._slot_key[s] == EMPTY
            # Of several pending keys aiming at one free slot, the first takes it.
            s_free, first = np.unique(s[free], return_index=True)
            take = pending[free][first]
            self._slot_key[s_free] = keys[take]
            self._slot_dense[s_free] = dense[take]
            placed = np.zeros(keys.shape[0], dtype=np.bool_)
            placed[take] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & mask

    def _rehash(self, size: int) -> None:
        self._slot_key = np.full(size, EMPTY, dtype=np.int64)
        self._slot_dense = np.zeros(size, dtype=np.int64)
        self._place(self.keys[: self.n], np.arange(self.n))

    @classmethod
    def of(cls, keys: np.ndarray) -> KeyIndex:
        """An index of ``keys`` in order (a restore)."""
        out = cls()
        out.keys = keys.astype(np.int64, copy=True)
        out.n = keys.shape[0]
        out._dense = dict(zip(keys.tolist(), range(out.n)))
        out._rehash(max(1024, 1 << (2 * out.n).bit_length()))
        return out
