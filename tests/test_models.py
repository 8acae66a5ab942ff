"""Model properties: determinism, the blend, exclusions, bounded memory, reads without state, replicas."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import ModelConfig, Recommender, popularity
from models.arrays import stable_order
from models.cooc import CoOccurrence
from models.event import Event
from models.ids import item_key
from models.items import Replica
from models.learner import ItemLearner
from models.mf import Factors, HistoryMF, user_vectors
from models.popularity import DecayedPopularity
from models.users import LearnBatch, UserTable
from operators.synthetic import SyntheticConfig, synthetic_events


def stream(n: int = 3000, seed: int = 1, users: int = 200, items: int = 300) -> list[Event]:
    return list(synthetic_events(SyntheticConfig(users=users, items=items, topics=10, events=n, seed=seed)))


def trained(config: ModelConfig | None = None, n: int = 3000) -> Recommender:
    m = Recommender(config or ModelConfig(seed=3))
    for e in stream(n):
        m.learn(e)
    m.sync()
    return m


def test_same_seed_same_model() -> None:
    a, b = trained(), trained()
    assert np.array_equal(a.learner.state.mf.item_factors, b.learner.state.mf.item_factors)
    assert a.recommend("u5", 20) == b.recommend("u5", 20)


def test_reads_create_no_state() -> None:
    m = trained(n=500)
    before = pickle.dumps((m.users, m.learner))
    m.recommend("nobody", 10)
    m.recommend("u1", 10, exclude=["ghost-item"])
    m.similar("ghost-item", 10)
    m.similar("i1", 10)
    m.popular(10, exclude=["ghost"])
    assert not m.is_known("nobody")
    assert pickle.dumps((m.users, m.learner)) == before


def test_recommend_excludes_seen_and_requested_items() -> None:
    m = trained()
    view = m.users.view("u3")
    assert view is not None
    seen = set(view.seen.tolist())
    ranked = m.recommend("u3", 50, exclude=["i0", "i1"])
    assert ranked.items and not {item_key(i) for i in ranked.items} & seen
    assert not {"i0", "i1"} & set(ranked.items)
    assert ranked.scores == sorted(ranked.scores, reverse=True)


def reference_scores(m: Recommender, user: str) -> np.ndarray:
    """The blend of ``models/ranking.py``'s docstring, computed plainly in float64 for one user."""
    c, s = m.config, m.learner.state
    view = m.users.view(user)
    assert view is not None
    recent = s.dense(view.recent)
    p = user_vectors(recent[None, :], s.mf.history_factors.matrix, s.mf.weights)[0].astype(np.float64)
    mf = 1.0 / (1.0 + np.exp(-(s.mf.item_factors.astype(np.float64) @ p)))
    seen = s.dense(view.seen)
    seen = seen[seen >= 0]
    co = np.zeros(len(s))
    for age, j in enumerate(reversed(recent[-c.window :].tolist())):  # age 0: the last item
        if j >= 0:
            idx, share = s.cooc.row(j)
            co[idx] += share * s.cooc.positions[age]
    co[seen] = 0.0
    pop, trend = s.pop.raw(), s.trend.raw()
    score = c.w_mf * mf + c.w_cooc * co / max(co.max(), 1e-300) + c.w_pop * pop / pop.max()
    score += c.w_trend * trend / trend.max()
    score[seen] = -np.inf
    return score


@pytest.mark.parametrize("w_trend", [0.0, 0.4])
def test_ranking_matches_the_plain_blend(w_trend: float) -> None:
    m = trained(ModelConfig(seed=3, w_trend=w_trend))
    s = m.learner.state
    for user in ("u0", "u3", "u50", "u199"):
        ref = reference_scores(m, user)
        got = m.recommend(user, 20)
        idx = s.dense(np.array([item_key(i) for i in got.items]))
        assert np.allclose(ref[idx], got.scores, atol=1e-5)
        assert ref[idx[-1]] >= np.sort(ref)[-20] - 1e-5  # nothing better was left out


@pytest.mark.parametrize("hop", [0.0, 2.0])
def test_recommend_many_matches_recommend(hop: float) -> None:
    """Ranked 64 users per block: the same lists as one by one (with the two-step walk too)."""
    m = trained(ModelConfig(seed=3, cooc_hop=hop))
    users = [f"u{u}" for u in range(200)] + ["stranger"]
    many = m.recommend_many(users, 20)
    assert many[-1] == m.popular(20)
    for user, got in zip(users, many):
        one = m.recommend(user, 20)
        assert got.items == one.items
        assert got.scores == pytest.approx(one.scores, abs=1e-5)


