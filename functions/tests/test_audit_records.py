"""Every change in the functions app is one audit record (issue 14): the right action, object
and diff; nothing for a refused change; a change that queues deployments lists them as effects;
names and keys only, never a secret's value, code or a test call's body."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Q
from django_tenants.utils import tenant_context

from audit.models import AuditRecord
from core.errors import Conflict, ValidationFailed
from dataplane.backends import local
from dataplane.backends.base import InvokeResult, TransientError
from functions.models import Build, BuildState, Deployment, DeploymentState, Environment, Function
from functions.quotas import QuotaExceeded
from functions.runs import builds as build_runs
from functions.runs import deployments as deployment_runs
from functions.services import (
    builds,
    changes,
    configuration,
    deadletters,
    deployments,
    events,
    functions,
    invocations,
    triggers,
    versions,
)

pytestmark = pytest.mark.django_db
MARKER = "s3cr3t-marker-value"  # must appear in no record


class Trail:
    """The tenant's records written since ``mark()``."""

    def __init__(self, tenant: Any) -> None:
        self.tenant = tenant
        self.since = 0

    def mark(self) -> None:
        self.since = AuditRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def new(self) -> list[AuditRecord]:
        return list(AuditRecord.objects.filter(tenant_id=self.tenant.pk, id__gt=self.since).order_by("id"))

    @contextmanager
    def one(self, action: str, object_name: str) -> Iterator[list[AuditRecord]]:
        """The block leaves exactly one record, ``action`` of ``object_name`` (found in the list)."""
        self.mark()
        found: list[AuditRecord] = []
        yield found
        records = self.new()
        assert [(r.action, r.object_name) for r in records] == [(action, object_name)]
        found.append(records[0])

    @contextmanager
    def none(self) -> Iterator[None]:
        self.mark()
        yield
        assert [(r.action, r.object_name) for r in self.new()] == []


@pytest.fixture
def trail(world: Any) -> Iterator[Trail]:
    with tenant_context(world.acme):
        yield Trail(world.acme)


def _hello(hello: Function) -> Function:
    return Function.objects.select_related("environment").get(pk=hello.pk)


def _built(function: Function) -> Build:
    """A succeeded build of the draft as it is (no builder run: the record is what is tested)."""
    revision = function.draft.revision
    python = function.environment.runtime_version
    return Build.objects.create(
        function=function, draft_revision=revision, state=BuildState.SUCCEEDED, python_version=python,
        sha256=f"{revision:064x}", size=1,  # another archive for each draft revision
    )  # fmt: skip


def _deployed(function: Function) -> Deployment:
    """A live deployment: the function is on the data plane, so changes redeploy it."""
    deployment = Deployment.objects.create(function=function, cause="earlier")
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.LIVE)
    return deployment


def _latest_deployment(function: Function) -> str:
    return f"{function.name}#{Deployment.objects.filter(function=function).latest('id').pk}"


def _json(record: AuditRecord) -> str:
    return json.dumps({f.name: getattr(record, f.name) for f in record._meta.fields}, default=str)


# ---------------------------------------------------------------- environments


def test_the_default_environment_made_by_provisioning_is_recorded_as_the_system(trail: Trail) -> None:
    # Its own record, or an effect of the platform's record of the provisioning it is part of.
    made = AuditRecord.objects.filter(tenant_id=trail.tenant.pk).filter(
        Q(action="environment.create", object_name="python")
        | Q(effects__contains=["environment.create python"])
    )
    assert [record.actor_type for record in made] == ["system"]
    with trail.none():
        functions.environment_ensure_default()  # it exists: nothing is made, nothing recorded
    functions.environment_delete(environment=Environment.objects.get(name=functions.DEFAULT_ENVIRONMENT))
    with trail.one("environment.create", "python"):
        functions.environment_ensure_default()


def test_environment_create_update_and_delete(trail: Trail) -> None:
    with trail.one("environment.create", "fast") as found:
        environment = functions.environment_create(name="fast", memory_mb=256)
    assert found[0].changes["memory_mb"] == [None, 256]
    assert found[0].object_type == "environment"
    with trail.one("environment.update", "fast") as found:
        functions.environment_update(environment=environment, poolsize=1, memory_mb=512)
    assert found[0].changes == {"poolsize": [3, 1], "memory_mb": [256, 512]}
    with trail.one("environment.delete", "fast") as found:
        functions.environment_delete(environment=environment)
    assert found[0].changes["poolsize"] == [1, None]


