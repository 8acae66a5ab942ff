"""The console's figures from scraped samples (state/live.py): rates, windowed quantiles, restarts. No services."""

from __future__ import annotations

import math

from state.live import LiveStats


def _samples(applied: float, fresh: list[tuple[float, float]], hits: float = 0.0, checks: float = 0.0) -> list:
    out = [
        ("freshrec_events_total", {"outcome": "applied", "reason": ""}, applied),
        ("freshrec_events_total", {"outcome": "rejected", "reason": "not_json"}, 2.0),
        ("freshrec_consumer_lag_messages", {"partition": "0"}, 7.0),
        ("freshrec_prequential_hits_total", {}, hits),
        ("freshrec_prequential_checks_total", {}, checks),
    ]
    out += [("freshrec_freshness_seconds_bucket", {"le": str(b)}, c) for b, c in fresh]
    return out


def test_rates_and_quantiles_come_from_deltas_over_their_windows_and_endpoints_add_up():
    feed: dict[str, list] = {}
    live = LiveStats(["a", "b"], scrape=lambda url: feed[url])
    # Two processes: before, 100 events each, all fresh within 10 ms.
    for url in "ab":
        feed[url] = _samples(100, [(0.01, 100), (0.1, 100), (math.inf, 100)], hits=10, checks=100)
    first = live.update(now=1000.0)[-1]
    assert (first["up"], first["applied"], first["rejected"], first["lag"], first["events_per_s"]) == (
        2,
        200,
        4,
        14,
        None,
    )
    # 2 s later: 300 more events on each, all of them between 10 and 100 ms; 30 hits in 100 checks each.
    for url in "ab":
        feed[url] = _samples(400, [(0.01, 100), (0.1, 400), (math.inf, 400)], hits=40, checks=200)
    point = live.update(now=1002.0)[-1]
    assert point["events_per_s"] == 300.0
    assert 0.01 < point["freshness_p50"] < 0.1  # the window holds only the new, slower events
    assert point["hit_rate"] == 0.3
    assert live.update(now=1002.5) == live.update(now=1002.9)  # at most one scrape a second


def test_a_restarted_flow_starts_a_new_history_and_a_silent_one_reports_nothing():
    feed = {"a": _samples(1000, [(0.01, 1000), (math.inf, 1000)])}
    live = LiveStats(["a"], scrape=lambda url: feed[url])
    live.update(now=10.0)
    feed["a"] = _samples(50, [(0.01, 50), (math.inf, 50)])  # counters reset
    assert live.update(now=11.0)[-1]["events_per_s"] is None
    feed["a"] = []
    down = live.update(now=12.0)[-1]
    assert (down["up"], down["lag"], down["events_per_s"]) == (0, None, None)
