"""Content-based cold start: hashed item features, content profiles, and cold items in user and similar-items lists."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from models import ModelConfig, Recommender
from models.content import DIM, WIDTH, ContentTable, features
from models.ids import item_key
from models.index import ItemIndex
from models.items import Replica
from models.learner import ItemLearner
from operators.synthetic import SyntheticConfig, synthetic_events

TOPICS = 10
SYNTH = SyntheticConfig(users=300, items=400, topics=TOPICS, events=8000, seed=7)
NEW = [f"new{t}" for t in range(TOPICS)]  # one never-seen item per topic
K = 2 * SYNTH.items // TOPICS


def _catalogue() -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """Every synthetic item with its topic as category and tag, plus one new item per topic."""
    rows = [(f"i{j}", features(f"Item {j}", f"topic{j % TOPICS}", [f"t{j % TOPICS}"])) for j in range(SYNTH.items)]
    return rows + [(name, features(f"Item {1000 + t}", f"topic{t}", [f"t{t}"])) for t, name in enumerate(NEW)]


def _model(config: ModelConfig, catalogue: bool = True) -> Recommender:
    m = Recommender(config)
    if catalogue:
        m.add_items(_catalogue())
    for e in synthetic_events(SYNTH):
        m.learn(e)
    m.sync()
    return m


def _share_with_new_item_of_main_topic(m: Recommender, k: int, two_stage: bool = False) -> tuple[float, float]:
    """Of the users, the share whose top ``k`` holds the new item of their main topic, and of another topic.

    A user's main topic weighs most in their content profile (recent items,
    the newest weighing most, as ``ContentTable.profiles``). Every
    item of a topic has the same features, so the new item ties on content
    with the topic's items and ranks after those with events: ``k`` is
    about twice a topic's items.
    """
    views = [v for v in (m.users.view(f"u{u}") for u in range(SYNTH.users)) if v is not None]
    ranked = m.ranker.rank(views, k, exact=not two_stage)
    s = m.ranker.state
    mains = []
    for v in views:
        weight: Counter[int] = Counter()
        for j, w in zip(s.dense(v.recent).tolist(), s.mf.weights.tolist()):
            if j >= 0:
                weight[int(s.names[j][1:]) % TOPICS] += w
        mains.append(weight.most_common(1)[0][0])
    own = [NEW[t] in r.items for t, r in zip(mains, ranked)]
    other = [NEW[(t + 1) % TOPICS] in r.items for t, r in zip(mains, ranked)]
    return float(np.mean(own)), float(np.mean(other))


class _Dense:
    """The minimal item state a ContentTable reads: dense index = key."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def dense(self, keys: np.ndarray) -> np.ndarray:
        return keys


@pytest.mark.parametrize("seed", range(5))
def test_content_scores_are_the_cosines_of_weighted_feature_sums(seed: int) -> None:
    """Profiles, their scores (all items, some, pairs) and item profiles: the cosines of a dense reference."""
    rng = np.random.default_rng(seed)
    n, listed = 300, 260  # the last items have no features (not listed)
    words = [f"w{i}" for i in range(40)]
    rows = [features(" ".join(rng.choice(words, 3)), f"c{rng.integers(6)}", rng.choice(words, 2)) for _ in range(n)]
    rows = [r if j < listed else features() for j, r in enumerate(rows)]
    table = ContentTable()
    table.set(range(n), rows)
    table.sync(_Dense(n))  # type: ignore[arg-type]
    dense = np.zeros((n, DIM), dtype=np.float64)
    for j, (idx, val) in enumerate(rows):
        dense[j, idx] = val
    weights = np.linspace(0.2, 1.0, 6).astype(np.float32)
    recent = rng.integers(-1, n, (9, 6))
    recent[0] = -1  # a user with no items
    recent[1] = listed  # a user whose items have no features
    want_profiles = np.zeros((recent.shape[0], DIM))
    for u, row in enumerate(recent):
        for a, j in enumerate(row):
            if j >= 0:
                age = int((row[a:] >= 0).sum())  # 1 for the newest
                want_profiles[u] += weights[-age] * dense[j]
    want_profiles /= np.maximum(np.linalg.norm(want_profiles, axis=1), 1e-12)[:, None]
    want = want_profiles @ dense.T

    p = table.profiles(recent, weights)
    np.testing.assert_allclose(table.scores(p, n), want, atol=1e-5)
    some = rng.choice(n, 50)
    np.testing.assert_allclose(table.scores(p, n, some), want[:, some], atol=1e-5)
    users, items = rng.integers(0, recent.shape[0], 80), rng.integers(0, n, 80)
    np.testing.assert_allclose(table.pair_scores(p, users, items), want[users, items], atol=1e-5)
    rows_ = np.array([2, 5, 7])
    np.testing.assert_allclose(table.scores(p[:, rows_], n), want[rows_], atol=1e-5)
    chunk = np.array([3, listed + 1, 10])
    np.testing.assert_allclose(table.scores(table.item_profiles(chunk), n), dense[chunk] @ dense.T, atol=1e-5)


