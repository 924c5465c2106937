"""dataplane/manifests.py: every generated object validates against Fission v1.27.0's CRDs
(strictly: no field the schema does not declare), follows FISSION.md section 1's rules, and
parses with the local runtime's validator."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from dataplane import manifests
from dataplane.manifests import ArchiveRef, EnvironmentSpec, FunctionSpec, TriggerSpec
from dataplane.namespaces import namespace_for
from runtime.objects import PARSERS, parse_function, parse_httptrigger
from testsupport.schemas import CRDS, PLURALS, crd_errors, crd_schema, strip_extensions

# The repository's parent holds shared/ (/work/main -> /work/shared; in CI, the clone's sibling).
TENANT = "acme"
NS = namespace_for(TENANT)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
RESERVED = ("/router-healthz", "/readyz", "/_version", "/auth/login")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def archive(text: str = "v1") -> ArchiveRef:
    return ArchiveRef(url=f"http://portal.internal/packages/{sha(text)}.zip", sha256=sha(text))


PYTHON = EnvironmentSpec(
    name="python",
    image="ghcr.io/fission/python-env",
    builder_image="ghcr.io/fission/python-builder",
    poolsize=3,
    memory_mb=256,
    cpu_millis=500,
)
PLAIN = EnvironmentSpec(
    name="plain",
    image="ghcr.io/fission/python-env",
    builder_image=None,
    poolsize=0,
    memory_mb=None,
    cpu_millis=None,
)
HELLO = FunctionSpec(
    name="hello",
    environment="python",
    entrypoint="main.handler",
    executor="poolmgr",
    min_scale=0,
    max_scale=1,
    target_cpu=80,
    concurrency=5,
    requests_per_pod=1,
    timeout_s=60,
    idle_timeout_s=120,
    memory_mb=None,
    cpu_millis=None,
)
HELLO_V2 = dataclasses.replace(
    HELLO, executor="newdeploy", min_scale=1, max_scale=4, memory_mb=128, cpu_millis=250
)
TINY = dataclasses.replace(HELLO, name="tiny", environment="plain", entrypoint="")


def trigger(name: str, path: str, target: dict[str, int], **changes: Any) -> TriggerSpec:
    spec = TriggerSpec(
        name=name, methods=("GET", "POST"), path=path, is_prefix=False, keep_prefix=False, target=target
    )
    return dataclasses.replace(spec, **changes)


TRIGGERS = [
    trigger("hello-v1-route", "/hello/v1", {"hello-v1": 100}),
    trigger("hello-draft", "/hello/draft", {"hello-draft": 100}, is_prefix=True, keep_prefix=True),
    trigger("hello-live", "/hello", {"hello-v1": 90, "hello-v2": 10}, methods=("GET",)),
    trigger("tiny", "/tiny/{id}", {"tiny-v1": 100}, methods=("PUT", "DELETE", "OPTIONS")),
]
OBJECTS = manifests.tenant_manifests(
    NS,
    TENANT,
    [PYTHON, PLAIN],
    [
        ("hello", 1, HELLO, archive("hello-1")),
        ("hello", 2, HELLO_V2, archive("hello-2")),
        ("hello", None, HELLO, archive("hello-draft")),
        ("tiny", 1, TINY, archive("tiny-1")),
    ],
    TRIGGERS,
)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in OBJECTS if obj["kind"] == kind]


def object_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


every_object = pytest.mark.parametrize("obj", OBJECTS, ids=object_id)


# --- strict CRD validation -----------------------------------------------------------------------


def test_crds_are_found() -> None:
    assert all((CRDS / f"fission.io_{plural}.yaml").is_file() for plural in PLURALS.values())


def test_strict_check_catches_what_jsonschema_ignores() -> None:
    function = of_kind("Function")[0]
    typo = {**function, "spec": {**function["spec"], "idleTimeout": 5}}
    nested = {**function, "spec": {**function["spec"], "package": {"packageref": {"nam": "x"}}}}
    assert jsonschema.Draft7Validator(strip_extensions(crd_schema("functions"))).is_valid(typo)
    assert crd_errors(typo) == [".spec.idleTimeout: not in the CRD"]
    assert crd_errors(nested) == [".spec.package.packageref.nam: not in the CRD"]
    env = of_kind("Environment")[0]
    assert crd_errors({**env, "spec": {**env["spec"], "poolsize": -1}}) == [
        "spec.poolsize: -1 is less than the minimum of 0"
    ]


@every_object
def test_validates_against_the_crd(obj: dict[str, Any]) -> None:
    assert crd_errors(obj) == []


@every_object
def test_parses_in_the_local_runtime(obj: dict[str, Any]) -> None:
    PARSERS[PLURALS[obj["kind"]]](obj, NS)


# --- FISSION.md section 1, checked explicitly --------------------------------------------------------


@every_object
def test_metadata_names_and_labels(obj: dict[str, Any]) -> None:
    metadata = obj["metadata"]
    assert obj["apiVersion"] == "fission.io/v1"
    assert DNS_LABEL.fullmatch(metadata["name"])
    assert metadata["namespace"] == NS
    assert metadata["labels"][manifests.MANAGED_BY_LABEL] == "faas-portal"
    assert metadata["labels"][manifests.TENANT_LABEL] == TENANT
    if obj["kind"] != "Environment":
        assert metadata["labels"][manifests.FUNCTION_LABEL] in ("hello", "tiny")
    assert all(LABEL_VALUE.fullmatch(value) for value in metadata["labels"].values())


def references(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``{namespace, name}`` reference inside ``node``."""
    if isinstance(node, dict):
        if "namespace" in node:
            yield node
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


