"""Environment variables per function (issue 14, deliver 1): validated in one place
(functions/config.py: check_environment_variables), taken by the API and the settings form,
frozen into each version, and sent as the Function's ConfigMap (dataplane/manifests.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django_tenants.utils import schema_context

from dataplane import manifests
from functions import config, forms
from functions.models import Function
from runtime import objects as runtime_objects
from testsupport.fixtures import error_of
from testsupport.schemas import schema_errors

API = "/t/acme/api/v1/functions"
ARCHIVE = manifests.ArchiveRef(url="http://portal.internal/packages/abc.zip", sha256="ab" * 32)
NS = "faas-acme"


@pytest.mark.parametrize(
    "variables",
    [{}, {"GREETING": "hi"}, {"_x": ""}, {"a1": "b=c", "LONG": "x" * 4000}, {"UNICODE": "héllo\nworld"}],
)
def test_good_variables_are_taken_as_they_are(variables: dict[str, str]) -> None:
    assert config.check_environment_variables(variables) == variables


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ([("A", "b")], "object of names"),
        ({"1ABC": "x"}, "'1ABC' is not a variable name"),
        ({"A-B": "x"}, "'A-B' is not a variable name"),
        ({"": "x"}, "'' is not a variable name"),
        ({"X" * 129: "x"}, "a name has at most 128 characters"),
        ({"PATH": "/tmp"}, "PATH is reserved for the platform"),
        ({"HOME": "/"}, "HOME is reserved"),
        ({"LD_PRELOAD": "/x.so"}, "LD_PRELOAD is reserved"),
        ({"PYTHONPATH": "/x"}, "PYTHONPATH is reserved"),
        ({"FISSION_FUNCTION": "x"}, "FISSION_FUNCTION is reserved"),
        ({"FAAS_X": "x"}, "FAAS_X is reserved"),
        ({"N": 3}, "the value of N must be a string"),
        ({"N": "a\0b"}, "the value of N must not hold a NUL"),
        ({"A": "x" * 4000, "B": "y" * 100}, "4102 bytes in all; at most 4096"),
    ],
)
def test_bad_variables_are_refused_saying_which_and_why(variables: Any, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config.check_environment_variables(variables)
    assert says in " ".join(caught.value.messages)


def test_the_form_takes_name_value_lines_and_shows_them_so() -> None:
    form = forms.SettingsForm(data={**_form_defaults(), "environment_variables": "A=1\r\n\r\nB = x=y \nC="})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["environment_variables"] == {"A": "1", "B": " x=y ", "C": ""}
    shown = forms.SettingsForm(initial={"environment_variables": {"A": "1", "B": "2"}})
    assert "A=1\nB=2" in str(shown["environment_variables"])


@pytest.mark.parametrize(
    ("text", "says"),
    [("A=1\nnot a pair", "Line 2: write NAME=value"), ("A=1\nA=2", "Line 2: A is given twice")],
)
def test_the_form_refuses_a_line_that_is_not_a_pair_or_a_name_twice(text: str, says: str) -> None:
    form = forms.SettingsForm(data={**_form_defaults(), "environment_variables": text})
    assert not form.is_valid()
    assert says in " ".join(str(error) for error in form.errors["environment_variables"])


def _form_defaults() -> dict[str, Any]:
    values = {
        s.name: s.default for s in config.SETTINGS if s.default is not None and not (s.mapping or s.names)
    }
    return {name: str(value) for name, value in values.items()}


def test_the_configmap_is_valid_parsed_by_the_runtime_and_referenced_by_the_function() -> None:
    spec = manifests.FunctionSpec(**{**_spec_fields(), "environment_variables": {"GREETING": "hi"}})
    package, variables, function = manifests.version_manifests(NS, "hello", 2, spec, ARCHIVE, tenant="acme")
    assert (package["kind"], variables["kind"], function["kind"]) == ("Package", "ConfigMap", "Function")
    assert variables["metadata"]["name"] == "hello-v2-env"
    assert variables["metadata"]["annotations"] == {runtime_objects.ENVIRONMENT_VARIABLES_ANNOTATION: "true"}
    assert function["spec"]["configmaps"] == [{"namespace": NS, "name": "hello-v2-env"}]
    assert schema_errors(variables) == []
    assert schema_errors(function) == []
    assert runtime_objects.parse_configmap(variables, NS).data == {"GREETING": "hi"}


def test_a_function_without_variables_has_no_configmap() -> None:
    spec = manifests.FunctionSpec(**_spec_fields())
    _package, function = manifests.version_manifests(NS, "hello", None, spec, ARCHIVE, tenant="acme")
    assert function["spec"]["configmaps"] == []
    assert manifests.ENVIRONMENT_VARIABLES_SHA256_ANNOTATION not in function["metadata"]["annotations"]


def _spec_fields() -> dict[str, Any]:
    return {"name": "hello", "environment": "python", **config.thawed({})}


@pytest.mark.django_db
def test_the_api_sets_shows_and_freezes_them_into_a_version(world: Any, api: Any) -> None:
    bob = api(world.bob)
    created = bob.post(
        f"{API}/", {"name": "hello", "environment_variables": {"GREETING": "hi"}}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["environment_variables"] == {"GREETING": "hi"}
    changed = bob.patch(
        f"{API}/hello/", {"environment_variables": {"GREETING": "hello", "N": "2"}}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert bob.get(f"{API}/hello/").json()["environment_variables"] == {"GREETING": "hello", "N": "2"}
    with schema_context(world.acme.schema_name):
        from functions.runs import builds as build_runs
        from functions.services import versions

        function = Function.objects.get(name="hello")
        build_runs.build_run(build_id=build_runs.build_new(function=function).pk)
        versions.version_publish(function=function)
    bob.patch(f"{API}/hello/", {"environment_variables": {}}, format="json")
    shown = bob.get(f"{API}/hello/versions/1/").json()
    assert shown["config"]["environment_variables"] == {"GREETING": "hello", "N": "2"}
    assert bob.get(f"{API}/hello/").json()["environment_variables"] == {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("variables", "says"),
    [({"PATH": "/x"}, "PATH is reserved for the platform"), ({"A-B": "1"}, "is not a variable name"),
     (["A=1"], "object of names"), ({"A": 1}, "must be a string"), ({"A": "\u0000"}, "NUL")],
)  # fmt: skip
def test_the_api_refuses_bad_variables_and_changes_nothing(
    world: Any, api: Any, variables: Any, says: str
) -> None:
    bob = api(world.bob)
    assert (
        bob.post(
            f"{API}/", {"name": "hello", "environment_variables": {"KEEP": "me"}}, format="json"
        ).status_code
        == 201
    )
    response = bob.patch(f"{API}/hello/", {"environment_variables": variables}, format="json")
    assert response.status_code == 400, response.content
    detail = error_of(response)["detail"]
    assert says in " ".join(detail["environment_variables"])
    assert bob.get(f"{API}/hello/").json()["environment_variables"] == {"KEEP": "me"}
