"""Monitoring: Prometheus config and alert rules pass promtool, every alert has unit tests that
fire and stay quiet, and the rules and the dashboard use metric names that exist (in the code,
TorchServe's, or listed as assumed in docs/deployment.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.support import ROOT, run, tool

MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules" / "hone-alerts.yml"
RULE_TESTS = MONITORING / "rules" / "hone-alerts.test.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "hone-pipeline.json"
DOCS = ROOT / "docs" / "deployment.md"

# Exported by TorchServe (ts/configs/metrics.yaml, metrics_mode=prometheus) and Prometheus.
EXTERNAL_METRICS = {
    "up",
    "Requests2XX",
    "Requests4XX",
    "Requests5XX",
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "by", "without", "rate", "increase", "deriv", "and", "or",
    "unless", "histogram_quantile", "max_over_time", "le", "offset", "bool", "on", "ignoring",
}  # fmt: skip


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label names, label values and functions removed)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", expr)) - PROMQL_WORDS
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names if not n[0].isdigit()}


def metrics_in_code() -> set[str]:
    names: set[str] = set()
    for folder in ("libs", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(
                re.findall(
                    r'(?:Counter|Gauge|Histogram|Summary)\(\s*"(hone_\w+)"', path.read_text()
                )
            )
    return names


def metrics_documented_as_assumed() -> set[str]:
    section = DOCS.read_text().partition("### Metric names")[2].partition("\n## ")[0]
    return set(re.findall(r"`(hone_\w+)`", section))


def test_prometheus_config_and_its_rules_pass_promtool(tmp_path: Path) -> None:
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    # The container path, pointed at the repository, so promtool also checks the rules.
    config["rule_files"] = [str(MONITORING / "rules" / "hone-alerts.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = run(tool("promtool"), "check", "config", local)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout + result.stderr


def test_alert_rules_pass_promtool_check() -> None:
    result = run(tool("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = run(tool("promtool"), "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    (tmp_path / "hone-alerts.yml").write_text(RULES.read_text())
    broken = tmp_path / "hone-alerts.test.yml"
    broken.write_text(
        RULE_TESTS.read_text().replace(
            "severity: critical, job: scorer", "severity: warning, job: scorer"
        )
    )
    result = run(tool("promtool"), "test", "rules", broken)
    assert result.returncode != 0
    assert "HoneServiceDown" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in alert_rules()}
    assert names == fires
    assert names == quiet


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["alert"].startswith("Hone")


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    # promtool parses every expression of a rules file: use it as a PromQL parser.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run(tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_portable_and_has_the_key_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    titles = " ".join(p["title"] for p in panels).lower()
    for key in (
        "processed",
        "lag",
        "dead letters",
        "p95",
        "queue",
        "yield",
        "accuracy",
        "decisions",
    ):
        assert key in titles, key


def test_grafana_provisioning_loads_the_dashboard_folder() -> None:
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/hone.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/monitoring/grafana/dashboards:{path}:ro" in mounts


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_exists_in_the_code_or_is_documented_as_assumed(source: str) -> None:
    exprs = [r["expr"] for r in alert_rules()] if source == "rules" else dashboard_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    known = metrics_in_code() | metrics_documented_as_assumed() | EXTERNAL_METRICS
    assert not used - known, "document these in docs/deployment.md or fix the name"


def test_metric_name_extraction_ignores_labels_and_functions() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, service) "
        '(rate(hone_handler_seconds_bucket{job="x"}[5m])))'
    )
    assert metric_names(expr) == {"hone_handler_seconds"}


def test_kubernetes_scrape_config_keeps_only_pods_of_the_chart() -> None:
    # Debian's promtool is built without Kubernetes discovery, so this file is checked here.
    config = yaml.safe_load((MONITORING / "prometheus" / "kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    keep = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
    assert (keep["regex"], keep["action"]) == ("hone", "keep")
    component = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]
    assert component["target_label"] == "job"