def test_unknown_user_gets_popular() -> None:
    m = trained(n=500)
    assert m.recommend("stranger", 5) == m.popular(5)


def test_similar_items_follow_cooccurrence() -> None:
    """An item always followed by another gets it first among its similar items."""
    m = Recommender(ModelConfig(seed=1))
    for u in range(30):
        m.learn(Event(f"u{u}", "phone", "view", 1.0, float(u), 0.0))
        m.learn(Event(f"u{u}", "case", "view", 1.0, u + 0.5, 0.0))
        m.learn(Event(f"u{u}", f"noise{u}", "view", 1.0, u + 0.7, 0.0))
    m.sync()
    assert m.similar("phone", 5).items[0] == "case"
    assert "phone" not in m.similar("phone", 5).items


def test_bounded_memory_on_a_long_stream() -> None:
    cfg = ModelConfig(seen_cap=16, cooc_row_cap=8, window=3, history=4, seed=1)
    m = Recommender(cfg)
    for e in synthetic_events(SyntheticConfig(users=5, items=500, events=20_000, seed=2)):
        m.learn(e)
    assert all(ring.shape[0] <= 16 for ring in m.users.seen)
    assert m.users.recent.shape[1] == 4
    assert max(row.n for row in m.learner.state.cooc.rows) <= 2 * 8


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=200), st.integers(1, 6))
def test_cooc_rows_stay_bounded(pairs: list[tuple[int, int]], cap: int) -> None:
    co = CoOccurrence(row_cap=cap)
    recent: list[int] = []
    for a, b in pairs:
        co.learn(recent, b, 1.0)
        recent = ([*recent, a])[-5:]
    for row in co.rows:
        assert row.n <= 2 * cap
        assert row.total == pytest.approx(sum(row.val))


def test_bpr_steps_learn_the_order_of_a_positive_over_its_negatives() -> None:
    """With ``loss="bpr"`` River's steps follow the pair's margin: the positive ends above every negative,
    a pair already in order by a wide margin barely moves, and a pair of like items moves alike."""
    mf = HistoryMF(n_factors=8, lr=0.5, l2=0.0, history=2, decay=1.0, seed=1, loss="bpr")
    mf.ensure(6)
    history = np.array([-1, 0])
    for _ in range(200):
        mf.learn(history, item=1, weight=1.0, negatives=[2, 3, 4])
    scores = mf.item_factors @ mf.user_vector(history)
    assert scores[1] > max(scores[2], scores[3], scores[4]) + 1.0
    before = mf.item_factors.copy()
    mf.learn(history, item=1, weight=1.0, negatives=[2])
    assert np.abs(mf.item_factors - before).max() < 1e-3  # in order by a wide margin: sigmoid(-margin) is about 0
    # Two items alike: one pair's step moves both alike. Pointwise steps would not: a negative scored far
    # below zero gets almost no step (measured with loss="logistic": 0.001 against 0.39).
    mf.items.data[5] = mf.items.data[4]
    before = mf.item_factors.copy()
    mf.learn(history, item=5, weight=0.2, negatives=[4])
    moved = np.linalg.norm(mf.item_factors - before, axis=1)
    assert 0.8 < moved[5] / moved[4] < 1.25 and moved[5] > 0.005, moved


def test_factor_rows_stay_bounded_when_steps_are_large() -> None:
    """Pairwise steps of ``lr x weight`` 2.5 (a purchase of weight 5 at lr 0.5) overflowed float32
    within 15,000 events of the synthetic stream; ``max_norm`` keeps every row finite and on the bound."""
    mf = HistoryMF(n_factors=8, lr=0.5, l2=0.0, history=5, decay=0.9, seed=2, loss="bpr", max_norm=3.0)
    mf.ensure(40)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        history = rng.integers(0, 40, 5)
        mf.learn(history, item=int(rng.integers(0, 8)), weight=5.0, negatives=rng.integers(0, 40, 3).tolist())
    for rows in (mf.item_factors, mf.history_factors.matrix):
        norms = np.linalg.norm(rows, axis=1)
        assert np.isfinite(rows).all() and norms.max() <= 3.0 * (1 + 1e-5), norms.max()
    assert norms.max() > 2.9  # the bound was reached: without it the rows grow on