def test_refused_environment_changes_leave_no_record(trail: Trail, hello: Function) -> None:
    python = Environment.objects.get(name="python")
    with trail.none(), pytest.raises(Conflict):
        functions.environment_create(name="python")
    with trail.none(), pytest.raises(ValidationFailed):
        functions.environment_update(environment=python, runtime_version="2.7")
    with trail.none(), pytest.raises(Conflict):
        functions.environment_delete(environment=python)  # hello uses it
    _deployed(hello)  # its warm pool counts
    with trail.none(), pytest.raises(QuotaExceeded):
        functions.environment_update(environment=python, poolsize=49)


def test_an_environment_change_lists_the_redeployments_it_queued(trail: Trail, hello: Function) -> None:
    _deployed(hello)
    python = Environment.objects.get(name="python")
    with trail.one("environment.update", "python") as found:
        changes.environment_update_and_deploy(environment=python, memory_mb=256)
    assert found[0].changes == {"memory_mb": [None, 256]}
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]


# ---------------------------------------------------------------- functions and code


def test_function_create_records_its_settings(trail: Trail) -> None:
    with trail.one("function.create", "greet") as found:
        functions.function_create(name="greet", memory_mb=256, environment_variables={"GREETING": "hi"})
    changes_ = found[0].changes
    assert changes_["memory_mb"] == [None, 256]
    assert changes_["environment"] == [None, "python"]
    assert changes_["environment_variables"] == [None, {"GREETING": "hi"}]
    assert found[0].effects == []  # the default environment existed


def test_function_update_and_delete(trail: Trail, hello: Function) -> None:
    hello = _hello(hello)
    memory = hello.memory_mb
    with trail.one("function.update", "hello") as found:
        functions.function_update(function=hello, memory_mb=256)
    assert found[0].changes == {"memory_mb": [memory, 256]}
    with trail.one("function.delete", "hello") as found:
        deployments.function_delete(function=hello)
    assert found[0].changes["memory_mb"] == [256, None]


def test_a_settings_change_that_deploys_is_one_record_listing_its_deployment(
    trail: Trail, hello: Function
) -> None:
    hello = _hello(hello)
    with trail.one("function.update", "hello") as found:
        changes.function_update_and_deploy(function=hello, timeout_s=30)
    assert found[0].changes == {"timeout_s": [60, 30]}
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]


def test_refused_function_changes_leave_no_record(trail: Trail, hello: Function) -> None:
    hello = _hello(hello)
    with trail.none(), pytest.raises(Conflict):
        functions.function_create(name="hello")
    with trail.none(), pytest.raises(ValidationFailed):
        functions.function_update(function=hello, min_scale=3, max_scale=1)
    with trail.none(), pytest.raises(QuotaExceeded):
        changes.function_update_and_deploy(
            function=_hello(hello), memory_mb=4096
        )  # over the container maximum
    trail.tenant.quota = {"functions": 1}
    trail.tenant.save(update_fields=["quota"])
    with trail.none(), pytest.raises(QuotaExceeded):
        functions.function_create(name="second")


def test_code_changes_record_file_names_never_contents(trail: Trail, hello: Function) -> None:
    with trail.one("function.code", "hello") as found:
        functions.draft_update_files(function=hello, files={"main.py": f"X = {MARKER!r}\n", "lib.py": ""})
    assert found[0].changes == {"revision": [1, 2], "files": [["main.py"], ["lib.py", "main.py"]]}
    assert MARKER not in _json(found[0])
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("main.py", f"def main():\n    return {MARKER!r}\n")
    with trail.one("function.code", "hello") as found:
        functions.draft_upload(function=hello, filename="code.zip", data=archive.getvalue())
    assert found[0].changes == {
        "revision": [2, 3], "files": [["lib.py", "main.py"], []], "archive_name": ["", "code.zip"]
    }  # fmt: skip
    assert MARKER not in _json(found[0])
    with trail.one("function.code", "hello") as found:
        functions.draft_upload(function=hello, filename="greet.py", data=b"def main():\n    return 1\n")
    assert found[0].changes["files"] == [[], ["greet.py"]]
    with trail.none(), pytest.raises(ValidationFailed):
        functions.draft_update_files(function=hello, files={})


