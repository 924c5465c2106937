"""Environments: the API (create, read, change, delete), the image that follows the Python
version, redeploying the functions that use one, 409 for one in use, removal from the data plane,
the manifest's version annotation, and the pages."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.manifests import EnvironmentSpec
from functions import runtimes, tasks
from functions.models import Build, BuildState, Deployment, DeploymentState, Draft, Environment, Function
from functions.services import functions as function_services
from functions.services import versions
from functions.specs import environment_spec
from runtime.objects import PARSERS
from testsupport.fixtures import error_of
from testsupport.matrix import assert_access
from testsupport.schemas import crd_errors

pytestmark = pytest.mark.django_db
API = "/t/{t}/api/v1/environments/"
STOCK = {
    "3.11": ("ghcr.io/fission/python-env-3.11:latest", "ghcr.io/fission/python-builder-3.11:latest"),
    "3.12": ("ghcr.io/fission/python-env-3.12:latest", "ghcr.io/fission/python-builder-3.12:latest"),
    "3.13": ("ghcr.io/fission/python-env:latest", "ghcr.io/fission/python-builder:latest"),
}


def url(tenant: str = "acme", name: str = "") -> str:
    return API.format(t=tenant) + (f"{name}/" if name else "")


def deployed(
    name: str, *, state: str = DeploymentState.LIVE, environment: Environment | None = None
) -> Function:
    """Function ``name`` with a built draft and a deployment in ``state`` (as the database knows)."""
    function = function_services.function_create(name=name, environment=environment)
    revision = Draft.objects.get(function=function).revision
    Build.objects.create(
        function=function, draft_revision=revision, state=BuildState.SUCCEEDED, sha256="a" * 64,
        python_version=function.environment.runtime_version,
    )  # fmt: skip
    Deployment.objects.create(function=function, state=state, cause="fixture")
    return function


@pytest.fixture
def scene(world: Any) -> Any:
    """In acme: ``hello`` live on the default ``python``, ``idle`` on it never deployed, and an
    unused ``spare`` on Python 3.12."""
    with schema_context(world.acme.schema_name):
        deployed("hello")
        function_services.function_create(name="idle")
        function_services.environment_create(name="spare", runtime_version="3.12")
    return world


# --- access: it works, it needs authentication, the role, and it hides other tenants ---------------

# (method, environment, body, a persona it works for, status, {persona: refusal})
ENDPOINTS = [
    ("get", "", None, "vera", 200, {}),
    ("get", "python", None, "vera", 200, {}),
    ("post", "", {"name": "py311", "runtime_version": "3.11"}, "bob", 201, {"vera": 403}),
    ("put", "spare", {"poolsize": 1}, "bob", 200, {"vera": 403}),
    ("patch", "spare", {"runtime_version": "3.13"}, "bob", 200, {"vera": 403}),
    ("delete", "spare", None, "bob", 204, {"vera": 403}),
]


@pytest.mark.parametrize(("method", "name", "body", "allowed", "ok", "refused"), ENDPOINTS)
def test_endpoint_matrix(
    scene, api, django_capture_on_commit_callbacks, method, name, body, allowed, ok, refused
):  # fmt: skip
    assert_access(
        scene, api, lambda tenant: url(tenant, name), method, body, allowed=allowed, ok=ok, refused=refused,
        while_allowed=lambda: django_capture_on_commit_callbacks(execute=False),
    )  # fmt: skip


def test_another_tenants_environment_does_not_exist_here(scene, api):
    oscar = api(scene.oscar)
    assert [e["name"] for e in oscar.get(url("globex")).json()["results"]] == ["python"]  # its own
    for method, body in (("get", None), ("patch", {"poolsize": 0}), ("delete", None)):
        response = getattr(oscar, method)(url("globex", "spare"), body, format="json")
        assert response.status_code == 404, (method, response.content)
        assert error_of(response)["code"] == "not_found"
    with schema_context(scene.acme.schema_name):
        assert Environment.objects.get(name="spare").poolsize == 3


# --- create and read ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", runtimes.VERSIONS)
def test_a_new_environment_gets_the_images_of_its_version(scene, api, version):
    response = api(scene.bob).post(url(), {"name": "custom", "runtime_version": version}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["image"], body["builder_image"]) == STOCK[version]
    assert (body["runtime_version"], body["poolsize"], body["functions"]) == (version, 3, [])
    assert api(scene.vera).get(url(name="custom")).json() == body


def test_the_default_version_is_fissions(scene, api):
    body = api(scene.bob).post(url(), {"name": "plain"}, format="json").json()

    assert body["runtime_version"] == runtimes.DEFAULT_VERSION == "3.13"
    assert body["image"] == "ghcr.io/fission/python-env:latest"


def test_the_list_says_which_functions_use_each_environment(scene, api):
    body = api(scene.vera).get(url()).json()

    usage = {e["name"]: e["functions"] for e in body["results"]}
    assert usage == {"python": ["hello", "idle"], "spare": []}


def test_a_taken_name_is_a_conflict(scene, api):
    response = api(scene.bob).post(url(), {"name": "spare", "runtime_version": "3.11"}, format="json")

    assert response.status_code == 409
    assert error_of(response)["detail"] == {"name": ["Already taken."]}
    with schema_context(scene.acme.schema_name):
        assert Environment.objects.get(name="spare").runtime_version == "3.12"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "x" * 41}, "name"),
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "runtime_version": "3.10"}, "runtime_version"),
        ({"name": "ok", "runtime_version": 3.12}, "runtime_version"),
        ({"name": "ok", "poolsize": 51}, "poolsize"),
        ({"name": "ok", "poolsize": -1}, "poolsize"),
        ({"name": "ok", "memory_mb": 1}, "memory_mb"),
        ({"name": "ok", "cpu_millis": 1}, "cpu_millis"),
        ({"name": "ok", "image": "has a space"}, "image"),
        ({"name": "ok", "image": "evil\nimage"}, "image"),
        ({"name": "ok", "image": 5}, "image"),
        ({"name": "ok", "builder_image": "-starts-with-dash"}, "builder_image"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_creates_nothing(scene, api, body, field):
    response = api(scene.bob).post(url(), body, format="json")

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert field in error["detail"]
    with schema_context(scene.acme.schema_name):
        assert set(Environment.objects.values_list("name", flat=True)) == {"python", "spare"}


def test_a_bad_change_is_400_and_changes_nothing(scene, api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api(scene.bob).patch(url(name="python"), {"runtime_version": "2.7"}, format="json")

    assert response.status_code == 400
    assert "runtime_version" in error_of(response)["detail"]
    with schema_context(scene.acme.schema_name):
        assert Environment.objects.get(name="python").runtime_version == "3.13"
        assert Deployment.objects.count() == 1  # the fixture's


# --- the image follows the version, unless it is the tenant's own --------------------------------


def test_the_stock_image_follows_a_version_change(scene, api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        body = api(scene.bob).patch(url(name="spare"), {"runtime_version": "3.11"}, format="json").json()

    assert (body["runtime_version"], body["image"], body["builder_image"]) == ("3.11", *STOCK["3.11"])


def test_read_change_the_version_write_back_follows_too(scene, api, django_capture_on_commit_callbacks):
    """A client that PUTs back everything it read, with a new version: the stock images it sends
    are the old version's, and they still follow the new one."""
    body = api(scene.vera).get(url(name="spare")).json()
    body["runtime_version"] = "3.13"

    with django_capture_on_commit_callbacks(execute=False):
        response = api(scene.bob).put(url(name="spare"), body, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["image"], response.json()["builder_image"]) == STOCK["3.13"]


