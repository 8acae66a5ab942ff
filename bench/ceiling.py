"""How high HR@10 can go on the synthetic logs: models that know how each log is generated.

    python -m bench.ceiling stream   # the oracle, and a Bayes model per forgetting factor
    python -m bench.ceiling clicks   # the oracle (the generator's own next-item distribution)

Same protocol as ``freshrec eval`` (each event: the top 10 of the items the
user has not interacted with, then learn), so the figures sit beside its
table. Neither model is a baseline to beat; they say what a target asks.

- **oracle**: ranks by the generator's true probability of the next item.
  On ``stream`` it knows each user's topics and the drift at the midpoint;
  on ``clicks`` it knows each item's related items, their quality and the
  category popularity. Its first event of a session ranks by the mix of
  categories the users favour.
- **Bayes** (``stream`` only): knows the items' topics and popularity and
  the mixture weights, and infers a user's (main, side) topics from their
  events, a posterior over the 400 pairs; ``forget`` multiplies the log
  likelihood before each event so that the drift can be followed. This is
  the best a learner can do that must still find the user's taste.
"""

from __future__ import annotations

import argparse

import numpy as np

from operators.datasets import synthetic_log
from operators.sessions import CLICKS, _Shop
from operators.synthetic import SyntheticConfig, tastes, zipf_cdf

STREAM = SyntheticConfig(events=50_000, seed=11)  # as synthetic_log("stream")


def _probs(cdf: np.ndarray) -> np.ndarray:
    return np.diff(cdf, prepend=0.0)


def _hit(p: np.ndarray, seen: set[int], item: int) -> bool:
    if seen:
        p[list(seen)] = -1.0
    return item in np.argpartition(-p, 10)[:10]


def stream_item_probs() -> np.ndarray:
    """``P[main, side, item]``: the stream's next-item distribution for each pair of topics."""
    cfg = STREAM
    per = -(-cfg.items // cfg.topics)
    items = np.arange(cfg.items)
    share = _probs(zipf_cdf(per, cfg.zipf))[items // cfg.topics]
    in_topic = (items % cfg.topics == np.arange(cfg.topics)[:, None]) * share
    everywhere = _probs(zipf_cdf(cfg.items, cfg.zipf))
    main, side = cfg.main_share, (1 - cfg.main_share) * 0.7
    return (1 - main - side) * everywhere + main * in_topic[:, None, :] + side * in_topic[None, :, :]


def stream(forgets: list[float]) -> dict[str, float]:
    cfg, P = STREAM, stream_item_probs()
    logP = np.log(P)
    events = synthetic_log("stream")
    out = {}
    hits, seen = 0, dict[int, set[int]]()
    for pos, e in enumerate(events):  # the oracle
        u, i = int(e.user[1:]), int(e.item[1:])
        main, side = tastes(cfg, u, pos >= cfg.events // 2)
        s = seen.setdefault(u, set())
        hits += _hit(P[main, side].copy(), s, i)
        s.add(i)
    out["oracle"] = hits / len(events)
    for forget in forgets:
        hits, seen, loglik = 0, dict[int, set[int]](), dict[int, np.ndarray]()
        for e in events:
            u, i = int(e.user[1:]), int(e.item[1:])
            ll = loglik.get(u)
            post = np.full(P.shape[:2], 1.0 / P.shape[0] ** 2) if ll is None else np.exp(ll - ll.max())
            s = seen.setdefault(u, set())
            hits += _hit(np.tensordot(post / post.sum(), P, axes=2), s, i)
            loglik[u] = logP[:, :, i] + (0.0 if ll is None else forget * ll)
            s.add(i)
        out[f"bayes, forget {forget}"] = hits / len(events)
    return out


def clicks() -> dict[str, float]:
    cfg, shop = CLICKS, _Shop(CLICKS)  # the same seed: the same hidden structure as the log's
    per, n = shop.per_cat, shop.n_items
    in_cat = np.zeros(n)
    for c in range(cfg.categories):
        in_cat[c * per + shop.by_rank[c]] = _probs(shop.cat_cdf)
    everywhere = np.zeros(n)
    everywhere[shop.global_order] = _probs(shop.global_cdf)
    activity = _probs(shop.user_cdf)
    cats = np.full(cfg.categories, 0.2 / cfg.categories)
    np.add.at(cats, shop.favourites[:, 0], 0.5 * activity)
    np.add.at(cats, shop.favourites[:, 1], 0.3 * activity)
    first = np.repeat(cats, per) * in_cat

    def after(item: int) -> np.ndarray:
        base = item // per * per
        p = (1 - cfg.follow) * 0.25 * everywhere
        p[base : base + per] += (1 - cfg.follow) * 0.75 * in_cat[base : base + per]
        near = base + (item - base + shop.offsets) % per
        q = shop.quality[near] ** 2
        np.add.at(p, near, cfg.follow * q / q.sum())
        return p

    events = synthetic_log("clicks")
    hits, last, seen = 0, dict[str, int](), dict[str, set[int]]()
    for e in events:
        i = int(e.item[1:])
        s = seen.setdefault(e.user, set())
        hits += _hit(after(last[e.user]) if e.user in last else first.copy(), s, i)
        last[e.user] = i
        s.add(i)
    return {"oracle": hits / len(events)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", choices=("stream", "clicks"))
    ap.add_argument("--forget", default="1.0,0.9,0.7,0.5", help="stream: forgetting factors of the Bayes model")
    args = ap.parse_args()
    got = stream([float(f) for f in args.forget.split(",")]) if args.log == "stream" else clicks()
    for name, hr in got.items():
        print(f"{args.log}: {name}: HR@10 {hr:.4f}")


if __name__ == "__main__":
    main()
