"""Rules in the flow: the rules file (reloaded when it changes), user attributes from ``freshrec.users``, and
what a ranker needs to apply them (:class:`RuleBook`).

User attributes come like the catalogue: a compacted topic, key = user id,
a JSON object value ``{"user": "u1", "segment": "kids", "country": "FR"}``
(strings, numbers or booleans; a tombstone forgets the user). Every
ranker of a process gets them from the process's feed (``operators/feeds.py``)
and keeps its own shard's; bad ones go to ``freshrec.users.dlq``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from models.blend import Ranked
from models.ids import item_key
from models.items import ItemState
from models.rules import POOL, STATIC, ItemFacts, Listed, Rule, RuleError, apply_rules, item_effect, load_rules
from models.served import ServedLists
from operators.catalogue import ItemMessage, json_object
from operators.parse import Rejected
from state import metrics

log = logging.getLogger(__name__)

_CHANGED_KEEP_S = 600.0  # a reload's added and removed rules count for re-ranks this long

MAX_ATTRS = 32


class RulesFile:
    """The rules of one file, reloaded when its modification time or size changes.

    A file that fails to load at start raises :class:`~models.rules.RuleError`
    (the run stops with that one line). A bad version later is logged in one
    line and the rules loaded before stay in force. One instance per path
    and process (:meth:`shared`), so a process logs a reload once.
    """

    _shared: ClassVar[dict[str, RulesFile]] = {}
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = self._stat()
        self.rules: tuple[Rule, ...] = load_rules(path)
        self.version = 1
        self._changes: list[tuple[float, frozenset[Rule]]] = []  # (when, rules added or removed) per reload
        metrics.RULES.set(len(self.rules))

    @classmethod
    def shared(cls, path: str) -> RulesFile:
        with cls._lock:
            if path not in cls._shared:
                cls._shared[path] = cls(path)
            return cls._shared[path]

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def check(self) -> None:
        """Reload the file if it changed since the last look."""
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                rules = load_rules(self.path)
            except RuleError as ex:
                metrics.RULE_RELOADS.labels("rejected").inc()
                log.error("rules not reloaded: %s; the %d rules loaded before stay in force", ex, len(self.rules))
                return
            now = time.monotonic()
            self._changes = [c for c in self._changes if now - c[0] < _CHANGED_KEEP_S]
            self._changes.append((now, frozenset(self.rules) ^ frozenset(rules)))
            self.rules, self.version = rules, self.version + 1
            metrics.RULE_RELOADS.labels("applied").inc()
            metrics.RULES.set(len(rules))
            log.info("rules reloaded from %s: %d rules", self.path, len(rules))

    def changed(self) -> frozenset[Rule]:
        """The rules added or removed by the reloads of the last ``_CHANGED_KEEP_S`` (what a re-rank is for)."""
        with self._lock:
            return frozenset().union(*(rules for _, rules in self._changes))


class UserFacts(NamedTuple):
    """User attributes for one ranker: user id -> attributes (None: forget the user)."""

    attrs: dict[str, dict[str, str] | None]


def parse_user(key: bytes | None, value: bytes | None) -> tuple[str, dict[str, str] | None] | Rejected:
    """One user-attributes message: ``(user, attributes)``, ``(user, None)`` for a tombstone, or why not.

    >>> parse_user(b"u1", b'{"segment": "kids", "age": 9}')
    ('u1', {'segment': 'kids', 'age': '9'})
    >>> parse_user(None, b'{"segment": ["a"]}').detail
    'user is missing and the message has no key'
    """
    user = key.decode("utf-8", "replace") if key else ""
    if value is None:
        return (user, None) if user else Rejected("missing_user", "a tombstone needs the user id as its key", b"")
    obj = json_object(value)
    if isinstance(obj, Rejected):
        return obj
    named = obj.pop("user", None)
    if named is not None and (not isinstance(named, str) or (user and named != user)):
        return Rejected("bad_user", f"the key {user!r} and the user {named!r} differ", value)
    user = user or (named or "")
    if not user:
        return Rejected("missing_user", "user is missing and the message has no key", value)
    if len(obj) > MAX_ATTRS or not all(isinstance(v, (str, int, float, bool)) for v in obj.values()):
        return Rejected("bad_value", f"attributes must be at most {MAX_ATTRS} strings, numbers or booleans", value)
    return user, {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in obj.items()}


def user_changes(parsed: list[tuple[ItemMessage, tuple[str, dict[str, str] | None]]]) -> UserFacts | None:
    """What the rankers do with a batch of valid user-attribute messages; the last of a user wins."""
    facts = UserFacts({user: attrs for _, (user, attrs) in parsed})
    return facts if facts.attrs else None


class RuleBook:
    """What one ranker applies rules with: the rules file, its users' attributes, the items' facts.

    It also keeps the model's pool of each user last ranked under rules
    (:meth:`remember`), so that a rules change applies the new rules to
    that pool (:meth:`pooled`) instead of running the model again: the
    list in Redis was ranked from that pool, and only the rules changed.
    About ``12 * POOL * k`` bytes per user, kept only while rules are in
    force.
    """

    def __init__(self, path: str) -> None:
        self.file = RulesFile.shared(path) if path else None
        self.attrs: dict[str, dict[str, str]] = {}
        self.facts: dict[str, ItemFacts] = {}
        self._pools: ServedLists | None = None  # by shard row: the model's pool, before the rules
        self._pins: dict[str, int] = {}  # pinned item -> key, for the rules in force
        self._pins_of = -1
        self._effects: dict[str, tuple[bool, float]] = {}  # item -> item_effect of the rules for everyone
        self._effects_of = -1  # the rules version they are for (cleared too when item facts change)

    @property
    def active(self) -> bool:
        return self.file is not None and bool(self.file.rules)

    def pool(self, k: int) -> int:
        """How many items the model ranks for a list of ``k``."""
        return POOL * k if self.active else k

    def remember(self, rows: Sequence[int], users: Sequence[str], pools: Sequence[Ranked], k: int) -> None:
        """Keep the model's pools of users just ranked for lists of ``k``; with no rules in force, drop all pools."""
        if not rows:
            return
        if not self.active:
            if self._pools is not None:
                self._pools = None  # stale from here on: the users' lists were ranked without a pool
            return
        if self._pools is None or self._pools.width != self.pool(k):
            self._pools = ServedLists(self.pool(k))
        self._pools.record_each(rows, users, pools, [0.0] * len(rows))

    def pooled(self, rows: Sequence[int], state: ItemState, blocked: np.ndarray) -> list[Ranked | None]:
        """The kept pools of users ``rows`` without the ``blocked`` dense items; None for a user with none kept.

        A user ranked since the ranker started has one (a restart ranks
        the others with the model). Scores come back as they were written
        (kept as float32, rounded again to six decimals).
        """
        out: list[Ranked | None] = [None] * len(rows)
        p = self._pools
        if p is None or not rows:
            return out
        at = np.array(rows, dtype=np.int64)
        have = np.flatnonzero(at < p.keys.shape[0])
        have = have[p.keys[at[have], 0] >= 0]
        if not have.size:
            return out
        keys = p.keys[at[have]]
        dense = state.dense(keys.ravel())
        keep = dense >= 0
        if blocked.size:
            keep &= ~np.isin(dense, blocked)
        names = state.names
        # flat, then cut per user: one pass over every item of the pools, not a few numpy calls per user
        item_names = [names[j] for j in dense[keep].tolist()]
        scores = p.scores[at[have]].ravel()[keep].astype(np.float64).round(6).tolist()
        item_keys = keys.ravel()[keep].tolist()
        ends = np.cumsum(keep.reshape(keys.shape).sum(axis=1)).tolist()
        start = 0
        for i, end in zip(have.tolist(), ends):
            out[i] = Ranked(item_names[start:end], scores[start:end], item_keys[start:end])
            start = end
        return out

    def learn_users(self, facts: UserFacts, mine: Callable[[str], bool]) -> None:
        """Attributes of the users ``mine`` accepts (this ranker's shard)."""
        for user, attrs in facts.attrs.items():
            if not mine(user):
                continue
            if attrs is None:
                self.attrs.pop(user, None)
            else:
                self.attrs[user] = attrs

    def affected(self, users: Sequence[str]) -> list[bool]:
        """For each user, whether a rule the file added or removed lately applies to them.

        A changed rule for everyone (no ``who``) affects every user.
        """
        assert self.file is not None
        changed = self.file.changed()
        if any(not r.who for r in changed):
            return [True] * len(users)
        return [any(r.applies_to(self.attrs.get(u, {})) for r in changed) for u in users]

    def learn_items(self, facts: Mapping[str, ItemFacts]) -> None:
        """What the catalogue says of items (their category, tags, listing time), for the rules."""
        self.facts.update(facts)
        self._effects.clear()

    def effects_of(self, ranked: Sequence[Ranked]) -> dict[str, tuple[bool, float]]:
        """``item_effect`` of the filter, boost and bury rules for everyone, for every item of ``ranked`` (cached)."""
        assert self.file is not None
        if self._effects_of != self.file.version:
            self._effects, self._effects_of = {}, self.file.version
        cache = self._effects
        missing = set().union(*(r.items for r in ranked)).difference(cache)
        if missing:
            rules = [r for r in self.file.rules if not r.who and r.kind in STATIC]
            for item in missing:
                cache[item] = item_effect(rules, item, self.facts.get(item))
        return cache

    def name_of(self, key: int) -> str | None:
        """The id of a pinned item (which the model may not know) by its key."""
        return next((item for item, k in self.pins().items() if k == key), None)

    def pins(self) -> dict[str, int]:
        assert self.file is not None
        if self._pins_of != self.file.version:
            self._pins = {r.item: item_key(r.item) for r in self.file.rules if r.kind == "pin"}
            self._pins_of = self.file.version
        return self._pins

    def apply(
        self,
        users: Sequence[str],
        seen: Sequence[Any],
        ranked: Sequence[Ranked],
        blocked: Callable[[int], bool],
        now: float,
        k: int,
    ) -> list[Ranked]:
        """Each user's list of ``k`` under the rules, from the model's pool; ``seen``: each user's item keys."""
        assert self.file is not None
        rules, pins, facts, effects = self.file.rules, self.pins(), self.facts, self.effects_of(ranked)
        out = []
        for user, user_seen, r in zip(users, seen, ranked):
            pinnable: Mapping[str, int] = {}
            if pins:
                have = set(user_seen.tolist())
                pinnable = {i: key for i, key in pins.items() if key not in have and not blocked(key)}
            got = apply_rules(rules, self.attrs.get(user, {}), Listed(*r), facts, pinnable, now, k, effects)
            out.append(Ranked(got.items, got.scores, got.keys))
        return out
