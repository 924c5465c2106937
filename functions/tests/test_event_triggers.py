"""Time and message-queue triggers through the API: validation with clear messages, the next fire
times, a broker connection that is written and never read back, and the objects a deployment
applies for them."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
from django_tenants.utils import schema_context

from dataplane import manifests
from functions import selectors
from functions.models import Build, BuildState, Deployment, Draft, QueueTrigger, TimeTrigger
from functions.runs.deployments import desired_objects
from functions.services import functions as function_services
from functions.services import versions
from testsupport.fixtures import error_of

pytestmark = pytest.mark.django_db
API = "/t/acme/api/v1/functions/hello"
SECRET = "amqp://guest:s3cret-value@broker:5672/"


@pytest.fixture
def published(world: Any, hello: Any) -> Any:
    """``hello`` with a succeeded build, versions 1 and 2 and alias ``live`` (1, with 2 at 10%)."""
    with schema_context(world.acme.schema_name):
        revision = Draft.objects.get(function=hello).revision
        build = Build.objects.create(
            function=hello, draft_revision=revision, state=BuildState.SUCCEEDED, sha256="a" * 64,
            python_version=hello.environment.runtime_version,
        )  # fmt: skip
        versions.version_publish(function=hello)
        function_services.function_update(function=hello, timeout_s=59)  # v2 differs from v1
        versions.version_publish(function=hello)
        versions.alias_set(function=hello, name="live", version=1, canary_version=2, canary_weight=10)
        return build


@pytest.fixture
def post(world: Any, api: Any, django_capture_on_commit_callbacks: Any) -> Any:
    def send(path: str, body: dict[str, Any], method: str = "post") -> Any:
        with django_capture_on_commit_callbacks(execute=False):
            return getattr(api(world.bob), method)(API + path, body, format="json")

    return send


def test_a_time_trigger_answers_its_next_five_fires(post: Any, hello: Any) -> None:
    response = post("/time-triggers/", {"name": "every-ten", "cron": "*/10 * * * * *", "method": "GET"})
    assert response.status_code == 201, response.content
    fires = [datetime.fromisoformat(moment) for moment in response.json()["next_fires"]]
    assert len(fires) == 5
    assert all(moment.second % 10 == 0 and moment.microsecond == 0 for moment in fires)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(fires)] == [10.0] * 4


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "t", "cron": "61 * * * *"}, "cron", "minute"),
        ({"name": "t", "cron": "* * * *"}, "cron", "fields"),
        ({"name": "t", "cron": "@every 5"}, "cron", "duration"),
        ({"name": "t", "cron": "@fortnightly"}, "cron", "@fortnightly"),
        ({"name": "t", "cron": "@hourly", "subpath": "x"}, "subpath", "subpath"),
        ({"name": "t", "cron": "@hourly", "method": "FETCH"}, "method", ""),
        ({"name": "T!", "cron": "@hourly"}, "name", ""),
        ({"name": "t", "cron": "@hourly", "target_kind": "alias", "alias": "nope"}, "alias", ""),
    ],
)
def test_a_bad_time_trigger_is_400_naming_the_field_and_nothing_is_saved(
    world: Any, post: Any, hello: Any, body: dict[str, Any], field: str, words: str
) -> None:
    response = post("/time-triggers/", body)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert field in error["detail"], error
    assert words.lower() in str(error).lower()
    with schema_context(world.acme.schema_name):
        assert not TimeTrigger.objects.exists()
        assert not Deployment.objects.exists()


def test_a_broker_connection_is_written_and_never_read_back(
    world: Any, api: Any, post: Any, hello: Any
) -> None:
    body = {"name": "orders", "mq_type": "rabbitmq", "topic": "orders", "connection": {"host": SECRET}}
    created = post("/queue-triggers/", body)
    assert created.status_code == 201, created.content
    assert created.json()["connection_keys"] == ["host"]
    listed = api(world.vera).get(API + "/queue-triggers/")
    for response in (created, listed, api(world.bob).get(API + "/queue-triggers/orders/")):
        assert "s3cret" not in response.content.decode()
    # An update that leaves the connection out keeps it; the deployment's Secret carries it.
    assert (
        post("/queue-triggers/orders/", {**body, "connection": None, "topic": "o2"}, "put").status_code == 200
    )
    with schema_context(world.acme.schema_name):
        assert QueueTrigger.objects.get(name="orders").connection == {"host": SECRET}
        secret = next(o for o in desired_objects(hello, None) if o["kind"] == "Secret")
    assert secret["stringData"] == {"host": SECRET}


def test_kafka_is_refused_on_the_local_runtime_with_the_reason(world: Any, post: Any, hello: Any) -> None:
    response = post("/queue-triggers/", {"name": "k", "mq_type": "kafka", "topic": "t"})
    assert response.status_code == 400
    assert "Kafka" in error_of(response)["message"]
    with schema_context(world.acme.schema_name):
        assert not QueueTrigger.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "q", "mq_type": "redis", "topic": "t", "min_replicas": 5, "max_replicas": 2},
        {"name": "q", "mq_type": "redis", "topic": "t", "metadata": {"bad key": "x"}},
        {"name": "q", "mq_type": "redis", "topic": "t", "connection": {"k": 1}},
        {"name": "q", "mq_type": "sqs", "topic": "t"},
        {"name": "q", "mq_type": "redis", "topic": ""},
        {"name": "q", "mq_type": "redis", "topic": "t", "max_retries": 11},
        {"name": "q", "mq_type": "redis", "topic": "t", "metadata": {"stream": "a\u0000b"}},
        {"name": "q", "mq_type": "redis", "topic": "t", "connection": {"password": "\u0000"}},
    ],
)
def test_a_bad_queue_trigger_is_400_in_the_error_shape(
    world: Any, post: Any, hello: Any, body: dict[str, Any]
) -> None:
    response = post("/queue-triggers/", body)
    assert response.status_code == 400, response.content
    error_of(response)
    with schema_context(world.acme.schema_name):
        assert not QueueTrigger.objects.exists()


def test_event_triggers_call_one_function_and_deploy_what_they_point_at(
    world: Any, post: Any, hello: Any, published: Any
) -> None:
    on_alias = {"name": "on-alias", "cron": "@hourly", "target_kind": "alias", "alias": "live"}
    assert post("/time-triggers/", on_alias).status_code == 201
    on_v2 = {"name": "on-v2", "mq_type": "redis", "topic": "t", "target_kind": "version", "version": 2}
    assert post("/queue-triggers/", on_v2).status_code == 201
    with schema_context(world.acme.schema_name):
        versions.alias_set(
            function=hello, name="live", version=1
        )  # the split is gone: v2 only via the trigger
        assert {v.number for v in selectors.referenced_versions(function=hello)} == {1, 2}
        objects = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(hello, published)}
    # Fission's timer and connectors read no weights: an alias calls its main version.
    assert objects[("TimeTrigger", "on-alias")]["spec"]["functionref"] == {"type": "name", "name": "hello-v1"}
    assert objects[("MessageQueueTrigger", "on-v2")]["spec"]["functionref"]["name"] == "hello-v2"
    assert ("Function", "hello-v2") in objects
    manifests._check_references(list(objects.values()))


def test_an_alias_a_time_trigger_uses_cannot_be_deleted(
    world: Any, api: Any, post: Any, published: Any
) -> None:
    post("/time-triggers/", {"name": "nightly", "cron": "@daily", "target_kind": "alias", "alias": "live"})
    response = api(world.bob).delete(API + "/aliases/live/")
    assert response.status_code == 409
    assert error_of(response)["code"] == "in_use"


def test_the_trigger_quota_refuses_the_change_and_keeps_what_was(world: Any, post: Any, hello: Any) -> None:
    world.acme.quota = {"timetriggers": 1}
    world.acme.save()
    with schema_context(world.acme.schema_name):
        Deployment.objects.create(function=hello, state="live", cause="fixture")
    assert post("/time-triggers/", {"name": "one", "cron": "@hourly"}).status_code == 201
    refused = post("/time-triggers/", {"name": "two", "cron": "@hourly"})
    assert refused.status_code == 403, refused.content
    assert error_of(refused)["detail"]["quota"] == "timetriggers"
    with schema_context(world.acme.schema_name):
        assert list(TimeTrigger.objects.values_list("name", flat=True)) == ["one"]


def test_another_tenant_sees_none_of_the_triggers(world: Any, api: Any, post: Any, hello: Any) -> None:
    post("/time-triggers/", {"name": "tick", "cron": "@hourly"})
    outsider = api(world.oscar)
    assert outsider.get(API + "/time-triggers/").status_code == 404
    assert outsider.get("/t/globex/api/v1/functions/hello/time-triggers/").status_code == 404


def test_dead_letters_without_the_data_plane_are_503_in_the_error_shape(
    world: Any, api: Any, hello: Any, settings: Any
) -> None:
    from portal.embedded import free_port

    settings.RUNTIME_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for response in (
        api(world.vera).get(API + "/dead-letters/"),
        api(world.bob).post(API + "/dead-letters/redrive/", {}, format="json"),
        api(world.bob).post(API + "/dead-letters/purge/", {}, format="json"),
    ):
        assert response.status_code == 503, response.content
        assert error_of(response)["code"] == "dead_letters_unavailable"
