"""The console's live figures, from the flow's ``/metrics`` endpoints.

:class:`LiveStats` scrapes every endpoint of the flow (one per process)
once a second while the console is open, sums them, and keeps a rolling history of points:
events/s, freshness p50/p99 over the last 10 seconds (from the histogram
buckets, as PromQL's ``histogram_quantile`` does), consumer lag and
hit-rate@10 over the last minute.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from state import metrics

Samples = list[tuple[str, dict[str, str], float]]
FRESHNESS_WINDOW_S = 10.0
HIT_RATE_WINDOW_S = 60.0


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper_bound, count), ...]``; None if it is empty.

    Linear within a bucket; the ``+Inf`` bucket answers its lower bound.

    >>> quantile([(0.01, 50), (0.1, 100), (math.inf, 100)], 0.5)
    0.01
    >>> round(quantile([(0.01, 50), (0.1, 100), (math.inf, 100)], 0.75), 3)
    0.055
    >>> quantile([(0.01, 0), (math.inf, 0)], 0.5) is None
    True
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


class _Point:
    __slots__ = ("applied", "buckets", "checks", "hits", "lag", "rejected", "t", "up")

    def __init__(self, t: float, samples: Samples, up: int) -> None:
        self.t, self.up = t, up
        self.applied = metrics.total(samples, "freshrec_events_total", {"outcome": "applied"})
        self.rejected = metrics.total(samples, "freshrec_events_total", {"outcome": "rejected"})
        self.lag = metrics.total(samples, "freshrec_consumer_lag_messages")
        self.hits = metrics.total(samples, "freshrec_prequential_hits_total")
        self.checks = metrics.total(samples, "freshrec_prequential_checks_total")
        buckets: dict[float, float] = {}
        for name, labels, value in samples:
            if name == "freshrec_freshness_seconds_bucket":
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        self.buckets = buckets


class LiveStats:
    """Rolling figures of a flow, for ``GET /stats``.

    Parameters
    ----------
    urls
        The ``/metrics`` URL of every process of the flow.
    history
        Points kept (one per scrape, at most one a second).
    scrape
        Reads one URL (the real one by default; the unit tests give canned samples).
    """

    def __init__(
        self, urls: Sequence[str], history: int = 300, scrape: Callable[[str], Samples] = metrics.scrape_url
    ) -> None:
        self.urls = list(urls)
        self._scrape = scrape
        self._points: deque[_Point] = deque(maxlen=history)
        self._series: deque[dict[str, Any]] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._watched_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="live-stats", daemon=True)

    def start(self) -> None:
        """Scrape every second in a thread while someone watches (:meth:`series` was called in the last 30 s).

        Every process of ``freshrec serve`` then holds the same history, whichever one answers.
        """
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() < self._watched_until:
                self.update()

    def series(self) -> list[dict[str, Any]]:
        """The history (scraped now if there is none yet), oldest first; keeps the scraping on for 30 s."""
        self._watched_until = time.monotonic() + 30.0
        return self.update() if not self._series else list(self._series)

    def update(self, now: float | None = None) -> list[dict[str, Any]]:
        """Scrape if the newest point is a second old or more; the history, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            if not self._points or now - self._points[-1].t >= 1.0:
                samples: Samples = []
                up = 0
                for url in self.urls:
                    got = self._scrape(url)
                    up += bool(got)
                    samples.extend(got)
                self._add(_Point(now, samples, up))
            return list(self._series)

    def _add(self, point: _Point) -> None:
        prev = self._points[-1] if self._points else None
        if prev is not None and point.up and point.applied < prev.applied:  # the flow restarted: counters reset
            self._points.clear()
            prev = None
        self._points.append(point)
        fresh_from = self._at(point.t - FRESHNESS_WINDOW_S)
        hits_from = self._at(point.t - HIT_RATE_WINDOW_S)
        window = [(b, c - fresh_from.buckets.get(b, 0.0)) for b, c in point.buckets.items()]
        checks = point.checks - hits_from.checks
        rate = None
        if prev is not None and point.t > prev.t and point.up:
            rate = max(point.applied - prev.applied, 0.0) / (point.t - prev.t)
        self._series.append(
            {
                "t": round(point.t, 3),
                "up": point.up,
                "endpoints": len(self.urls),
                "events_per_s": rate,
                "applied": point.applied,
                "rejected": point.rejected,
                "freshness_p50": quantile(window, 0.5),
                "freshness_p99": quantile(window, 0.99),
                "lag": point.lag if point.up else None,
                "hit_rate": (point.hits - hits_from.hits) / checks if checks > 0 else None,
            }
        )

    def _at(self, t: float) -> _Point:
        """The oldest point at or after ``t`` (the start of a window ending now)."""
        for p in self._points:
            if p.t >= t:
                return p
        return self._points[-1]
