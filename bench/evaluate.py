"""``freshrec eval``: prequential quality of freshrec and baselines on a log.

Protocol (test-then-train): for each event in time order, first ask every
model for the user's top-k (items the user already interacted with
excluded; an unknown user gets the model's popular list), count a hit if
the event's item is in it, then let every model learn the event. The
freshrec model is the exact class the live flow runs.

With ``--items`` (a catalogue file, as ``freshrec catalogue load`` takes),
the catalogue's items are known to freshrec from the start, with their
content features; ``freshrec_no_content`` is the same without the content
term and ``freshrec_no_catalogue`` the model without the file. Every model
is also scored on the cold events alone: events whose item had fewer
than ``COLD`` earlier events in the log.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import orjson

from bench.baselines import BatchALS, FunkMFAlone, ItemKNN, Popularity
from models import ModelConfig, Recommender
from models.content import features
from models.event import Event
from models.ids import item_key
from operators.catalogue import read_items
from operators.datasets import DataError, read_log, synthetic_log
from operators.parse import Rejected

K_MAX = 20
COLD = 5  # an event is cold when its item had fewer earlier events than this
Catalogue = list[tuple[str, tuple[np.ndarray, np.ndarray]]]  # item id, content features


class _Freshrec:
    """The live model behind the evaluation interface."""

    def __init__(self, config: ModelConfig, catalogue: Catalogue | None = None) -> None:
        self.model = Recommender(config)
        if catalogue:
            self.model.add_items(catalogue)

    def top(self, user: str, k: int) -> np.ndarray:
        """Item keys of the user's list (the popular list for an unknown user)."""
        return np.array(self.model.recommend(user, k).keys, dtype=np.int64)

    def learn(self, event: Event) -> None:
        self.model.learn(event)


def session(config: ModelConfig) -> ModelConfig:
    """The setting for session traffic (README, "Session logs"): rows count the next item, its walk fills in."""
    return replace(config, window=1, cooc_hop=2.0)


def lasting(config: ModelConfig) -> ModelConfig:
    """The setting for logs of lasting tastes (README, "The MF term"): pairwise MF steps, a 15-item window.

    Chosen on the first half of MovieLens (``bench.sweep``).
    """
    return replace(config, mf_loss="bpr", lr=0.5, negatives=5, window=15)


