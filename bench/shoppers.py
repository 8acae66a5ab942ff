"""Simulated shoppers for ``freshrec replay --synthetic --shoppers``: they read what is served and click what they like.

Now and then (``every``: one in so many events) the user of a synthetic
event opens the app: they read their list from Redis the way an app does
(one ``MGET``, the popular list for an unknown user) and are shown either
it or, half of the time, the popular list (an A/B split, so the report
compares the two on the same users). The app emits an ``impression``;
the shopper clicks each shown item with a probability that depends on how
well it matches their hidden taste (the stream's topics,
``operators/synthetic.py``: main topic 0.25, side topic 0.08, anything else
0.01), and buys one clicked item in ten. Clicks and purchases are events
like any other, so the model learns from them too.
"""

from __future__ import annotations

import random
from typing import Any

import redis

from models.event import Event
from operators.synthetic import SyntheticConfig, tastes
from state.keys import popular_key, user_key
from state.redis_store import pick

CLICK_P = {"main": 0.25, "side": 0.08, "other": 0.01}


class Shoppers:
    """Impressions and the clicks they earn, for events of a synthetic stream."""

    def __init__(
        self, cfg: SyntheticConfig, redis_url: str, namespace: str, every: int = 10, k: int = 10, seed: int = 7
    ) -> None:
        self.cfg, self.every, self.k, self.namespace = cfg, every, k, namespace
        self.redis = redis.Redis.from_url(redis_url)
        self.rng = random.Random(seed)
        self.seen = 0
        self.impressions = 0
        self.clicks = 0

    def after(self, ev: Event, ts: float) -> list[dict[str, Any]]:
        """The messages the app and the shopper send after ``ev`` (usually none)."""
        self.seen += 1
        if self.rng.random() * self.every >= 1.0:
            return []
        mine, popular = self.redis.mget([user_key(self.namespace, ev.user), popular_key(self.namespace)])
        if mine is not None and self.rng.random() < 0.5:
            shown = pick(mine, None, "user", self.k)
        else:
            shown = pick(popular, None, "popular", self.k)
        if not shown["items"]:
            return []
        self.impressions += 1
        out: list[dict[str, Any]] = [
            {"user": ev.user, "type": "impression", "items": shown["items"], "list": shown["source"], "ts": ts}
        ]
        user = int(ev.user[1:])
        main, side = tastes(self.cfg, user, self.seen >= self.cfg.events // 2)
        for item in shown["items"]:
            topic = int(item[1:]) % self.cfg.topics
            match = "main" if topic == main else "side" if topic == side else "other"
            if self.rng.random() < CLICK_P[match]:
                self.clicks += 1
                out.append({"user": ev.user, "item": item, "type": "click", "ts": ts})
                if self.rng.random() < 0.1:
                    out.append({"user": ev.user, "item": item, "type": "purchase", "value": 20.0, "ts": ts})
        return out

    def close(self) -> None:
        self.redis.close()
