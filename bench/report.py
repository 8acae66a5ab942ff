"""Plots and the ``bench/RESULTS.md`` section of a ``freshrec bench`` run."""

from __future__ import annotations

import os
from pathlib import Path


def plot_all(res: dict, out_dir: Path) -> list[Path]:
    """Three PNGs: throughput over time, freshness per rate, freshrec vs the naive baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    s = res["summary"]
    paths = [out_dir / "bench-throughput.png", out_dir / "bench-freshness.png", out_dir / "bench-vs-naive.png"]

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for r, run in enumerate(res["runs"]):
        for key, label, colour in (("series", "freshrec run", "tab:blue"), ("b_series", "naive loop", "tab:orange")):
            ts, rates = _rates(run[key])
            ax.plot(ts, rates, color=colour, alpha=0.9 if r == 0 else 0.4, label=label if r == 0 else None)
    ax.set_xlabel("seconds since start of drain")
    ax.set_ylabel("events/s applied (1 s windows)")
    ax.set_title("Draining a synthetic backlog (100k users, 10k items)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.13
    rows = [("freshrec", f) for f in s["freshness_ms_by_rate"]] + [
        ("naive", f) for f in s["baseline_freshness_ms_by_rate"]
    ]
    for n, (who, f) in enumerate(rows):
        for q, (quant, shade) in enumerate((("p50", 0.45), ("p95", 0.7), ("p99", 1.0))):
            rgba = (0.12, 0.47, 0.71, shade) if who == "freshrec" else (1.0, 0.5, 0.05, shade)
            ax.bar(
                n + (q - 1) * width * 1.1,
                f[quant],
                width,
                color=rgba,
                label=f"{who} {quant}" if n in (0, len(s["freshness_ms_by_rate"])) else None,
            )
    ax.set_xticks(range(len(rows)), [f"{who}\n{f['rate']:,.0f}/s" for who, f in rows])
    ax.set_yscale("log")
    ax.set_ylabel("event sent -> list in Redis (ms, log)")
    ax.set_title("Freshness latency p50 / p95 / p99 per ingestion rate")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.6))
    a1.bar(["freshrec", "naive"], [s["throughput_eps"], s["baseline_throughput_eps"]], color=["tab:blue", "tab:orange"])
    a1.set_title(f"max throughput (events/s): {s['throughput_ratio']}x")
    f1, b1 = s["freshness_ms_by_rate"][0], s["baseline_freshness_ms_by_rate"][0]
    a2.bar(["freshrec", "naive"], [f1["p99"], b1["p99"]], color=["tab:blue", "tab:orange"])
    a2.set_title("freshness p99 at 1,000 events/s (ms)")
    for a in (a1, a2):
        a.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def _rates(series: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    ts, rates = [], []
    j = 0
    for i, (t, n) in enumerate(series):
        while series[j][0] < t - 1.0:
            j += 1
        if i > j and t - series[j][0] > 0:
            ts.append(t)
            rates.append((n - series[j][1]) / (t - series[j][0]))
    return ts, rates


def results_section(res: dict, cmd: str, plots: list[Path], results_dir: Path) -> str:
    """A Markdown section with the figures, the command, the machine and the date."""
    s = res["summary"]
    links = " ".join(f"[{p.name}]({os.path.relpath(p, results_dir)})" for p in plots)
    lines = [
        "",
        f"## End-to-end benchmark ({res['date']})",
        "",
        "```",
        cmd,
        "```",
        "",
        (
            f"Machine: {res['machine']}. Kafka and Redis on the same machine; median of "
            f"{s['runs']} run(s); {res['wall_s']:.0f} s in all. Plots: {links}."
        ),
        "",
        "| figure | freshrec | naive loop | ratio |",
        "|---|---|---|---|",
        f"| max throughput (events/s) | {s['throughput_eps']:,} | {s['baseline_throughput_eps']:,} | {s['throughput_ratio']}x |",
    ]
    for f, b in zip(s["freshness_ms_by_rate"], s["baseline_freshness_ms_by_rate"] + [None] * 3):
        naive = f"{b['p50']} / {b['p95']} / {b['p99']}{'' if b['caught_up'] else ' (fell behind)'}" if b else "-"
        ratio = f"{b['p99'] / f['p99']:.1f}x (p99)" if b and f["p99"] else "-"
        behind = "" if f["caught_up"] else " (fell behind)"
        lines.append(
            f"| freshness p50 / p95 / p99 at {f['rate']:,.0f} events/s (ms) | {f['p50']} / {f['p95']} / {f['p99']}{behind} | {naive} | {ratio} |"
        )
    lines += [
        f"| GET latency p50 / p99 at {s['reads_per_s']:,.0f} reads/s, ingesting 5,000 events/s (ms) | {s['read_ms']['p50']} / {s['read_ms']['p99']} | | |",
        f"| resident memory per 100k users (MB) | {s['rss_mb_per_100k_users']} | | |",
        f"| 1M users: snapshot time / size, restore time | {s['snapshot_s_1m_users']} s / {s['snapshot_mb_1m_users']} MB, {s['restore_s_1m_users']} s | | |",
        f"| `freshrec run` start to metrics up (s) | {s['startup_s']} | | |",
        (
            f"| restart with {res['restart']['users']:,} users of recovered state: to serving again / recovery dir / re-applied "
            f"| {res['restart']['restart_s']} s / {res['restart']['recovery_mb']} MB / {res['restart']['reapplied']} | | |"
        ),
        "",
    ]
    return "\n".join(lines) + "\n"
