"""Model properties: determinism, pickling, bounded memory, reads without state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.synthetic import SyntheticConfig, synthetic_events
from models import HybridRecommender, ModelConfig
from models.cooc import CoOccurrence
from models.event import Event
from models.popularity import DecayedPopularity


def stream(n: int = 3000, seed: int = 1) -> list[Event]:
    return list(synthetic_events(SyntheticConfig(users=200, items=300, topics=10, events=n, seed=seed)))


def trained(config: ModelConfig | None = None, n: int = 3000) -> HybridRecommender:
    m = HybridRecommender(config or ModelConfig(seed=3))
    for e in stream(n):
        m.learn(e)
    return m


def test_same_seed_same_model() -> None:
    a, b = trained(), trained()
    assert np.array_equal(a.mf.item_factors, b.mf.item_factors)
    assert a.recommend("u5", 20) == b.recommend("u5", 20)


def test_pickle_round_trip_keeps_learning_identically() -> None:
    a = trained()
    b = pickle.loads(pickle.dumps(a))
    for e in stream(500, seed=9):
        a.learn(e)
        b.learn(e)
    assert a.recommend("u7", 20) == b.recommend("u7", 20)
    assert np.array_equal(a.mf.user_factors, b.mf.user_factors)


def test_reads_create_no_state() -> None:
    m = trained(n=500)
    users, items, n_factors = len(m.users), len(m.items), m.mf.item_factors.shape
    before = pickle.dumps(m)
    m.recommend("nobody", 10)
    m.recommend("u1", 10, exclude=["ghost-item"])
    m.similar("ghost-item", 10)
    m.similar("i1", 10)
    m.popular(10, exclude=["ghost"])
    assert not m.is_known("nobody")
    assert (len(m.users), len(m.items), m.mf.item_factors.shape) == (users, items, n_factors)
    assert pickle.dumps(m) == before


def test_recommend_excludes_seen_and_requested_items() -> None:
    m = trained()
    user = "u3"
    u = m.users.index[user]
    seen = {m.items.names[i] for i in m._seen[u][: int(m._seen_n[u])]}
    ranked = m.recommend(user, 50, exclude=["i0", "i1"])
    assert ranked.items and not (set(ranked.items) & seen) and not {"i0", "i1"} & set(ranked.items)
    assert ranked.scores == sorted(ranked.scores, reverse=True)


def reference_scores(m: HybridRecommender, user: str) -> np.ndarray:
    """The blend of ``HybridRecommender``'s docstring, computed plainly in float64, one user."""
    c, u = m.config, m.users.index[user]
    n = len(m.items)
    mf = 1.0 / (1.0 + np.exp(-(m.mf.item_factors.astype(np.float64) @ m.mf.user_factors[u])))
    seen = m._seen[u][: m._seen_n[u]]
    co = np.zeros(n)
    recent = [j for j in m._recent[u].tolist() if j >= 0]
    for age, j in enumerate(reversed(recent)):
        idx, share = m.cooc.row(j)
        co[idx] += share * c.cooc_recency**age
    co[seen] = 0.0
    pop = m.pop.raw()
    score = c.w_mf * mf + c.w_cooc * co / max(co.max(), 1e-300) + c.w_pop * pop / pop.max()
    score[seen] = -np.inf
    return score


def test_ranking_matches_the_plain_blend() -> None:
    m = trained()
    for user in ("u0", "u3", "u50", "u199"):
        ref = reference_scores(m, user)
        got = m.recommend(user, 20)
        idx = [m.items.index[i] for i in got.items]
        assert np.allclose(ref[idx], got.scores, atol=1e-5)
        assert ref[idx[-1]] >= np.sort(ref)[-20] - 1e-5  # nothing better was left out


@pytest.mark.parametrize("exact_max_items", [20000, 10])
def test_recommend_many_matches_recommend(exact_max_items: int) -> None:
    """Ranked in blocks (or per user over HNSW candidates): the same lists as one by one."""
    m = trained(ModelConfig(seed=3, exact_max_items=exact_max_items))
    users = [f"u{u}" for u in range(200)] + ["stranger"]
    many = m.recommend_many(users, 20)
    assert many[-1] == m.popular(20)
    for user, got in zip(users, many):
        one = m.recommend(user, 20)
        assert got.items == one.items
        assert got.scores == pytest.approx(one.scores, abs=1e-5)  # float32 blocks, rounded to 6 places