def test_code_saved_from_the_editor_and_deployed_is_one_record(trail: Trail, hello: Function) -> None:
    with trail.one("function.code", "hello") as found:
        changes.draft_update_and_deploy(function=hello, files={"main.py": "x = 1\n"})
    assert found[0].changes == {"revision": [1, 2]}
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]


# ---------------------------------------------------------------- builds and deployments


def test_a_build_is_recorded_when_queued_and_when_it_ends(trail: Trail, hello: Function) -> None:
    build_id = Build.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with trail.one("build.create", f"hello#{build_id + 1}") as found:
        build = builds.build_create(function=hello)
    assert found[0].changes == {"draft_revision": [None, 1], "state": [None, "queued"]}
    functions.draft_update_files(function=hello, files={"main.py": "x = 2\n"})
    with trail.one("build.finish", f"hello#{build.pk}") as found:
        build_runs.build_run(build_id=build.pk)  # the draft changed: it fails at once
    assert found[0].changes == {"state": ["running", "failed"]}
    assert found[0].actor_type == "system"
    with trail.none():
        build_runs.build_run(build_id=build.pk)  # delivered twice: nothing claimed, nothing recorded


def test_a_deployment_is_recorded_when_queued(trail: Trail, hello: Function) -> None:
    with trail.one("deployment.create", f"hello#{Deployment.objects.count() + 1}") as found:
        deployment = deployments.deployment_create(function=hello, cause="deploy")
    assert found[0].object_name == f"hello#{deployment.pk}"
    assert found[0].changes == {"cause": [None, "deploy"], "target": [None, "hello"]}


def test_a_refused_deployment_leaves_no_record(trail: Trail, hello: Function) -> None:
    functions.function_update(function=_hello(hello), memory_mb=4096)
    with trail.none(), pytest.raises(QuotaExceeded):
        deployments.deployment_create(function=_hello(hello), cause="deploy")


def test_a_deployment_ends_once_with_one_record_however_often_it_is_retried(
    trail: Trail, hello: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    _built(_hello(hello))
    deployment = deployments.deployment_create(function=hello, cause="deploy")

    def flaky(self: Any, objects: Any) -> None:
        raise TransientError("the API server is restarting")

    monkeypatch.setattr(local.LocalBackend, "apply", flaky)
    with trail.none():
        for _ in range(3):  # the task's retries
            with pytest.raises(TransientError):
                deployment_runs.deployment_run(deployment_id=deployment.pk)
    with trail.one("deployment.finish", f"hello#{deployment.pk}") as found:
        deployment_runs.deployment_fail(deployment_id=deployment.pk, reason="the data plane kept failing")
    assert found[0].changes == {"state": ["applying", "failed"]}
    assert found[0].actor_type == "system"
    with trail.none():
        deployment_runs.deployment_fail(deployment_id=deployment.pk, reason="again")
        deployment_runs.deployment_run(deployment_id=deployment.pk)
        assert not deployment_runs.record_step(deployment, DeploymentState.LIVE, "late")
    deployment.refresh_from_db()
    assert (deployment.state, deployment.reason) == (DeploymentState.FAILED, "the data plane kept failing")


def test_a_redeployment_the_quota_refuses_is_one_record_with_its_end(trail: Trail, hello: Function) -> None:
    _deployed(hello)
    functions.function_update(function=_hello(hello), memory_mb=4096)  # no longer fits
    with trail.one("deployment.create", f"hello#{Deployment.objects.latest('id').pk + 1}") as found:
        assert deployments.tenant_resumed() == 0
    assert found[0].effects == [f"deployment.finish {found[0].object_name}"]
    assert Deployment.objects.latest("id").state == DeploymentState.FAILED


# ---------------------------------------------------------------- versions and aliases


def test_version_publish_records_its_number_build_and_description(trail: Trail, hello: Function) -> None:
    with trail.none(), pytest.raises(Conflict):
        versions.version_publish(function=hello)  # not built
    build = _built(_hello(hello))
    with trail.one("version.publish", "hello/v1") as found:
        versions.version_publish(function=hello, description="first")
    assert found[0].changes == {
        "number": [None, 1],
        "build": [None, build.pk],
        "description": [None, "first"],
    }


def test_alias_set_and_delete_record_versions_and_weights(trail: Trail, hello: Function) -> None:
    _built(_hello(hello))
    versions.version_publish(function=hello)
    functions.draft_update_files(function=hello, files={"main.py": "x = 2\n"})
    _built(_hello(hello))
    versions.version_publish(function=hello)
    with trail.one("alias.set", "hello/prod") as found:
        versions.alias_set(function=hello, name="prod", version=1)
    assert found[0].changes == {"version": [None, 1], "weights": [None, {"1": 100}]}
    with trail.one("alias.set", "hello/prod") as found:
        versions.alias_set(function=hello, name="prod", version=1, canary_version=2, canary_weight=10)
    assert found[0].changes == {"canary_version": [None, 2], "weights": [{"1": 100}, {"1": 90, "2": 10}]}
    with trail.none(), pytest.raises(ValidationFailed):
        versions.alias_set(function=hello, name="prod", version=1, canary_version=1, canary_weight=10)
    with trail.one("alias.set", "hello/prod") as found:
        changes.alias_set_and_deploy(function=hello, name="prod", version=2)
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]
    alias = hello.aliases.get(name="prod")
    triggers.trigger_save(function=hello, name="web", methods=["GET"], path="/web", target_kind="alias",
                          alias="prod")  # fmt: skip
    with trail.none(), pytest.raises(Conflict):
        versions.alias_delete(alias=alias)  # a trigger uses it
    triggers.trigger_delete(trigger=hello.triggers.get(name="web"))
    with trail.one("alias.delete", "hello/prod") as found:
        changes.alias_delete_and_deploy(alias=alias)
    assert found[0].changes["version"] == [2, None]
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]


