"""The tenant's Secrets and ConfigMaps (issue 14, deliver 2): write-only secret values encrypted
at rest, functions that name them, their objects on the data plane, 409 while in use."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from core.errors import Conflict
from functions.models import ConfigMap, Secret
from functions.runs import builds as build_runs
from functions.runs import deployments as deployment_runs
from functions.services import deployments, versions
from functions.services import functions as function_services
from testsupport.fake_kubernetes import FakeKubernetes
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db
API = "/t/acme/api/v1"
MARKER = "s3cr3t-MARKER-value-4e1d"


def test_a_secret_is_written_never_read_back_and_stored_encrypted(world: Any, api: Any) -> None:
    bob = api(world.bob)
    created = bob.post(
        f"{API}/secrets/", {"name": "db", "data": {"password": MARKER, "user": "app"}}, format="json"
    )
    assert created.status_code == 201, created.content
    answers = [
        created,
        bob.get(f"{API}/secrets/"),
        bob.get(f"{API}/secrets/db/"),
        bob.put(f"{API}/secrets/db/", {"data": {"password": MARKER + "2"}}, format="json"),
    ]
    assert answers[2].json()["keys"] == ["password", "user"]
    assert answers[3].json()["keys"] == ["password"]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.content
        assert MARKER.encode() not in answer.content
    with schema_context(world.acme.schema_name):
        secret = Secret.objects.get(name="db")
        assert secret.values() == {"password": MARKER + "2"}
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT * FROM "{world.acme.schema_name}".functions_secret')
            rows = cursor.fetchall()
    assert rows
    assert MARKER.encode() not in repr(rows).encode()
    assert not any(
        MARKER.encode() in bytes(v) for row in rows for v in row if isinstance(v, bytes | memoryview)
    )


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"name": "db", "data": {"../x": "v"}}, "data", "a key is letters"),
        ({"name": "db", "data": {"k": "a\u0000b"}}, "data", "NUL"),
        ({"name": "db", "data": {}}, "data", "at least one key"),
        ({"name": "Bad_Name", "data": {"k": "v"}}, "name", "DNS label"),
        ({"name": "orders-broker", "data": {"k": "v"}}, "name", "-broker"),
    ],
)
def test_a_bad_secret_is_refused_and_nothing_is_stored(
    world: Any, api: Any, body: Any, field: str, says: str
) -> None:
    response = api(world.bob).post(f"{API}/secrets/", body, format="json")
    assert response.status_code == 400, response.content
    assert says in " ".join(error_of(response)["detail"][field])
    with schema_context(world.acme.schema_name):
        assert not Secret.objects.exists()


def test_a_config_map_is_shown_and_a_taken_name_is_a_conflict(world: Any, api: Any) -> None:
    bob = api(world.bob)
    assert (
        bob.post(f"{API}/configmaps/", {"name": "app", "data": {"mode": "fast"}}, format="json").status_code
        == 201
    )
    again = bob.post(f"{API}/configmaps/", {"name": "app", "data": {"mode": "slow"}}, format="json")
    assert again.status_code == 409
    assert bob.get(f"{API}/configmaps/app/").json()["data"] == {"mode": "fast"}
    named_env = bob.post(f"{API}/configmaps/", {"name": "hello-env", "data": {"a": "b"}}, format="json")
    assert named_env.status_code == 400


def test_members_only_and_viewers_read_only(world: Any, api: Any) -> None:
    assert (
        api(world.bob).post(f"{API}/secrets/", {"name": "db", "data": {"k": "v"}}, format="json").status_code
        == 201
    )
    assert api(world.oscar).get(f"{API}/secrets/").status_code == 404
    assert api(world.oscar).get(f"{API}/secrets/db/").status_code == 404
    assert api(world.vera).get(f"{API}/secrets/db/").status_code == 200
    assert api(world.vera).put(f"{API}/secrets/db/", {"data": {"k": "w"}}, format="json").status_code == 403
    assert api(world.vera).delete(f"{API}/secrets/db/").status_code == 403


def test_a_function_names_only_what_its_tenant_has(world: Any, api: Any) -> None:
    bob = api(world.bob)
    assert bob.post(f"{API}/secrets/", {"name": "db", "data": {"k": "v"}}, format="json").status_code == 201
    missing = bob.post(f"{API}/functions/", {"name": "fn", "secrets": ["db", "nope"]}, format="json")
    assert missing.status_code == 400, missing.content
    assert "nope" in " ".join(error_of(missing)["detail"]["secrets"])
    # globex has no Secret "db": acme's is not there to name
    globex = api(world.alice).post(
        "/t/globex/api/v1/functions/", {"name": "fn", "secrets": ["db"]}, format="json"
    )
    assert globex.status_code in (400, 404), globex.content
    created = bob.post(f"{API}/functions/", {"name": "fn", "secrets": ["db"]}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["secrets"] == ["db"]


def test_deleting_one_a_function_uses_is_a_conflict_naming_it(world: Any, api: Any) -> None:
    bob = api(world.bob)
    assert (
        bob.post(f"{API}/configmaps/", {"name": "app", "data": {"k": "v"}}, format="json").status_code == 201
    )
    assert (
        bob.post(f"{API}/functions/", {"name": "fn", "configmaps": ["app"]}, format="json").status_code == 201
    )
    refused = bob.delete(f"{API}/configmaps/app/")
    assert refused.status_code == 409
    assert error_of(refused)["detail"]["functions"] == ["fn"]
    assert bob.patch(f"{API}/functions/fn/", {"configmaps": []}, format="json").status_code == 200
    assert bob.delete(f"{API}/configmaps/app/").status_code == 204
    with schema_context(world.acme.schema_name):
        assert not ConfigMap.objects.exists()


def test_the_data_plane_gets_the_objects_the_function_names(
    kubernetes_portal: FakeKubernetes,
    make_tenant: Any,
    make_user: Any,
    monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from functions import tasks
    from functions.services import configuration

    tenant = make_tenant("acme", admin=make_user("alice"))
    namespace = "faas-acme"
    queued: list[tuple[str, ...]] = []
    monkeypatch.setattr(tasks.tenant_object_undeploy_task, "delay", lambda *args: queued.append(args))
    with schema_context(tenant.schema_name):
        configuration.secret_save(name="db", data={"password": MARKER})
        configuration.configmap_save(name="app", data={"mode": "fast"})
        function = function_services.function_create(name="hello", secrets=["db"], configmaps=["app"])
        build_runs.build_run(build_id=build_runs.build_new(function=function).pk)
        deployment = deployments.deployment_create(function=function, cause="test")
        result = deployment_runs.deployment_run(deployment_id=deployment.pk)
        assert result is not None
        assert result.state == "live", result.reason
        (secret,) = kubernetes_portal.objects("secrets", namespace)
        assert secret["metadata"]["name"] == "db"
        assert secret["type"] == "Opaque"
        assert base64.b64decode(secret["data"]["password"]).decode() == MARKER
        (configmap,) = kubernetes_portal.objects("configmaps", namespace)
        assert (configmap["metadata"]["name"], configmap["data"]) == ("app", {"mode": "fast"})
        (fn,) = kubernetes_portal.objects("functions", namespace)
        assert fn["spec"]["secrets"] == [{"namespace": namespace, "name": "db"}]
        assert fn["spec"]["configmaps"] == [{"namespace": namespace, "name": "app"}]

        version = versions.version_publish(function=function)
        assert version.config["secrets"] == ["db"]
        function_services.function_update(function=function, secrets=[], configmaps=[])
        with django_capture_on_commit_callbacks(execute=True):
            configuration.delete(Secret.objects.get(name="db"))  # no version is deployed
    assert queued == [(tenant.schema_name, "Secret", "db")]
    tasks.tenant_object_undeploy_task(*queued[0])  # as the worker runs it
    assert kubernetes_portal.objects("secrets", namespace) == []


def test_rotating_the_key_keeps_every_tenants_secrets_readable(world: Any, monkeypatch: Any) -> None:
    """The registered rotation (portal/apps.py: configuration.rotate_secrets) rewrites the tenants'
    Secrets: after `secrets rotate` the new key alone opens them."""
    from io import StringIO

    from django.core.management import call_command

    from core.crypto import Keyring, generate_key

    def use(keys: str) -> None:
        monkeypatch.setenv("PORTAL_SECRETS_KEYS", keys)
        Keyring.clear_cache()

    old, new = generate_key(), generate_key()
    monkeypatch.delenv("PORTAL_SECRETS_KEYS_FILE", raising=False)
    use(old)
    call_command("secrets", "verify", stdout=StringIO())
    for tenant in (world.acme, world.globex):
        with schema_context(tenant.schema_name):
            configuration_save("db", {"password": f"{MARKER}-{tenant.slug}"})
    use(f"{new},{old}")
    call_command("secrets", "rotate", stdout=StringIO())
    use(new)
    try:
        for tenant in (world.acme, world.globex):
            with schema_context(tenant.schema_name):
                assert Secret.objects.get(name="db").values() == {"password": f"{MARKER}-{tenant.slug}"}
    finally:
        Keyring.clear_cache()


def configuration_save(name: str, data: dict[str, str]) -> None:
    from functions.services import configuration

    configuration.secret_save(name=name, data=data)


def test_two_creates_of_one_name_at_once_give_a_conflict_not_an_error(world: Any, monkeypatch: Any) -> None:
    from functions.services import configuration

    with schema_context(world.acme.schema_name):
        configuration.secret_save(name="db", data={"k": "first"})
        # as if the other request's row were not committed yet when this one looked and validated
        monkeypatch.setattr(configuration, "_existing", lambda model, name: None)
        monkeypatch.setattr(configuration, "full_clean", lambda obj: None)
        with pytest.raises(Conflict):
            configuration.secret_save(name="db", data={"k": "second"})
        monkeypatch.undo()
        assert Secret.objects.get(name="db").values() == {"k": "first"}