def test_the_two_step_walk_reaches_the_neighbours_of_a_rows_neighbours() -> None:
    """a -> b -> c: with ``hop`` a's row gives c a share; it is remade once a's row has grown by ``hop_stale``."""
    co = CoOccurrence(backward=0.0, hop=1.0, hop_stale=1.5, learn_positions=False)
    co.learn([0], 1, 1.0)  # a (0) -> b (1)
    co.learn([1], 2, 1.0)  # b -> c (2)
    items, shares = co.row(0)
    assert dict(zip(items.tolist(), shares.tolist())) == {1: 0.5, 2: 0.5}
    assert CoOccurrence(backward=0.0).row(0)[0].size == 0  # (a fresh model knows nothing)
    co.learn([0], 3, 0.4)  # a -> d: the row grew by 1.4x, within hop_stale: the cached walk stands
    assert co.row(0)[0].tolist() == items.tolist()
    co.learn([0], 3, 0.4)  # now 1.8x: remade
    got = dict(zip(*(x.tolist() for x in co.row(0))))
    assert set(got) == {1, 2, 3} and got[1] == pytest.approx(got[2]) and sum(got.values()) == pytest.approx(1.0)


def test_the_walk_cache_keeps_the_most_recently_read_rows() -> None:
    """``hop_cache`` bounds the mixed rows kept; a read keeps a row, the least recently read goes first."""
    co = CoOccurrence(backward=0.0, hop=1.0, hop_cache=2, learn_positions=False)
    for a, b in ((0, 1), (1, 2), (2, 3)):
        co.learn([a], b, 1.0)
    first, second = co.row(0), co.row(1)
    assert co.row(0)[0] is first[0]  # kept, and now read after item 1
    co.row(2)  # a third row: item 1, the least recently read, is dropped
    assert co.row(0)[0] is first[0]
    again = co.row(1)
    assert again[0] is not second[0]  # made again, the same walk
    assert again[0].tolist() == second[0].tolist() and again[1].tolist() == second[1].tolist()
    assert len(co._walks) == 2
    twin = pickle.loads(pickle.dumps(co))  # a copy starts without the cache, and makes the same walks
    assert len(twin._walks) == 0 and twin.row(0)[1].tolist() == first[1].tolist()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=150), st.floats(0.1, 4.0))
def test_walk_rows_are_distributions_without_their_own_item(pairs: list[tuple[int, int]], hop: float) -> None:
    plain, walk = CoOccurrence(row_cap=4), CoOccurrence(row_cap=4, hop=hop, hop_stale=1.0)
    recent: list[int] = []
    for a, b in pairs:
        plain.learn(recent, b, 1.0)
        walk.learn(recent, b, 1.0)
        recent = ([*recent, a])[-5:]
    for j in range(len(plain.rows)):
        items, shares = walk.row(j)
        if plain.rows[j].n == 0:
            assert items.size == 0
            continue
        assert j not in items.tolist() and items.size <= 2 * 4 and np.all(shares >= 0)
        assert shares.sum() == pytest.approx(1.0)
        assert set(plain.row(j)[0].tolist()) - {j} <= set(items.tolist()) or items.size == 2 * 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**62 - 1) | st.integers(0, 40), max_size=300))
def test_stable_order_is_a_stable_argsort(keys: list[int]) -> None:
    # Small keys pack with their positions; keys too large to pack fall back to argsort.
    a = np.array(keys, dtype=np.int64)
    assert stable_order(a).tolist() == np.argsort(a, kind="stable").tolist()


