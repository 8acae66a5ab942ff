"""The evaluation's baselines (bench/baselines.py) on small hand-made logs. No services."""

from __future__ import annotations

from bench.baselines import BatchALS, FunkMFAlone, ItemKNN


def test_item_knn_recommends_what_followed_the_users_last_items() -> None:
    knn = ItemKNN(last=5)
    for u, i in [(0, 1), (0, 2), (1, 1), (1, 2), (2, 3), (2, 4), (3, 1)]:  # 1 -> 2 twice; 3 -> 4 once
        knn.learn(u, i, 1.0, 0.0)
    assert knn.top(3, 2).tolist()[0] == 2  # user 3 has seen 1: its neighbour 2 first
    assert 1 not in knn.top(3, 5).tolist()  # never an item the user has seen
    assert knn.top(99, 2).tolist() == [1, 2]  # an unknown user: the popular list


def test_fold_in_gives_new_users_and_new_events_a_personal_list() -> None:
    log = [(u, i) for u in range(20) for i in ((0, 1, 2) if u % 2 else (3, 4, 5))]
    frozen, folded = (
        BatchALS(every=len(log), factors=4, iters=4),
        BatchALS(every=len(log), factors=4, iters=4, fold_in=True),
    )
    for model in (frozen, folded):
        for u, i in log:
            model.learn(u, i, 1.0, 0.0)
        model.learn(100, 3, 1.0, 0.0)  # a new user, after the retrain, who likes 3
    assert set(folded.top(100, 2).tolist()) == {4, 5}  # folded in: the items of the users like them
    assert (
        set(frozen.top(100, 2).tolist()) != {4, 5}
        or frozen.top(100, 2).tolist() == frozen.fallback.top(100, 2).tolist()
    )


def test_funk_mf_alone_learns_and_never_lists_seen_items() -> None:
    mf = FunkMFAlone(factors=4, negatives=2)
    for _ in range(30):
        for u, i in [(0, 0), (0, 1), (1, 0)]:
            mf.learn(u, i, 1.0, 0.0)
    assert mf.top(1, 1).tolist() == [1]
    assert 0 not in mf.top(1, 3).tolist()
