"""A function's settings are declared once (functions/config.py), and a version keeps the
configuration it was published with, readable whatever settings were added since."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django_tenants.utils import schema_context

from dataplane.manifests import FunctionSpec
from functions import config, forms
from functions.api import serializers
from functions.models import Function, Version
from functions.runs import builds as build_runs
from functions.runs import deployments as deployment_runs
from functions.services import deployments, versions
from functions.services import functions as function_services
from functions.specs import spec_from_config
from testsupport.fake_kubernetes import FakeKubernetes
from testsupport.fixtures import error_of

API = "/t/{t}/api/v1/functions"
# What a version published before target_cpu, cpu_millis and config_version existed stored.
OLD_CONFIG = {
    "name": "hello", "environment": "python", "entrypoint": "main", "executor": "newdeploy",
    "min_scale": 0, "max_scale": 2, "concurrency": 3, "requests_per_pod": 1, "timeout_s": 30,
    "idle_timeout_s": 120, "memory_mb": None,
}  # fmt: skip


def test_every_interface_takes_exactly_the_declared_settings() -> None:
    spec_fields = {f.name for f in dataclasses.fields(FunctionSpec)}
    assert spec_fields == {"name", "environment", *config.NAMES}
    assert set(forms.SettingsForm().fields) == {"environment", *config.NAMES}  # the picker
    update = serializers.FunctionUpdateSerializer().fields
    assert set(update) == {"environment", *config.NAMES}
    for setting in config.SETTINGS:
        field: Any = Function._meta.get_field(setting.name)
        assert field.get_default() == setting.default or (setting.default is None and field.null)


def test_an_old_configuration_takes_the_defaults_of_newer_settings() -> None:
    thawed = config.thawed({**OLD_CONFIG, "gone_setting": 7})
    assert thawed["target_cpu"] == 80
    assert thawed["environment_variables"] == {}
    assert thawed["environment_variables"] is not config.thawed(OLD_CONFIG)["environment_variables"]
    assert thawed["cpu_millis"] is None
    assert "gone_setting" not in thawed
    assert "config_version" not in thawed
    spec = spec_from_config(OLD_CONFIG)
    assert (spec.executor, spec.max_scale, spec.target_cpu) == ("newdeploy", 2, 80)


@pytest.mark.django_db
def test_a_published_version_records_its_config_version(world: Any) -> None:
    with schema_context(world.acme.schema_name):
        function = function_services.function_create(name="hello")
        build_runs.build_run(build_id=build_runs.build_new(function=function).pk)
        version = versions.version_publish(function=function)
    assert version.config["config_version"] == config.CONFIG_VERSION
    assert {"name", "environment", *config.NAMES} <= set(version.config)


@pytest.mark.django_db
def test_a_version_stored_without_a_newer_setting_deploys_and_shows(
    kubernetes_portal: FakeKubernetes,
    make_tenant: Any,
    make_user: Any,
    api: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """On the kubernetes backend (the fake API server checks each object against Fission's CRDs),
    because the local runtime would need a portal server to fetch the package from."""
    tenant = make_tenant("acme", admin=make_user("alice"))
    with schema_context(tenant.schema_name), django_capture_on_commit_callbacks(execute=False):
        function = function_services.function_create(name="hello", executor="newdeploy")
        build_runs.build_run(build_id=build_runs.build_new(function=function).pk)
        version = versions.version_publish(function=function)
        Version.objects.filter(pk=version.pk).update(config=OLD_CONFIG)  # as an older release stored it
        versions.alias_set(function=function, name="live", version=1)
        deployment = deployments.deployment_create(function=function, cause="test")
        result = deployment_runs.deployment_run(deployment_id=deployment.pk)
    assert result is not None
    assert result.state == "live", result.reason
    applied = {f["metadata"]["name"]: f for f in kubernetes_portal.objects("functions", "faas-acme")}
    strategy = applied["hello-v1"]["spec"]["InvokeStrategy"]["ExecutionStrategy"]
    shape = (strategy["ExecutorType"], strategy["MaxScale"], strategy["TargetCPUPercent"])
    assert shape == ("newdeploy", 2, 80)

    shown = api(tenant.memberships.get().user).get(API.format(t="acme") + "/hello/versions/1/")
    assert shown.status_code == 200
    assert shown.json()["config"] == config.thawed(OLD_CONFIG)
    assert shown.json()["config"]["target_cpu"] == 80


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"), [("min_scale", 101), ("target_cpu", 0), ("concurrency", 5001), ("cpu_millis", 5)]
)
def test_the_api_refuses_a_setting_out_of_its_declared_range(
    world: Any, api: Any, field: str, value: int
) -> None:
    response = api(world.bob).post(API.format(t="acme") + "/", {"name": "ok", field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["detail"]
    with schema_context(world.acme.schema_name):
        assert not Function.objects.exists()
