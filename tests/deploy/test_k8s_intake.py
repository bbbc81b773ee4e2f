"""The intake manifests (deploy/k8s/intake), rendered offline and validated like the worker's."""

from typing import Any

import kubernetes_validate

from tests.deploy.test_k8s_manifests import KUBERNETES_VERSION, _containers, _one, _render


def _intake() -> list[dict[str, Any]]:
    return _render("intake")


def test_intake_manifests_validate_strictly_and_select_only_intake_pods() -> None:
    manifests = _intake()
    for manifest in manifests:
        if manifest["kind"] != "ServiceMonitor":  # no Kubernetes schema covers it
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert {m["kind"] for m in manifests} == {
        "ConfigMap", "Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget",
        "NetworkPolicy",
    }  # fmt: skip
    selector = _one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "claim-scrubber-intake"
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        spec = _one(manifests, kind)["spec"]
        labels = (spec.get("selector") or spec["podSelector"])["matchLabels"]
        assert labels == selector  # never the worker's pods
    service = _one(manifests, "Service")
    assert service["spec"]["selector"] == selector
    monitor = _one(manifests, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_intake_runs_the_intake_command_non_root_with_its_topics() -> None:
    manifests = _intake()
    deployment = _one(manifests, "Deployment")
    (container,) = _containers(deployment)
    assert container["args"] == ["intake"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    config = _one(manifests, "ConfigMap")["data"]
    assert config["SCRUBBER_TOPIC_INBOUND_X12"] == "claims.inbound.x12"
    assert config["SCRUBBER_TOPIC_INBOUND_FHIR"] == "claims.inbound.fhir"
    assert config["SCRUBBER_TOPIC_INPUT"] == "claims.submitted"
    assert config["SCRUBBER_INTAKE_TIMEZONE"] == "UTC"
