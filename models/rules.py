"""Business rules: a TOML file that product people edit, applied to every user list before it is written.

A file is a list of ``[[rule]]`` tables (``deploy/rules.example.toml`` is a
commented example). Every rule has a ``name`` and a ``kind``, and may have
``who``, a table of user attributes (from the ``freshrec.users`` topic)
that must all match for the rule to apply to a user, and ``where``, the
items it concerns: ``category`` (equal), ``tags`` (any of them), ``items``
(ids); every key given must match.

- ``filter``: the items never appear;
- ``boost`` / ``bury``: their scores are multiplied by ``factor`` (> 1 /
  in (0, 1));
- ``pin``: ``item`` at ``position`` (1 is the top) while it is available;
- ``diversity``: at most ``max`` items of one category in the first
  ``top``;
- ``new_item_boost``: scores of items listed in the catalogue less than
  ``max_age_s`` ago multiplied by ``factor``.

Rules reorder a pool of candidates ranked by the model (``POOL`` times the
list length), so a boost lifts an item from that pool, not from the whole
catalogue. A bad file raises :class:`RuleError` naming the file, the rule
and the field.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

POOL = 3  # rules reorder the model's best POOL * k items
KINDS = ("filter", "boost", "bury", "pin", "diversity", "new_item_boost")
_FIELDS = {
    "filter": {"where"},
    "boost": {"where", "factor"},
    "bury": {"where", "factor"},
    "pin": {"item", "position"},
    "diversity": {"max", "top"},
    "new_item_boost": {"factor", "max_age_s"},
}
_OPTIONAL = {"name", "kind", "who", "where"}


class RuleError(ValueError):
    """A rules file that cannot be used; the message names the file, the rule and the field."""


class ItemFacts(NamedTuple):
    """What rules need to know of an item: from the catalogue."""

    category: str
    tags: frozenset[str]
    listed_at: float  # when the catalogue first listed it (epoch seconds)


@dataclass(frozen=True)
class Where:
    category: str | None = None
    tags: frozenset[str] = frozenset()
    items: frozenset[str] = frozenset()

    def matches(self, item: str, facts: ItemFacts | None) -> bool:
        if self.items and item not in self.items:
            return False
        if self.category is not None and (facts is None or facts.category != self.category):
            return False
        return not self.tags or (facts is not None and bool(self.tags & facts.tags))


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    who: tuple[tuple[str, str], ...] = ()
    where: Where = Where()
    factor: float = 1.0
    item: str = ""
    position: int = 0
    max: int = 0
    top: int = 0
    max_age_s: float = 0.0

    def applies_to(self, attrs: Mapping[str, str]) -> bool:
        return all(attrs.get(k) == v for k, v in self.who)


class Listed(NamedTuple):
    """A list as rules see it: item ids and scores, best first, and the item keys."""

    items: list[str]
    scores: list[float]
    keys: list[int]


def parse_rules(text: str, source: str) -> tuple[Rule, ...]:
    """The rules of a TOML text; ``source`` names it in errors.

    >>> parse_rules('[[rule]]\\nname = "x"\\nkind = "bury"\\nfactor = 2.0\\nwhere = {category = "a"}', "r.toml")
    Traceback (most recent call last):
    ...
    models.rules.RuleError: r.toml: rule 'x' (#1): factor: must be in (0, 1) for bury, got 2.0
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as ex:
        raise RuleError(f"{source}: not valid TOML: {ex}") from ex
    unknown = set(doc) - {"rule"}
    if unknown:
        raise RuleError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}; rules are [[rule]] tables")
    tables = doc.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    rules, names = [], set()
    for n, table in enumerate(tables, 1):
        rule = _rule(table, f"{source}: rule {table.get('name', '?')!r} (#{n})")
        if rule.name in names:
            raise RuleError(f"{source}: rule {rule.name!r} (#{n}): name: another rule has this name")
        names.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def load_rules(path: str) -> tuple[Rule, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as ex:
        raise RuleError(f"{path}: cannot read the rules file: {ex}") from ex
    return parse_rules(text, path)


def _rule(t: dict[str, Any], where: str) -> Rule:
    def bad(field: str, why: str) -> RuleError:
        return RuleError(f"{where}: {field}: {why}")

    name, kind = t.get("name"), t.get("kind")
    if not isinstance(name, str) or not name:
        raise bad("name", "every rule needs a name (a string)")
    if kind not in KINDS:
        raise bad("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = _FIELDS[kind] | _OPTIONAL
    extra = set(t) - allowed
    if extra:
        raise bad(sorted(extra)[0], f"not a field of a {kind} rule (its fields: {', '.join(sorted(allowed))})")
    missing = _FIELDS[kind] - set(t)
    if missing:
        raise bad(sorted(missing)[0], f"a {kind} rule needs it")
    who = t.get("who", {})
    if not isinstance(who, dict) or not all(isinstance(v, (str, int, bool)) for v in who.values()):
        raise bad("who", 'must be a table of user attributes, e.g. who = { segment = "kids" }')
    rule = Rule(name, kind, tuple(sorted((k, str(v)) for k, v in who.items())), _where(t.get("where", {}), bad))
    if kind in ("boost", "bury", "new_item_boost"):
        f = t["factor"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f):
            raise bad("factor", f"must be a number, got {f!r}")
        ok = 0 < f < 1 if kind == "bury" else f > 1
        if not ok:
            raise bad("factor", f"must be {'in (0, 1)' if kind == 'bury' else '> 1'} for {kind}, got {f!r}")
        rule = _replace(rule, factor=float(f))
    if kind == "new_item_boost":
        rule = _replace(rule, max_age_s=_positive(t["max_age_s"], "max_age_s", bad, float))
    if kind == "pin":
        if not isinstance(t["item"], str) or not t["item"]:
            raise bad("item", "must be an item id (a string)")
        rule = _replace(rule, item=t["item"], position=_positive(t["position"], "position", bad, int))
    if kind == "diversity":
        rule = _replace(rule, max=_positive(t["max"], "max", bad, int), top=_positive(t["top"], "top", bad, int))
    if kind in ("filter", "boost", "bury") and rule.where == Where():
        raise bad("where", f"a {kind} rule needs at least one of category, tags, items")
    return rule


def _replace(rule: Rule, **kw: Any) -> Rule:
    return Rule(**{**rule.__dict__, **kw})


def _positive(value: Any, field: str, bad: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise bad(field, f"must be a {'whole ' if kind is int else ''}number, got {value!r}")
    if not value > 0:
        raise bad(field, f"must be > 0, got {value!r}")
    return kind(value)


def _where(w: Any, bad: Any) -> Where:
    if not isinstance(w, dict):
        raise bad("where", 'must be a table, e.g. where = { category = "shoes" }')
    unknown = set(w) - {"category", "tags", "items"}
    if unknown:
        raise bad(f"where.{sorted(unknown)[0]}", "not a condition (category, tags, items)")
    category = w.get("category")
    if category is not None and not isinstance(category, str):
        raise bad("where.category", f"must be a string, got {category!r}")
    lists = {}
    for key in ("tags", "items"):
        v = w.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad(f"where.{key}", "must be a list of strings")
        lists[key] = frozenset(v)
    return Where(category, lists["tags"], lists["items"])


STATIC = ("filter", "boost", "bury")  # kinds whose effect on an item depends on the item alone


def item_effect(rules: Sequence[Rule], item: str, facts: ItemFacts | None) -> tuple[bool, float]:
    """What the ``STATIC`` rules among ``rules`` do to ``item``: whether it is filtered out, and its score factor.

    >>> rules = parse_rules('[[rule]]\\nname = "b"\\nkind = "boost"\\nfactor = 2.0\\nwhere = {items = ["x"]}', "r")
    >>> item_effect(rules, "x", None), item_effect(rules, "y", None)
    ((False, 2.0), (False, 1.0))
    """
    drop, factor = False, 1.0
    for r in rules:
        if r.kind in STATIC and r.where.matches(item, facts):
            if r.kind == "filter":
                drop = True
            else:
                factor *= r.factor
    return drop, factor


def apply_rules(
    rules: Sequence[Rule],
    attrs: Mapping[str, str],
    pool: Listed,
    facts: Mapping[str, ItemFacts],
    pinnable: Mapping[str, int],
    now: float,
    k: int,
    effects: Mapping[str, tuple[bool, float]] | None = None,
) -> Listed:
    """The list of ``k`` that a user with attributes ``attrs`` gets from the model's ``pool``, best first.

    ``pinnable``: the pinned items that may be shown to this user
    (available, not seen yet), with their keys. A pinned item takes the
    score of the item it displaces, so scores stay in order. ``effects``:
    :func:`item_effect` of the ``STATIC`` rules for everyone (no ``who``)
    for every item of the pool, precomputed by the caller; None: computed here.

    >>> rules = parse_rules('[[rule]]\\nname = "b"\\nkind = "boost"\\nfactor = 3.0\\nwhere = {category = "c"}', "r")
    >>> facts = {"y": ItemFacts("c", frozenset(), 0.0)}
    >>> apply_rules(rules, {}, Listed(["x", "y"], [0.5, 0.3], [1, 2]), facts, {}, 0.0, 2).items
    ['y', 'x']
    """
    mine = [r for r in rules if r.applies_to(attrs)]
    items, scores, keys = pool.items, pool.scores, pool.keys
    pinned = {r.item for r in mine if r.kind == "pin"}
    static = [r for r in mine if r.kind in STATIC and (effects is None or r.who)]  # what ``effects`` leaves to do
    new_items = [r for r in mine if r.kind == "new_item_boost"]
    effect = list(map(effects.__getitem__, items)) if effects is not None else [(False, 1.0)] * len(items)
    if pinned or static or new_items:  # item by item (the rules for everyone alone take the short way below)
        keep = []
        for j, item in enumerate(items):
            if item in pinned:
                continue
            drop, factor = effect[j]
            f = facts.get(item)
            if static:
                mine_drop, mine_factor = item_effect(static, item, f)
                drop, factor = drop or mine_drop, factor * mine_factor
            if drop:
                continue
            s = factor * scores[j]
            for r in new_items:
                if f is not None and now - f.listed_at < r.max_age_s:
                    s *= r.factor
            keep.append((s, j))
    else:
        keep = [(factor * s, j) for j, ((drop, factor), s) in enumerate(zip(effect, scores)) if not drop]
    keep.sort(key=itemgetter(0), reverse=True)  # stable: equal scores keep the model's order
    order = _diverse(keep, items, facts, [r for r in mine if r.kind == "diversity"], k)
    out = [(items[j], s, keys[j]) for s, j in order[:k]]
    for r in sorted((r for r in mine if r.kind == "pin"), key=lambda r: r.position):
        key = pinnable.get(r.item)
        if key is None or any(name == r.item for name, _, _ in out):
            continue
        at = min(r.position, len(out) + 1) - 1
        score = out[at][1] if at < len(out) else (out[-1][1] if out else 0.0)
        out.insert(at, (r.item, score, key))
        out = out[:k]
    return Listed([x[0] for x in out], [round(x[1], 6) for x in out], [x[2] for x in out])


def _diverse(
    ranked: list[tuple[float, int]], items: list[str], facts: Mapping[str, ItemFacts], rules: list[Rule], k: int
) -> list[tuple[float, int]]:
    """Greedy, best first: an item whose category has ``max`` already in the first ``top`` waits until past ``top``."""
    if not rules:
        return ranked
    top = min(max(r.top for r in rules), k)
    out: list[tuple[float, int]] = []
    held: list[tuple[float, int]] = []
    counts: dict[str, int] = {}
    for n, entry in enumerate(ranked):
        if len(out) >= top:
            return out + held + ranked[n:]  # past the first top: by score again (held scores are the higher)
        f = facts.get(items[entry[1]])
        cat = f.category if f is not None and f.category else None
        if cat is not None:
            had = counts.get(cat, 0)
            if any(len(out) < r.top and had >= r.max for r in rules):
                held.append(entry)
                continue
            counts[cat] = had + 1
        out.append(entry)
    return out + held
