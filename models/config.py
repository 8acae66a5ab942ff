"""Hyper-parameters of the model: learning, blending, ranking and the index."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Every setting of learning and ranking, validated on construction.

    Defaults come from the sweeps in ``bench/sweep.py`` and the
    measurements in ``bench/RESULTS.md``. Every per-user and per-item
    structure is bounded by a field here. Operators set them with
    ``--model-config FILE`` (TOML), ``FRESHREC_MODEL_*`` variables or
    ``--model-*`` flags (``flows/settings.py``).
    """

    # matrix factorisation (River FunkMF on item factors; a user is the
    # recency-weighted mean of their recent items' history factors)
    n_factors: int = 32
    lr: float = 0.05  # (with mf_loss "bpr": 0.5 chose MovieLens, weights 1; 0.1 the stream, weights 1-5)
    mf_loss: str = "logistic"  # pointwise logistic steps, or "bpr": pairwise steps on (positive, negative) margins
    l2: float = 0.01
    mf_max_norm: float = 10.0  # with mf_loss "bpr": longest a factor row may grow (0: unbounded; models/mf.py)
    negatives: int = 1
    negative_sampling: str = "popular"  # or "uniform"
    negative_pool: int = 4096  # recent item events sampled for "popular" negatives
    history: int = 20  # recent items kept per user (MF uses all, co-occurrence the last `window`)
    history_decay: float = 0.9  # weight of an item `a` places back in the user vector: decay ** a
    # popularity
    half_life_s: float = 30 * 86400.0
    trend_half_life_s: float = 3600.0  # short-term popularity: the "trending" candidates
    # co-occurrence
    window: int = 5
    cooc_row_cap: int = 200  # entries kept per item (2x before pruning)
    cooc_backward: float = 0.5
    cooc_recency: float = 0.8  # an older recent item counts recency ** age (and starts the position weights)
    cooc_hop: float = 0.0  # two-step walk mixed into each co-occurrence row (0: off; 2 with window 1 for session logs)
    cooc_hop_cache: int = 10_000  # mixed rows kept per model with cooc_hop (least recently read dropped; ~6 KB each)
    cooc_positions: str = "learned"  # scoring weight per age learned online (models/cooc.py), or "fixed"
    seen_cap: int = 1000  # items remembered per user for exclusion
    # the blend
    w_mf: float = 1.0
    w_cooc: float = 1.0
    w_pop: float = 0.3
    w_trend: float = 0.0  # short-term popularity (trend_half_life_s)
    w_content: float = 1.0  # catalogue features against the user's content profile (models/content.py)
    # two-stage ranking (models/ranking.py) and the HNSW index (models/index.py)
    exact_max_items: int = 50000  # up to this many items every item is scored; above, candidates (measured crossover)
    candidates: int = 50  # HNSW neighbours of the user vector (and best items newer than the index)
    popular_candidates: int = 50  # most popular (decayed) and trending items, each
    fresh_max_items: int = 4096  # newest items outside the index scored for the "fresh" source
    index_m: int = 16
    index_ef: int = 64
    index_ef_construction: int = 100
    index_rebuild_s: float = 60.0  # each part of the index is rebuilt in the background this often (while items change)
    index_part_items: int = 1 << 18  # items per part of the index (models/index.py): what one swap frees
    seed: int = 0

    def __post_init__(self) -> None:
        if self.negative_sampling not in ("popular", "uniform"):
            raise ValueError(f"negative_sampling must be 'popular' or 'uniform', got {self.negative_sampling!r}")
        if self.mf_loss not in ("logistic", "bpr"):
            raise ValueError(f"mf_loss must be 'logistic' or 'bpr', got {self.mf_loss!r}")
        if self.cooc_positions not in ("learned", "fixed"):
            raise ValueError(f"cooc_positions must be 'learned' or 'fixed', got {self.cooc_positions!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        positive = ("n_factors", "history", "window", "cooc_row_cap", "seen_cap", "negative_pool", "index_m")
        for name in (*positive, "index_part_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window > self.history:
            raise ValueError(f"window ({self.window}) must be <= history ({self.history})")
        if not 0 < self.history_decay <= 1 or not 0 < self.cooc_recency <= 1:
            raise ValueError("history_decay and cooc_recency must be in (0, 1]")
        if self.half_life_s <= 0 or self.trend_half_life_s <= 0:
            raise ValueError("half_life_s and trend_half_life_s must be > 0 (math.inf for all-time counts)")
