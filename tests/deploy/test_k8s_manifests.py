"""The Kubernetes manifests, rendered offline from every overlay and validated.

Core kinds are validated against the Kubernetes schemas (`kubernetes-validate`, strict); the
KEDA ScaledObject and the ServiceMonitor, which no Kubernetes schema covers, are checked
here for what the worker depends on. `make k8s-check` runs this file and lints the
Dockerfile.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.kafka_harness import ROOT

K8S = ROOT / "deploy" / "k8s"
RUNBOOK = ROOT / "docs" / "operating" / "runbook.md"
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


WORKER, INTAKE, REVIEW = "claim-scrubber", "claim-scrubber-intake", "claim-scrubber-review"


def _app(manifest: dict[str, Any]) -> str | None:
    labels: dict[str, str] = manifest["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/name")


def _one(manifests: list[dict[str, Any]], kind: str, app: str = WORKER) -> dict[str, Any]:
    """The one resource of a kind; of the worker's (or `app`'s) when both stages have one."""
    found = [m for m in manifests if m["kind"] == kind]
    if len(found) > 1:
        found = [m for m in found if _app(m) == app]
    (one,) = found
    return one


def _apps(manifests: list[dict[str, Any]]) -> list[str]:
    """The stages a rendering deploys: the worker, and intake and the review page beside it in
    the overlays."""
    return [app for app in (WORKER, INTAKE, REVIEW) if any(_app(m) == app for m in manifests)]


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
    # the limit leaves the worker room over what the latest `make bench` measured it to use at
    # full rate (bench/results.json, committed with each run)
    limit = worker["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    measured = json.loads((ROOT / "bench" / "results.json").read_text("utf-8"))
    assert int(limit.removesuffix("Mi")) >= 2 * measured["worker_rss_max_mb"]
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
    group = config["SCRUBBER_GROUP_ID"]
    lags = {(config["SCRUBBER_TOPIC_INPUT"], group)}
    if config.get("SCRUBBER_HISTORY") == "on":  # the scrubbing stage's group, contract 10
        lags.add((config["SCRUBBER_TOPIC_BY_PATIENT"], f"{group}.by-patient"))
    triggers = scaled["spec"]["triggers"]
    for trigger in triggers:
        assert trigger["type"] in {"kafka", "apache-kafka"}  # apache-kafka: with MSK IAM
    assert {(t["metadata"]["topic"], t["metadata"]["consumerGroup"]) for t in triggers} == lags
    assert len(triggers) == len(lags)


def test_the_service_monitor_scrapes_the_metrics_port_of_the_service(
    manifests: list[dict[str, Any]],
) -> None:
    monitor, service = _one(manifests, "ServiceMonitor"), _one(manifests, "Service")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def _mounted_volume(pod: dict[str, Any], path: str) -> dict[str, Any]:
    """The pod's volume that holds the file at `path`."""
    volumes: dict[str, dict[str, Any]] = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [
        m for c in pod["containers"] for m in c["volumeMounts"]
        if Path(path).is_relative_to(m["mountPath"])
    ]  # fmt: skip
    return volumes[mount["name"]]


def test_credentials_come_from_secrets_never_from_literals(
    manifests: list[dict[str, Any]],
) -> None:
    assert not [m for m in manifests if m["kind"] == "Secret"], "Secrets are made out of band"
    for app in _apps(manifests):
        config = _one(manifests, "ConfigMap", app)["data"]
        secret_settings = {
            "SCRUBBER_KAFKA_SASL_PASSWORD",
            "SCRUBBER_KAFKA_OAUTH_CLIENT_SECRET",
            "SCRUBBER_HISTORY_KEY",
        }
        assert not secret_settings & config.keys()
        pod = _one(manifests, "Deployment", app)["spec"]["template"]["spec"]
        for setting, path in config.items():
            if setting.endswith("_FILE") and setting.startswith(
                ("SCRUBBER_KAFKA_", "SCRUBBER_HISTORY_")
            ):
                assert "secret" in _mounted_volume(pod, path), f"{app}: {setting} from a Secret"


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
    for app in _apps(manifests):
        egress = _one(manifests, "NetworkPolicy", app)["spec"]["egress"]
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


