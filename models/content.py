"""Content features of items, and the content term of the blend.

An item's features are its category, its tags, the words of its title and
a year in brackets in it (a release year, as in ``Heat (1995)``), hashed
into ``DIM`` buckets (CRC-32, the same in every process) and scaled
to unit length: a sparse vector of at most ``WIDTH`` entries. A user's
content profile is the decayed sum of the features of their recent items
(the weights of the MF user vector: the newest item counts most), scaled
to unit length, so the content term ``cos(profile, item)`` is in
``[0, 1]``. It needs no state of its own on the user side: the profile is
built when the user is ranked, from the recent items the ranker already
has.

The features come from the catalogue (``freshrec.items``); an item the
catalogue does not describe has none and gets no content term. Because the
term does not depend on interactions, an item listed a second ago can be
recommended to the users whose profile matches it (content-based cold
start).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from models.items import ItemState

DIM = 1 << 15  # hashed feature buckets
WIDTH = 16  # features kept per item (category, then tags, the year, then title words)
TITLE_WEIGHT = 0.5  # a title word counts half a tag
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_YEAR = re.compile(r"\((\d{4})\)")
_STOP = frozenset(["a", "an", "and", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"])


def _bucket(token: str) -> int:
    return zlib.crc32(token.encode("utf-8", "surrogatepass")) & (DIM - 1)


def features(title: str = "", category: str = "", tags: Iterable[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The hashed, unit-length feature vector of an item: bucket indexes and values (empty: nothing to say).

    Title words of one character, stop words and numbers are left out; a
    year in brackets counts as a tag of its own.

    >>> idx, val = features("Toy Story (1995)", "Animation", ["Animation", "Comedy"])
    >>> len(idx), round(float((val**2).sum()), 6)
    (6, 1.0)
    >>> features()[0].size
    0
    """
    weights: dict[int, float] = {}
    tokens = [("c:" + category.strip().lower(), 1.0)] if category.strip() else []
    tokens += [("t:" + t.strip().lower(), 1.0) for t in tags if t.strip()]
    words = [w for w in _WORD.findall(title.lower()) if len(w) > 1 and not w.isdigit() and w not in _STOP]
    tokens += [("y:" + year, 1.0) for year in _YEAR.findall(title)]
    tokens += [("w:" + w, TITLE_WEIGHT) for w in words]
    for token, w in tokens:
        b = _bucket(token)
        if b in weights or len(weights) < WIDTH:
            weights[b] = weights.get(b, 0.0) + w
    if not weights:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    idx = np.fromiter(weights, dtype=np.int32, count=len(weights))
    val = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
    return idx, val / np.float32(np.sqrt((val.astype(np.float64) ** 2).sum()))


