"""The Helm chart (charts/faas-portal) and the Dockerfile, offline but for real: Helm's own Go SDK
lints and renders the chart, every rendered object is validated against the Kubernetes OpenAPI
schema (kubernetes-validate, strict) and applied to the fake API server through the official
client, checkov finds nothing in the objects nor in the Dockerfile, the values schema refuses bad
values, and the chart's ClusterRole is the one docs/kubernetes.md documents."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from testsupport.fake_kubernetes import FakeKubernetes, apply_manifest
from testsupport.schemas import schema_errors
from testsupport.services import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "faas-portal"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
CHECKOV = ROOT / ".build" / "tools" / "checkov" / "bin" / "checkov"
RELEASE = "faas-portal"
NAMESPACE = "faas-portal"
Obj = dict[str, Any]

# What `helm lint` may say about the chart: only this INFO (the project publishes no icon URL).
ALLOWED_LINT_MESSAGES = {(1, "icon is recommended")}
# Every skip the chart declares, with the objects it is on: a new one must be added here on purpose.
EXPECTED_SKIPS = {
    "CKV_K8S_8": {"beat", "dispatcher"},  # no liveness signal
    "CKV_K8S_9": {"worker", "beat", "dispatcher"},  # serve no traffic
    "CKV_K8S_38": {"web", "worker", "dispatcher"},  # talk to the Kubernetes API
    "CKV_K8S_43": {"web", "worker", "beat", "dispatcher", "migrations"},  # only without image.digest
}
# The pods that talk to the Kubernetes API, and so the only ones with a service account token.
API_CLIENTS = {"web", "worker", "dispatcher"}


def values_of(name: str) -> Obj | None:
    return yaml.safe_load(PRODUCTION_VALUES.read_text()) if name == "production" else None


@cache
def rendered(name: str) -> tuple[Obj, ...]:
    """The objects a release with the ``name`` values ("default" or "production") creates, hooks
    included, as ``helm template`` prints them."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values_of(name), name=RELEASE, namespace=NAMESPACE, is_install=True)
    return tuple(
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    )


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def component(obj: Obj) -> str:
    return str(obj["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[str, Obj]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield component(obj), obj["spec"]["template"]["spec"]


def env_of(container: Obj) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


VALUES = ["default", "production"]


# -- Helm ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_the_chart_lints_clean(name: str) -> None:
    report = helm.lint(CHART, values_of(name), namespace=NAMESPACE)
    messages = {(m["severity"], m["error"]) for m in report["messages"]}
    assert report["errors"] == []
    assert messages <= ALLOWED_LINT_MESSAGES, messages


def test_each_release_renders_what_its_values_ask_for() -> None:
    kinds = {obj["kind"] for obj in rendered("default")}
    assert {"Ingress", "HorizontalPodAutoscaler"}.isdisjoint(kinds)
    assert {
        "Deployment", "Job", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
        "NetworkPolicy", "PodDisruptionBudget",
    } <= kinds  # fmt: skip
    production = rendered("production")
    assert {component(hpa) for hpa in of_kind(production, "HorizontalPodAutoscaler")} == {"web", "worker"}
    [ingress] = of_kind(production, "Ingress")
    tls = [{"secretName": "portal-example-com-tls", "hosts": ["portal.example.com"]}]
    assert ingress["spec"]["tls"] == tls
    assert ingress["spec"]["ingressClassName"] == "nginx"
    # Autoscaled deployments leave their replica count to the autoscaler.
    scaled = [d for d in of_kind(production, "Deployment") if component(d) in ("web", "worker")]
    assert [d["spec"].get("replicas") for d in scaled] == [None, None]
    # The chart never holds the portal's secrets.
    assert not of_kind(rendered("default"), "Secret")
    assert not of_kind(production, "Secret")


@pytest.mark.parametrize("name", VALUES)
def test_every_object_is_valid_for_the_newest_kubernetes(name: str) -> None:
    version = kubernetes_validate.latest_version()
    errors = {f"{o['kind']}/{o['metadata']['name']}": schema_errors(o, version) for o in rendered(name)}
    assert {key: found for key, found in errors.items() if found} == {}
    assert len(errors) >= 13


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"web": {"replicaCount": -1}}, "at '/web/replicaCount': minimum: got -1, want 1"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"replicaCount": 3}, "additional properties 'replicaCount' not allowed"),
        ({"backend": "docker"}, "at '/backend': value must be 'kubernetes'"),
        ({"secrets": {"existingSecret": ""}}, "at '/secrets/existingSecret'"),
        ({"ingress": {"enabled": True}}, "at '/ingress/hosts': minItems: got 0, want 1"),
        ({"image": {"digest": "latest"}}, "at '/image/digest'"),
        ({"web": {"resources": {"requests": {"cpu": "lots"}}}}, "/web/resources/requests/cpu"),
    ],
)
def test_the_values_schema_refuses_bad_values(values: Obj, message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert message in str(refused.value)


# -- What the objects say -------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
def test_every_pod_is_restricted_and_bounded(name: str) -> None:
    pods = dict(pod_templates(rendered(name)))
    assert set(pods) == {"web", "worker", "beat", "dispatcher", "migrations"}
    for pod_name, pod in pods.items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] > 0
        assert security["runAsGroup"] > 0
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is (pod_name in API_CLIENTS), pod_name
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsNonRoot"] is True
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert not any("valueFrom" in item for item in container["env"]), "secrets are files"


