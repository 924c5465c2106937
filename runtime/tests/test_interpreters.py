"""Each Environment runs its own Python (3.11, 3.12, 3.13) with the packages of Fission's image,
never the portal's interpreter or virtualenv: discovery and version parsing, the sandbox layout,
then a real runtime, sandboxed and not."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime import interpreters
from runtime.config import python_runtimes_dir
from runtime.errors import InvalidObject
from runtime.interpreters import Interpreter, Interpreters, PythonUnavailable
from runtime.objects import PYTHON_VERSION_ANNOTATION, parse_environment
from runtime.sandbox import tenant
from runtime.sandbox.host import SANDBOX_VIRTUALENV, SandboxUnavailable, python_layout
from runtime.sandbox.network import Grant, Slirp
from runtime.sandbox.tenant import Sandboxes, SandboxSettings, TenantSandbox
from runtime.tests.test_sandboxes import TOOLS, StubZygote
from testsupport.fission import environment, function, httptrigger, package_literal, zip_bytes
from testsupport.runtime import TOKEN, RuntimeProcess

REPOSITORY = Path(__file__).resolve().parents[2]
NS = "faas-acme"
VERSIONS = ("3.11", "3.12", "3.13")

# ------------------------------------------------------------------ discovery


def fake_virtualenv(root: Path, version: str, *, home: str | None = None, made_by: str | None = None,
                    complete: bool = True) -> Path:  # fmt: skip
    """What ``make runtimes`` leaves: ``python<version>/`` with bin/python, pyvenv.cfg, .installed."""
    venv = root / f"python{version}"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    home = home or f"/opt/pythons/{version}.1/bin"
    (venv / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\nversion = {made_by or version + '.1'}\n"
    )
    if complete:
        (venv / interpreters.INSTALLED_MARK).touch()
    return venv


def test_discovery_finds_complete_virtualenvs_of_the_version_they_are_named_for(tmp_path: Path) -> None:
    fake_virtualenv(tmp_path, "3.12", home="/root/.pyenv/versions/3.12.1/bin")
    fake_virtualenv(tmp_path, "3.11", complete=False)  # make runtimes did not finish it
    fake_virtualenv(tmp_path, "3.13", made_by="3.11.7")  # not what its name says
    (tmp_path / "python-other").mkdir()

    found = Interpreters.discover(tmp_path)

    assert found.versions == ["3.12"]
    assert found.found["3.12"] == Interpreter(
        version="3.12", venv=tmp_path / "python3.12", base=Path("/root/.pyenv/versions/3.12.1")
    )
    assert found.found["3.12"].python == tmp_path / "python3.12" / "bin" / "python"


def test_the_default_is_the_newest_version_found_by_number_not_by_name(tmp_path: Path) -> None:
    for version in ("3.9", "3.10"):
        fake_virtualenv(tmp_path, version)

    found = Interpreters.discover(tmp_path)

    assert found.versions == ["3.9", "3.10"]
    assert found.default == "3.10"
    assert Interpreters.discover(tmp_path / "nothing").default is None


def test_a_version_the_runtime_lacks_is_a_422_naming_what_it_has(tmp_path: Path) -> None:
    for version in VERSIONS:
        fake_virtualenv(tmp_path, version)
    found = Interpreters.discover(tmp_path)

    assert found.choose("3.12", field="f") == "3.12"
    assert found.choose(None, field="f") == "3.13"
    with pytest.raises(PythonUnavailable) as missing:
        found.choose("3.10", field="metadata.annotations[x]")
    assert missing.value.status == 422
    assert missing.value.message == "python 3.10 is not available on this runtime: 3.11, 3.12, 3.13 are"
    assert missing.value.field == "metadata.annotations[x]"
    with pytest.raises(InvalidObject, match=r"must be a Python version such as 3\.12"):
        found.choose("latest", field="f")
    with pytest.raises(PythonUnavailable, match=r"no Python runtime is installed in .*: run make runtimes"):
        Interpreters.discover(tmp_path / "nothing").choose(None, field="f")


# ------------------------------------------------------------------ an Environment's version


@pytest.fixture
def three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Interpreters:
    """This runtime has 3.11, 3.12 and 3.13, whatever the machine has."""
    for version in VERSIONS:
        fake_virtualenv(tmp_path, version)
    found = Interpreters.discover(tmp_path)
    monkeypatch.setattr(interpreters, "installed", lambda: found)
    return found


def env_object(*, image: str = "ghcr.io/fission/python-env", python: Any = None) -> dict[str, Any]:
    obj = environment(NS, "python")
    obj["spec"]["runtime"]["image"] = image
    if python is not None:
        obj["metadata"]["annotations"] = {PYTHON_VERSION_ANNOTATION: python}
    return obj


@pytest.mark.parametrize(
    ("image", "python", "expected"),
    [
        ("ghcr.io/fission/python-env", None, "3.13"),  # Fission's image: the newest Python
        ("ghcr.io/fission/python-env:latest", None, "3.13"),
        ("ghcr.io/fission/python-env-3.12:latest", None, "3.12"),
        ("python:3.11-alpine", None, "3.11"),
        ("registry.example/python-env-3.12.1:1.35", None, "3.12"),
        ("registry.example:3.11/python-env", None, "3.13"),  # only the last segment names it
        ("registry.example/env:2.3.12", None, "3.13"),  # the tail of another version is none
        ("ghcr.io/fission/python-env-3.12:latest", "3.11", "3.11"),  # the annotation wins
        ("ghcr.io/fission/python-env", "3.12", "3.12"),
    ],
)
def test_an_environment_runs_the_annotated_else_the_images_else_the_newest_python(
    three: Interpreters, image: str, python: str | None, expected: str
) -> None:
    assert parse_environment(env_object(image=image, python=python), NS).python == expected


@pytest.mark.parametrize(
    ("image", "python", "field"),
    [
        ("ghcr.io/fission/python-env", "3.10", f"metadata.annotations[{PYTHON_VERSION_ANNOTATION}]"),
        ("ghcr.io/fission/python-env-3.10:latest", None, "spec.runtime.image"),
    ],
)
def test_an_environment_asking_for_a_python_the_runtime_lacks_is_invalid(
    three: Interpreters, image: str, python: str | None, field: str
) -> None:
    with pytest.raises(PythonUnavailable) as invalid:
        parse_environment(env_object(image=image, python=python), NS)
    assert (invalid.value.message, invalid.value.field) == (
        "python 3.10 is not available on this runtime: 3.11, 3.12, 3.13 are",
        field,
    )


@pytest.mark.parametrize("python", [3.12, "3", "three"])
def test_a_malformed_version_annotation_is_invalid(three: Interpreters, python: object) -> None:
    with pytest.raises(InvalidObject) as invalid:
        parse_environment(env_object(python=python), NS)
    assert invalid.value.field == f"metadata.annotations[{PYTHON_VERSION_ANNOTATION}]"


# ------------------------------------------------------------------ what a sandbox gets


def test_a_sandbox_binds_the_virtualenv_at_a_fixed_path_and_its_installation_where_it_is(
    tmp_path: Path,
) -> None:
    interpreter = Interpreter("3.12", venv=tmp_path / "python3.12", base=Path("/root/.pyenv/versions/3.12.1"))

    binds, executable = python_layout(interpreter)

    assert binds == (
        ("/root/.pyenv/versions/3.12.1", "/root/.pyenv/versions/3.12.1"),
        (str(tmp_path / "python3.12"), SANDBOX_VIRTUALENV),
    )
    assert executable == f"{SANDBOX_VIRTUALENV}/bin/python"
    debian = Interpreter("3.11", venv=tmp_path / "python3.11", base=Path("/usr"))
    assert python_layout(debian)[0] == ((str(tmp_path / "python3.11"), SANDBOX_VIRTUALENV),)  # /usr is bound
    with pytest.raises(SandboxUnavailable):
        python_layout(Interpreter("3.13", venv=tmp_path, base=Path("/tmp/python")))


def test_a_workers_python3_is_its_own_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenant, "host_networks", lambda tools: ())
    venv = fake_virtualenv(tmp_path, "3.12")
    found = Interpreters.discover(tmp_path)
    tools = TOOLS
    on = Sandboxes(SandboxSettings(True, 300_000, 1024, 64), tmp_path, tools, None, found)
    off = Sandboxes(SandboxSettings(False, 300_000, 1024, 64), tmp_path, None, None, found)

    assert on.worker_path("3.12").split(":")[0] == f"{SANDBOX_VIRTUALENV}/bin"
    assert off.worker_path("3.12").split(":")[0] == str(venv / "bin")
    assert str(REPOSITORY / ".venv" / "bin") not in off.worker_path("3.12").split(":")


def test_an_unsandboxed_zygote_gets_only_the_worker_code_on_its_path(tmp_path: Path) -> None:
    sandboxes = Sandboxes(SandboxSettings(False, 300_000, 1024, 64), tmp_path, None, None,
                          Interpreters(root=tmp_path, found={}))  # fmt: skip

    code = sandboxes.worker_code()

    assert sorted(p.name for p in code.iterdir()) == ["runtime"]
    assert sorted(p.name for p in (code / "runtime").iterdir()) == ["__init__.py", "worker"]
    assert (
        code / "runtime" / "worker" / "zygote.py"
    ).resolve() == REPOSITORY / "runtime" / "worker" / "zygote.py"
    assert sandboxes.worker_code() == code  # idempotent


@pytest.fixture
def sandboxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandboxes:
    monkeypatch.setattr(tenant, "host_networks", lambda tools: ())
    return Sandboxes(SandboxSettings(True, 300_000, 1024, 64), tmp_path, TOOLS, None,
                     Interpreters(root=tmp_path, found={}))  # fmt: skip


def started(sandboxes: Sandboxes, namespace: str, python: str, pid: int) -> StubZygote:
    zygote = StubZygote()
    sandbox = TenantSandbox(namespace, python, zygote, pid=pid, applied=())  # type: ignore[arg-type]
    sandboxes.running[(namespace, python)] = sandbox
    (sandboxes.root / namespace / "etc").mkdir(parents=True, exist_ok=True)
    return zygote


async def test_egress_changes_apply_to_every_sandbox_of_the_namespace_only(
    sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    routed: list[int] = []
    monkeypatch.setattr(tenant, "set_routes", lambda tools, pid, networks: routed.append(pid))
    monkeypatch.setattr(Slirp, "start", lambda tools, pid, log: object())
    for pid, python in ((11, "3.11"), (13, "3.13")):
        started(sandboxes, NS, python, pid)
    started(sandboxes, "faas-globex", "3.13", 99)
    everywhere = (Grant(ipaddress.IPv4Network("0.0.0.0/0")),)

    await sandboxes.set_egress(NS, everywhere)

    assert sorted(routed) == [11, 13]
    assert {s.python: s.applied for s in sandboxes.of(NS)} == {"3.11": everywhere, "3.13": everywhere}


async def test_a_deleted_namespace_loses_every_sandbox(sandboxes: Sandboxes) -> None:
    zygotes = [started(sandboxes, NS, python, pid) for pid, python in ((11, "3.11"), (12, "3.12"))]
    other = started(sandboxes, "faas-globex", "3.12", 99)
    sandboxes.want({"faas-globex"})

    await sandboxes.retain()

    assert all(zygote.stopped for zygote in zygotes)
    assert sandboxes.of(NS) == []
    assert not other.stopped


# ------------------------------------------------------------------ a real runtime

# What a function sees of its interpreter: its version, path and packages.
REPORT = """\
import importlib, json, os, shutil, sys

