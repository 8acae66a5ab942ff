"""Two-stage ranking on large catalogues: recall through the production index path, every candidate source used."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

import models.index as index_module
from models import ModelConfig, Recommender
from models.ids import item_key
from models.index import BackgroundIndex, ItemIndex
from operators.synthetic import SyntheticConfig, synthetic_events


def catalogue(items: int, events: int, config: ModelConfig, seed: int = 1) -> Recommender:
    """A model fed a synthetic catalogue, its index kept by the production path (background builds)."""
    m = Recommender(config)
    for e in synthetic_events(
        SyntheticConfig(users=20_000, items=items, topics=50, events=events, zipf=0.6, seed=seed)
    ):
        m.learn(e)
    m.sync()
    return m


def indexed(items: int, config: ModelConfig) -> Recommender:
    """:func:`catalogue` of 20k events with a complete index of the final factors swapped in."""
    m = catalogue(items, 20_000, config)
    m.ranker.index.wait()
    m.ranker.maintain()
    m.sync()
    m.ranker.index.wait()
    m.ranker.maintain()
    return m


def recall_at_20(m: Recommender, users: list[str]) -> float:
    views = [v for v in (m.users.view(u) for u in users) if v is not None]
    two = m.ranker.rank(views, 20, exact=False)
    exact = m.ranker.rank(views, 20, exact=True)
    return float(np.mean([len(set(a.keys) & set(b.keys)) / max(len(b.keys), 1) for a, b in zip(two, exact)]))


@pytest.mark.parametrize("part_items", [1 << 18, 8192])
def test_recall_at_30k_items_with_the_index_built_in_the_background_and_gone_stale(part_items: int) -> None:
    cfg = ModelConfig(seed=2, exact_max_items=5000, index_rebuild_s=0.0, index_part_items=part_items)
    m = catalogue(45_000, 90_000, cfg)
    assert len(m.learner.state) >= 25_000
    m.ranker.index.wait()  # the build the stream last started, from factors that have moved on since
    m.ranker.maintain()
    index = m.ranker.index
    assert index.ready and m.ranker.two_stage()
    for e in synthetic_events(SyntheticConfig(users=20_000, items=45_000, topics=50, events=10_000, zipf=0.6, seed=3)):
        m.learn(e)  # vectors move and new items arrive; the index stays as built
    m.replica.apply(m.learner.take_delta(shared=True))
    assert len(m.learner.state) > index.size  # items newer than the index are scored apart
    rng = np.random.default_rng(0)
    users = [m.users.users.names[i] for i in rng.choice(len(m.users), 400, replace=False)]
    assert recall_at_20(m, users) >= 0.95
    # The index's own share: its candidates (50 at the defaults) hold most of the exact inner-product
    # top-20 of the user vectors (the MF term alone; co-occurrence and popularity have sources of
    # their own, so the served list is exact even where the index misses some).
    views = [v for v in (m.users.view(u) for u in users) if v is not None]
    vectors = m.ranker.vectors(views)
    found = index.query(vectors, cfg.candidates)
    exact = np.argsort(-(vectors @ m.ranker.state.mf.item_factors[: index.size].T), axis=1)[:, :20]
    mf_recall = np.mean([len(set(f.tolist()) & set(e.tolist())) / 20 for f, e in zip(found, exact)])
    print(f"index recall of the MF top-20: {mf_recall:.3f}")
    assert mf_recall >= 0.8


def test_an_index_in_parts_answers_as_one_and_is_rebuilt_a_part_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "DUTY", 1.0)  # no rest between builds
    rng = np.random.default_rng(1)
    factors = rng.normal(size=(6000, 16)).astype(np.float32)
    index = BackgroundIndex(m=16, ef_construction=100, ef=64, rebuild_s=0.0, seed=0, part_items=1000)
    index.poll(factors[:3500], changed=True)  # the first build: every part
    index.wait()
    assert index.poll(factors[:3500], changed=False)
    assert [(p.lo, p.hi) for p in index.parts] == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 3500)]
    exact = np.argsort(-(factors[:200] @ factors[:3500].T), axis=1)[:, :10]
    found = index.query(factors[:200], 20)
    assert found.shape == (200, 4 * 8)  # 3k/2 over the parts from each
    assert np.mean([len(set(f.tolist()) & set(e.tolist())) / 10 for f, e in zip(found, exact)]) >= 0.95
    before = list(index.parts)
    index.poll(factors[:3500], changed=True)  # the factors moved: the stalest part is rebuilt, alone
    index.rebuild_s = 1e9  # and no other after it
    index.wait()
    swapped = index.poll(factors[:3500], changed=False)
    assert swapped and index.last_swap_s > 0  # timed: it frees the part replaced
    assert [(p.lo, p.hi) for p in index.parts] == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 3500)]
    assert sum(a is b for a, b in zip(before, index.parts)) == 3
    before = list(index.parts)
    index.poll(factors, changed=False)  # 2,500 new items: more than the last part holds
    index.wait()
    index.poll(factors, changed=False)
    assert index.size == 6000 and [p.hi for p in index.parts] == [1000, 2000, 3000, 4000, 5000, 6000]
    assert all(a is b for a, b in zip(before[:3], index.parts))  # the full parts untouched


def test_the_last_part_grows_to_a_whole_part_by_inserts() -> None:
    factors = np.random.default_rng(2).normal(size=(6000, 16)).astype(np.float32)
    index = BackgroundIndex(m=16, ef_construction=100, ef=64, rebuild_s=1e9, seed=0, part_items=3000)
    index.poll(factors[:3500], changed=False)
    index.wait()
    index.poll(factors[:3500], changed=False)
    assert [(p.lo, p.hi) for p in index.parts] == [(0, 3000), (3000, 3500)]
    for n in (4300, 5100, 5900):  # never more than 1,000 outside the index at a time: the inserter's
        index.poll(factors[:n], changed=False)
        deadline = time.monotonic() + 60
        while index.size < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not index.building and index.size == n
    assert [(p.lo, p.hi) for p in index.parts] == [(0, 3000), (3000, 5900)]


def test_every_candidate_source_reaches_the_final_lists() -> None:
    # Few popular and trending candidates, trends over 2 s of event time (the stream runs at 1,000
    # events/s): every source but "fresh" then proposes some items no other source does. The index
    # is built once, by hand, halfway through the stream (no background build: what it holds is
    # fixed). Items learned since have few events and MF factors near zero: the few that reach a
    # list mostly do so by trending or co-occurrence too, so "fresh" must reach the lists, not alone.
    cfg = ModelConfig(seed=2, exact_max_items=10**6, w_trend=0.5, trend_half_life_s=2.0, popular_candidates=10)
    m = catalogue(8000, 15_000, cfg)
    f = m.ranker.state.mf.item_factors
    built = ItemIndex.build(f, 0, len(f), cfg.index_m, cfg.index_ef_construction, cfg.index_ef, cfg.seed)
    m.ranker.index.parts = [built]
    for e in synthetic_events(SyntheticConfig(users=20_000, items=12_000, topics=50, events=15_000, zipf=0.6, seed=4)):
        m.learner.learn(m.users.learn(e))  # items learned from here on are in no index: "fresh" proposes them
    m.replica.apply(m.learner.take_delta(shared=True))
    assert len(m.ranker.state) > m.ranker.index.size + 1000
    s = m.ranker.state
    users = list(dict.fromkeys(m.users.users.names[-600:]))
    views = [v for v in (m.users.view(u) for u in users) if v is not None]
    ranked = m.ranker.rank(views, 20, exact=False)
    reached: dict[str, int] = {}  # final items each source proposed
    alone: dict[str, int] = {}  # ... that no other source proposed
    for sources, r in zip(m.ranker.sources(views), ranked):
        for item in s.dense(np.array(r.keys, dtype=np.int64)).tolist():
            for name, proposed in sources.items():
                if item in proposed:
                    reached[name] = reached.get(name, 0) + 1
                    if all(item not in other for n, other in sources.items() if n != name):
                        alone[name] = alone.get(name, 0) + 1
    assert {"index", "cooc", "popular", "trending"} <= set(alone), (alone, reached)
    assert reached.get("fresh", 0) > 0, reached
    indexed = m.ranker.index.size
    for sources in m.ranker.sources(views):  # each user's best "candidates" of the items outside the index
        assert len(sources["fresh"]) == min(cfg.candidates, len(s) - indexed)
        assert min(sources["fresh"]) >= indexed


def test_new_items_are_inserted_in_the_background_while_queries_go_on() -> None:
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(1800, 16)).astype(np.float32)
    index = BackgroundIndex(m=16, ef_construction=100, ef=64, rebuild_s=1e9, seed=0)
    index.poll(factors[:1000], changed=False)  # the first build
    index.wait()
    index.poll(factors[:1000], changed=False)
    assert index.ready and index.size == 1000
    index.poll(factors, changed=False)  # 800 new items: the inserter's, not a rebuild's
    assert not index.building
    deadline = time.monotonic() + 60
    queries = 0
    while index.size < 1800 and time.monotonic() < deadline:
        assert index.query(factors[-50:], 10).shape == (50, 10)  # beside the inserts, under the same lock
        queries += 1
    assert index.size == 1800 and queries > 0
    exact = np.argsort(-(factors[-200:] @ factors.T), axis=1)[:, :10]
    found = index.query(factors[-200:], 30)
    assert np.mean([len(set(f.tolist()) & set(e.tolist())) / 10 for f, e in zip(found, exact)]) >= 0.9


@pytest.mark.parametrize("items", [300, 1500])
def test_exact_and_two_stage_agree_when_the_budget_covers_the_catalogue(items: int) -> None:
    cfg = ModelConfig(seed=5, exact_max_items=10, candidates=items, popular_candidates=items, index_rebuild_s=0.0)
    m = indexed(items, cfg)
    users = [f"u{u}" for u in range(0, 20_000, 97)]
    views = [v for v in (m.users.view(u) for u in users) if v is not None]
    assert m.ranker.two_stage() and len(views) > 100
    for two, exact in zip(m.ranker.rank(views, 20, exact=False), m.ranker.rank(views, 20, exact=True)):
        assert two.items == exact.items
        assert two.scores == pytest.approx(exact.scores, abs=1e-5)


def test_cooc_entries_that_cannot_reach_a_list_are_not_scored() -> None:
    # Every item is an index candidate, so a co-occurrence entry dropped wrongly would be scored
    # without its co-occurrence term, and the list would differ from exact (with the bound 0.3
    # too tight, this fails).
    items = 1500
    cfg = ModelConfig(seed=5, exact_max_items=10, candidates=items, popular_candidates=10, index_rebuild_s=0.0)
    m = indexed(items, cfg)
    views = [v for v in (m.users.view(f"u{u}") for u in range(0, 20_000, 37)) if v is not None]
    block = m.ranker._block(views[:64])
    kept = m.ranker.candidates.prune(block, 20, popularity=True)
    assert kept.co_item.size < 0.8 * block.co_item.size  # entries are dropped
    for two, exact in zip(m.ranker.rank(views, 20, exact=False), m.ranker.rank(views, 20, exact=True)):
        assert two.items == exact.items
        assert two.scores == pytest.approx(exact.scores, abs=1e-5)


def test_before_the_first_index_the_newest_items_stand_in_for_it() -> None:
    # After a start, lists are two-stage while the first index is built: the index source is
    # empty and the newest fresh_max_items items are scored instead. When those cover the
    # catalogue the lists are exact; when they cover a tenth of it, lists still come out full.
    items = 1500
    cfg = ModelConfig(seed=5, exact_max_items=10, candidates=items, popular_candidates=10, fresh_max_items=items)
    m = catalogue(items, 20_000, cfg)
    m.ranker.index.wait()
    m.ranker.index.parts = []  # as after a start, before the first build has finished
    assert m.ranker.two_stage()
    views = [v for v in (m.users.view(f"u{u}") for u in range(0, 20_000, 37)) if v is not None]
    assert len(views) > 100
    lists = m.ranker.candidates.lists
    lists.update(bound=0, index=0)
    two_stage = m.ranker.rank(views, 20)
    assert lists["bound"] + lists["index"] == len(views)  # two-stage, not every item scored
    for two, exact in zip(two_stage, m.ranker.rank(views, 20, exact=True)):
        assert two.items == exact.items
    m.ranker.config = m.ranker.candidates.config = replace(cfg, fresh_max_items=items // 10, candidates=50)
    assert all(len(r.items) == 20 for r in m.ranker.rank(views, 20))


def test_the_bound_skips_the_index_only_for_lists_it_cannot_change() -> None:
    # The index holds every item (candidates = items), the popular source only 10: a user the
    # bound clears gets no index or fresh candidates, so a bound set too low loses MF items here
    # (at 0.4 of its value, 70 of 293 lists differed from exact).
    items = 2000
    cfg = ModelConfig(seed=5, exact_max_items=10, candidates=items, popular_candidates=10, index_rebuild_s=0.0)
    m = indexed(items, cfg)
    views = [v for v in (m.users.view(f"u{u}") for u in range(0, 20_000, 37)) if v is not None]
    lists = m.ranker.candidates.lists
    lists.update(bound=0, index=0)
    two = m.ranker.rank(views, 20, exact=False)
    assert lists["bound"] >= 20 and lists["index"] >= 20, lists  # both paths taken
    for a, b in zip(two, m.ranker.rank(views, 20, exact=True)):
        assert a.items == b.items


def test_similar_items_two_stage_match_exact_on_a_small_catalogue() -> None:
    cfg = ModelConfig(seed=5, exact_max_items=10, candidates=400, index_rebuild_s=0.0)
    m = catalogue(400, 20_000, cfg)
    m.ranker.index.wait()
    m.ranker.maintain()
    assert m.ranker.two_stage()
    items = np.arange(len(m.ranker.state))
    two = list(m.ranker.similar(items, 10))
    exact_ranker = replace(cfg, exact_max_items=10**9)
    m.ranker.config = exact_ranker
    exact = list(m.ranker.similar(items, 10))
    for a, b in zip(two, exact):
        assert a.items == b.items
    assert item_key(two[0].items[0]) in m.ranker.state.keys.view().tolist()


@pytest.mark.parametrize("two_stage", [False, True])
def test_blocked_items_leave_user_similar_and_popular_lists_and_may_come_back(two_stage: bool) -> None:
    """The catalogue's availability inside ranking (``Ranker.set_available``), on the exact and the two-stage path."""
    cfg = ModelConfig(seed=5, exact_max_items=10 if two_stage else 10**9, index_rebuild_s=0.0)
    m = catalogue(1500, 20_000, cfg)
    m.ranker.index.wait()
    m.ranker.maintain()
    assert m.ranker.two_stage() == two_stage
    views = [v for v in (m.users.view(f"u{u}") for u in range(0, 20_000, 97)) if v is not None]
    before = m.ranker.rank(views, 20)
    listed = [i for r in before for i in r.items]
    blocked = [*sorted(set(listed), key=listed.count)[-20:], m.popular(1).items[0]]  # the most listed items
    keys = np.array([item_key(i) for i in blocked], dtype=np.int64)
    m.ranker.set_available(keys, np.zeros(0, dtype=np.int64))
    after = m.ranker.rank(views, 20)
    assert not {i for r in after for i in r.items} & set(blocked)
    assert all(len(r.items) == 20 for r in after)  # the next best take their places
    assert not set(m.popular(50).items) & set(blocked)
    similar = list(m.ranker.similar(np.arange(len(m.ranker.state)), 10))
    assert not {i for r in similar for i in r.items} & set(blocked)
    m.ranker.set_available(np.zeros(0, dtype=np.int64), keys)
    assert [r.items for r in m.ranker.rank(views, 20)] == [r.items for r in before]
