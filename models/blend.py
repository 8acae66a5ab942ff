"""The blended score of (user, item) pairs, and ranked lists with external ids and scores.

A user's score for item ``i`` blends these signals, each scaled to
``[0, 1]``::

    w_mf * sigmoid(p_u . q_i) + w_cooc * co(u, i) / max co + w_pop * pop(i) / max pop
        + w_trend * trend(i) / max trend + w_content * cos(c_u, c_i)

``p_u`` is the user vector (``models/mf.py``), ``co`` the co-occurrence of
``i`` with the user's last ``window`` items, normalised over the items the
user may still be shown, ``pop`` decayed popularity (``half_life_s``) and
``trend`` the same over a short half life (``trend_half_life_s``), and
``cos(c_u, c_i)`` the match of the item's catalogue features with the
user's content profile (``models/content.py``; 0 for an item the
catalogue does not describe). Items the user interacted with are excluded.

Scores are computed in a shifted and scaled unit (``(s - half) / unit``,
:meth:`Blend.unit`) so that the MF term is a bare ``tanh``; lists carry
scores mapped back to the blend.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.config import ModelConfig
from models.content import ContentTable
from models.items import ItemState, Replica


class Ranked(NamedTuple):
    """A ranked list: external item ids, best first, their scores, and their item keys."""

    items: list[str]
    scores: list[float]
    keys: list[int]


EMPTY = Ranked([], [], [])


class Blend:
    """The blend over a :class:`~models.items.Replica`'s current state (read-only)."""

    def __init__(self, config: ModelConfig, replica: Replica) -> None:
        self.config = config
        self.replica = replica
        self.content = ContentTable()

    def uses_content(self) -> bool:
        """Whether the content term counts (a weight, and catalogue features placed on the current items)."""
        if not self.config.w_content:
            return False
        self.content.sync(self.state)
        return self.content.active

    @property
    def state(self) -> ItemState:
        s = self.replica.state
        if s is None:
            raise RuntimeError("the ranker has no item state yet (no base delta from the learner)")
        return s

    def unit(self) -> tuple[float, float]:
        """``(half, unit)``: ranking scores s map back to the blend as ``s * unit + half``."""
        half = 0.5 * self.config.w_mf
        return half, (half if half > 0 else 1.0)

    def base_scores(
        self, vectors: np.ndarray, items: np.ndarray | None, popularity: bool = True, profiles: np.ndarray | None = None
    ) -> np.ndarray:
        """The MF, popularity and content terms for ``items`` (None: all), ``(len(vectors), len(items))`` float32.

        ``profiles``: the users' content profiles (None: no content term).
        """
        s, c = self.state, self.config
        factors = s.mf.item_factors if items is None else s.mf.item_factors[items]
        half, unit = self.unit()
        if half > 0:
            score = (vectors * np.float32(0.5)) @ factors.T
            np.tanh(score, out=score)
        else:
            score = np.zeros((vectors.shape[0], factors.shape[0]), dtype=np.float32)
        if popularity:
            score += self.popularity(items)
        if profiles is not None:
            content = self.content.scores(profiles, len(s), items)
            content *= np.float32(c.w_content / unit)
            score += content
        return score

    def pair_scores(
        self, vectors: np.ndarray, user: np.ndarray, item: np.ndarray, popularity: bool, profiles: np.ndarray | None
    ) -> np.ndarray:
        """The terms of ``(user, item)`` pairs but co-occurrence (what :meth:`base_scores` gives per cell)."""
        s, c = self.state, self.config
        half, unit = self.unit()
        if half > 0:
            score = np.einsum("pf,pf->p", s.mf.item_factors[item], vectors[user] * np.float32(0.5))
            np.tanh(score, out=score)
        else:
            score = np.zeros(item.shape[0], dtype=np.float32)
        if popularity:
            score += self.popularity(item)
        if profiles is not None:
            score += self.content.pair_scores(profiles, user, item) * np.float32(c.w_content / unit)
        return score

    def popularity(self, items: np.ndarray | None) -> np.ndarray:
        """The popularity and trend terms of ``items`` (None: every item), float32 (0: both weights 0)."""
        s, c = self.state, self.config
        unit = self.unit()[1]
        out = np.zeros(s.mf.item_factors.shape[0] if items is None else items.shape[0], dtype=np.float32)
        for counts, w in ((s.pop, c.w_pop), (s.trend, c.w_trend)):
            peak = counts.peak()
            if w and peak > 0:
                raw = counts.raw() if items is None else counts.raw()[items]
                out += (raw * (w / (peak * unit))).astype(np.float32)
        return out

    def named_many(self, tops: list[np.ndarray], scores: np.ndarray) -> list[Ranked]:
        """:meth:`named` of many lists at once: ``scores`` holds theirs, concatenated."""
        s = self.state
        half, unit = self.unit()
        idx = np.concatenate(tops) if tops else np.zeros(0, dtype=np.int64)
        names = s.names
        all_names = [names[j] for j in idx.tolist()]
        values = (scores.astype(np.float64) * unit + half).round(6).tolist()
        keys = s.keys.keys[idx].tolist()
        out, at = [], 0
        for t in tops:
            end = at + t.shape[0]
            out.append(Ranked(all_names[at:end], values[at:end], keys[at:end]))
            at = end
        return out

    def named(self, idx: np.ndarray, score: np.ndarray) -> Ranked:
        s = self.state
        half, unit = self.unit()
        names, keys = s.names, s.keys.keys
        dense = idx.tolist()
        values = (score.astype(np.float64) * unit + half).round(6).tolist()
        return Ranked([names[j] for j in dense], values, keys[idx].tolist())