class ContentTable:
    """Item features by dense item of one :class:`~models.items.ItemState` (a ranker's replica).

    Features arrive by item key (:meth:`set`), possibly before the learner
    has given the item a dense index; :meth:`sync` places them once it has.
    Rows are ``WIDTH`` wide (unused entries 0) and change in place; a CSR
    matrix of them is built again only after a change.

    Examples
    --------
    >>> from models.config import ModelConfig
    >>> from models.items import ItemState
    >>> s = ItemState(ModelConfig())
    >>> table = ContentTable()
    >>> table.set([7, 8], [features(category="x"), features(category="y")])
    >>> _ = s.add(8, "b"), s.add(7, "a")
    >>> table.sync(s)
    >>> p = table.profiles(np.array([[-1, 1]]), np.array([0.5, 1.0], dtype=np.float32))
    >>> table.scores(p, len(s)).round(3).tolist()  # the user's only item is "a" (dense 1)
    [[0.0, 1.0]]
    """

    def __init__(self) -> None:
        self.idx = np.zeros((0, WIDTH), dtype=np.int32)
        self.val = np.zeros((0, WIDTH), dtype=np.float32)
        self.has = np.zeros(0, dtype=np.bool_)  # dense items with features
        self.listed: dict[int, None] = {}  # dense items with features, in the order they were listed
        self._pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by item key, until the item has a dense index
        self._rows = 0  # dense items 0.._rows-1 hold every item with features
        self._csr: sparse.csr_array | None = None
        self._state: ItemState | None = None

    @property
    def active(self) -> bool:
        return bool(self.listed)

    def set(self, keys: Iterable[int], rows: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """The features of items by key (an empty row: the item has none any more)."""
        for key, row in zip(keys, rows):
            self._pending[int(key)] = row
        if self._state is not None:
            self.sync(self._state)

    def sync(self, state: ItemState) -> None:
        """Grow to the items of ``state`` and place the features of the items it now knows."""
        self._state = state
        n = len(state)
        if not self._pending and not self.listed:
            return  # no catalogue content: no arrays
        if self.has.shape[0] < n:
            grow = max(n, 2 * self.has.shape[0]) - self.has.shape[0]
            self.idx = np.concatenate([self.idx, np.zeros((grow, WIDTH), dtype=np.int32)])
            self.val = np.concatenate([self.val, np.zeros((grow, WIDTH), dtype=np.float32)])
            self.has = np.concatenate([self.has, np.zeros(grow, dtype=np.bool_)])
        if not self._pending:
            return
        keys = np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))
        dense = state.dense(keys)
        for key, i in zip(keys[dense >= 0].tolist(), dense[dense >= 0].tolist()):
            idx, val = self._pending.pop(key)
            self.idx[i], self.val[i] = 0, 0.0
            self.idx[i, : idx.shape[0]], self.val[i, : val.shape[0]] = idx, val
            self.has[i] = bool(idx.shape[0])
            self.listed.pop(i, None)
            if idx.shape[0]:
                self.listed[i] = None
                self._rows = max(self._rows, i + 1)
            self._csr = None

    def csr(self) -> sparse.csr_array:
        """The features of the dense items up to the last one with features, as a CSR matrix ``(rows, DIM)``."""
        if self._csr is None:
            n = self._rows
            used = self.val[:n] != 0  # new arrays: scipy may compact what it is given in place
            indptr = np.concatenate([[0], np.cumsum(used.sum(axis=1))])
            self._csr = sparse.csr_array((self.val[:n][used], self.idx[:n][used], indptr), shape=(n, DIM))
        return self._csr

    def profiles(self, recent: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Unit-length content profiles of recent-items rows ``(users, history)`` (dense, -1 empty), ``(DIM, users)``.

        A column per user: the layout the sparse product of :meth:`scores`
        reads without a copy (transposing a block's profiles cost 8 ms).
        The newest item weighs ``weights[-1]``, the one before
        ``weights[-2]`` (as :func:`~models.mf.user_vectors`); a user none of
        whose items has features gets a zero profile.
        """
        users = recent.shape[0]
        out = np.zeros((DIM, users), dtype=np.float32)
        n = self.has.shape[0]
        ok = (recent >= 0) & (recent < n)
        ok[ok] = self.has[recent[ok]]
        if not ok.any():
            return out
        age = np.cumsum((recent >= 0)[:, ::-1], axis=1)[:, ::-1]
        w = weights[np.clip(weights.shape[0] - age, 0, weights.shape[0] - 1)]
        u, a = np.nonzero(ok)
        items = recent[u, a]
        buckets = self.idx[items].ravel()
        np.add.at(out, (buckets, np.repeat(u, WIDTH)), (self.val[items] * w[u, a][:, None]).ravel())
        # the norm of the few hundred rows the users' items touch: over all DIM rows it took 0.4 ms for 11 users
        used = np.zeros(DIM, dtype=np.bool_)
        used[buckets] = True
        touched = out[used]
        touched /= np.maximum(np.sqrt(np.einsum("du,du->u", touched, touched)), np.float32(1e-12))[None, :]
        out[used] = touched
        return out

    def item_profiles(self, items: np.ndarray) -> np.ndarray:
        """The features of dense ``items`` as profiles ``(DIM, len(items))`` (a similar-items list's user)."""
        out = np.zeros((DIM, items.shape[0]), dtype=np.float32)
        known = items[items < self.has.shape[0]]
        cols = np.flatnonzero(items < self.has.shape[0])
        np.add.at(out, (self.idx[known].ravel(), np.repeat(cols, WIDTH)), self.val[known].ravel())
        return out

    def scores(self, profiles: np.ndarray, n: int, items: np.ndarray | None = None) -> np.ndarray:
        """``cos(profile, item)`` for dense ``items`` (None: ``0..n-1``), ``(users, len(items))`` float32."""
        have, users = min(n, self._rows), profiles.shape[1]
        if items is None:
            out = np.zeros((users, n), dtype=np.float32)
            if have:
                m = self.csr()
                out[:, :have] = ((m if have == m.shape[0] else m[:have]) @ profiles).T
            return out
        out = np.zeros((users, items.shape[0]), dtype=np.float32)
        inside = items < have
        if inside.any():
            out[:, inside] = (self.csr()[items[inside]] @ profiles).T
        return out

    def pair_scores(self, profiles: np.ndarray, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """``cos(profile, item)`` of ``(user, item)`` pairs."""
        out = np.zeros(item.shape[0], dtype=np.float32)
        inside = item < self.has.shape[0]
        if inside.any():
            it, us = item[inside], user[inside]
            out[inside] = np.einsum("pw,pw->p", profiles[self.idx[it], us[:, None]], self.val[it])
        return out