# ---------------------------------------------------------------- triggers


def test_http_triggers(trail: Trail, hello: Function) -> None:
    with trail.one("trigger.create", "hello/web") as found:
        trigger = triggers.trigger_save(function=hello, name="web", methods=["GET"], path="/web")
    assert found[0].changes["path"] == [None, "/web"]
    assert found[0].changes["target_kind"] == [None, "draft"]
    with trail.one("trigger.update", "hello/web") as found:
        changes.trigger_save_and_deploy(function=hello, name="web", methods=["GET", "POST"], path="/web",
                                        trigger=trigger)  # fmt: skip
    assert found[0].changes == {"methods": [["GET"], ["GET", "POST"]]}
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]
    with trail.none(), pytest.raises(ValidationFailed):
        triggers.trigger_save(function=hello, name="bad", methods=["GET"], path="/a/../b")
    with trail.one("trigger.delete", "hello/web") as found:
        changes.trigger_delete_and_deploy(trigger=trigger)
    assert found[0].changes["path"] == ["/web", None]
    assert len(found[0].effects) == 1


def test_time_triggers(trail: Trail, hello: Function) -> None:
    with trail.one("time-trigger.create", "hello/nightly") as found:
        trigger = events.time_trigger_save(function=hello, name="nightly", cron="0 3 * * *")
    assert found[0].changes["cron"] == [None, "0 3 * * *"]
    with trail.one("time-trigger.update", "hello/nightly") as found:
        changes.time_trigger_save_and_deploy(
            function=hello, name="nightly", cron="0 4 * * *", trigger=trigger
        )
    assert found[0].changes == {"cron": ["0 3 * * *", "0 4 * * *"]}
    assert len(found[0].effects) == 1
    with trail.none(), pytest.raises(ValidationFailed):
        events.time_trigger_save(function=hello, name="never", cron="not a schedule")
    with trail.one("time-trigger.delete", "hello/nightly") as found:
        events.event_trigger_delete(trigger=trigger)
    assert found[0].changes["cron"] == ["0 4 * * *", None]


