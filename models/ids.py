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

    :meth:`lookup` maps a whole array of keys at once (a user's seen
    items, up to a thousand, for every ranking): a binary search in a
    sorted copy of the keys, plus a dict for the few added since that copy
    was last merged.

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
        self._sorted = np.zeros(0, dtype=np.int64)  # keys[:_merged], sorted
        self._perm = np.zeros(0, dtype=np.int64)  # their dense indexes
        self._merged = 0

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
        return d

    def view(self) -> np.ndarray:
        """Keys of dense indexes ``0..n-1``."""
        return self.keys[: self.n]

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Dense index of each key, ``-1`` where unknown."""
        if self.n - self._merged > max(256, self._merged // 16):
            self._merge()
        out = np.full(keys.shape[0], -1, dtype=np.int64)
        if self._merged:
            pos = np.searchsorted(self._sorted, keys)
            np.minimum(pos, self._merged - 1, out=pos)
            hit = self._sorted[pos] == keys
            out[hit] = self._perm[pos[hit]]
        if self.n > self._merged:
            miss = np.flatnonzero(out < 0)
            if miss.size:
                get = self._dense.get
                out[miss] = [get(k, -1) for k in keys[miss].tolist()]
        return out

    def _merge(self) -> None:
        """Fold the keys added since the last merge into the sorted copy (O(n), amortised)."""
        new = np.arange(self._merged, self.n)
        order = np.argsort(self.keys[new], kind="stable")
        new_keys, new_dense = self.keys[new][order], new[order]
        at = np.searchsorted(self._sorted, new_keys)
        self._sorted = np.insert(self._sorted, at, new_keys)
        self._perm = np.insert(self._perm, at, new_dense)
        self._merged = self.n

    @classmethod
    def of(cls, keys: np.ndarray) -> KeyIndex:
        """An index of ``keys`` in order (a restore)."""
        out = cls()
        out.keys = keys.astype(np.int64, copy=True)
        out.n = keys.shape[0]
        out._dense = dict(zip(keys.tolist(), range(out.n)))
        return out
