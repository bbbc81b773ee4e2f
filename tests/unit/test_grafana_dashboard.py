"""The Grafana dashboard and the alerts query only metrics the worker or intake exports."""

import json
import re

import yaml
from prometheus_client.metrics_core import Metric

from claim_scrubber.adapters.operations import StageMetrics
from tests.kafka_harness import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "claim-scrubber.json"
_METRIC = re.compile(r"\bclaim_scrubber_[a-z_]+")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "info": ("_info",),
}


def _exported_names() -> set[str]:
    families: list[Metric] = list(StageMetrics(ruleset_version="x").registry.collect())
    return {family.name + suffix for family in families for suffix in _SUFFIXES[family.type]}


def test_every_dashboard_query_names_a_metric_the_worker_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in _METRIC.findall(target["expr"])
    }

    assert queried, "the dashboard has queries"
    assert queried <= _exported_names(), sorted(queried - _exported_names())


def test_the_dashboard_has_the_panels_operations_asked_for() -> None:
    titles = " | ".join(panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"])

    for wanted in ("by outcome", "Review rate", "Top rules", "lag", "commit time", "fenced"):
        assert wanted in titles


def test_every_alert_names_a_metric_the_worker_or_intake_exports() -> None:
    rule_file = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
    rules = yaml.safe_load(rule_file.read_text("utf-8"))
    intake = StageMetrics(ruleset_version="x", stage="intake").registry.collect()
    exported = _exported_names() | {
        family.name + suffix for family in intake for suffix in _SUFFIXES[family.type]
    }
    queried = {
        name
        for group in rules["spec"]["groups"]
        for rule in group["rules"]
        for name in _METRIC.findall(rule["expr"])
    }

    assert queried, "the alerts have expressions"
    assert queried <= exported, sorted(queried - exported)