def test_a_custom_image_is_kept_across_versions_until_reset(scene, api, django_capture_on_commit_callbacks):
    bob, own = api(scene.bob), "registry.example/team/python:3.12-slim"
    with django_capture_on_commit_callbacks(execute=False):
        assert bob.patch(url(name="spare"), {"image": own}, format="json").json()["image"] == own
        changed = bob.patch(url(name="spare"), {"runtime_version": "3.11"}, format="json").json()
        reset = bob.patch(url(name="spare"), {"image": ""}, format="json").json()

    assert (changed["runtime_version"], changed["image"]) == ("3.11", own)
    assert changed["builder_image"] == STOCK["3.11"][1]  # the builder was the stock one: it follows
    assert reset["image"] == STOCK["3.11"][0]


def test_an_empty_builder_means_no_builder_and_stays_so(scene, api, django_capture_on_commit_callbacks):
    bob = api(scene.bob)
    with django_capture_on_commit_callbacks(execute=False):
        bob.patch(url(name="spare"), {"builder_image": ""}, format="json")
        body = bob.patch(url(name="spare"), {"runtime_version": "3.13"}, format="json").json()

    assert body["builder_image"] == ""
    with schema_context(scene.acme.schema_name):
        manifest = manifests.environment_manifest(
            "faas-acme", environment_spec(Environment.objects.get(name="spare"))
        )
    assert "builder" not in manifest["spec"]