def test_features_are_stable_unit_vectors_of_bounded_width() -> None:
    idx, val = features("Toy Story (1995)", "Animation", ["Animation", "Comedy"])
    again = features("Toy Story (1995)", "Animation", ["Animation", "Comedy"])
    assert idx.tolist() == again[0].tolist() and val.tolist() == again[1].tolist()
    assert float((val.astype(np.float64) ** 2).sum()) == pytest.approx(1.0)
    assert len(idx) == 6  # c:animation, t:animation, t:comedy, w:toy, w:story, y:1995
    many = features("", "", [f"tag{i}" for i in range(100)])
    assert len(many[0]) == WIDTH
    assert features("  ", "", ["", " "])[0].size == 0


def test_a_new_item_reaches_the_lists_of_users_whose_profile_matches() -> None:
    cfg = ModelConfig(seed=3)
    own, other = _share_with_new_item_of_main_topic(_model(cfg), K)
    print(f"new item of the user's main topic in the top {K}: {own:.2f}; of another topic: {other:.2f}")
    assert own >= 0.8 and other <= 0.2
    own_off, _ = _share_with_new_item_of_main_topic(_model(replace(cfg, w_content=0.0)), K)
    assert own_off <= 0.3  # without the content term a never-seen item has nothing going for it


def test_the_content_source_brings_cold_items_to_two_stage_lists() -> None:
    cfg = ModelConfig(seed=3, exact_max_items=10)
    m = _model(cfg)
    f = m.ranker.state.mf.item_factors
    built = ItemIndex.build(f, 0, len(f), cfg.index_m, cfg.index_ef_construction, cfg.index_ef, cfg.seed)
    m.ranker.index.parts = [built]
    assert m.ranker.two_stage()
    views = [v for v in (m.users.view(f"u{u}") for u in range(50)) if v is not None]
    new = {m.ranker.state.keys.get(item_key(name)) for name in NEW}
    for sources in m.ranker.sources(views):
        assert sources["content"] & new  # the cold items are proposed by content
        assert not any(sources[s] & new for s in ("popular", "trending", "cooc"))
    own, other = _share_with_new_item_of_main_topic(m, K, two_stage=True)
    assert own >= 0.8 and other <= 0.2


def test_a_new_items_similar_list_holds_items_of_its_category() -> None:
    m = _model(ModelConfig(seed=3))
    for t, name in enumerate(NEW):
        similar = m.similar(name, 10).items
        same = [x for x in similar if x.startswith("i") and int(x[1:]) % TOPICS == t]
        assert len(same) >= 8, (name, similar)


def test_items_the_catalogue_lists_reach_replicas_before_their_first_event() -> None:
    cfg = ModelConfig(seed=1)
    learner, replica = ItemLearner(cfg), Replica()
    replica.apply(learner.base_delta()._replace(shared=False))
    assert learner.list_items([item_key("a"), item_key("b")], ["a", "b"]) == 2
    assert learner.list_items([item_key("a")], ["a"]) == 0
    assert learner.pending == 2  # a delta is due
    replica.apply(learner.take_delta(shared=False))
    assert replica.state is not None and replica.state.names == ["a", "b"]
    assert replica.state.pop.raw().tolist() == [0.0, 0.0]


def test_without_a_catalogue_nothing_changes() -> None:
    a, b = _model(ModelConfig(seed=3), catalogue=False), _model(ModelConfig(seed=3, w_content=0.0), catalogue=False)
    assert a.recommend("u1").items == b.recommend("u1").items
    assert not a.ranker.blend.content.active


def test_the_learner_lists_a_large_catalogue_a_bounded_number_of_items_per_call() -> None:
    import queue
    from typing import Any, cast

    from operators import learn
    from operators.catalogue import Availability

    changes: queue.SimpleQueue[Any] = queue.SimpleQueue()

    class _Feed:  # what the learner uses of operators.feeds.Feed: a subscription to the parsed changes
        def subscribe(self) -> queue.SimpleQueue[Any]:
            return changes

    logic = learn.LearnerLogic(ModelConfig(), ["k0"], 0, 0.05, None, None, [cast(learn.Feed, _Feed())])
    names = [f"x{i}" for i in range(25_000)]
    none = np.zeros(0, dtype=np.int64)
    changes.put(Availability(none, np.array([item_key(n) for n in names]), names, {}, none, []))
    logic.on_notify()
    assert len(logic.learner.state) == learn._LIST_PER_CALL
    logic.on_notify()
    logic.on_notify()
    assert logic.learner.state.names == names