@every_object
def test_every_reference_stays_in_the_namespace(obj: dict[str, Any]) -> None:
    for ref in references(obj["spec"]):
        assert ref["namespace"] == NS
        assert DNS_LABEL.fullmatch(ref["name"])


def test_environment_rules() -> None:
    python, plain = of_kind("Environment")
    for env in (python, plain):
        assert env["spec"]["version"] == 3
        assert env["spec"]["runtime"]["image"] == "ghcr.io/fission/python-env"
        podspec = env["spec"]["runtime"]["podspec"]
        assert podspec["securityContext"]["runAsNonRoot"] is True
        assert podspec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = podspec["containers"]
        assert container["name"] == env["metadata"]["name"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert env["spec"]["terminationGracePeriod"] == 30
        assert env["spec"]["allowedFunctionsPerContainer"] == "single"
        assert env["spec"]["keeparchive"] is False
    assert python["spec"]["builder"] == {"image": "ghcr.io/fission/python-builder", "command": "build"}
    assert python["spec"]["poolsize"] == 3
    assert python["spec"]["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "500m"},
        "limits": {"memory": "256Mi", "cpu": "500m"},
    }
    assert "builder" not in plain["spec"]
    assert "resources" not in plain["spec"]
    assert plain["spec"]["poolsize"] == 0


@pytest.mark.parametrize("package", of_kind("Package"), ids=object_id)
def test_package_rules(package: dict[str, Any]) -> None:
    deployment = package["spec"]["deployment"]
    assert deployment["type"] == "url"
    assert deployment["url"].endswith(f"{deployment['checksum']['sum']}.zip")
    assert deployment["checksum"]["type"] == "sha256"
    assert re.fullmatch(r"[0-9a-f]{64}", deployment["checksum"]["sum"])
    # No source means no build; status is not sent (the status subresource drops it on create).
    assert "source" not in package["spec"]
    assert "status" not in package


@pytest.mark.parametrize("function", of_kind("Function"), ids=object_id)
def test_function_rules(function: dict[str, Any]) -> None:
    spec = function["spec"]
    strategy = spec["InvokeStrategy"]
    execution = strategy["ExecutionStrategy"]
    assert strategy["StrategyType"] == "execution"
    assert execution["ExecutorType"] in ("poolmgr", "newdeploy")
    assert execution["MinScale"] >= 0
    assert execution["MaxScale"] > 0
    assert execution["MaxScale"] >= execution["MinScale"]
    assert 0 <= execution["TargetCPUPercent"] <= 100
    assert execution["SpecializationTimeout"] == 120
    assert spec["package"]["packageref"]["name"] == function["metadata"]["name"]
    assert spec["secrets"] == []
    assert spec["configmaps"] == []


@pytest.mark.parametrize("route", of_kind("HTTPTrigger"), ids=object_id)
def test_trigger_rules(route: dict[str, Any]) -> None:
    spec = route["spec"]
    paths = [path for path in (spec["relativeurl"], spec.get("prefix", "")) if path]
    assert len(paths) == 1
    assert paths[0].startswith(f"/{TENANT}/")
    assert ".." not in paths[0]
    assert paths[0].rstrip("/") not in RESERVED
    assert not paths[0].startswith("/fission-function/")
    assert spec["methods"]
    assert len(set(spec["methods"])) == len(spec["methods"])
    assert isinstance(spec["keepPrefix"], bool)


def test_objects_are_ordered_so_references_exist_first() -> None:
    kinds = [obj["kind"] for obj in OBJECTS]
    assert kinds == sorted(kinds, key=["Environment", "Package", "Function", "HTTPTrigger"].index)
    assert len(OBJECTS) == 2 + 4 + 4 + 4


# --- names -------------------------------------------------------------------------------------------


def test_fission_names() -> None:
    assert manifests.fission_name("hello", 1) == "hello-v1"
    assert manifests.fission_name("hello", 12) == "hello-v12"
    assert manifests.fission_name("hello", None) == "hello-draft"
    assert manifests.fission_name("f" * 60, 9) == "f" * 60 + "-v9"  # 63: the longest allowed


@pytest.mark.parametrize(
    ("function", "version"),
    [("f" * 60, 10), ("f" * 58, None), ("Hello", 1), ("hello_world", 1), ("", 1), ("hello", -1)],
)
def test_fission_name_rejects_what_is_not_a_dns_label(function: str, version: int | None) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is ValueError, messages vary
        manifests.fission_name(function, version)


def test_portal_function_inverts_fission_name() -> None:
    for name, version in (("hello", 3), ("api-v1", 2), ("a", None)):
        assert manifests.portal_function(manifests.fission_name(name, version)) == name
    with pytest.raises(ValueError, match="not a version"):
        manifests.portal_function("hello")


def test_labels() -> None:
    assert manifests.labels(tenant="acme", function="hello") == {
        "app.kubernetes.io/managed-by": "faas-portal",
        "faas-portal/tenant": "acme",
        "faas-portal/function": "hello",
    }
    with pytest.raises(ValueError, match="label"):
        manifests.labels(tenant="x" * 64)
    with pytest.raises(ValueError, match="label"):
        manifests.labels(tenant="acme", function="bad/value")


def test_tenant_label_falls_back_to_the_namespace() -> None:
    env = manifests.environment_manifest(NS, PLAIN)
    assert env["metadata"]["labels"][manifests.TENANT_LABEL] == NS


# --- versions ------------------------------------------------------------------------------------------


def test_version_manifests_for_the_draft() -> None:
    package, function = manifests.version_manifests(NS, "hello", None, HELLO, archive("draft"), tenant=TENANT)
    assert (package["kind"], package["metadata"]["name"]) == ("Package", "hello-draft")
    assert (function["kind"], function["metadata"]["name"]) == ("Function", "hello-draft")
    assert function["spec"]["package"]["functionName"] == "main.handler"
    assert function["spec"]["environment"] == {"namespace": NS, "name": "python"}


def test_a_new_archive_changes_the_package_resourceversion() -> None:
    first = manifests.version_manifests(NS, "hello", None, HELLO, archive("one"))
    again = manifests.version_manifests(NS, "hello", None, HELLO, archive("one"))
    rebuilt = manifests.version_manifests(NS, "hello", None, HELLO, archive("two"))
    assert first == again  # applying the same build twice changes nothing
    version_of = [
        objects[1]["spec"]["package"]["packageref"]["resourceversion"] for objects in (first, rebuilt)
    ]
    assert version_of == [sha("one")[:12], sha("two")[:12]]
    assert parse_function(rebuilt[1], NS).package_version == sha("two")[:12]


def test_function_resources_as_kubernetes_quantities() -> None:
    function = manifests.version_manifests(NS, "hello", 2, HELLO_V2, archive())[1]
    assert function["spec"]["resources"]["limits"] == {"memory": "128Mi", "cpu": "250m"}
    assert function["spec"]["InvokeStrategy"]["ExecutionStrategy"]["ExecutorType"] == "newdeploy"
    assert parse_function(function, NS).memory_limit == 128 * 2**20
    plain = manifests.version_manifests(NS, "hello", 1, HELLO, archive())[1]
    assert "resources" not in plain["spec"]


@pytest.mark.parametrize(
    "changes",
    [
        {"min_scale": 2, "max_scale": 1},
        {"max_scale": 0},
        {"min_scale": -1},
        {"target_cpu": 150},
        {"concurrency": -1},
        {"memory_mb": 0},
        {"executor": "container"},
        {"environment": "Python"},
    ],
)
def test_invalid_function_specs_raise(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is ValueError, messages vary
        manifests.version_manifests(NS, "hello", 1, dataclasses.replace(HELLO, **changes), archive())


def test_invalid_archive_raises() -> None:
    with pytest.raises(ValueError, match="sha256"):
        manifests.package_manifest(NS, "hello-v1", "python", ArchiveRef(url="http://x/a.zip", sha256="abc"))
    with pytest.raises(ValueError, match="url"):
        manifests.package_manifest(NS, "hello-v1", "python", ArchiveRef(url="", sha256=sha("x")))


# --- HTTP triggers -------------------------------------------------------------------------------------


def route(spec: TriggerSpec, tenant: str = TENANT) -> dict[str, Any]:
    return manifests.httptrigger_manifest(namespace_for(tenant), tenant, spec)


def test_alias_90_10_is_function_weights_with_both_names() -> None:
    obj = route(trigger("live", "/hello", {"hello-v1": 90, "hello-v2": 10}))
    assert obj["spec"]["functionref"]["type"] == "function-weights"
    assert obj["spec"]["functionref"]["functionweights"] == {"hello-v1": 90, "hello-v2": 10}
    assert obj["metadata"]["labels"][manifests.FUNCTION_LABEL] == "hello"
    assert parse_httptrigger(obj, NS).weights == {"hello-v1": 90, "hello-v2": 10}


def test_single_target_is_a_name_reference() -> None:
    obj = route(trigger("v1", "/hello", {"hello-v1": 100}))
    assert obj["spec"]["functionref"] == {"type": "name", "name": "hello-v1"}
    assert obj["spec"]["relativeurl"] == "/acme/hello"
    assert "prefix" not in obj["spec"]


def test_prefix_route_is_under_the_tenant_and_parses_as_a_prefix() -> None:
    obj = route(trigger("api", "/api/", {"hello-v1": 100}, is_prefix=True, keep_prefix=True))
    assert obj["spec"]["prefix"] == "/acme/api/"
    assert obj["spec"]["keepPrefix"] is True
    parsed = parse_httptrigger(obj, NS)
    assert (parsed.path, parsed.is_prefix) == ("/acme/api/", True)


def test_one_tenant_cannot_claim_another_tenants_route() -> None:
    # A path that looks like another tenant's is still nested under this tenant's own segment.
    obj = route(trigger("sneaky", "/globex/hello", {"hello-v1": 100}))
    assert obj["spec"]["relativeurl"] == "/acme/globex/hello"


def test_methods_are_normalized_and_deduplicated() -> None:
    obj = route(trigger("m", "/m", {"hello-v1": 100}, methods=("get", "GET", "post")))
    assert obj["spec"]["methods"] == ["GET", "POST"]


def test_explicit_function_label() -> None:
    obj = manifests.httptrigger_manifest(NS, TENANT, trigger("x", "/x", {"other": 100}), function="hello")
    assert obj["metadata"]["labels"][manifests.FUNCTION_LABEL] == "hello"
    unlabelled = route(trigger("x", "/x", {"other": 100}))
    assert manifests.FUNCTION_LABEL not in unlabelled["metadata"]["labels"]


@pytest.mark.parametrize(
    "target",
    [
        {"hello-v1": 90, "hello-v2": 20},
        {"hello-v1": 50},
        {"hello-v1": 110, "hello-v2": -10},
        {},
        {"Bad": 100},
    ],
)
def test_bad_weights_raise(target: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is ValueError, messages vary
        route(trigger("w", "/w", target))


@pytest.mark.parametrize(
    "path", ["/../globex/hello", "/a/..", "/a..b", "hello", "", "/a b", "/a?x=1", "/a#b", "/a/{id}/b/{id}"]
)
def test_bad_paths_raise(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        route(trigger("p", path, {"hello-v1": 100}))


@pytest.mark.parametrize(("tenant", "path"), [("readyz", "/"), ("readyz", ""), ("fission-function", "/x")])
def test_routes_reserved_by_the_router_raise(tenant: str, path: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - "path" or "reserved", both are the contract
        route(trigger("r", path, {"hello-v1": 100}), tenant=tenant)


def test_empty_methods_raise() -> None:
    with pytest.raises(ValueError, match="method"):
        route(trigger("m", "/m", {"hello-v1": 100}, methods=()))
    with pytest.raises(ValueError, match="method"):
        route(trigger("m", "/m", {"hello-v1": 100}, methods=("FETCH",)))


# --- a whole tenant ------------------------------------------------------------------------------------


def test_tenant_manifests_rejects_dangling_references() -> None:
    with pytest.raises(ValueError, match="missing Function 'hello-v9'"):
        manifests.tenant_manifests(NS, TENANT, [PYTHON], [], [trigger("t", "/t", {"hello-v9": 100})])
    with pytest.raises(ValueError, match="missing Environment 'python'"):
        manifests.tenant_manifests(NS, TENANT, [], [("hello", 1, HELLO, archive())], [])


def test_tenant_manifests_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate Environment"):
        manifests.tenant_manifests(NS, TENANT, [PYTHON, PYTHON], [], [])
