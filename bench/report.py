"""Plots, the summary and the ``bench/RESULTS.md`` section of a ``freshrec bench`` run (any of its stages)."""

from __future__ import annotations

import os
from pathlib import Path


def plot_all(res: dict, out_dir: Path) -> list[Path]:
    """The PNGs of the stages that ran."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if "summary" in res:
        paths += _plot_core(res, out_dir)
    if res.get("catalogue"):
        paths.append(_plot_catalogue(res["catalogue"], out_dir))
    return paths


def _plot_catalogue(rows: list[dict], out_dir: Path) -> Path:
    """Events/s and recall@20 against catalogue size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["items"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
    if all("events_per_s" in r for r in rows):
        a1.plot(sizes, [r["events_per_s"] for r in rows], "o-", color="tab:blue")
    a1.set_xscale("log")
    a1.set_xlabel("catalogue (items)")
    a1.set_ylabel("events/s (drain, real flow)")
    a1.set_ylim(bottom=0)
    a2.plot(sizes, [r["recall_at_20"] for r in rows], "o-", label="served list vs exact blend")
    a2.plot(sizes, [r["index_recall_at_20"] for r in rows], "s--", label="index alone vs exact inner product")
    a2.set_xscale("log")
    a2.set_xlabel("catalogue (items)")
    a2.set_ylabel("recall@20")
    a2.set_ylim(0, 1.02)
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "bench-catalogue.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_core(res: dict, out_dir: Path) -> list[Path]:
    """Three PNGs: throughput over time, freshness per rate, freshrec vs the naive baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


FLOW_STAGES = {"summary", "catalogue", "scale", "ctr", "rerank", "live"}  # the figures that come from `freshrec run`


def results_section(res: dict, cmd: str, plots: list[Path], results_dir: Path) -> str:
    """A Markdown section with the figures, the command, the machine and the date."""
    links = " ".join(f"[{p.name}]({os.path.relpath(p, results_dir)})" for p in plots)
    lines = [
        "",
        f"## freshrec bench ({res['date']})",
        "",
        "```",
        cmd,
        "```",
        "",
        (
            f"Machine: {res['machine']}. Kafka and Redis on the same machine"
            + ("; every freshrec run with --recovery-dir and 5 s snapshots" if set(res) & FLOW_STAGES else "")
            + f"; {res['wall_s']:.0f} s in all. Plots: {links or '-'}."
        ),
        "",
    ]
    if "summary" in res:
        lines += _core_lines(res)
    if res.get("catalogue"):
        lines += _catalogue_lines(res["catalogue"])
    if res.get("scale"):
        lines += _scale_lines(res["scale"])
    if res.get("api"):
        lines += _api_lines(res["api"])
    if res.get("ctr"):
        lines += _ctr_lines(res["ctr"])
    if res.get("rerank"):
        lines += _rerank_lines(res["rerank"])
    if res.get("live"):
        lines += _live_lines(res["live"])
    return "\n".join(lines) + "\n"


def _live_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| live hit-rate@10 (bench/live.py) | events | live | eval, same events | live / eval | target "
        "| in-process, lists served as the flow does (lag) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['log']} at {r['rate']:,.0f} events/s | {r['events']:,} | {r['live_hr_at_10']} | "
        f"{r['eval_hr_at_10']} | {r['ratio']} | >= 0.9 | {r['served_late_hr_at_10']} "
        f"({r['served_late_events']} events: freshness p50 {r['freshness_p50_ms']} ms) |"
        for r in rows
    ]
    return [*lines, ""]


def _rerank_lines(r: dict) -> list[str]:
    return [
        "| rules change (bench/rerank.py), 1,000 events/s | value | target |",
        "|---|---|---|",
        f"| users re-ranked in the background | {r['reranked']:,} of {r['users']:,} in {r['rerank_s']} s | "
        "100k in <= 30 s |",
        f"| freshness p50 / p99 meanwhile | {r['freshness_p50_ms']} / {r['freshness_p99_ms']} ms | p99 <= 100 ms |",
        f"| freshness p99 before the change (same load and rules) | {r.get('baseline_p99_ms')} ms | |",
        "",
    ]


def _core_lines(res: dict) -> list[str]:
    s = res["summary"]
    r = res["restart"]
    ratios = ", ".join(f"{x}x" for x in s["throughput_ratios"])
    lines = [
        f"Median of {s['runs']} run(s).",
        "",
        "| figure | freshrec | naive loop | ratio |",
        "|---|---|---|---|",
        (
            f"| max throughput (events/s) | {s['throughput_eps']:,} | {s['baseline_throughput_eps']:,} "
            f"| {s['throughput_ratio']}x (median of paired runs: {ratios}) |"
        ),
    ]
    for f, b in zip(s["freshness_ms_by_rate"], s["baseline_freshness_ms_by_rate"] + [None] * 3):
        naive = f"{b['p50']} / {b['p95']} / {b['p99']}{'' if b['caught_up'] else ' (fell behind)'}" if b else "-"
        ratio = f"{b['p99'] / f['p99']:.1f}x (p99)" if b and f["p99"] else "-"
        behind = "" if f["caught_up"] else " (fell behind)"
        lines.append(
            f"| freshness p50 / p95 / p99 at {f['rate']:,.0f} events/s (ms) "
            f"| {f['p50']} / {f['p95']} / {f['p99']}{behind} | {naive} | {ratio} |"
        )
    lines += [
        (
            f"| GET latency p50 / p99, {s['reads_per_s']:,.0f} reads/s achieved of {s['reads_target_per_s']:,} "
            f"asked, ingesting 5,000 events/s (ms) | {s['read_ms']['p50']} / {s['read_ms']['p99']} | | |"
        ),
        f"| resident memory per 100k users, realistic histories (MB) | {s['rss_mb_per_100k_users']} | | |",
        (
            f"| 1M users: steady snapshot (5,000 events) / first snapshot / restore "
            f"| {s['snapshot_s_1m_users']} s ({s['snapshot_mb_1m_users']} MB) / {s['first_snapshot_s_1m_users']} s "
            f"/ {s['restore_s_1m_users']} s | | |"
        ),
        f"| `freshrec run` start to metrics up (s) | {s['startup_s']} | | |",
        (
            f"| restart with {r['users']:,} users ({r['events']:,} events) of recovered state: to serving / "
            f"recovery dir / re-applied | {r['restart_s']} s / {r['recovery_mb']} MB / {r['reapplied']} | | |"
        ),
        "",
    ]
    return lines


def _catalogue_lines(rows: list[dict]) -> list[str]:
    header = [
        "Large catalogues (bench/catalogue.py): synthetic stream, 100k users, Zipf 0.6, every size warmed with",
        f"the same {rows[0].get('warm_up_events', 0):,} events; recall and HR in-process on the flow's model classes,",
        "events/s and freshness through the real flow.",
        "",
        "| items (seen) | events/s | recall@20 | index recall@20 | HR@10 two-stage / exact "
        "| us per user two-stage / exact | lists without an index query | index build / MB "
        "| freshness p99 during a rebuild (ms) | swap (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {r['items']:,} ({r['items_seen']:,}) | {r.get('events_per_s', '-'):,} | {r['recall_at_20']} "
        f"| {r['index_recall_at_20']} | {r['hr_at_10']} / {r['exact_hr_at_10']} "
        f"| {r['two_stage_us_per_user']} / {r['exact_us_per_user']} | {r.get('index_skipped_share', '-')} "
        f"| {r['index_build_s']} s / {r['index_mb']} MB | {r.get('freshness_p99_ms_during_rebuild') or '-'} "
        f"| {r.get('index_swap_ms') or '-'} |"
        for r in rows
    ]
    return [*header, *body, ""]


def _scale_lines(sc: dict) -> list[str]:
    one, two = sc["scale"]
    fresh = sc["freshness_recovery_ms"]
    return [
        "Scale-out (bench/scale.py): topics of 2 partitions, recovery on.",
        "",
        "| figure | 1 process | 2 processes |",
        "|---|---|---|",
        (
            f"| drain (events/s), runs {sc['scale_runs']} | {one['throughput_eps']:,} | {two['throughput_eps']:,} "
            f"({sc['scale_ratio']}x, median of paired runs) |"
        ),
        f"| live hit-rate@10 at 1,000 events/s | {sc['hit_rate_at_10']['1']} | {sc['hit_rate_at_10']['2']} |",
        "",
        (
            f"One process with {fresh['users']:,} users of state at 1,000 events/s: freshness p50 {fresh['p50']} ms, "
            f"p99 {fresh['p99']} ms; longest pause (the longest call holding the worker) under "
            f"{fresh['max_pause_ms']} ms {fresh['longest_call_ms']}; probe events every 50 ms, end to end: "
            f"p99 {fresh['probe_p99_ms']} ms, worst {fresh['probe_max_ms']} ms. The learner alone (bench/stages.py): "
            f"{sc['single_writer_ceiling_eps']:,} events/s; per-event costs (us): {sc['stage_costs_us']}."
        ),
        "",
    ]


def _api_lines(rows: list[dict]) -> list[str]:
    lines = [
        (
            f"HTTP API (bench/api.py): `freshrec serve --http-workers N`, load from oha with latency correction, "
            f"beside a paced redis-py GET of the same keys; {rows[0]['runs']} run(s) of {rows[0]['seconds']:.0f} s "
            "per figure, medians."
        ),
        "",
        "| workers | GET /recommend at | API p50 / p99 (ms), p99 per run | achieved | direct Redis GET p50 / p99 (ms) "
        "| p99 ratio |",
        "|---|---|---|---|---|---|",
    ]
    for w in rows:
        lines += [
            f"| {w['workers']} | {r['rate']:,}/s | {r['api_p50_ms']} / {r['api_p99_ms']} ({r['runs_api_p99_ms']}) | "
            f"{r['api_achieved_rps']:,}/s, {r['api_non_200']} non-200 | {r['redis_p50_ms']} / {r['redis_p99_ms']} | "
            f"{r['p99_ratio']}x |"
            for r in w["get"]
        ]
    lines.append("")
    for w in rows:
        post = w["post"]
        lines.append(
            f"POST /events, {w['workers']} worker(s), batches of {post['batch']} (32 connections): "
            f"{post['api_eps']:,} events/s acknowledged (runs {post['runs_api_eps']}, {post['non_200']} non-200); "
            f"one kafka-python producer sending the same events directly {post['direct_eps']:,} events/s "
            f"({post['ratio']}x)."
        )
    return [*lines, ""]


def _ctr_lines(ctr: dict) -> list[str]:
    lines = [
        (
            f"Click-through (bench/ctr.py): {ctr['events']:,} synthetic events at 1,000/s with simulated shoppers "
            "(one event in five opens the app; user list or popular list, half and half), flow with recovery on; "
            f"`freshrec report` over the topic ({ctr['report_s']} s) and the flow's live counters."
        ),
        "",
        "| list | items shown | clicks | CTR (report) | CTR (live) | conversion | value / 1,000 | coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in ctr["report"].items():
        lines.append(
            f"| {kind} | {row['impressions']:,} | {row['clicks']:,} | {row['ctr']} | {ctr['live_ctr'].get(kind)} | "
            f"{row['conversion']} | {row['value_per_1000']} | {row['coverage']} |"
        )
    return [*lines, "", f"User lists / popular list CTR: {ctr.get('ctr_ratio')}x.", ""]


def print_summary(res: dict) -> None:
    print(f"freshrec bench ({res['machine']}, {res['date']}, {res['wall_s']:.0f} s)")
    if "summary" in res:
        s = res["summary"]
        print(
            f"  throughput      {s['throughput_eps']:>8,} events/s   naive {s['baseline_throughput_eps']:,}   "
            f"ratio {s['throughput_ratio']}x (median of paired runs)"
        )
        for f, b in zip(s["freshness_ms_by_rate"], s["baseline_freshness_ms_by_rate"] + [None]):
            behind = "" if b is None or b["caught_up"] else " (fell behind)"
            naive = f"   naive p50 {b['p50']} / p99 {b['p99']} ms{behind}" if b else ""
            print(f"  freshness @{f['rate']:>6,.0f}/s  p50 {f['p50']} / p95 {f['p95']} / p99 {f['p99']} ms{naive}")
        print(
            f"  reads           p50 {s['read_ms']['p50']} / p99 {s['read_ms']['p99']} ms at "
            f"{s['reads_per_s']:,.0f} reads/s (asked {s['reads_target_per_s']:,})"
        )
        print(
            f"  memory          {s['rss_mb_per_100k_users']} MB per 100k users; 1M users: steady snapshot "
            f"{s['snapshot_s_1m_users']} s ({s['snapshot_mb_1m_users']} MB), restore {s['restore_s_1m_users']} s"
        )
        r = res["restart"]
        print(
            f"  restart         {r['restart_s']} s to serving again with {r['users']:,} users of state "
            f"(recovery dir {r['recovery_mb']} MB, re-applied {r['reapplied']}, stop {r['stop_s']} s)"
        )
    for row in res.get("catalogue", []):
        print(
            f"  catalogue {row['items']:>9,}: {row.get('events_per_s', '-')} events/s, recall@20 {row['recall_at_20']} "
            f"(index {row['index_recall_at_20']}, not queried for {row.get('index_skipped_share', '-')} of lists), "
            f"HR@10 {row['hr_at_10']} vs exact {row['exact_hr_at_10']}, "
            f"build {row['index_build_s']} s / {row['index_mb']} MB, "
            f"p99 during rebuild {row.get('freshness_p99_ms_during_rebuild') or '-'} ms, "
            f"swap {row.get('index_swap_ms') or '-'} ms"
        )
    if "scale" in res:
        sc = res["scale"]
        one, two = sc["scale"]
        print(
            f"  scale           1 process {one['throughput_eps']:,} events/s, 2 processes {two['throughput_eps']:,} "
            f"({sc['scale_ratio']}x); hit-rate@10 {sc['hit_rate_at_10']}; single writer "
            f"{sc['single_writer_ceiling_eps']:,} events/s; with state: {sc['freshness_recovery_ms']}"
        )
    if "rerank" in res:
        r = res["rerank"]
        print(
            f"  rules change    {r['reranked']:,} users re-ranked in {r['rerank_s']} s; freshness meanwhile "
            f"p50 {r['freshness_p50_ms']} / p99 {r['freshness_p99_ms']} ms"
        )
    for r in res.get("live", []):
        print(
            f"  live quality    {r['log']}: live hit-rate@10 {r['live_hr_at_10']} against eval's {r['eval_hr_at_10']} "
            f"on the same events ({r['ratio']})"
        )
    if "ctr" in res:
        c = res["ctr"]
        shown = ", ".join(f"{k} {v['ctr']}" for k, v in c["report"].items())
        print(f"  click-through   {shown} ({c.get('ctr_ratio')}x); live {c['live_ctr']}")
    for w in res.get("api", []):
        for r in w["get"]:
            print(
                f"  GET /recommend  {w['workers']} worker(s) @{r['rate']:,}/s p50 {r['api_p50_ms']} / p99 "
                f"{r['api_p99_ms']} ms (achieved {r['api_achieved_rps']:,}/s); direct Redis GET p50 "
                f"{r['redis_p50_ms']} / p99 {r['redis_p99_ms']} ms"
            )
        post = w["post"]
        print(
            f"  POST /events    {w['workers']} worker(s) {post['api_eps']:,} events/s (batches of {post['batch']}); "
            f"direct {post['direct_eps']:,}"
        )