def test_the_images_follow_the_settings(scene, api, settings):
    settings.PYTHON_RUNTIME_IMAGES = {**settings.PYTHON_RUNTIME_IMAGES, "3.12": "mirror.example/py-3.12:1"}

    body = api(scene.bob).post(url(), {"name": "mirrored", "runtime_version": "3.12"}, format="json").json()

    assert body["image"] == "mirror.example/py-3.12:1"


# --- a change redeploys the functions on the data plane, in one transaction ----------------------


def test_a_change_redeploys_each_function_deployed_with_it(scene, api, django_capture_on_commit_callbacks):
    with schema_context(scene.acme.schema_name):
        deployed("busy", state=DeploymentState.BUILDING)  # a deployment under way: it is redeployed too
        deployed("broken", state=DeploymentState.FAILED)  # never served: not deployed by this change

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(scene.bob).patch(url(name="python"), {"runtime_version": "3.12"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["image"] == STOCK["3.12"][0]
    with schema_context(scene.acme.schema_name):
        queued = Deployment.objects.filter(cause="environment python changed")
        assert sorted(queued.values_list("function__name", "state", "requested_by")) == [
            ("busy", "queued", "bob"),
            ("hello", "queued", "bob"),
        ]
    assert len(callbacks) >= 2  # the deploy tasks are queued only once the change is committed


def test_a_change_that_leaves_the_environment_as_it_was_redeploys_nothing(
    scene, api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = api(scene.bob).patch(url(name="python"), {"runtime_version": "3.13", "poolsize": 3},
                                        format="json")  # fmt: skip

    assert response.status_code == 200
    with schema_context(scene.acme.schema_name):
        assert Deployment.objects.count() == 1  # the fixture's


def test_a_refused_redeployment_rolls_the_change_back(scene, api, django_capture_on_commit_callbacks):
    """``pending`` is being deployed: the environment's own quota check (live functions) passes, the
    redeployment of ``pending`` (its pool and its pods) does not, and nothing stays changed."""
    with schema_context(scene.acme.schema_name):
        Deployment.objects.filter(function__name="hello").delete()  # so only pending counts
        deployed("pending", state=DeploymentState.QUEUED)
    quota = api(scene.admin).patch("/api/v1/tenants/acme/", {"quota": {"pods": 6}}, format="json")
    assert quota.status_code == 200, quota.content

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(scene.bob).patch(url(name="python"), {"poolsize": 4, "runtime_version": "3.11"},
                                        format="json")  # fmt: skip

    assert response.status_code == 403, response.content
    error = error_of(response)
    assert (error["code"], error["detail"]["quota"]) == ("quota_exceeded", "pods")
    assert callbacks == []
    with schema_context(scene.acme.schema_name):
        python = Environment.objects.get(name="python")
        assert (python.poolsize, python.runtime_version, python.image) == (3, "3.13", STOCK["3.13"][0])
        assert Deployment.objects.count() == 1  # pending's own


# --- delete: 409 while used, else gone from the portal and the data plane ------------------------


def test_deleting_an_environment_in_use_is_a_conflict_naming_the_functions(scene, api):
    response = api(scene.bob).delete(url(name="python"))

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "environment_in_use"
    assert error["detail"] == {"functions": ["hello", "idle"]}
    assert "hello, idle" in error["message"]
    with schema_context(scene.acme.schema_name):
        assert Environment.objects.filter(name="python").exists()


def test_a_deployed_version_keeps_its_environment_in_use(scene, api, django_capture_on_commit_callbacks):
    """``hello`` moved to ``spare``, but its alias still serves version 1, published on ``python``."""
    with schema_context(scene.acme.schema_name):
        hello = Function.objects.get(name="hello")
        versions.version_publish(function=hello)
        versions.alias_set(function=hello, name="live", version=1)
        Function.objects.filter(name="idle").delete()
        Function.objects.filter(name="hello").update(environment=Environment.objects.get(name="spare"))

    response = api(scene.bob).delete(url(name="python"))

    assert response.status_code == 409
    assert error_of(response)["detail"] == {"functions": ["hello"]}


def test_deleting_an_unused_environment_removes_it_from_the_data_plane(
    scene, api, monkeypatch, django_capture_on_commit_callbacks
):
    namespace, backend = scene.acme.namespace, get_backend()
    with schema_context(scene.acme.schema_name):
        spare = environment_spec(Environment.objects.get(name="spare"))
    backend.apply([manifests.environment_manifest(namespace, spare, tenant="acme")])
    assert "spare" in {ref.name for ref in backend.list_objects(namespace, "Environment", {})}
    queued: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks.environment_undeploy_task, "delay", lambda *args: queued.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        response = api(scene.bob).delete(url(name="spare"))

    assert response.status_code == 204
    with schema_context(scene.acme.schema_name):
        assert not Environment.objects.filter(name="spare").exists()
    assert queued == [(scene.acme.schema_name, "spare")]
    tasks.environment_undeploy_task(*queued[0])  # as the worker runs it
    assert "spare" not in {ref.name for ref in backend.list_objects(namespace, "Environment", {})}
    tasks.environment_undeploy_task(*queued[0])  # idempotent: gone already, no error


def test_the_undeploy_task_leaves_an_environment_made_again_meanwhile(scene):
    namespace = scene.acme.namespace
    with schema_context(scene.acme.schema_name):
        spare = environment_spec(Environment.objects.get(name="spare"))
    get_backend().apply([manifests.environment_manifest(namespace, spare, tenant="acme")])

    tasks.environment_undeploy_task(scene.acme.schema_name, "spare")  # "spare" exists in the portal

    assert "spare" in {ref.name for ref in get_backend().list_objects(namespace, "Environment", {})}


def test_the_default_environment_may_go_when_unused_and_comes_back_on_demand(
    scene, api, django_capture_on_commit_callbacks
):
    with schema_context(scene.acme.schema_name):
        Function.objects.filter(name__in=["hello", "idle"]).update(
            environment=Environment.objects.get(name="spare")
        )
    with django_capture_on_commit_callbacks(execute=False):
        assert api(scene.bob).delete(url(name="python")).status_code == 204

    response = api(scene.bob).post("/t/acme/api/v1/functions/", {"name": "fresh"}, format="json")

    assert response.status_code == 201
    assert response.json()["environment"] == "python"
    assert api(scene.vera).get(url(name="python")).json()["runtime_version"] == runtimes.DEFAULT_VERSION


# --- the manifest ---------------------------------------------------------------------------------


def test_the_manifest_carries_the_python_version_and_the_image(scene):
    with schema_context(scene.acme.schema_name):
        spec = environment_spec(Environment.objects.get(name="spare"))
    manifest = manifests.environment_manifest("faas-acme", spec, tenant="acme")

    assert manifest["metadata"]["annotations"] == {"faas-portal.io/python-version": "3.12"}
    assert manifest["spec"]["runtime"]["image"] == STOCK["3.12"][0]
    assert manifest["spec"]["builder"]["image"] == STOCK["3.12"][1]
    assert crd_errors(manifest) == []
    PARSERS["environments"](manifest, "faas-acme")


def test_a_manifest_without_a_version_has_no_annotation_and_a_bad_version_is_refused():
    spec = EnvironmentSpec(
        name="py", image="img", builder_image=None, poolsize=1, memory_mb=None, cpu_millis=None
    )

    assert "annotations" not in manifests.environment_manifest("faas-acme", spec)["metadata"]
    with pytest.raises(manifests.InvalidManifest, match="python version"):
        manifests.environment_manifest(
            "faas-acme", EnvironmentSpec(**{**spec.__dict__, "python_version": "3.x"})
        )


def test_the_runtime_interpreter_of_a_version(settings, tmp_path):
    settings.PYTHON_RUNTIMES_DIR = tmp_path

    assert runtimes.interpreter("3.12") == tmp_path / "python3.12" / "bin" / "python"
    with pytest.raises(KeyError):
        runtimes.interpreter("3.10")


# --- the pages ------------------------------------------------------------------------------------


def test_members_see_the_environments_page_and_only_developers_get_forms(scene, client):
    for user, forms in ((scene.vera, False), (scene.bob, True)):
        client.force_login(user)
        page = client.get("/t/acme/environments/")
        assert page.status_code == 200
        assert b'data-environment="spare"' in page.content
        assert b'data-functions="2"' in page.content  # python: hello and idle
        assert (b"Create environment" in page.content) is forms
        edit = client.get("/t/acme/environments/python/")
        assert edit.status_code == 200
        assert (b"Save environment" in edit.content) is forms
    assert b"/t/acme/environments/" in client.get("/t/acme/functions/").content


def test_outsiders_and_viewers_cannot_change_environments_through_the_pages(scene, client):
    client.force_login(scene.oscar)
    assert client.get("/t/acme/environments/").status_code == 404
    assert client.get("/t/globex/environments/spare/").status_code == 404
    client.force_login(scene.vera)
    assert client.post("/t/acme/environments/", {"name": "nope", "runtime_version": "3.12",
                                                  "poolsize": 1}).status_code == 403  # fmt: skip
    assert client.post("/t/acme/environments/spare/", {"action": "delete"}).status_code == 403
    with schema_context(scene.acme.schema_name):
        assert set(Environment.objects.values_list("name", flat=True)) == {"python", "spare"}


def test_the_pages_create_change_and_delete(scene, client, django_capture_on_commit_callbacks):
    client.force_login(scene.bob)
    created = client.post(
        "/t/acme/environments/", {"name": "py311", "runtime_version": "3.11", "poolsize": 1}
    )
    assert (created.status_code, created["Location"]) == (302, "/t/acme/environments/")
    form = {"runtime_version": "3.12", "image": STOCK["3.11"][0], "builder_image": "", "poolsize": 2}
    with django_capture_on_commit_callbacks(execute=False):
        changed = client.post("/t/acme/environments/py311/", {"action": "save", **form}, follow=True)
        in_use = client.post("/t/acme/environments/python/", {"action": "delete"}, follow=True)
        deleted = client.post("/t/acme/environments/py311/", {"action": "delete"}, follow=True)

    assert b"Environment py311 saved" in changed.content
    assert b"Environment python is used by hello, idle" in in_use.content
    assert b"Environment py311 deleted." in deleted.content
    with schema_context(scene.acme.schema_name):
        assert set(Environment.objects.values_list("name", flat=True)) == {"python", "spare"}


def test_the_page_form_follows_the_version_like_the_api(scene, client, django_capture_on_commit_callbacks):
    client.force_login(scene.bob)
    form = {"action": "save", "runtime_version": "3.11", "image": STOCK["3.12"][0],
            "builder_image": STOCK["3.12"][1], "poolsize": 2}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False):
        client.post("/t/acme/environments/spare/", form)

    with schema_context(scene.acme.schema_name):
        spare = Environment.objects.get(name="spare")
    assert (spare.runtime_version, spare.image, spare.builder_image, spare.poolsize) == (
        "3.11",
        *STOCK["3.11"],
        2,
    )


def test_a_bad_page_form_shows_the_field_and_changes_nothing(scene, client):
    client.force_login(scene.bob)
    form = {"action": "save", "runtime_version": "3.12", "image": "no spaces please", "poolsize": 99}
    response = client.post("/t/acme/environments/spare/", form)

    assert response.status_code == 200
    assert b"Ensure this value is less than or equal to 50" in response.content
    with schema_context(scene.acme.schema_name):
        assert Environment.objects.get(name="spare").poolsize == 3
