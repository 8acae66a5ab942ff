"""Business rules: the file's validation and each kind of rule on a list (models/rules.py). No services."""

from __future__ import annotations

import numpy as np
import pytest

from models.ids import item_key
from models.rules import ItemFacts, Listed, RuleError, apply_rules, parse_rules
from operators.rules import parse_user

FACTS = {f"{c}{n}": ItemFacts(c, frozenset({f"t{n % 2}"}), 100.0 * n) for c in "abc" for n in range(10)}


def pool(*items: str) -> Listed:
    """A model pool: the given order, scores 1.0, 0.9, ..."""
    return Listed(list(items), [round(1.0 - 0.05 * i, 6) for i in range(len(items))], list(range(len(items))))


def rules(text: str):
    return parse_rules(text, "rules.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nname = "r"\nkind = "teleport"', "rules.toml: rule 'r' (#1): kind: must be one of filter"),
        ('[[rule]]\nkind = "filter"', "rules.toml: rule '?' (#1): name: every rule needs a name"),
        ('[[rule]]\nname = "r"\nkind = "boost"\nwhere = {category = "a"}', "rule 'r' (#1): factor: a boost rule needs"),
        ('[[rule]]\nname = "r"\nkind = "boost"\nfactor = 0.5\nwhere = {tags = ["x"]}', "factor: must be > 1"),
        ('[[rule]]\nname = "r"\nkind = "filter"', "rule 'r' (#1): where: a filter rule needs it"),
        ('[[rule]]\nname = "r"\nkind = "filter"\nwhere = {colour = "red"}', "where.colour: not a condition"),
        ('[[rule]]\nname = "r"\nkind = "pin"\nitem = "x"\nposition = 0', "position: must be > 0, got 0"),
        ('[[rule]]\nname = "r"\nkind = "diversity"\nmax = 3\ntop = 2.5', "top: must be a whole number"),
        ('[[rule]]\nname = "r"\nkind = "diversity"\nmax = 3\ntop = 9\nfactor = 2.0', "factor: not a field of a diver"),
        (
            '[[rule]]\nname = "r"\nkind = "pin"\nitem = "x"\nposition = 1\n[[rule]]\nname = "r"\nkind = "pin"\n'
            'item = "y"\nposition = 2',
            "rule 'r' (#2): name: another rule has this name",
        ),
        ("[[rule]\nname =", "rules.toml: not valid TOML"),
    ],
)
def test_a_bad_rules_file_names_the_file_the_rule_and_the_field(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        rules(text)


def test_filter_applies_to_its_segment_only() -> None:
    r = rules('[[rule]]\nname = "f"\nkind = "filter"\nwho = {segment = "kids"}\nwhere = {category = "a"}')
    listed = pool("a1", "b1", "a2", "c1")
    assert apply_rules(r, {"segment": "kids"}, listed, FACTS, {}, 0.0, 3).items == ["b1", "c1"]
    assert apply_rules(r, {"segment": "adults"}, listed, FACTS, {}, 0.0, 3).items == ["a1", "b1", "a2"]
    assert apply_rules(r, {}, listed, FACTS, {}, 0.0, 3).items == ["a1", "b1", "a2"]


def test_boost_and_bury_multiply_scores_and_reorder() -> None:
    r = rules(
        '[[rule]]\nname = "up"\nkind = "boost"\nfactor = 2.0\nwhere = {tags = ["t1"]}\n'
        '[[rule]]\nname = "down"\nkind = "bury"\nfactor = 0.5\nwhere = {items = ["a0"]}'
    )
    got = apply_rules(r, {}, pool("a0", "b2", "c1", "a4"), FACTS, {}, 0.0, 4)
    assert got.items == ["c1", "b2", "a4", "a0"]  # c1: 0.9 * 2; a0: 1.0 * 0.5
    assert got.scores == sorted(got.scores, reverse=True) and got.scores[0] == pytest.approx(1.8)


def test_pin_puts_an_item_at_its_position_while_it_may_be_shown() -> None:
    r = rules('[[rule]]\nname = "p"\nkind = "pin"\nitem = "c9"\nposition = 2')
    listed = pool("a1", "b1", "a2", "c1")
    got = apply_rules(r, {}, listed, FACTS, {"c9": 99}, 0.0, 3)
    assert got.items == ["a1", "c9", "b1"] and got.keys[1] == 99
    assert got.scores == sorted(got.scores, reverse=True)
    assert apply_rules(r, {}, listed, FACTS, {}, 0.0, 3).items == ["a1", "b1", "a2"]  # unavailable or seen: no pin
    moved = apply_rules(r, {}, pool("a1", "b1", "c9", "c1"), FACTS, {"c9": 2}, 0.0, 3).items
    assert moved == ["a1", "c9", "b1"]  # already listed lower: moved up, not twice


def test_diversity_keeps_at_most_max_per_category_in_the_top() -> None:
    r = rules('[[rule]]\nname = "d"\nkind = "diversity"\nmax = 2\ntop = 4')
    got = apply_rules(r, {}, pool("a1", "a2", "a3", "a4", "b1", "c1", "a5"), FACTS, {}, 0.0, 6)
    assert got.items[:4] == ["a1", "a2", "b1", "c1"]
    assert got.items[4:] == ["a3", "a4"]  # past the top, by score again


def test_new_item_boost_lifts_items_listed_recently() -> None:
    r = rules('[[rule]]\nname = "n"\nkind = "new_item_boost"\nfactor = 3.0\nmax_age_s = 150')
    got = apply_rules(r, {}, pool("a1", "b2", "c9"), FACTS, {}, now=1000.0, k=3)
    assert got.items == ["c9", "a1", "b2"]  # c9 was listed at 900 s, the others long before


def test_user_attributes_messages() -> None:
    assert parse_user(b"u1", b'{"segment": "kids", "vip": true}') == ("u1", {"segment": "kids", "vip": "true"})
    assert parse_user(b"u1", None) == ("u1", None)
    assert parse_user(b"u1", b'{"user": "u2"}').reason == "bad_user"  # type: ignore[union-attr]
    assert parse_user(b"u1", b'{"segment": {"a": 1}}').reason == "bad_value"  # type: ignore[union-attr]
    assert parse_user(None, b"[]").reason == "not_object"  # type: ignore[union-attr]


def test_a_rules_change_re_ranks_every_user_of_the_shard_in_batches_that_yield_to_events(tmp_path) -> None:
    import time

    from models import ModelConfig
    from models.event import Event
    from operators import users as shard_module
    from operators.users import EventBatch, RankBatch, UserShardLogic

    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "v"\nkind = "diversity"\nmax = 2\ntop = 4\n')
    shard = UserShardLogic(ModelConfig(), [1.0], None, None, rules=str(path), rerank_per_s=20_000)
    now = time.time()
    events = [Event(f"u{u}", f"i{u % 7}", "view", 1.0, now, now) for u in range(3000)]
    shard.on_batch([EventBatch(events, [])])
    shard._lag = (time.time(), 0.001)  # those events were fresh
    path.write_text('[[rule]]\nname = "v"\nkind = "diversity"\nmax = 1\ntop = 4\n')

    seen: set[str] = set()

    def tick() -> list[RankBatch]:
        shard._rules_at -= shard_module._RULES_CHECK_S  # as if a second had passed
        shard._rerank_due = time.monotonic()  # on time
        out, _ = shard.on_notify()
        batches = [b for b in out if isinstance(b, RankBatch)]
        assert all(b.kind == "rules" and not any(u.items for u in b.users) for b in batches)
        seen.update(u.view.user for b in batches for u in b.users)
        return batches

    sizes = [len(b.users) for b in tick() + tick() + tick()]
    assert sizes[0] <= 2 * shard_module._RERANK_MIN and sizes[0] < sizes[1] < sizes[2], sizes  # growing
    shard._lag = (time.time(), 1.0)  # the last events applied were a second old: the next batch halves
    before = shard._rerank_chunk
    assert len(tick()[0].users) == max(shard_module._RERANK_MIN, before // 2)
    shard._lag = (0.0, 0.0)
    while shard._rerank[0] < shard._rerank[1]:
        tick()
    assert len(seen) == 3000  # every user of the shard, once the file changed
    assert not tick()  # and no more


def test_a_rules_change_affects_the_users_its_added_or_removed_rules_apply_to(tmp_path) -> None:
    import os

    from operators.rules import RuleBook, UserFacts

    path = tmp_path / "rules.toml"
    kids = '[[rule]]\nname = "k"\nkind = "filter"\nwho = {segment = "kids"}\nwhere = {category = "a"}\n'
    everyone = '[[rule]]\nname = "v"\nkind = "diversity"\nmax = 2\ntop = 4\n'
    path.write_text(everyone)
    book = RuleBook(str(path))
    assert book.file is not None
    book.learn_users(UserFacts({"u1": {"segment": "kids"}, "u2": {"segment": "adults"}}), lambda _: True)
    path.write_text(everyone + kids)
    os.utime(path, ns=(1, 1))  # a new stamp even within the clock's resolution
    book.file.check()
    assert book.affected(["u1", "u2", "u3"]) == [True, False, False]  # only the kids' rule is new
    path.write_text(kids)
    book.file.check()
    assert book.affected(["u2"]) == [True]  # the rule for everyone went: everyone


def test_the_cached_effects_of_rules_for_everyone_give_the_same_lists(tmp_path) -> None:
    import time

    from models.blend import Ranked
    from operators.rules import RuleBook, UserFacts

    text = (
        '[[rule]]\nname = "f"\nkind = "filter"\nwhere = {category = "a"}\n'
        '[[rule]]\nname = "kb"\nkind = "bury"\nfactor = 0.2\nwho = {segment = "kids"}\nwhere = {tags = ["t1"]}\n'
        '[[rule]]\nname = "b"\nkind = "boost"\nfactor = 3.0\nwhere = {category = "c"}\n'
        '[[rule]]\nname = "n"\nkind = "new_item_boost"\nfactor = 2.0\nmax_age_s = 250\n'
        '[[rule]]\nname = "d"\nkind = "diversity"\nmax = 2\ntop = 5\n'
    )
    path = tmp_path / "rules.toml"
    path.write_text(text)
    book = RuleBook(str(path))
    book.learn_users(UserFacts({"kid": {"segment": "kids"}}), lambda _: True)
    book.learn_items(FACTS)
    names = [f"{c}{n}" for n in range(10) for c in "abc"]
    ranked = [Ranked(names, [round(1.0 - 0.01 * i, 6) for i in range(30)], list(range(30)))] * 2
    now = 600.0
    got = book.apply(["kid", "adult"], [np.zeros(0, np.int64)] * 2, ranked, lambda _: False, now, 10)
    for user, lst in zip(["kid", "adult"], got):
        want = apply_rules(
            rules(text), book.attrs.get(user, {}), pool(*names)._replace(scores=ranked[0].scores), FACTS, {}, now, 10
        )
        assert lst.items == want.items and lst.scores == want.scores
        assert not [i for i in lst.items if i.startswith("a")]
    # The catalogue moves c0 to category a: the filter for everyone now takes it out (the cache is cleared).
    book.learn_items({"c0": ItemFacts("a", frozenset(), 0.0)})
    again = book.apply(["adult"], [np.zeros(0, np.int64)], ranked[:1], lambda _: False, time.time(), 10)[0]
    assert "c0" in got[1].items and "c0" not in again.items


def test_a_rules_change_applies_the_new_rules_to_the_kept_pools_without_running_the_model(tmp_path) -> None:
    import os
    import time

    from models import ModelConfig
    from models.event import Event
    from models.learner import ItemLearner
    from models.users import UserTable
    from operators.learn import Broadcast
    from operators.rank import RankerLogic, ServeConfig
    from operators.users import RankBatch, RankItem

    def filtering(category: str) -> str:
        return f'[[rule]]\nname = "f"\nkind = "filter"\nwhere = {{category = "{category}"}}\n'

    path = tmp_path / "rules.toml"
    path.write_text(filtering("a"))
    cfg = ModelConfig(seed=3)
    users, learner = UserTable(cfg), ItemLearner(cfg)
    now = time.time()
    rng = np.random.default_rng(0)
    for n in range(3000):  # a catalogue of 30 items, each user's tastes around one category
        u = int(rng.integers(60))
        item = f"{'abc'[u % 3]}{int(rng.integers(10))}" if rng.random() < 0.7 else f"{'abc'[n % 3]}{n % 10}"
        learner.learn(users.learn(Event(f"u{u}", item, "view", 1.0, now, now)))

    def ranker() -> RankerLogic:
        logic = RankerLogic(1, cfg, ServeConfig(k=5), rules=str(path))
        logic.book.learn_items(FACTS)
        logic.on_batch([Broadcast(0, learner.base_delta().copied(), {0: 1})])
        return logic

    def lists(logic: RankerLogic, kind: str) -> dict[str, list[str]]:
        views = [RankItem(users.view_row(u), (), now, ()) for u in range(len(users))]
        writes, _ = logic.on_batch([RankBatch(0, 1, views, kind)])
        return {w.name: w.items for w in writes if w.kind == "user"}

    live = ranker()
    before = lists(live, "event")
    assert not [i for lst in before.values() for i in lst if i.startswith("a")]
    path.write_text(filtering("b"))
    os.utime(path, ns=(1, 1))  # a new stamp even within the clock's resolution
    calls = []
    rank = live.ranker.rank
    live.ranker.rank = lambda views, k, exact=None: calls.append(len(views)) or rank(views, k, exact)  # type: ignore
    written = lists(live, "rules")
    assert calls == [0]  # every user had a kept pool: the model ran for nobody
    again = lists(ranker(), "event")  # what a ranker that never saw the old rules gives
    assert {**before, **written} == again
    assert set(written) == {u for u in again if again[u] != before[u]}  # only the lists that changed are written
    assert 0 < len(written) < len(again)
    assert [i for lst in again.values() for i in lst if i.startswith("a")]  # a-items, filtered before, are back
    assert not [i for lst in again.values() for i in lst if i.startswith("b")]
    # An item the catalogue takes away leaves the kept pools too.
    gone = next(i for lst in again.values() for i in lst if i.startswith("a"))
    live.ranker.set_available(np.array([item_key(gone)]), np.zeros(0, dtype=np.int64))
    os.utime(path, ns=(2, 2))
    path.write_text(filtering("c"))
    assert all(gone not in lst for lst in {**again, **lists(live, "rules")}.values())
