"""The review page's manifests (deploy/k8s/review), rendered offline and validated like the
worker's: its own Deployment, Service and NetworkPolicy; the token from a Secret."""

from typing import Any

import kubernetes_validate

from tests.deploy.test_k8s_manifests import KUBERNETES_VERSION, _containers, _one, _render


def _review() -> list[dict[str, Any]]:
    return _render("review")


def test_review_manifests_validate_strictly_and_select_only_review_pods() -> None:
    manifests = _review()
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert {m["kind"] for m in manifests} == {"ConfigMap", "Deployment", "Service", "NetworkPolicy"}
    selector = _one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "claim-scrubber-review"
    assert _one(manifests, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == selector
    assert _one(manifests, "Service")["spec"]["selector"] == selector


def test_review_runs_the_review_command_with_its_token_from_a_secret() -> None:
    manifests = _review()
    deployment = _one(manifests, "Deployment")
    (container,) = _containers(deployment)
    assert container["args"] == ["review"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = _one(manifests, "ConfigMap")["data"]
    token = config["SCRUBBER_REVIEW_TOKEN_FILE"]
    pod = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in container["volumeMounts"] if token.startswith(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "claim-scrubber-review"
    assert "SCRUBBER_REVIEW_OPEN" not in config
    ingress = _one(manifests, "NetworkPolicy")["spec"]["ingress"]
    assert [p["port"] for rule in ingress for p in rule["ports"]] == [8081]