def test_decayed_popularity_survives_rescaling() -> None:
    pop = DecayedPopularity(half_life=1.0)
    pop.learn(0, 1.0, t=0.0)
    pop.learn(1, 1.0, t=100.0)  # 2**100 would overflow without rescaling
    pop.learn(1, 1.0, t=100.0)
    assert pop.top(2).tolist() == [1, 0]
    assert pop.scores(at=100.0)[1] == pytest.approx(2.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 299), st.floats(0.1, 5.0), st.floats(0.0, 0.5)), min_size=50, max_size=600),
    st.sampled_from([1, 20, 100]),
)
def test_popularity_top_from_the_leaders_equals_a_full_pass(events: list, n: int) -> None:
    # Events in time order over 300 items, a half life short enough to rescale several times:
    # every 10 events, top(n) read from the leaders ranks the same scores as a pass over all.
    # Leaders of 1,024 (the default: every item) and of 8, which the events push past four
    # times as many (the set is cut back and the floor raised).
    for leaders in (popularity._LEADERS, 8):
        kept, popularity._LEADERS = popularity._LEADERS, leaders
        try:
            pop = DecayedPopularity(half_life=0.2)
            t = 0.0
            for k, (item, w, dt) in enumerate(events, 1):
                t += dt
                pop.learn(item, w, t)
                if k % 10 == 0:
                    raw = pop.raw()
                    full = np.sort(raw)[::-1][: min(n, raw.shape[0])]
                    assert raw[pop.top(n)].tolist() == full.tolist()
            pop.set_rows(np.array([0]), np.array([1e300]))  # a restore: the leaders are found again
            assert pop.top(n)[0] == 0
        finally:
            popularity._LEADERS = kept


@pytest.mark.parametrize("sampling", ["popular", "uniform"])
def test_a_batch_is_learned_as_its_events_one_by_one(sampling: str) -> None:
    # learn_batch adds the batch's items first and looks the histories up at once; an item new
    # in the batch must stay unknown to the events before it, and negatives come from the
    # items known at each event, so both paths give the same state to the bit.
    cfg = ModelConfig(seed=3, negative_sampling=sampling, negatives=2)
    events = stream(6000, users=300, items=2000)
    one_users, one = UserTable(cfg), ItemLearner(cfg)
    for e in events:
        one.learn(one_users.learn(e))
    batch_users, batched = UserTable(cfg), ItemLearner(cfg)
    for start in range(0, len(events), 37):
        inputs = [batch_users.learn(e) for e in events[start : start + 37]]
        batched.learn_batch(LearnBatch.of(inputs, cfg.history))
    a, b = one.state, batched.state
    assert a.names == b.names
    assert np.array_equal(a.mf.item_factors, b.mf.item_factors)
    assert np.array_equal(a.mf.history_factors.matrix, b.mf.history_factors.matrix)
    assert np.array_equal(a.pop.raw(), b.pop.raw())
    assert [(r.idx[: r.n].tolist(), r.val[: r.n].tolist()) for r in a.cooc.rows] == [
        (r.idx[: r.n].tolist(), r.val[: r.n].tolist()) for r in b.cooc.rows
    ]
    # A history that names an item the batch adds only later: unknown to the event before it.
    keys = np.array([item_key("new-a"), item_key("new-b")])
    recent = np.full((2, cfg.history), -1, dtype=np.int64)
    recent[0, -1], recent[1, -1] = keys[1], keys[0]
    made = LearnBatch(keys, ["new-a", "new-b"], np.ones(2), np.zeros(2), recent)
    batched.learn_batch(made)
    for k in range(2):
        one.learn_one(int(keys[k]), made.names[k], 1.0, 0.0, recent[k])
    assert np.array_equal(a.mf.history_factors.matrix, b.mf.history_factors.matrix)


# The second: pairwise steps bounded at 0.5, where this stream puts a third of the rows, scaled back between deltas.
@pytest.mark.parametrize(
    "cfg", [ModelConfig(seed=3), ModelConfig(seed=3, mf_loss="bpr", mf_max_norm=0.5)], ids=["defaults", "bounded"]
)
def test_a_replica_fed_deltas_equals_the_master(cfg: ModelConfig) -> None:
    """What a ranker in another process sees: pickled deltas applied in order give the learner's exact state."""
    users, learner, replica = UserTable(cfg), ItemLearner(cfg), Replica()
    replica.apply(pickle.loads(pickle.dumps(learner.base_delta().copied())))
    for n, e in enumerate(stream(8000, users=300, items=500)):
        learner.learn(users.learn(e))
        if n % 333 == 0:
            replica.apply(pickle.loads(pickle.dumps(learner.take_delta(shared=False))))
    replica.apply(pickle.loads(pickle.dumps(learner.take_delta(shared=False))))
    a, b = learner.state, replica.state
    assert b is not None and a.names == b.names
    assert np.array_equal(a.mf.item_factors, b.mf.item_factors)
    assert np.array_equal(a.mf.history_factors.matrix, b.mf.history_factors.matrix)
    assert np.array_equal(a.pop.raw(), b.pop.raw()) and np.array_equal(a.trend.raw(), b.trend.raw())
    for i in range(len(a)):
        assert all(np.array_equal(x, y) for x, y in zip(a.cooc.row(i), b.cooc.row(i)))
    assert a.cooc.positions == b.cooc.positions and a.cooc.credited > 1000  # learned alike from the same events


