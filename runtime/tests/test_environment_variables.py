"""Environment variables per function: a ConfigMap annotated ``ENVIRONMENT_VARIABLES_ANNOTATION``
and referenced by the Function (``spec.configmaps``) puts its data in the function's ``os.environ``,
before its module is imported, on both executors; a change re-specializes.

From the parsing rules, through one worker (a real zygote's), to a real ``python -m runtime``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.errors import InvalidObject
from runtime.objects import (
    ENVIRONMENT_VARIABLES_ANNOTATION,
    MAX_CONFIGMAP_BYTES,
    parse_configmap,
    parse_function,
)
from runtime.tests.test_worker_support import Reply, Rig, call, rig
from runtime.worker.environment import Variables, checked
from testsupport.fission import configmap, environment, function, httptrigger, package_literal
from testsupport.runtime import TOKEN, RuntimeProcess

NS = "faas-acme"
R = "/acme"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# What the function sees of its variables: at import (module level) and in a call.
SHOWS = """
import os

AT_IMPORT = os.environ.get("GREETING")
LOADED = os.urandom(8).hex()  # names this import of the module (one per specialization)

def main():
    return {
        "import": AT_IMPORT,
        "call": os.environ.get("GREETING"),
        "level": os.environ.get("LEVEL"),
        "home": os.environ.get("HOME"),
        "loaded": LOADED,
    }