def test_queue_triggers_record_whether_the_connection_changed_never_its_values(
    trail: Trail, hello: Function
) -> None:
    connection = {"host": f"amqp://user:{MARKER}@broker:5672/"}
    with trail.one("queue-trigger.create", "hello/orders") as found:
        trigger = events.queue_trigger_save(
            function=hello, name="orders", mq_type="rabbitmq", topic="orders", connection=connection,
            metadata={"host": f"amqp://user:{MARKER}@broker/"},
        )  # fmt: skip
    assert found[0].changes["connection_keys"] == [None, ["host"]]
    assert found[0].changes["connection"] == [None, "changed"]
    assert found[0].changes["metadata_keys"] == [None, ["host"]]
    assert MARKER not in _json(found[0])
    with trail.one("queue-trigger.update", "hello/orders") as found:  # the connection kept (None)
        changes.queue_trigger_save_and_deploy(function=hello, name="orders", mq_type="rabbitmq", topic="jobs",
                                              trigger=trigger, metadata=trigger.metadata)  # fmt: skip
    assert found[0].changes == {"topic": ["orders", "jobs"]}
    assert len(found[0].effects) == 1
    trigger.refresh_from_db()
    with trail.one("queue-trigger.update", "hello/orders") as found:
        events.queue_trigger_save(function=hello, name="orders", mq_type="rabbitmq", topic="jobs",
                                  trigger=trigger, connection={"host": "amqp://other"})  # fmt: skip
    assert found[0].changes == {"connection": [None, "changed"]}
    with trail.none(), pytest.raises(ValidationFailed):
        events.queue_trigger_save(function=hello, name="bad", mq_type="carrier-pigeon", topic="t")
    with trail.one("queue-trigger.delete", "hello/orders") as found:
        changes.event_trigger_delete_and_deploy(trigger=trigger)
    assert found[0].changes["topic"] == ["jobs", None]
    assert MARKER not in _json(found[0])


# ---------------------------------------------------------------- secrets and config maps


def test_secrets_record_their_keys_never_their_values(trail: Trail, hello: Function) -> None:
    with trail.one("secret.create", "db") as found:
        configuration.secret_save(name="db", data={"PASSWORD": MARKER})
    assert found[0].changes == {"keys": [None, ["PASSWORD"]]}
    assert found[0].object_type == "secret"
    assert MARKER not in _json(found[0])
    functions.function_update(function=_hello(hello), secrets=["db"])
    _deployed(hello)
    with trail.one("secret.update", "db") as found:
        changes.secret_save_and_deploy(name="db", data={"PASSWORD": MARKER + "2", "USER": MARKER})
    assert found[0].changes == {"keys": [["PASSWORD"], ["PASSWORD", "USER"]]}
    assert found[0].effects == [f"deployment.create {_latest_deployment(hello)}"]
    assert MARKER not in _json(found[0])
    with trail.none(), pytest.raises(Conflict):
        configuration.delete(_secret("db"))  # hello uses it
    functions.function_update(function=_hello(hello), secrets=[])
    with trail.one("secret.delete", "db") as found:
        configuration.delete(_secret("db"))
    assert found[0].changes == {"keys": [["PASSWORD", "USER"], None]}


def test_a_secret_over_the_quota_leaves_no_record(trail: Trail) -> None:
    trail.tenant.quota = {"secrets": 1}
    trail.tenant.save(update_fields=["quota"])
    configuration.secret_save(name="one", data={"K": "v"})
    with trail.none(), pytest.raises(QuotaExceeded):
        changes.secret_save_and_deploy(name="two", data={"K": "v"})


def _secret(name: str) -> Any:
    from functions.models import Secret

    return Secret.objects.get(name=name)


def test_config_maps_record_their_keys(trail: Trail) -> None:
    from functions.models import ConfigMap

    with trail.one("configmap.create", "settings") as found:
        changes.configmap_save_and_deploy(name="settings", data={"LEVEL": "debug"})
    assert found[0].changes == {"keys": [None, ["LEVEL"]]}
    with trail.one("configmap.update", "settings") as found:
        configuration.configmap_save(name="settings", data={"LEVEL": "info", "COLOR": "no"})
    assert found[0].changes == {"keys": [["LEVEL"], ["COLOR", "LEVEL"]]}
    with trail.none(), pytest.raises(ValidationFailed):
        configuration.configmap_save(name="settings", data={})
    with trail.one("configmap.delete", "settings"):
        configuration.delete(ConfigMap.objects.get(name="settings"))