def evaluate(
    events: list[Event],
    k: int = 10,
    batch_every: int = 5000,
    config: ModelConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    window: int = 5000,
    ablations: bool = False,
    catalogue: Catalogue | None = None,
) -> dict:
    """Run the prequential protocol; return per-model figures and rolling HR@k curves."""
    cfg = config or ModelConfig()
    ours = {"freshrec": _Freshrec(cfg, catalogue)}
    if catalogue:
        ours["freshrec_no_content"] = _Freshrec(replace(cfg, w_content=0.0), catalogue)
        ours["freshrec_no_catalogue"] = _Freshrec(cfg)
    if ablations:
        ours["freshrec_no_mf"] = _Freshrec(replace(cfg, w_mf=0.0))
        ours["freshrec_no_cooc"] = _Freshrec(replace(cfg, w_cooc=0.0))
        ours["freshrec_no_pop"] = _Freshrec(replace(cfg, w_pop=0.0))
        ours["freshrec_fixed_positions"] = _Freshrec(replace(cfg, cooc_positions="fixed"))
        ours["freshrec_session"] = _Freshrec(session(cfg))
        ours["freshrec_lasting"] = _Freshrec(lasting(cfg))
    baselines: dict[str, Popularity | ItemKNN | FunkMFAlone | BatchALS] = {
        "popularity": Popularity(),
        "decayed_popularity": Popularity(half_life=cfg.half_life_s),
        "item_knn": ItemKNN(last=5),
        "item_knn_popularity": ItemKNN(last=5, pop_weight=0.1, half_life=cfg.half_life_s),
        "batch_mf": BatchALS(every=batch_every),
        "als_fold_in": BatchALS(every=batch_every, fold_in=True),
        "funk_mf": FunkMFAlone(),
    }
    names = [*ours, *baselines]
    n = len(events)
    hits_k = {m: np.zeros(n, dtype=np.bool_) for m in names}
    hits_20 = {m: np.zeros(n, dtype=np.bool_) for m in names}
    rr = {m: np.zeros(n) for m in names}
    shown: dict[str, set[int]] = {m: set() for m in names}
    spent = dict.fromkeys(names, 0.0)
    # Baselines share one dense id space, assigned in arrival order.
    user_ids: dict[str, int] = {}
    item_ids: dict[str, int] = {}
    earlier: dict[str, int] = {}
    cold = np.zeros(n, dtype=np.bool_)
    for t, ev in enumerate(events):
        u = user_ids.setdefault(ev.user, len(user_ids))
        i = item_ids.setdefault(ev.item, len(item_ids))
        seen = earlier.get(ev.item, 0)
        cold[t], earlier[ev.item] = seen < COLD, seen + 1
        # Timed: what the model does per event (rank, then learn); scoring is not.
        for name, fresh in ours.items():
            t0 = time.perf_counter()
            top = fresh.top(ev.user, K_MAX)
            t1 = time.perf_counter()
            _score(name, t, top, item_key(ev.item), k, hits_k, hits_20, rr, shown)
            t2 = time.perf_counter()
            fresh.learn(ev)
            spent[name] += (t1 - t0) + (time.perf_counter() - t2)
        for name, model in baselines.items():
            t0 = time.perf_counter()
            top = model.top(u, K_MAX)
            t1 = time.perf_counter()
            _score(name, t, top, i, k, hits_k, hits_20, rr, shown)
            t2 = time.perf_counter()
            model.learn(u, i, ev.weight, ev.ts)
            spent[name] += (t1 - t0) + (time.perf_counter() - t2)
        if progress is not None and (t % 2000 == 0 or t == n - 1):
            progress(t + 1, n)

    n_items = max(len(item_ids), 1)
    half = n // 2
    out: dict = {"models": {}, "curves": {}, "cold_events": int(cold.sum())}
    for m in names:
        out["models"][m] = {
            f"hr@{k}": _r(hits_k[m].mean()),
            f"hr@{k}_cold": _r(hits_k[m][cold].mean()) if cold.any() else None,
            "hr@20": _r(hits_20[m].mean()),
            "mrr@20": _r(rr[m].mean()),
            f"hr@{k}_second_half": _r(hits_k[m][half:].mean()),
            "coverage": _r(len(shown[m]) / n_items),
            "events_per_s": round(n / spent[m], 1) if spent[m] else None,
        }
        kernel = np.ones(window) / window
        out["curves"][m] = np.convolve(hits_k[m].astype(float), kernel, mode="valid")[:: max(window // 10, 1)].tolist()
    return out


def _score(name: str, t: int, top: np.ndarray, target: int, k: int, hits_k, hits_20, rr, shown) -> None:
    ranked = top.tolist()
    shown[name].update(ranked[:k])
    if target in ranked:
        pos = ranked.index(target)
        hits_20[name][t] = True
        hits_k[name][t] = pos < k
        rr[name][t] = 1.0 / (pos + 1)


def _r(x: float) -> float:
    return round(float(x), 4)


def _progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total)
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} events")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def plot(curves: dict[str, list[float]], k: int, window: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    step = max(window // 10, 1)
    for name, ys in curves.items():
        xs = [window + j * step for j in range(len(ys))]
        ax.plot(xs, ys, label=name, linewidth=2.2 if name == "freshrec" else 1.2)
    ax.set_xlabel("events seen")
    ax.set_ylabel(f"HR@{k} (rolling {window:,} events)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_catalogue(path: str) -> Catalogue:
    """The items of a catalogue file and their content features; a bad row stops the evaluation, named."""
    out = []
    for line, _, got in read_items(path):
        if isinstance(got, Rejected):
            raise DataError(f"{path} row {line}: {got.detail}")
        if got.available:
            out.append((got.item, features(got.title, got.category, got.tags)))
    return out


def _changed(config: ModelConfig) -> dict:
    """The model settings that differ from the defaults."""
    base = ModelConfig()
    return {f.name: getattr(config, f.name) for f in fields(config) if getattr(config, f.name) != getattr(base, f.name)}


def run_eval(
    data: str,
    fmt: str,
    k: int,
    as_json: bool,
    plot_path: str,
    batch_every: int,
    ablations: bool = False,
    items: str = "",
    synthetic: str = "",
    seed: int = 0,
    config: ModelConfig | None = None,
) -> int:
    if synthetic:
        events, about = synthetic_log(synthetic), f"the synthetic {synthetic} log"
        data = f"synthetic:{synthetic}"
    else:
        log = read_log(data, fmt, seed)
        events, about = log.events, f"{data}: {log.describe()}"
    catalogue = read_catalogue(items) if items else None
    with_items = f", catalogue {items} ({len(catalogue):,} items)" if catalogue is not None else ""
    kinds = Counter(e.kind for e in events)
    print(f"freshrec eval: {about}", file=sys.stderr)
    print(
        f"  {len(events):,} events ({', '.join(f'{n:,} {kind}' for kind, n in kinds.most_common())}){with_items},"
        f" prequential, k={k}",
        file=sys.stderr,
    )
    changed = _changed(config or ModelConfig())
    if changed:
        print(f"  model settings: {', '.join(f'{k}={v}' for k, v in changed.items())}", file=sys.stderr)
    window = max(min(5000, len(events) // 10), 1)
    res = evaluate(
        events,
        k=k,
        batch_every=batch_every,
        progress=_progress if sys.stderr.isatty() or len(events) > 20000 else None,
        window=window,
        ablations=ablations,
        catalogue=catalogue,
        config=config,
    )
    print(f"cold events (item with fewer than {COLD} earlier events): {res['cold_events']:,}")
    cols = [f"hr@{k}", f"hr@{k}_cold", "hr@20", "mrr@20", f"hr@{k}_second_half", "coverage", "events_per_s"]
    print(f"{'model':<22}" + "".join(f"{c:>18}" for c in cols))
    for name, row in res["models"].items():
        print(f"{name:<22}" + "".join(f"{('-' if row[c] is None else row[c]):>18}" for c in cols))
    if plot_path:
        plot(res["curves"], k, window, Path(plot_path), f"Prequential HR@{k} on {Path(data).name}")
        print(f"plot: {plot_path}")
    if as_json:
        doc = {"dataset": data, "events": len(events), "kinds": dict(kinds), "cold_events": res["cold_events"]}
        doc["models"] = res["models"]
        if items:
            doc["items"] = items
        if changed:
            doc["model_settings"] = changed
        print(orjson.dumps(doc).decode())
    return 0
