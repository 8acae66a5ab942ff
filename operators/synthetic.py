"""A deterministic synthetic interaction stream with real structure.

Users have latent tastes (a main and a side topic out of ``n_topics``),
items belong to topics and have Zipf popularity within them, and halfway
through the stream every user's main topic drifts. The stream is generated
in chunks with numpy, so 1M users and 100k items need no memory beyond a
chunk and the per-topic tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.event import Event

_KINDS = np.array(["view", "click", "cart", "purchase"])
_KIND_P = np.array([0.70, 0.20, 0.07, 0.03])
_WEIGHTS = {"view": 1.0, "click": 2.0, "cart": 3.0, "purchase": 5.0}


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the synthetic stream.

    Parameters
    ----------
    users, items, topics
        Population sizes.
    events
        Stream length; the taste drift happens at ``events // 2``.
    zipf
        Zipf exponent of item popularity within a topic.
    main_share
        Probability that an event follows the user's main topic
        (otherwise the side topic 70%, anything popular 30%).
    seed
        Same seed, same stream.
    start_ts, rate
        Event time of the first event and events per second of event time.
    cover
        The first ``users`` events visit every user once, in id order, so
        that a warm-up holds state for the whole population.
    """

    users: int = 2000
    items: int = 2000
    topics: int = 20
    events: int = 100_000
    zipf: float = 1.1
    main_share: float = 0.7
    seed: int = 42
    start_ts: float = 1.7e9
    rate: float = 1000.0
    cover: bool = False


def zipf_cdf(n: int, s: float) -> np.ndarray:
    """Cumulative Zipf probabilities of ranks ``0..n-1`` with exponent ``s`` (draw with ``searchsorted``)."""
    p = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(p) / p.sum()


def tastes(cfg: SyntheticConfig, users: Any, drifted: Any) -> tuple[Any, Any]:
    """The hidden (main, side) topics of ``users`` (ints or arrays); ``drifted``: past the stream's midpoint.

    Item ``j`` belongs to topic ``j % cfg.topics``.

    >>> cfg = SyntheticConfig(topics=20)
    >>> [int(t) for t in tastes(cfg, 4, False)], [int(t) for t in tastes(cfg, 4, True)]
    ([11, 17], [1, 17])
    """
    main = (users * 7 + 3) % cfg.topics
    side = (users * 13 + 5) % cfg.topics
    return np.where(drifted, (main + cfg.topics // 2) % cfg.topics, main)[()], side


def synthetic_events(cfg: SyntheticConfig, chunk: int = 8192) -> Iterator[Event]:
    """Yield ``cfg.events`` events, deterministic for a given config."""
    rng = np.random.default_rng(cfg.seed)
    # Item j belongs to topic j % topics; its rank within the topic is j // topics.
    per_topic = -(-cfg.items // cfg.topics)
    topic_cdf = zipf_cdf(per_topic, cfg.zipf)
    global_cdf = zipf_cdf(cfg.items, cfg.zipf)
    user_cdf = zipf_cdf(cfg.users, 0.6)  # some users are much more active
    half = cfg.events // 2
    done = 0
    while done < cfg.events:
        n = min(chunk, cfg.events - done)
        pos = np.arange(done, done + n)
        users = np.minimum(np.searchsorted(user_cdf, rng.random(n)), cfg.users - 1)
        # Scramble user ids so activity is not correlated with the id.
        users = (users * 2654435761) % cfg.users
        if cfg.cover:
            users = np.where(pos < cfg.users, pos, users)
        main, side = tastes(cfg, users, pos >= half)
        r = rng.random(n)
        topic = np.where(r < cfg.main_share, main, side)
        rank = np.searchsorted(topic_cdf, rng.random(n))
        items = rank * cfg.topics + topic
        noise = r >= cfg.main_share + (1 - cfg.main_share) * 0.7
        items = np.where(noise, np.searchsorted(global_cdf, rng.random(n)), items)
        items = np.minimum(items, cfg.items - 1)
        kinds = _KINDS[np.searchsorted(np.cumsum(_KIND_P), rng.random(n) * 0.999999)]
        ts = cfg.start_ts + pos / cfg.rate
        for u, i, k, t in zip(users.tolist(), items.tolist(), kinds.tolist(), ts.tolist()):
            yield Event(f"u{u}", f"i{i}", k, _WEIGHTS[k], t, t)
        done += n