def test_the_web_server_is_probed_on_its_health_endpoints() -> None:
    [web] = [d for d in of_kind(rendered("default"), "Deployment") if component(d) == "web"]
    [container] = web["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"][:4] == ["python", "-m", "uvicorn", "portal.asgi:application"]


def test_beat_and_the_dispatcher_run_alone() -> None:
    deployments = {component(d): d for d in of_kind(rendered("production"), "Deployment")}
    for single in ("beat", "dispatcher"):
        assert deployments[single]["spec"]["replicas"] == 1
        assert deployments[single]["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployments["beat"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    schedule = Path(env_of(container)["PORTAL_BEAT_SCHEDULE"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(schedule.parent)])
    assert "emptyDir" in volume  # the only writable place besides /tmp


def test_migrations_run_as_a_hook_before_install_and_upgrade() -> None:
    [job] = of_kind(rendered("default"), "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert "manage.py migrate_schemas --noinput" in container["command"][-1]


def test_secrets_come_from_the_existing_secret_as_files() -> None:
    [web] = [d for d in of_kind(rendered("production"), "Deployment") if component(d) == "web"]
    pod = web["spec"]["template"]["spec"]
    secret = next(v["secret"] for v in pod["volumes"] if v["name"] == "secrets")
    assert secret["secretName"] == "faas-portal-production"
    env = env_of(pod["containers"][0])
    assert env["DATABASE_URL_FILE"] == "/var/run/secrets/faas-portal/database-url"
    assert env["PROMETHEUS_PASSWORD_FILE"] == "/var/run/secrets/faas-portal/prometheus-password"
    assert env["PORTAL_BACKEND"] == "kubernetes"
    assert env["PORTAL_HTTPS"] == "1"
    assert "portal.example.com" in env["PORTAL_ALLOWED_HOSTS"].split(",")
    # Optional keys that are not named get no variable at all (a missing file would stop start-up).
    [default_web] = [d for d in of_kind(rendered("default"), "Deployment") if component(d) == "web"]
    assert "PROMETHEUS_USERNAME_FILE" not in env_of(default_web["spec"]["template"]["spec"]["containers"][0])


def documented_cluster_role() -> Obj:
    """The ClusterRole of docs/kubernetes.md's section 2, parsed from its YAML block."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    documents = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    [role] = [doc for doc in documents if doc.get("kind") == "ClusterRole"]
    return role


def test_the_cluster_role_is_exactly_the_documented_one() -> None:
    [role] = of_kind(rendered("default"), "ClusterRole")
    assert role["rules"] == documented_cluster_role()["rules"]
    [binding] = of_kind(rendered("default"), "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "faas-portal", "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


# -- The objects on an API server -----------------------------------------------------------------

PLURALS = {
    "Deployment": "deployments",
    "Job": "jobs",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "NetworkPolicy": "networkpolicies",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "Ingress": "ingresses",
}


@pytest.mark.parametrize("name", VALUES)
def test_every_object_is_accepted_by_the_api_server(name: str, fake_kubernetes: FakeKubernetes) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    apply_manifest(fake_kubernetes, namespace)
    for obj in rendered(name):
        apply_manifest(fake_kubernetes, obj)
    for obj in rendered(name):
        namespace = obj["metadata"].get("namespace")
        stored = {o["metadata"]["name"]: o for o in fake_kubernetes.objects(PLURALS[obj["kind"]], namespace)}
        assert obj["metadata"]["name"] in stored, f"{obj['kind']} {obj['metadata']['name']} was not stored"
        kept = stored[obj["metadata"]["name"]]
        for field in ("spec", "rules", "subjects", "roleRef"):
            assert kept.get(field) == obj.get(field), f"{obj['kind']} {obj['metadata']['name']}: {field}"


# -- checkov ---------------------------------------------------------------------------------------


def checkov(tmp_path: Path, *arguments: str) -> Obj:
    """checkov's JSON report (its own tool virtualenv, `make checkov`): never the network."""
    if not CHECKOV.exists():
        message = f"checkov is not installed at {CHECKOV} (make checkov)"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    command = [str(CHECKOV), *arguments, "--output", "json", "--compact", "--skip-download"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    [single] = report if isinstance(report, list) else [report]
    return dict(single)


def failures(report: Obj) -> list[str]:
    return [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]


@pytest.mark.parametrize("name", VALUES)
def test_checkov_finds_nothing_in_the_chart(name: str, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for index, obj in enumerate(rendered(name)):
        (manifests / f"{index:02d}-{obj['kind']}.yaml").write_text(yaml.safe_dump(obj))
    report = checkov(tmp_path, "--framework", "kubernetes", "--directory", str(manifests))
    assert failures(report) == []
    assert report["summary"]["passed"] > 100  # it did check the objects
    skipped: dict[str, set[str]] = {}
    for check in report["results"]["skipped_checks"]:
        skipped.setdefault(check["check_id"], set()).add(check["resource"].rsplit("-", 1)[-1])
    expected = {k: v for k, v in EXPECTED_SKIPS.items() if name == "default" or k != "CKV_K8S_43"}
    assert skipped == expected


def test_checkov_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    report = checkov(tmp_path, "--framework", "dockerfile", "--file", str(ROOT / "Dockerfile"))
    assert failures(report) == []
    assert report["summary"]["passed"] > 20
    assert report["results"]["skipped_checks"] == []