def test_re_encrypting_secrets_writes_no_record_of_its_own(trail: Trail) -> None:
    from core.crypto import Keyring

    configuration.secret_save(name="db", data={"PASSWORD": MARKER})
    with trail.none():
        configuration.rotate_secrets(Keyring.from_settings())


# ---------------------------------------------------------------- test calls and dead letters


def test_a_test_call_is_recorded_without_its_body_or_headers(
    trail: Trail, hello: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = InvokeResult(status=201, headers={}, body=MARKER.encode(), duration_ms=1.0, request_id="r")
    monkeypatch.setattr(local.LocalBackend, "invoke", lambda self, *args, **kwargs: answer)
    monkeypatch.setattr(local.LocalBackend, "logs", lambda self, *args, **kwargs: [])
    with trail.one("invocation.create", "hello") as found:
        invocation = invocations.invocation_create(
            function=hello,
            method="POST",
            path=f"/hello?token={MARKER}",
            headers={"X-Key": MARKER},
            body=MARKER,
        )
    assert found[0].changes == {
        "method": [None, "POST"], "path": [None, "/hello"], "status": [None, 201],
        "request_id": [None, invocation.request_id],
    }  # fmt: skip
    assert MARKER not in _json(found[0])
    with trail.none(), pytest.raises(ValidationFailed):
        invocations.invocation_create(function=hello, method="GET", path="hello", headers={}, body="")


def test_dead_letters_redrive_and_purge(
    trail: Trail, hello: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local.LocalBackend, "redrive_dead_letters", lambda self, *args: ["r1", "r2"])
    monkeypatch.setattr(local.LocalBackend, "purge_dead_letters", lambda self, *args: 3)
    with trail.one("dead-letter.redrive", "hello") as found:
        deadletters.dead_letters_redrive(function=hello)
    assert found[0].changes == {"count": [None, 2], "to": [None, "their own target"]}
    with trail.one("dead-letter.purge", "hello") as found:
        deadletters.dead_letters_purge(function=hello)
    assert found[0].changes == {"count": [None, 3]}
    with trail.none(), pytest.raises(ValidationFailed):
        deadletters.dead_letters_purge(function=hello, ids=["v9/1"])


# ---------------------------------------------------------------- outside a request's transaction


@pytest.mark.django_db(transaction=True)
def test_the_platform_s_own_changes_open_their_transactions(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What runs without a request's transaction (tasks, hooks, calls to the data plane) opens its
    own for its record: nothing here runs inside an outer ``transaction.atomic``."""
    from functions import tasks

    monkeypatch.setattr(tasks.deploy_task, "delay", lambda *args: None)  # no worker: only the records
    monkeypatch.setattr(tasks.build_task, "delay", lambda *args: None)
    answer = InvokeResult(status=200, headers={}, body=b"", duration_ms=1.0, request_id="r")
    monkeypatch.setattr(local.LocalBackend, "invoke", lambda self, *args, **kwargs: answer)
    monkeypatch.setattr(local.LocalBackend, "logs", lambda self, *args, **kwargs: [])
    monkeypatch.setattr(local.LocalBackend, "purge_dead_letters", lambda self, *args: 0)
    with tenant_context(world.acme):
        assert not transaction.get_connection().in_atomic_block
        hello = functions.function_create(name="hello")
        trail = Trail(world.acme)
        steps: list[Callable[[], object]] = [
            lambda: invocations.invocation_create(
                function=hello, method="GET", path="/hello", headers={}, body=""
            ),
            lambda: deadletters.dead_letters_purge(function=hello),
            lambda: deployment_runs.deployment_fail(
                deployment_id=deployments.deployment_create(function=hello, cause="x").pk, reason="stopped"
            ),
            lambda: build_runs.build_run(build_id=_changed_draft_build(hello).pk),
            lambda: _deployed(hello),  # live: a resume redeploys it
            lambda: deployments.tenant_resumed(),
        ]
        trail.mark()
        for step in steps:
            step()
        actions = [r.action for r in trail.new()]
    assert actions == [
        "invocation.create", "dead-letter.purge", "deployment.create", "deployment.finish", "build.create",
        "function.code", "build.finish", "deployment.create",
    ]  # fmt: skip


def _changed_draft_build(function: Function) -> Build:
    build = builds.build_create(function=function)
    functions.draft_update_files(function=function, files={"main.py": "x = 3\n"})
    return build
