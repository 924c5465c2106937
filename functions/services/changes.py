"""Changes that take effect on the data plane. Each writes, then queues the deployment that
applies it, in one transaction: when the deployment is refused (the quota), the change is rolled
back with it and the tenant keeps exactly what it had. Views, API views and the CLI call these;
the services they combine stay usable on their own (tests, imports).

Each is one audit record: the change opens the record of the service it calls (the service's
own then folds into it) and its deployments are listed as the record's effects."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from functions import selectors, specs
from functions.models import (
    Alias,
    ConfigMap,
    DeploymentState,
    Draft,
    Environment,
    Function,
    QueueTrigger,
    Secret,
    TimeTrigger,
    Trigger,
)
from functions.services import configuration, deployments, events, functions, triggers, versions


@transaction.atomic
def function_update_and_deploy(*, function: Function, user: str = "", **settings: Any) -> Function:
    with functions.record_function_update(function) as record:
        function = functions.function_update(function=function, **settings)
        deployments.deployment_create(function=function, cause="settings changed", user=user)
        return record.done(function)


@transaction.atomic
def draft_file_save_and_deploy(
    *, function: Function, path: str, text: str, revision: int, user: str
) -> Draft:
    """draft_update_and_deploy for one file of the draft (the Code tab's Save & deploy): the
    save and its deployment in one transaction and one record ("function.code", the deployment
    its effect); a deployment the quota refuses rolls the save back. Not draft_update_and_deploy
    itself: it replaces the draft with inline files (an uploaded zip would be lost) and has no
    revision guard."""
    with functions.record_draft_update(function) as record:
        draft = functions.draft_file_save(function=function, path=path, text=text, revision=revision)
        deployments.deployment_create(function=function, cause="deploy from the editor", user=user)
        return record.done(draft)


@transaction.atomic
def draft_update_and_deploy(*, function: Function, files: dict[str, str], user: str = "") -> Draft:
    with functions.record_draft_update(function) as record:
        draft = functions.draft_update_files(function=function, files=files)
        deployments.deployment_create(function=function, cause="deploy from the editor", user=user)
        return record.done(draft)


@transaction.atomic
def alias_set_and_deploy(*, function: Function, user: str = "", **alias: Any) -> Alias:
    with versions.record_alias_set(function, alias["name"]) as record:
        saved = versions.alias_set(function=function, **alias)
        deployments.deployment_create(function=function, cause=f"alias {saved.name} changed", user=user)
        return record.done(saved)


@transaction.atomic
def alias_delete_and_deploy(*, alias: Alias, user: str = "") -> None:
    function, name = alias.function, alias.name
    with versions.record_alias_delete(alias):
        versions.alias_delete(alias=alias)
        deployments.deployment_create(function=function, cause=f"alias {name} deleted", user=user)


@transaction.atomic
def trigger_save_and_deploy(*, function: Function, user: str = "", **trigger: Any) -> Trigger:
    with triggers.record_trigger_save(function, trigger["name"], trigger.get("trigger")) as record:
        saved = triggers.trigger_save(function=function, **trigger)
        done = "changed" if trigger.get("trigger") else "added"
        deployments.deployment_create(function=function, cause=f"trigger {saved.name} {done}", user=user)
        return record.done(saved)


@transaction.atomic
def trigger_delete_and_deploy(*, trigger: Trigger, user: str = "") -> None:
    function, name = trigger.function, trigger.name
    with triggers.record_trigger_delete(trigger):
        triggers.trigger_delete(trigger=trigger)
        deployments.deployment_create(function=function, cause=f"trigger {name} deleted", user=user)


@transaction.atomic
def time_trigger_save_and_deploy(*, function: Function, user: str = "", **trigger: Any) -> TimeTrigger:
    with events.record_time_trigger_save(function, trigger["name"], trigger.get("trigger")) as record:
        saved = events.time_trigger_save(function=function, **trigger)
        _deploy_for(saved, "time trigger", "changed" if trigger.get("trigger") else "added", user)
        return record.done(saved)


@transaction.atomic
def queue_trigger_save_and_deploy(*, function: Function, user: str = "", **trigger: Any) -> QueueTrigger:
    with events.record_queue_trigger_save(function, trigger["name"], trigger.get("trigger")) as record:
        saved = events.queue_trigger_save(function=function, **trigger)
        _deploy_for(saved, "queue trigger", "changed" if trigger.get("trigger") else "added", user)
        return record.done(saved)


def _deploy_for(trigger: TimeTrigger | QueueTrigger, kind: str, what: str, user: str) -> None:
    deployments.deployment_create(function=trigger.function, cause=f"{kind} {trigger.name} {what}", user=user)


@transaction.atomic
def event_trigger_delete_and_deploy(*, trigger: TimeTrigger | QueueTrigger, user: str = "") -> None:
    function, name = trigger.function, trigger.name
    kind = "time trigger" if isinstance(trigger, TimeTrigger) else "queue trigger"
    with events.record_event_trigger_delete(trigger):
        events.event_trigger_delete(trigger=trigger)
        deployments.deployment_create(function=function, cause=f"{kind} {name} deleted", user=user)


# A function with a deployment in one of these states has (or is getting) data-plane objects.
_ON_DATA_PLANE = [state for state in DeploymentState if state != DeploymentState.FAILED]


@transaction.atomic
def environment_update_and_deploy(*, environment: Environment, user: str = "", **fields: Any) -> Environment:
    """Change the environment, then redeploy each function that uses it and is on the data plane
    (a live or running deployment: one never deployed stays so), a deployment each. Nothing is
    queued when the change leaves the Fission Environment as it was."""
    before = specs.environment_spec(environment)
    with functions.record_environment_update(environment) as record:
        environment = functions.environment_update(environment=environment, **fields)
        if specs.environment_spec(environment) != before:
            _redeploy_environment_users(environment, user)
        return record.done(environment)


def _redeploy_environment_users(environment: Environment, user: str) -> None:
    users = selectors.environment_usage().get(environment.name, [])
    on_data_plane = Function.objects.filter(name__in=users, deployments__state__in=_ON_DATA_PLANE)
    cause = f"environment {environment.name} changed"
    for function in on_data_plane.distinct().order_by("name"):
        deployments.deployment_create(function=function, cause=cause, user=user)


@transaction.atomic
def secret_save_and_deploy(*, name: str, data: dict[str, str], user: str = "") -> Secret:
    """Save the Secret, then redeploy the functions that use it and are on the data plane."""
    with configuration.record_object_save(Secret, name) as record:
        secret = configuration.secret_save(name=name, data=data, user=user)
        _redeploy_users("secrets", name, f"secret {name} changed", user)
        record.done(secret)
    return secret


@transaction.atomic
def configmap_save_and_deploy(*, name: str, data: dict[str, str], user: str = "") -> ConfigMap:
    """Save the ConfigMap, then redeploy the functions that use it and are on the data plane."""
    with configuration.record_object_save(ConfigMap, name) as record:
        configmap = configuration.configmap_save(name=name, data=data, user=user)
        _redeploy_users("configmaps", name, f"config map {name} changed", user)
        record.done(configmap)
    return configmap


def _redeploy_users(setting: str, name: str, cause: str, user: str) -> None:
    users = configuration.usage(setting).get(name, [])
    on_data_plane = Function.objects.filter(name__in=users, deployments__state__in=_ON_DATA_PLANE)
    for function in on_data_plane.distinct().order_by("name"):
        deployments.deployment_create(function=function, cause=cause, user=user)


@transaction.atomic
def version_restore_and_deploy(*, function: Function, number: int, user: str = "") -> Draft:
    """Restore version ``number`` into the draft (versions.version_restore), then deploy the
    draft: one record, "version.restore", its deployment listed as the effect."""
    with versions.record_version_restore(function, number) as record:
        draft = versions.version_restore(function=function, number=number)
        deployments.deployment_create(function=function, cause=f"version {number} restored", user=user)
        return record.done(draft)