def _allows(egress: list[dict[str, Any]], host: str, port: int) -> bool:
    """Whether an egress rule lets traffic to host:port out: an in-cluster service
    (`name.namespace.svc`) by its namespace, any other host by an ipBlock (a policy cannot
    name a host)."""
    labels = host.split(".")
    in_cluster = "svc" in labels
    for rule in egress:
        if not any(p["port"] == port for p in rule.get("ports", [])):
            continue
        for peer in rule["to"]:
            selector = peer.get("namespaceSelector", {}).get("matchLabels", {})
            if in_cluster and selector.get("kubernetes.io/metadata.name") == labels[1]:
                return True
            if not in_cluster and "ipBlock" in peer:
                return True
    return False


def test_every_stage_may_reach_its_own_brokers_and_token_service(
    manifests: list[dict[str, Any]],
) -> None:
    for app in _apps(manifests):
        config = _one(manifests, "ConfigMap", app)["data"]
        egress = _one(manifests, "NetworkPolicy", app)["spec"]["egress"]
        for server in config["SCRUBBER_KAFKA_BOOTSTRAP_SERVERS"].split(","):
            host, _, port = server.strip().rpartition(":")
            assert _allows(egress, host, int(port)), f"{app} cannot reach {server}"
        if "SCRUBBER_KAFKA_OAUTH_TOKEN_URL" in config:
            token = urlsplit(config["SCRUBBER_KAFKA_OAUTH_TOKEN_URL"])
            assert token.hostname is not None
            assert _allows(egress, token.hostname, token.port or 443), f"{app}: token endpoint"
        if "SCRUBBER_KAFKA_MSK_IAM_REGION" in config:
            assert _allows(egress, "sts.amazonaws.com", 443), f"{app} cannot reach STS"


_KEDA_SASL = {
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "PLAIN": "plaintext",
}


def _keda_sasl(config: dict[str, str]) -> str | None:
    """The KEDA kafka scaler's `sasl` for the worker's own way of signing in."""
    mechanism = config.get("SCRUBBER_KAFKA_SASL_MECHANISM")
    if mechanism == "OAUTHBEARER":
        return "aws_msk_iam" if "SCRUBBER_KAFKA_MSK_IAM_REGION" in config else "oauthbearer"
    return None if mechanism is None else _KEDA_SASL[mechanism]


@pytest.mark.parametrize("index", [0, 1], ids=["input", "by-patient"])
def test_keda_reads_the_lag_signed_in_as_the_worker_is(
    manifests: list[dict[str, Any]], index: int
) -> None:
    config = _one(manifests, "ConfigMap")["data"]
    deployment = _one(manifests, "Deployment")
    trigger = _one(manifests, "ScaledObject")["spec"]["triggers"][index]
    metadata = trigger["metadata"]
    protocol = config.get("SCRUBBER_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")

    assert metadata["bootstrapServers"] == config["SCRUBBER_KAFKA_BOOTSTRAP_SERVERS"]
    assert (metadata.get("tls") == "enable") == (protocol in {"SSL", "SASL_SSL"})
    assert metadata.get("sasl") == _keda_sasl(config)
    if protocol == "PLAINTEXT":
        assert "authenticationRef" not in trigger
        return
    auth = [
        m for m in manifests
        if m["kind"] == "TriggerAuthentication"
        and m["metadata"]["name"] == trigger["authenticationRef"]["name"]
    ]  # fmt: skip
    assert len(auth) == 1, "the trigger's authenticationRef names a TriggerAuthentication"
    spec = auth[0]["spec"]
    pod = deployment["spec"]["template"]["spec"]
    (worker,) = _containers(deployment)
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for ref in spec.get("secretTargetRef", []):
        assert ref["name"] in secrets, f"KEDA's {ref['parameter']} is not the worker's Secret"
    for ref in spec.get("env", []):
        assert ref["containerName"] == worker["name"]
        assert ref["name"] in config, f"KEDA's {ref['parameter']} is not a worker setting"
    if protocol == "SSL":
        assert {r["parameter"] for r in spec["secretTargetRef"]} == {"ca", "cert", "key"}
    if metadata.get("sasl") == "aws_msk_iam":
        assert spec["podIdentity"]["provider"] == "aws"
        assert metadata["awsRegion"] == config["SCRUBBER_KAFKA_MSK_IAM_REGION"]


