"""The Grafana dashboard queries only metrics the worker exports."""

import json
import re

from prometheus_client.metrics_core import Metric

from claim_scrubber.adapters.operations import WorkerMetrics
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
    families: list[Metric] = list(WorkerMetrics(ruleset_version="x").registry.collect())
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
