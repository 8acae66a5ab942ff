"""Synthetic shop logs made of browsing sessions: typed events, or clicks with sessions as users.

Where :mod:`operators.synthetic` models stable tastes (a user's next item
follows their topic), these logs model shopping sessions, where the last
item or two say most about the next one:

- items sit in categories, each a ring of "product lines": an item's
  related items are its neighbours on the ring, within ``related``;
- a session starts in one of the user's two favourite categories (or, one
  time in five, anywhere), at a popular item of it, and walks: the next
  view is a related item of the current one (``follow``), a popular item
  of the same category, or anything popular;
- every item has a hidden quality: related items of higher quality are
  viewed more, and a view turns into a cart, and a cart into a purchase,
  more often for them. So carts and purchases point at the items later
  views favour, and the event-type weights matter;
- sessions of different users interleave in time; events within a
  session are 10-120 s apart.

``shop`` (:data:`SHOP`) keeps users across sessions and emits ``view``,
``cart`` and ``purchase``; ``clicks`` (:data:`CLICKS`) makes every session
its own user and keeps only the views, as ``click``: the session-based
click logs of shops (no user history beyond the session).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.event import Event
from operators.parse import DEFAULT_WEIGHTS
from operators.synthetic import zipf_cdf


@dataclass(frozen=True)
class SessionConfig:
    """Shape of a session log.

    Parameters
    ----------
    users, items, categories
        Population sizes (item ``j`` is in category ``j // (items // categories)``).
    events
        About this many events (whole sessions are kept).
    session_mean
        Mean number of views per session (at least 2).
    related
        How far along its category's ring an item's related items sit.
    follow
        Probability that the next view is a related item of the current one
        (else a popular item of the category 75%, anything popular 25%).
    cart, purchase
        Highest probability that a view adds to cart, and that a cart is bought
        (an item of quality q gets q times as much).
    sessions_as_users, typed
        ``clicks``: every session is a new user; only views, as ``click``.
    seed
        Same seed, same log.
    """

    users: int = 3000
    items: int = 5000
    categories: int = 50
    events: int = 100_000
    session_mean: float = 6.0
    related: int = 3
    follow: float = 0.6
    cart: float = 0.25
    purchase: float = 0.5
    sessions_as_users: bool = False
    typed: bool = True
    seed: int = 7
    start_ts: float = 1.7e9
    span_s: float = 30 * 86400.0


SHOP = SessionConfig()
CLICKS = replace(SHOP, sessions_as_users=True, typed=False, seed=8)
LOGS = {"shop": SHOP, "clicks": CLICKS}
"""The named session logs (``freshrec eval --synthetic NAME``)."""


def session_events(cfg: SessionConfig) -> list[Event]:
    """The log's events in time order.

    >>> log = session_events(SessionConfig(users=50, items=200, categories=5, events=500))
    >>> len(log) >= 500, sorted({e.kind for e in log}), all(a.ts <= b.ts for a, b in zip(log, log[1:]))
    (True, ['cart', 'purchase', 'view'], True)
    """
    shop = _Shop(cfg)
    rng = shop.rng
    rows: list[tuple[float, str, str, str]] = []
    session = 0
    while len(rows) < cfg.events:
        user = min(int(np.searchsorted(shop.user_cdf, rng.random())), cfg.users - 1)
        who = f"s{session}" if cfg.sessions_as_users else f"u{user}"
        r = rng.random()
        fav = shop.favourites[user]
        cat = int(fav[0] if r < 0.5 else fav[1] if r < 0.8 else rng.integers(cfg.categories))
        item = shop.popular_in(cat)
        length = 2 + int(rng.geometric(1.0 / max(cfg.session_mean - 1.0, 1.0)))
        ts = cfg.start_ts + rng.random() * cfg.span_s
        viewed: set[int] = set()
        for _ in range(length):
            if viewed:
                item = shop.next(item)
                if item in viewed:
                    continue  # a shop's log would show a repeat; the evaluation excludes seen items anyway
                ts += 10.0 + rng.random() * 110.0
            viewed.add(item)
            name, q = f"i{item}", shop.quality[item]
            rows.append((ts, who, name, "view" if cfg.typed else "click"))
            if cfg.typed and rng.random() < cfg.cart * q:
                ts += 5.0 + rng.random() * 30.0
                rows.append((ts, who, name, "cart"))
                if rng.random() < cfg.purchase * q:
                    ts += 30.0 + rng.random() * 300.0
                    rows.append((ts, who, name, "purchase"))
        session += 1
    rows.sort()
    return [Event(u, i, k, DEFAULT_WEIGHTS[k], round(t, 3), round(t, 3)) for t, u, i, k in rows]


class _Shop:
    """The hidden structure: categories as rings, item quality, popularity, users' favourite categories."""

    def __init__(self, cfg: SessionConfig) -> None:
        self.cfg = cfg
        self.rng = rng = np.random.default_rng(cfg.seed)
        self.per_cat = per_cat = max(cfg.items // cfg.categories, 1)
        self.n_items = per_cat * cfg.categories
        self.quality = rng.beta(2.0, 2.0, self.n_items)
        # Popularity: a Zipf rank within the category, scattered over its ring, and one over everything.
        self.by_rank = np.stack([rng.permutation(per_cat) for _ in range(cfg.categories)])  # [c, r]: offset
        self.global_order = rng.permutation(self.n_items)
        self.cat_cdf = zipf_cdf(per_cat, 1.0)
        self.global_cdf = zipf_cdf(self.n_items, 1.0)
        self.user_cdf = zipf_cdf(cfg.users, 0.7)
        self.favourites = rng.integers(0, cfg.categories, (cfg.users, 2))
        self.offsets = np.array([d for d in range(-cfg.related, cfg.related + 1) if d])

    def popular_in(self, cat: int) -> int:
        r = min(int(np.searchsorted(self.cat_cdf, self.rng.random())), self.per_cat - 1)
        return cat * self.per_cat + int(self.by_rank[cat, r])

    def next(self, item: int) -> int:
        """The item a session views after ``item``."""
        rng, cfg = self.rng, self.cfg
        cat = item // self.per_cat
        r = rng.random()
        if r < cfg.follow:
            base = cat * self.per_cat
            near = base + (item - base + self.offsets) % self.per_cat
            p = np.cumsum(self.quality[near] ** 2)
            return int(near[min(np.searchsorted(p, rng.random() * p[-1]), near.shape[0] - 1)])
        if r < cfg.follow + (1 - cfg.follow) * 0.75:
            return self.popular_in(cat)
        g = min(int(np.searchsorted(self.global_cdf, rng.random())), self.n_items - 1)
        return int(self.global_order[g])
