"""TimeTrigger, MessageQueueTrigger and the broker's Secret: valid against Fission v1.27.0's CRDs
(strictly) and Kubernetes' schema, parsed by the local runtime, with the portal's checks first."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane import manifests
from dataplane.manifests import InvalidManifest, QueueTriggerSpec, TimeTriggerSpec
from dataplane.namespaces import namespace_for
from dataplane.tests.test_manifests import HELLO
from runtime.errors import InvalidObject
from runtime.objects import parse_messagequeuetrigger, parse_secret, parse_timetrigger
from testsupport.schemas import schema_errors

TENANT = "acme"
NS = namespace_for(TENANT)


def tick(**changes: Any) -> dict[str, Any]:
    fields = {"name": "tick", "cron": "@every 90s", "method": "POST", "subpath": "/", "target": "hello-v1"}
    return manifests.timetrigger_manifest(
        NS, TENANT, TimeTriggerSpec(**{**fields, **changes}), function="hello"
    )


def queue(mq_type: str, **changes: Any) -> list[dict[str, Any]]:
    fields: dict[str, Any] = {
        "name": "orders", "mq_type": mq_type, "topic": "orders", "target": "hello-draft",
        "resp_topic": "orders-out", "error_topic": "orders-err", "max_retries": 2,
        "connection": {"host": "amqp://guest:guest@127.0.0.1:5672/"},
    }  # fmt: skip
    return manifests.queuetrigger_manifests(
        NS, TENANT, QueueTriggerSpec(**{**fields, **changes}), function="hello"
    )


@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 30 * * * *", "@hourly", "@every 1m30s", "0 0 1 1 *"])
def test_a_time_trigger_validates_and_parses(cron: str) -> None:
    obj = tick(cron=cron)
    assert schema_errors(obj) == []
    parsed = parse_timetrigger(obj, NS)
    assert (parsed.cron, parsed.function, parsed.method) == (cron, "hello-v1", "POST")
    assert obj["metadata"]["labels"][manifests.FUNCTION_LABEL] == "hello"


@pytest.mark.parametrize(
    "cron", ["", "* * * *", "61 * * * *", "@every", "@every 0s", "@sometimes", "* * * * * * *"]
)
def test_a_schedule_fission_would_not_run_is_refused_with_the_reason(cron: str) -> None:
    with pytest.raises(InvalidManifest, match="cron"):
        tick(cron=cron)


@pytest.mark.parametrize("subpath", ["relative", "/a/../b", "/a b"])
def test_a_bad_subpath_is_refused(subpath: str) -> None:
    with pytest.raises(InvalidManifest, match="subpath"):
        tick(subpath=subpath)


@pytest.mark.parametrize("mq_type", ["nats-jetstream", "rabbitmq", "redis", "kafka"])
def test_a_queue_trigger_and_its_secret_validate(mq_type: str) -> None:
    secret, trigger = queue(mq_type)
    assert secret["kind"] == "Secret"
    assert schema_errors(secret) == []
    assert trigger["kind"] == "MessageQueueTrigger"
    assert schema_errors(trigger) == []
    assert trigger["spec"]["secret"] == secret["metadata"]["name"] == "orders-broker"
    assert trigger["spec"]["mqtkind"] == "keda"
    assert parse_secret(secret, NS).data == {"host": b"amqp://guest:guest@127.0.0.1:5672/"}


@pytest.mark.parametrize("mq_type", ["nats-jetstream", "rabbitmq", "redis"])
def test_the_local_runtime_parses_the_brokers_it_consumes(mq_type: str) -> None:
    parsed = parse_messagequeuetrigger(queue(mq_type)[-1], NS)
    assert (parsed.mq_type, parsed.topic, parsed.resp_topic, parsed.error_topic) == (
        mq_type, "orders", "orders-out", "orders-err",
    )  # fmt: skip
    assert (parsed.max_retries, parsed.function, parsed.secret) == (2, "hello-draft", "orders-broker")


def test_the_local_runtime_refuses_kafka_naming_the_field() -> None:
    with pytest.raises(InvalidObject, match="Kubernetes") as refused:
        parse_messagequeuetrigger(queue("kafka")[-1], NS)
    assert refused.value.field == "spec.messageQueueType"


def test_keda_metadata_gets_what_each_scaler_needs_and_the_users_values_win() -> None:
    kafka = queue("kafka", metadata={"bootstrapServers": "kafka:9092", "lagThreshold": "50"})[-1]
    assert kafka["spec"]["metadata"] == {
        "topic": "orders", "consumerGroup": "orders", "lagThreshold": "50", "bootstrapServers": "kafka:9092",
    }  # fmt: skip
    assert queue("rabbitmq")[-1]["spec"]["metadata"]["queueName"] == "orders"
    assert queue("redis")[-1]["spec"]["metadata"]["listName"] == "orders"


def test_a_trigger_without_a_connection_names_no_secret() -> None:
    (trigger,) = queue("redis", connection=None)
    assert "secret" not in trigger["spec"]


def test_a_functions_async_settings_are_annotations() -> None:
    spec = manifests.FunctionSpec(**{**HELLO.__dict__, "async_retries": 0, "async_max_event_age_s": 60})
    obj = manifests.function_manifest(NS, "hello-v1", spec, "hello-v1", "1", tenant=TENANT)
    assert obj["metadata"]["annotations"] == {
        manifests.ASYNC_RETRIES_ANNOTATION: "0", manifests.ASYNC_MAX_EVENT_AGE_ANNOTATION: "60",
    }  # fmt: skip
    assert schema_errors(obj) == []


def test_the_tenant_check_follows_event_triggers_to_their_function() -> None:
    with pytest.raises(InvalidManifest, match="missing Function 'hello-v1'"):
        manifests._check_references([tick()])


def test_the_portal_and_the_runtime_name_the_async_settings_alike() -> None:
    from functions.services.invocations import INVOCATION_TYPE_HEADER
    from runtime.events.asynchronous import records

    assert manifests.ASYNC_RETRIES_ANNOTATION == records.RETRIES_ANNOTATION
    assert manifests.ASYNC_MAX_EVENT_AGE_ANNOTATION == records.MAX_AGE_ANNOTATION
    assert INVOCATION_TYPE_HEADER.lower().encode() == records.INVOCATION_TYPE
