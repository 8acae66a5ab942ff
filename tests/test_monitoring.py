"""Monitoring assets (deploy/): alert rules under promtool, the Grafana dashboard, a real Prometheus on a real flow."""

from __future__ import annotations

import re
import subprocess
import time

import orjson
import pytest
from prometheus_client import REGISTRY

from bench.services import free_ports, stop_process
from state import metrics
from support import ROOT, need, wait_for

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "freshrec.json"


@pytest.fixture(scope="module")
def prometheus_bin() -> tuple[str, str]:
    prometheus, promtool = need("prometheus=prometheus", "promtool=prometheus")
    return prometheus, promtool


def _alert_exprs() -> list[str]:
    text = (PROMETHEUS / "alerts.yml").read_text()
    exprs: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if block is not None:
            if line.startswith(" " * 10):
                block.append(line.strip())
                continue
            exprs.append(" ".join(block))
            block = None
        if line.strip().startswith("expr:"):
            rest = line.split("expr:", 1)[1].strip()
            if rest == ">":
                block = []
            else:
                exprs.append(rest)
    return exprs


def _dashboard_exprs() -> list[str]:
    doc = orjson.loads(DASHBOARD.read_bytes())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_alert_rules_are_valid_and_their_unit_tests_pass(prometheus_bin):
    promtool = prometheus_bin[1]
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        got = subprocess.run([promtool, *args], check=False, cwd=PROMETHEUS, capture_output=True, text=True)
        assert got.returncode == 0, got.stdout + got.stderr
    check = [promtool, "check", "config", "prometheus.yml"]
    got = subprocess.run(check, check=False, cwd=PROMETHEUS, capture_output=True, text=True)
    assert got.returncode == 0, got.stdout + got.stderr


def test_every_query_names_a_metric_freshrec_exports():
    exported = {m.name for reg in (REGISTRY, metrics.API_REGISTRY) for m in reg.collect()}
    exprs = _alert_exprs() + _dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        names = set(re.findall(r"freshrec_[a-z0-9_]+", expr))
        assert names or expr.startswith("up{"), expr
        for name in names:
            base = re.sub(r"_(bucket|total|sum|count)$", "", name)
            assert base in exported, f"{name} in {expr!r} is not a freshrec metric"


def test_a_real_prometheus_scrapes_the_flow_and_the_api_and_answers_the_queries(
    prometheus_bin, start_flow, start_server, tmp_path
):
    import httpx

    flow = start_flow()
    server = start_server("--flow-metrics", f"http://127.0.0.1:{flow.metrics_port}/metrics")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        (PROMETHEUS / "prometheus.yml")
        .read_text()
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("127.0.0.1:9464", f"127.0.0.1:{flow.metrics_port}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        .replace("  - alerts.yml", f"  - {PROMETHEUS / 'alerts.yml'}")
    )
    port = free_ports(1)
    proc = subprocess.Popen(
        [
            prometheus_bin[0],
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        prom = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        wait_for(lambda: _ready(prom), timeout=30)
        # A stream of events over the API for half a minute: the flow learns them, Prometheus scrapes both.
        deadline = time.monotonic() + 25
        n = 0
        while time.monotonic() < deadline:
            batch: list[dict] = [{"user": f"u{(n + j) % 40}", "item": f"i{(n * 3 + j) % 60}"} for j in range(50)]
            shown = [f"i{(n + j) % 60}" for j in range(5)]
            batch += [
                {"user": f"u{n % 40}", "type": "impression", "items": shown, "list": "user"},
                {"user": f"u{n % 40}", "item": shown[1], "type": "click"},
            ]
            assert server.http.post("/events", content=orjson.dumps(batch)).json()["accepted"] == 52
            n += 50
            time.sleep(0.1)

        def value(expr: str) -> float | None:
            got = prom.get("/api/v1/query", params={"query": expr}).json()
            assert got["status"] == "success", (expr, got)
            result = got["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        def answered(expr: str) -> float:
            """The value of ``expr`` once Prometheus has one (0 is a value)."""
            return wait_for(lambda: [v] if (v := value(expr)) is not None else [], timeout=20)[0]

        assert 0 < answered("histogram_quantile(0.99, sum by (le) (rate(freshrec_freshness_seconds_bucket[1m])))") < 5
        assert answered('sum(rate(freshrec_events_total{outcome="applied"}[1m]))') > 10
        hits = "sum(rate(freshrec_prequential_hits_total[10m])) / sum(rate(freshrec_prequential_checks_total[10m]))"
        assert 0 <= answered(hits) <= 1
        assert answered('sum(rate(freshrec_api_events_total{outcome="accepted"}[1m]))') > 10
        ctr = (
            'sum by (list) (rate(freshrec_attributed_total{type="click"}[10m]))'
            " / sum by (list) (rate(freshrec_impressions_total[10m]))"
        )
        assert 0.1 < answered(ctr) <= 0.3  # one click in five items shown
        for expr in _dashboard_exprs():
            value(expr)  # every panel's query is one Prometheus accepts
        targets = prom.get("/api/v1/targets").json()["data"]["activeTargets"]
        assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [
            ("freshrec", "up"),
            ("freshrec-api", "up"),
        ]
        groups = prom.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == len(_alert_exprs()) and all(r["health"] == "ok" for r in rules), rules  # every alert
    finally:
        stop_process(proc)


def _ready(prom) -> bool:
    import httpx

    try:
        return prom.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False
