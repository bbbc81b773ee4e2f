"""The Kubernetes manifests, rendered offline from every overlay and validated.

Core kinds are validated against the Kubernetes schemas (`kubernetes-validate`, strict); the
KEDA ScaledObject and the ServiceMonitor, which no Kubernetes schema covers, are checked
here for what the worker depends on. `make k8s-check` runs this file and lints the
Dockerfile.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.kafka_harness import ROOT

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"
TARGETS = ["base", *(f"overlays/{p.name}" for p in sorted((K8S / "overlays").iterdir()))]
INPUT_PARTITIONS = 6


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        message = "kubectl (with kustomize built in) renders the overlays offline; install it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _render(target: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / target)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [document for document in yaml.safe_load_all(rendered) if document]


@pytest.fixture(params=TARGETS)
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(request.param)


def _one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def _containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from deployment["spec"]["template"]["spec"]["containers"]


def test_every_core_resource_validates_strictly_against_the_kubernetes_schemas(
    manifests: list[dict[str, Any]],
) -> None:
    core = [
        m
        for m in manifests
        if "." not in m["apiVersion"].split("/")[0] or "k8s.io" in m["apiVersion"]
    ]
    for manifest in core:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert {m["kind"] for m in core} >= {
        "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap",
    }  # fmt: skip


def test_the_worker_runs_as_a_numeric_non_root_user_on_a_read_only_filesystem(
    manifests: list[dict[str, Any]],
) -> None:
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    for container in _containers(_one(manifests, "Deployment")):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_probes_resources_and_grace_period_fit_the_worker(
    manifests: list[dict[str, Any]],
) -> None:
    deployment = _one(manifests, "Deployment")
    (worker,) = _containers(deployment)
    assert worker["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["resources"]["requests"]["cpu"] == "1"
    assert "cpu" not in worker["resources"]["limits"], "no CPU limit: throttling adds latency"
    assert worker["resources"]["limits"]["memory"] == "384Mi"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60


def test_keda_scales_on_the_groups_lag_up_to_the_input_partitions(
    manifests: list[dict[str, Any]],
) -> None:
    scaled = _one(manifests, "ScaledObject")
    config = _one(manifests, "ConfigMap")["data"]
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == _one(manifests, "Deployment")["metadata"]["name"]
    )
    assert scaled["spec"]["maxReplicaCount"] == INPUT_PARTITIONS
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == config["SCRUBBER_GROUP_ID"]
    assert trigger["metadata"]["topic"] == config["SCRUBBER_TOPIC_INPUT"]


def test_the_service_monitor_scrapes_the_metrics_port_of_the_service(
    manifests: list[dict[str, Any]],
) -> None:
    monitor, service = _one(manifests, "ServiceMonitor"), _one(manifests, "Service")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_credentials_come_from_secrets_never_from_literals(
    manifests: list[dict[str, Any]],
) -> None:
    config = _one(manifests, "ConfigMap")["data"]
    secret_settings = {"SCRUBBER_KAFKA_SASL_PASSWORD", "SCRUBBER_KAFKA_OAUTH_CLIENT_SECRET"}
    assert not secret_settings & config.keys()
    assert not [m for m in manifests if m["kind"] == "Secret"], "Secrets are made out of band"
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    mounted = {v["name"]: v for v in pod["volumes"]}
    for setting, path in config.items():
        if setting.endswith("_FILE"):
            (mount,) = [
                m for c in pod["containers"] for m in c["volumeMounts"]
                if Path(path).is_relative_to(m["mountPath"])
            ]  # fmt: skip
            assert "secret" in mounted[mount["name"]], f"{setting} is read from a Secret"


def test_the_disruption_budget_and_network_policy_select_the_workers_pods(
    manifests: list[dict[str, Any]],
) -> None:
    pods = _one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    budget = _one(manifests, "PodDisruptionBudget")["spec"]
    policy = _one(manifests, "NetworkPolicy")["spec"]
    # policy/v1: a PodDisruptionBudget without a selector protects no pod at all
    for selector in (budget.get("selector"), policy["podSelector"]):
        assert selector is not None
        assert selector["matchLabels"]
        assert selector["matchLabels"].items() <= pods.items()


def test_the_network_policy_lets_the_worker_resolve_names_through_kube_dns(
    manifests: list[dict[str, Any]],
) -> None:
    egress = _one(manifests, "NetworkPolicy")["spec"]["egress"]
    dns = [
        peer["podSelector"]
        for rule in egress
        for peer in rule["to"]
        if "podSelector" in peer and any(p["port"] == 53 for p in rule["ports"])
    ]
    # the app's labels must not be merged into the DNS peer: no kube-dns pod carries them
    assert dns == [
        {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]}
    ]


def test_keda_alone_sets_the_worker_replica_count(manifests: list[dict[str, Any]]) -> None:
    """A Deployment with spec.replicas beside a ScaledObject is reset to that count at every
    apply, fighting the autoscaler."""
    assert "replicas" not in _one(manifests, "Deployment")["spec"]


ALERTS = {
    "ClaimScrubberDown",
    "ClaimScrubberNotReady",
    "ClaimScrubberPartitionStuck",
    "ClaimScrubberLagGrowing",
    "ClaimScrubberDeadLetters",
    "ClaimScrubberIntakeRejecting",
}


def test_the_alerts_an_on_call_needs_each_with_its_runbook_section(
    manifests: list[dict[str, Any]],
) -> None:
    rules = [
        rule
        for group in _one(manifests, "PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
    ]
    sections = {
        line.removeprefix("#### ").strip().lower()
        for line in (ROOT / "README.md").read_text("utf-8").splitlines()
        if line.startswith("#### ")
    }

    assert {rule["alert"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in sections, f"README has no runbook section for {rule['alert']}"
        assert rule["annotations"]["summary"]