"""


# ---------------------------------------------------------------- parsing


def test_a_configmap_of_environment_variables_parses():
    parsed = parse_configmap(configmap(NS, "hello-v3-env", {"GREETING": "hi", "LEVEL": "3", "_x": ""}), NS)
    assert parsed.environment_variables
    assert parsed.data == {"GREETING": "hi", "LEVEL": "3", "_x": ""}
    assert (parsed.meta.namespace, parsed.meta.name) == (NS, "hello-v3-env")


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "FISSION_X", "FAAS_TOKEN", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH",
             "PYTHONHOME"],
)  # fmt: skip
def test_the_platforms_names_are_refused(name):
    with pytest.raises(InvalidObject, match="reserved") as error:
        parse_configmap(configmap(NS, "f-env", {"OK": "1", name: "/evil"}), NS)
    assert error.value.field == f"data.{name}"


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A=B", "A.B", "É"])
def test_a_variable_name_is_a_posix_name(name):
    with pytest.raises(InvalidObject) as error:
        parse_configmap(configmap(NS, "f-env", {name: "x"}), NS)
    assert error.value.field == f"data.{name}"


@pytest.mark.parametrize(("value", "message"), [(3, "strings"), (None, "strings"), ("a\0b", "NUL"),
                                                ({"x": "y"}, "strings")])  # fmt: skip
def test_a_variable_value_is_text(value, message):
    with pytest.raises(InvalidObject, match=message) as error:
        parse_configmap(configmap(NS, "f-env", {"NAME": value}), NS)
    assert error.value.field == "data.NAME"


def test_environment_variables_are_data_only():
    obj = configmap(NS, "f-env", {"A": "1"})
    obj["binaryData"] = {"B": "AAE="}
    with pytest.raises(InvalidObject, match="binaryData") as error:
        parse_configmap(obj, NS)
    assert error.value.field == "binaryData"
    obj["data"] = []
    with pytest.raises(InvalidObject) as error:
        parse_configmap(obj, NS)
    assert error.value.field == "data"


def test_any_other_configmap_is_only_stored():
    obj = configmap(NS, "settings", {"PATH": "kept as a file's content", "config.json": "{}"},
                    environment_variables=False)  # fmt: skip
    obj["binaryData"] = {"logo.png": "iVBORw=="}
    parsed = parse_configmap(obj, NS)
    assert not parsed.environment_variables
    assert parsed.data["PATH"] == "kept as a file's content"
    assert parsed.binary_data == {"logo.png": b"\x89PNG"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda o: o["data"].update({"a b": "x"}), "data.a b"),
        (lambda o: o.update(binaryData={"k": "not base64!"}), "binaryData.k"),
        (lambda o: o.update(binaryData={"k": "AA=="}, data={"k": "x"}), "binaryData.k"),
        (lambda o: o["metadata"].update(annotations={ENVIRONMENT_VARIABLES_ANNOTATION: "yes"}),
         f"metadata.annotations[{ENVIRONMENT_VARIABLES_ANNOTATION}]"),
        (lambda o: o.update(data={"big": "x" * MAX_CONFIGMAP_BYTES}), "data"),
        (lambda o: o.update(apiVersion="fission.io/v1"), "apiVersion"),
        (lambda o: o["metadata"].update(namespace="faas-other"), "metadata.namespace"),
    ],
)  # fmt: skip
def test_configmap_rules_name_the_field(change, field):
    obj = configmap(NS, "settings", {"a": "1"}, environment_variables=False)
    change(obj)
    with pytest.raises(InvalidObject) as error:
        parse_configmap(obj, NS)
    assert error.value.field == field


def test_a_function_references_configmaps_of_its_own_namespace_in_order():
    parsed = parse_function(function(NS, "f", package="p", configmaps=("b-env", "a-env")), NS)
    assert parsed.configmaps == ("b-env", "a-env")
    portal = function(NS, "g", package="p")
    portal["spec"].update(secrets=[], configmaps=[])  # as the portal's manifests send it
    assert parse_function(portal, NS).configmaps == ()
    without_namespace = function(NS, "h", package="p")
    without_namespace["spec"]["configmaps"] = [{"name": "h-env"}]  # the namespace left out: its own
    assert parse_function(without_namespace, NS).configmaps == ("h-env",)


@pytest.mark.parametrize(
    ("refs", "field"),
    [
        ([{"namespace": "faas-other", "name": "f-env"}], "spec.configmaps[0].namespace"),
        (["f-env"], "spec.configmaps[0]"),
        ([{"namespace": NS, "name": "f-env"}, {"namespace": NS}], "spec.configmaps[1].name"),
        ([{"namespace": NS, "name": "Not_A_Label"}], "spec.configmaps[0].name"),
        ({"name": "f-env"}, "spec.configmaps"),
    ],
)
def test_bad_configmap_references_name_the_field(refs, field):
    obj = function(NS, "f", package="p")
    obj["spec"]["configmaps"] = copy.deepcopy(refs)
    with pytest.raises(InvalidObject) as error:
        parse_function(obj, NS)
    assert error.value.field == field


# ---------------------------------------------------------------- the worker


def test_variables_replace_the_previous_functions_and_put_back_what_they_hid(monkeypatch):
    monkeypatch.setenv("ENVTEST_KEPT", "before")
    monkeypatch.delenv("ENVTEST_NEW", raising=False)
    variables = Variables()
    assert variables.set({"ENVTEST_KEPT": "one", "ENVTEST_NEW": "two"}) == {}
    assert (os.environ["ENVTEST_KEPT"], os.environ["ENVTEST_NEW"]) == ("one", "two")
    previous = variables.set({"ENVTEST_NEW": "three"})
    assert previous == {"ENVTEST_KEPT": "one", "ENVTEST_NEW": "two"}
    assert (os.environ["ENVTEST_KEPT"], os.environ["ENVTEST_NEW"]) == ("before", "three")
    variables.set({})
    assert os.environ["ENVTEST_KEPT"] == "before"
    assert "ENVTEST_NEW" not in os.environ


@pytest.mark.parametrize("variables", [{"PATH": "/x"}, {"A=B": "x"}, {"A": "\0"}, {"A": 1}, ["A"]])
def test_the_worker_checks_the_variables_again(variables):
    with pytest.raises(ValueError, match="environment_variables"):
        checked(variables)


@pytest.fixture(scope="module")
def harness() -> Iterator[Rig]:
    with rig() as r:
        yield r


def _specialize(path: str, code: Any, **extensions: Any) -> Reply:
    body = {"filepath": str(code), "functionName": "", **extensions}
    return call(path, "POST", "/v2/specialize", json.dumps(body), {"X-Fission-Request-ID": "env"})


def test_a_worker_sets_the_variables_before_importing_and_replaces_them_when_specialized_again(harness):
    path = harness.worker(1, env={"HOME": "/home/worker", "PATH": "/usr/bin:/bin"})
    first = harness.code({"main.py": SHOWS})
    assert _specialize(path, first, environment_variables={"GREETING": "hi", "LEVEL": "3"}).status == 200
    seen = call(path).json()
    assert (seen["import"], seen["call"], seen["level"], seen["home"]) == ("hi", "hi", "3", "/home/worker")

    # A second specialization: the new function's variables only (LEVEL is gone).
    second = harness.code({"main.py": SHOWS})
    assert _specialize(path, second, environment_variables={"GREETING": "hello"}).status == 200
    seen = call(path).json()
    assert (seen["import"], seen["call"], seen["level"]) == ("hello", "hello", None)

    # Refused: nothing is set, and the function loaded before still runs with its own.
    refused = _specialize(path, second, environment_variables={"GREETING": "x", "HOME": "/"})
    assert (refused.status, "reserved" in refused.text) == (400, True)
    broken = harness.code({"main.py": "raise RuntimeError('does not load')\n"})
    assert _specialize(path, broken, environment_variables={"GREETING": "broken"}).status == 500
    seen = call(path).json()
    assert (seen["call"], seen["home"]) == ("hello", "/home/worker")


# ---------------------------------------------------------------- the runtime, end to end


def _ok(response: httpx.Response) -> None:
    assert response.status_code in (200, 201), response.text


def _deploy(runtime: RuntimeProcess, name: str, *, namespace: str = NS, **fn: Any) -> None:
    _ok(runtime.apply(environment(namespace, "python", poolsize=1)))
    _ok(runtime.apply(package_literal(namespace, f"{name}-pkg", SHOWS)))
    _ok(runtime.apply(function(namespace, name, package=f"{name}-pkg", **fn)))
    root = "/" + namespace.removeprefix("faas-")
    _ok(runtime.apply(httptrigger(namespace, name, f"{root}/{name}", function_name=name)))


def _probe(runtime: RuntimeProcess, name: str, namespace: str = NS) -> httpx.Response:
    url = f"{runtime.control}/apis/fission.io/v1/namespaces/{namespace}/functions/{name}/specialize"
    return httpx.post(url, headers=AUTH, timeout=60)


def _configmaps(runtime: RuntimeProcess, namespace: str = NS, name: str = "") -> str:
    return f"{runtime.control}/api/v1/namespaces/{namespace}/configmaps" + (f"/{name}" if name else "")


@pytest.mark.parametrize("executor", ["poolmgr", "newdeploy"])
def test_the_function_sees_its_variables_and_the_next_call_sees_a_change(runtime, executor):
    _ok(runtime.apply(configmap(NS, "hello-v3-env", {"GREETING": "hi", "LEVEL": "3"})))
    _deploy(runtime, "hello", executor=executor, configmaps=("hello-v3-env",))
    first = runtime.call(f"{R}/hello").json()
    assert (first["import"], first["call"], first["level"]) == ("hi", "hi", "3")
    assert first["home"] == "/tmp"  # the runtime's own: no ConfigMap may set it

    _ok(runtime.apply(configmap(NS, "hello-v3-env", {"GREETING": "hello"})))
    second = runtime.call(f"{R}/hello").json()
    assert (second["import"], second["call"], second["level"]) == ("hello", "hello", None)
    assert second["loaded"] != first["loaded"]  # re-specialized: the old worker retired

    # The Function stops referencing it: the next call runs without.
    _ok(runtime.apply(function(NS, "hello", package="hello-pkg", executor=executor)))
    assert runtime.call(f"{R}/hello").json()["call"] is None


def test_later_configmaps_win_and_other_configmaps_set_nothing(runtime):
    _ok(runtime.apply(configmap(NS, "base-env", {"GREETING": "base", "LEVEL": "1"})))
    _ok(runtime.apply(configmap(NS, "override-env", {"GREETING": "override"})))
    _ok(runtime.apply(configmap(NS, "files", {"LEVEL": "from a file"}, environment_variables=False)))
    _deploy(runtime, "layered", configmaps=("base-env", "files", "override-env"))
    seen = runtime.call(f"{R}/layered").json()
    assert (seen["call"], seen["level"]) == ("override", "1")


def test_a_function_waits_for_its_configmap(runtime):
    _deploy(runtime, "waiting", configmaps=("waiting-env",))
    assert _probe(runtime, "waiting").status_code == 404  # not deployable yet, as without its package
    assert runtime.call(f"{R}/waiting").status_code == 502
    _ok(runtime.apply(configmap(NS, "waiting-env", {"GREETING": "at last"})))
    assert runtime.call(f"{R}/waiting").json()["call"] == "at last"
    assert httpx.delete(_configmaps(runtime, NS, "waiting-env"), headers=AUTH).status_code == 200
    assert runtime.call(f"{R}/waiting").status_code == 502  # its workers retired with it


@pytest.mark.parametrize("name", ["PATH", "HOME", "FISSION_X", "LD_PRELOAD", "PYTHONPATH"])
def test_the_control_api_refuses_the_platforms_names(runtime, name):
    response = runtime.apply(configmap(NS, "evil-env", {"GREETING": "hi", name: "/tmp/evil"}))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["detail"]) == ("invalid", {"field": f"data.{name}"})
    assert name in error["message"]
    assert httpx.get(_configmaps(runtime, NS, "evil-env"), headers=AUTH).status_code == 404


def test_another_namespaces_function_cannot_use_the_variables(runtime):
    _ok(runtime.apply(configmap(NS, "secret-env", {"GREETING": "acme's"})))
    other = "faas-other"
    _ok(runtime.apply(environment(other, "python", poolsize=0)))
    _ok(runtime.apply(package_literal(other, "thief-pkg", SHOWS)))
    across = function(other, "thief", package="thief-pkg")
    across["spec"]["configmaps"] = [{"namespace": NS, "name": "secret-env"}]
    refused = runtime.apply(across)
    assert refused.status_code == 422
    assert refused.json()["error"]["detail"] == {"field": "spec.configmaps[0].namespace"}
    # The same name in its own namespace is another ConfigMap, which does not exist.
    _ok(runtime.apply(function(other, "thief", package="thief-pkg", configmaps=("secret-env",))))
    assert _probe(runtime, "thief", other).status_code == 404


def test_configmaps_are_read_listed_and_deleted(runtime):
    created = runtime.apply(configmap(NS, "crud-env", {"GREETING": "hi"}))
    assert created.status_code == 201
    assert created.json()["metadata"]["resourceVersion"]
    one = httpx.get(_configmaps(runtime, NS, "crud-env"), headers=AUTH).json()
    assert (one["kind"], one["data"]) == ("ConfigMap", {"GREETING": "hi"})
    assert one["metadata"]["annotations"] == {ENVIRONMENT_VARIABLES_ANNOTATION: "true"}
    listed = httpx.get(_configmaps(runtime), headers=AUTH).json()["items"]
    assert [item["metadata"]["name"] for item in listed] == ["crud-env"]
    assert httpx.get(_configmaps(runtime, "faas-other"), headers=AUTH).json() == {"items": []}
    assert httpx.get(_configmaps(runtime), timeout=10).status_code == 401
    assert httpx.delete(_configmaps(runtime, NS, "crud-env"), headers=AUTH).status_code == 200
    assert httpx.get(_configmaps(runtime, NS, "crud-env"), headers=AUTH).status_code == 404