def test_the_position_weights_follow_what_predicts_the_next_item() -> None:
    """Walks from item to neighbour put the weight on the last item; users whose every other event is a
    one-off item (nothing follows it twice), on the items two and four places back."""

    def learned(walk: bool) -> list[float]:
        m = Recommender(ModelConfig(seed=1))
        rng = np.random.default_rng(0)
        for n in range(6000):
            user = n // 12
            # walk: every user walks along a line of items; else even events from the user's group of
            # 10 items, odd ones a one-off
            one_off = n % 2 == 1
            item = user * 5 + n % 12 if walk else 1000 + n if one_off else 10 * (user % 3) + int(rng.integers(10))
            m.learn(Event(f"u{user}", f"i{item}", "view", 1.0, float(n), float(n)))
        return m.learner.state.cooc.positions

    walk, alternate = learned(walk=True), learned(walk=False)
    assert walk[0] > 0.9 and sum(walk) == pytest.approx(1.0), walk
    assert alternate[1] + alternate[3] > 0.8, alternate
    fixed = Recommender(ModelConfig(cooc_positions="fixed"))
    start = [0.8**a for a in range(5)]
    assert fixed.learner.state.cooc.positions == pytest.approx([w / sum(start) for w in start])


def test_a_replica_refuses_a_gap_in_the_deltas() -> None:
    cfg = ModelConfig(seed=3)
    users, learner, replica = UserTable(cfg), ItemLearner(cfg), Replica()
    replica.apply(learner.base_delta().copied())
    learner.learn(users.learn(Event("u", "i", "view", 1.0, 0.0, 0.0)))
    learner.take_delta(shared=False)  # lost
    learner.learn(users.learn(Event("u", "j", "view", 1.0, 1.0, 0.0)))
    with pytest.raises(RuntimeError, match="out of sync"):
        replica.apply(learner.take_delta(shared=False))


def test_factor_rows_are_the_same_however_they_are_ensured_and_never_redrawn_by_a_growth() -> None:
    # Rows are drawn a block at a time as they come into use: a replica that ensures rows in
    # other steps than its learner holds the same values, and a growth copies rows, never draws.
    one, steps = Factors(8, 0.1, seed=4), Factors(8, 0.1, seed=4, grow_at=0.75)
    one.ensure(20_000)
    seen: dict[int, np.ndarray] = {}
    for n in range(1, 20_001, 313):
        moved = steps.ensure(n)
        for row, before in seen.items():
            assert np.array_equal(steps.data[row], before), (n, moved)
        seen[n - 1] = steps.data[n - 1].copy()
    steps.ensure(20_000)
    assert np.array_equal(one.matrix, steps.matrix)


def test_a_restored_factor_buffer_goes_on_like_the_original() -> None:
    original = Factors(8, 0.1, seed=2)
    original.ensure(5_000)
    original.data[:5_000] += 1.0  # learned
    copy = Factors(8, 0.1, seed=2)
    copy.set_rows(np.arange(5_000), original.data[:5_000])
    copy.restore(pickle.loads(pickle.dumps(original.meta())))
    for n in (6_000, 9_000, 30_000):
        original.ensure(n)
        copy.ensure(n)
        assert np.array_equal(original.matrix, copy.matrix)


def test_the_two_factor_buffers_never_grow_on_the_same_item() -> None:
    # Each growth copies a buffer (128 MB at 1M items): one at a time keeps the pause short.
    mf = HistoryMF(n_factors=4, lr=0.1, l2=0.0, history=2, decay=1.0, seed=0)
    grew = []
    for n in range(1, 400_000, 101):
        caps = mf.items.data.shape[0], mf.history_factors.data.shape[0]
        mf.ensure(n)
        grew.append((n, mf.items.data.shape[0] != caps[0], mf.history_factors.data.shape[0] != caps[1]))
    assert sum(a for _, a, _ in grew) >= 5 and sum(b for _, _, b in grew) >= 5
    assert not any(a and b for n, a, b in grew if n > 20_000)  # below, a few 4,096-row blocks fill both