_PER_STAGE = {"SCRUBBER_KAFKA_SASL_USERNAME", "SCRUBBER_KAFKA_OAUTH_CLIENT_ID"}
"""Kafka settings each stage has its own value of (its principal)."""


def _principal(manifests: list[dict[str, Any]], app: str) -> str:
    """Who a stage signs in to Kafka as: its user or client id, the Secret holding its client
    certificate, or (MSK IAM) its service account's role."""
    config = _one(manifests, "ConfigMap", app)["data"]
    pod = _one(manifests, "Deployment", app)["spec"]["template"]["spec"]
    for key in sorted(_PER_STAGE & config.keys()):
        return str(config[key])
    if "SCRUBBER_KAFKA_SSL_CERT_FILE" in config:
        return str(
            _mounted_volume(pod, config["SCRUBBER_KAFKA_SSL_CERT_FILE"])["secret"]["secretName"]
        )
    return str(pod["serviceAccountName"])


@pytest.mark.parametrize("overlay", [t for t in TARGETS if t.startswith("overlays/")])
def test_every_overlay_runs_intake_and_the_review_page_beside_the_worker_on_the_same_cluster(
    overlay: str,
) -> None:
    manifests = _render(overlay)

    assert _apps(manifests) == [WORKER, INTAKE, REVIEW]
    worker, *others = (_one(manifests, "ConfigMap", app)["data"] for app in _apps(manifests))
    kafka = {key for key in worker if key.startswith("SCRUBBER_KAFKA_")}
    for other in others:
        assert kafka == {key for key in other if key.startswith("SCRUBBER_KAFKA_")}
        for key in kafka - _PER_STAGE:
            assert worker[key] == other[key], key
    principals = {_principal(manifests, app) for app in _apps(manifests)}
    assert len(principals) == 3, f"each stage is its own principal: {principals}"
    monitor = _one(manifests, "ServiceMonitor", INTAKE)
    service = _one(manifests, "Service", INTAKE)
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    images = {
        _one(manifests, "Deployment", app)["spec"]["template"]["spec"]["containers"][0]["image"]
        for app in _apps(manifests)
    }
    assert len(images) == 1, images


def test_an_operator_ruleset_is_mounted_from_its_configmap_in_both_stages(
    tmp_path: Path,
) -> None:
    overlay = tmp_path / "ops"
    overlay.mkdir()
    shutil.copy(ROOT / "services/claim_scrubber/rulesets/default.toml", overlay / "ruleset.toml")
    up = Path(os.path.relpath(K8S, overlay))
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(up / "base"), str(up / "intake")],
                "components": [str(up / "components/operator-ruleset")],
                "configMapGenerator": [
                    {"name": "claim-scrubber-ruleset", "namespace": "claims",
                     "files": ["ruleset.toml"]},
                ],
            }
        )
    )  # fmt: skip

    manifests = _render(str(overlay))

    (ruleset,) = [
        m for m in manifests
        if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith("claim-scrubber-ruleset")
    ]  # fmt: skip
    for app in (WORKER, INTAKE):
        path = _one(manifests, "ConfigMap", app)["data"]["SCRUBBER_RULESET"]
        pod = _one(manifests, "Deployment", app)["spec"]["template"]["spec"]
        volume = _mounted_volume(pod, path)
        assert volume["configMap"]["name"] == ruleset["metadata"]["name"], app
        assert Path(path).name in ruleset["data"]


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
        line.removeprefix("## ").strip().lower()
        for line in RUNBOOK.read_text("utf-8").splitlines()
        if line.startswith("## ")
    }

    assert {rule["alert"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/operating/runbook.md#{anchor}"
        assert anchor in sections, f"the runbook has no section for {rule['alert']}"
        assert rule["annotations"]["summary"]