def test_unknown_user_gets_popular() -> None:
    m = trained(n=500)
    assert m.recommend("stranger", 5) == m.popular(5)


def test_bounded_memory_on_a_long_stream() -> None:
    cfg = ModelConfig(seen_cap=16, cooc_row_cap=8, window=3, seed=1)
    m = HybridRecommender(cfg)
    for e in synthetic_events(SyntheticConfig(users=5, items=500, events=20_000, seed=2)):
        m.learn(e)
    assert all(ring.shape[0] <= 16 for ring in m._seen)
    assert m._recent.shape[1] == 3
    assert max(row.n for row in m.cooc.rows) <= 2 * 8
    assert m._pool.shape[0] == cfg.negative_pool


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=200), st.integers(1, 6))
def test_cooc_rows_stay_bounded(pairs: list[tuple[int, int]], cap: int) -> None:
    co = CoOccurrence(row_cap=cap)
    recent: list[int] = []
    for a, b in pairs:
        co.learn(recent, b, 1.0)
        recent = (recent + [a])[-5:]
    for row in co.rows:
        assert row.n <= 2 * cap
        assert row.total == pytest.approx(float(row.val[: row.n].sum()))


def test_decayed_popularity_survives_rescaling() -> None:
    pop = DecayedPopularity(half_life=1.0)
    pop.learn(0, 1.0, t=0.0)
    pop.learn(1, 1.0, t=100.0)  # 2**100 would overflow without rescaling
    pop.learn(1, 1.0, t=100.0)
    assert pop.top(2).tolist() == [1, 0]
    assert pop.scores(at=100.0)[1] == pytest.approx(2.0)


def test_hnsw_recalls_exact_top20() -> None:
    """On a trained model, HNSW candidates recall >= 0.95 of the exact inner-product top-20."""
    m = HybridRecommender(ModelConfig(seed=4))
    for e in synthetic_events(SyntheticConfig(users=400, items=3000, topics=30, events=40_000, seed=5)):
        m.learn(e)
    m.index.rebuild(m.mf.item_factors)
    # and then vectors change in place and the index is refreshed with them
    for e in synthetic_events(SyntheticConfig(users=400, items=3000, topics=30, events=5_000, seed=6)):
        m.learn(e)
    m._dirty.update(range(len(m.items)))
    m.index.refresh(m.mf.item_factors, np.fromiter(m._dirty, dtype=np.int64))
    factors = m.mf.item_factors
    recalls = []
    for u in range(0, len(m.users), 4):
        q = m.mf.user_factors[u]
        exact = set(np.argsort(-(factors @ q))[:20].tolist())
        got = set(m.index.query(q, 20).tolist())
        recalls.append(len(exact & got) / 20)
    assert np.mean(recalls) >= 0.95, np.mean(recalls)


def test_candidate_mode_matches_exact_mode_closely() -> None:
    exact = trained(ModelConfig(seed=3))
    approx = trained(ModelConfig(seed=3, exact_max_items=10, candidates=100))
    overlap = [
        len(set(exact.recommend(f"u{u}", 10).items) & set(approx.recommend(f"u{u}", 10).items)) / 10
        for u in range(0, 200, 10)
    ]
    assert np.mean(overlap) >= 0.8


def test_snapshot_restores_and_a_foreign_one_says_what_to_do() -> None:
    from operators.learn import LearnLogic, ServeConfig
    from state.recovery import RecoveryError

    logic = LearnLogic(ModelConfig(seed=3), ServeConfig(), None)
    logic.on_batch(stream(200))
    snapshot = logic.snapshot()
    assert snapshot is not None
    assert LearnLogic(ModelConfig(), ServeConfig(), snapshot).model.n_events == 200
    with pytest.raises(RecoveryError, match="Move the --recovery-dir away"):
        LearnLogic(ModelConfig(), ServeConfig(), b"not a pickle")
    with pytest.raises(RecoveryError, match="not a freshrec model"):
        LearnLogic(ModelConfig(), ServeConfig(), pickle.dumps({"a": 1}))