def main():
    imports = {}
    names = ("requests", "flask", "gevent", "redis", "sentry_sdk", "django", "portal", "runtime.executor")
    for name in names:
        try:
            importlib.import_module(name)
            imports[name] = "ok"
        except ImportError as exc:
            imports[name] = repr(exc)
    return json.dumps({
        "version": sys.version, "version_info": "%d.%d" % sys.version_info[:2], "path": sys.path,
        "prefix": sys.prefix, "base_prefix": sys.base_prefix, "python3": shutil.which("python3"),
        "uid": os.getuid(), "imports": imports,
    })
"""
FISSION_IMAGE_PACKAGES = ("requests", "flask", "gevent", "redis", "sentry_sdk")
NOT_THERE = ("django", "portal", "runtime.executor")  # the portal's packages, the runtime's own code


def built() -> Interpreters:
    """The interpreters ``make runtimes`` built here; these tests need all three."""
    found = Interpreters.discover(python_runtimes_dir())
    assert found.versions == list(VERSIONS), f"make runtimes built {found.versions} in {found.root}"
    return found


def deploy(runtime: RuntimeProcess, name: str, env: dict[str, Any]) -> None:
    for obj in (
        env,
        package_literal(NS, f"{name}-pkg", zip_bytes({"main.py": REPORT}), env=name),
        function(NS, name, package=f"{name}-pkg", env=name),
        httptrigger(NS, name, f"/acme/{name}", function_name=name),
    ):
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text


def named_env(
    name: str, *, image: str = "ghcr.io/fission/python-env", python: str | None = None
) -> dict[str, Any]:
    obj = copy.deepcopy(env_object(image=image, python=python))
    obj["metadata"]["name"] = name
    return obj


def report(runtime: RuntimeProcess, name: str) -> dict[str, Any]:
    response = runtime.call(f"/acme/{name}", timeout=60)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = json.loads(response.text)
    return result


def assert_fissions_packages_only(seen: dict[str, Any]) -> None:
    assert {name: seen["imports"][name] for name in FISSION_IMAGE_PACKAGES} == dict.fromkeys(
        FISSION_IMAGE_PACKAGES, "ok"
    )
    for name in NOT_THERE:
        assert "ModuleNotFoundError" in seen["imports"][name], (name, seen["imports"][name])


def assert_nothing_of_the_portal_on_the_path(path: list[str]) -> None:
    assert "" not in path  # no working directory (-P)
    assert str(REPOSITORY) not in path
    assert not [p for p in path if Path(p).is_relative_to(REPOSITORY / ".venv")]
    runtimes = REPOSITORY / ".build" / "runtimes"
    assert not [
        p for p in path if Path(p).is_relative_to(REPOSITORY) and not Path(p).is_relative_to(runtimes)
    ]


def test_each_environment_runs_its_own_python_with_fissions_packages_in_the_sandbox(
    runtime: RuntimeProcess,
) -> None:
    pythons = built()
    deploy(runtime, "py311", named_env("py311", python="3.11"))
    deploy(runtime, "py312", named_env("py312", image="ghcr.io/fission/python-env-3.12:latest"))
    deploy(runtime, "py313", named_env("py313"))  # no version named: the newest

    seen = {version: report(runtime, f"py{version.replace('.', '')}") for version in VERSIONS}

    for version, answer in seen.items():
        interpreter = pythons.found[version]
        assert answer["version_info"] == version
        assert answer["version"].startswith(f"{version}.")
        assert answer["prefix"] == SANDBOX_VIRTUALENV
        assert answer["base_prefix"] == str(interpreter.base)
        assert answer["python3"] == f"{SANDBOX_VIRTUALENV}/bin/python3"
        assert f"{SANDBOX_VIRTUALENV}/lib/python{version}/site-packages" in answer["path"]
        allowed = (str(interpreter.base), "/opt/faas", "/userfunc", "/packages")
        assert [p for p in answer["path"] if not p.startswith(allowed)] == [], answer["path"]
        assert_nothing_of_the_portal_on_the_path(answer["path"])
        assert_fissions_packages_only(answer)
    # One tenant: three sandboxes, one uid.
    assert {answer["uid"] for answer in seen.values()} == {runtime.tenant_uid(NS)}


def test_an_unavailable_python_is_refused_on_create_and_replace(runtime: RuntimeProcess) -> None:
    field = f"metadata.annotations[{PYTHON_VERSION_ANNOTATION}]"
    base = f"{runtime.control}/apis/fission.io/v1/namespaces/{NS}/environments"
    headers = {"Authorization": f"Bearer {TOKEN}"}

    created = httpx.post(base, json=named_env("old", python="3.10"), headers=headers, timeout=30)
    assert created.status_code == 422, created.text
    assert (
        created.json()["error"]["message"]
        == "python 3.10 is not available on this runtime: 3.11, 3.12, 3.13 are"
    )
    assert created.json()["error"]["detail"] == {"field": field}

    assert (
        httpx.post(base, json=named_env("env", python="3.12"), headers=headers, timeout=30).status_code == 201
    )
    replaced = httpx.put(f"{base}/env", json=named_env("env", python="3.10"), headers=headers, timeout=30)
    assert replaced.status_code == 422, replaced.text
    assert replaced.json()["error"]["detail"] == {"field": field}
    stored = runtime.list(NS, "environments")
    assert [item["metadata"]["annotations"][PYTHON_VERSION_ANNOTATION] for item in stored] == ["3.12"]


def test_an_environment_that_changes_python_serves_its_functions_from_the_new_one(
    runtime: RuntimeProcess,
) -> None:
    built()
    deploy(runtime, "py", named_env("py", python="3.11"))
    assert report(runtime, "py")["version_info"] == "3.11"

    assert runtime.apply(named_env("py", python="3.13")).status_code == 200

    # Its warm pool and the function's specialized worker were of 3.11: both retired.
    assert report(runtime, "py")["version_info"] == "3.13"


def test_without_the_sandbox_a_function_still_runs_its_own_python_and_nothing_of_the_portal(
    tmp_path: Path,
) -> None:
    interpreter = built().found["3.12"]
    runtime = RuntimeProcess(state_dir=tmp_path / "runtime", env={"RUNTIME_SANDBOX": "off"}).start()
    try:
        deploy(runtime, "py", named_env("py", python="3.12"))
        seen = report(runtime, "py")
    finally:
        runtime.stop()

    assert seen["version_info"] == "3.12"
    assert seen["prefix"] == str(interpreter.venv)
    assert seen["python3"] == str(interpreter.venv / "bin" / "python3")
    state = runtime.state_dir.resolve()
    allowed = (
        str(interpreter.base),
        str(interpreter.venv),
        str(state / "sandbox" / "code"),
        str(state / "packages"),
    )
    assert [p for p in seen["path"] if not p.startswith(allowed)] == [], seen["path"]
    assert str(state / "sandbox" / "code") in seen["path"]
    assert_nothing_of_the_portal_on_the_path(seen["path"])
    assert_fissions_packages_only(seen)
