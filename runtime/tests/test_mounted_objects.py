"""Fission's file contract for Secrets and ConfigMaps: each key of each object a Function references
(``spec.secrets``, ``spec.configmaps``) is a read-only file for that function's workers only,
``/secrets/<ns>/<secret>/<key>`` and ``/configs/<ns>/<configmap>/<key>`` (``runtime.worker.volumes``).

From the parsing rules, through the worker's decisions (with ``confine`` faked) and the layout on
disk, to a real sandboxed ``python -m runtime`` on both executors.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.errors import InvalidObject
from runtime.objects import parse_configmap, parse_function, parse_secret
from runtime.tests.test_worker_contract import in_process
from runtime.worker import isolation, server, volumes
from testsupport.fission import configmap, environment, function, httptrigger, package_literal, secret
from testsupport.runtime import TOKEN, RuntimeProcess, host_pid

NS, OTHER = "faas-acme", "faas-globex"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = b"s3cr3t-\x00\xff-value"  # bytes, not text: a Secret's data is decoded as is
LOGO = b"\x89PNG\r\n\x1a\n"

# What a function sees of /secrets and /configs, what it may do there, and what it finds of other
# workers' files through /proc/<pid>/root.
READER = r"""
import base64, errno, os, stat
from flask import request


def tree(root):
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                content = handle.read()
            status = os.stat(path)
            found[path] = {"content": base64.b64encode(content).decode(),
                           "mode": stat.S_IMODE(status.st_mode), "uid": status.st_uid}
    return found


def attempt(action, path):
    try:
        if action == "write":
            with open(path, "ab") as handle:
                handle.write(b"x")
        elif action == "truncate":
            os.truncate(path, 0)
        elif action == "create":
            with open(os.path.join(path, "new"), "xb"):
                pass
        elif action == "mkdir":
            os.mkdir(os.path.join(path, "new"))
        elif action == "unlink":
            os.unlink(path)
        elif action == "rmdir":
            os.rmdir(path)
        elif action == "chmod":
            os.chmod(path, 0o666)
        elif action == "rename":
            os.rename(path, path + ".moved")
        elif action == "symlink":
            os.symlink("/etc/passwd", os.path.join(path, "link"))
        return "done"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def others():
    seen = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for root in ("secrets", "configs"):
                try:
                    seen[f"{pid}/{root}"] = os.listdir(f"/proc/{pid}/root/{root}")
                except OSError:
                    pass
    return seen


def main():
    asked = request.get_json(silent=True) or {}
    return {
        "listing": {root: sorted(os.listdir(root)) for root in ("/secrets", "/configs")},
        "files": {**tree("/secrets"), **tree("/configs")},
        "attempts": {f"{action} {path}": attempt(action, path) for action, path in asked.get("attempts", [])},
        "others": others(),
        "uid": os.getuid(),
        "whoami": f"{os.getpid()} {os.readlink('/proc/self/ns/pid')}",
    }
"""


# ---------------------------------------------------------------- parsing


def test_a_function_references_secrets_of_its_own_namespace():
    parsed = parse_function(function(NS, "f", package="p", secrets=("db", "api"), configmaps=("c",)), NS)
    assert (parsed.secrets, parsed.configmaps) == (("db", "api"), ("c",))
    assert parse_function(function(NS, "g", package="p"), NS).secrets == ()


@pytest.mark.parametrize(
    ("refs", "field"),
    [
        ([{"namespace": OTHER, "name": "db"}], "spec.secrets[0].namespace"),
        (["db"], "spec.secrets[0]"),
        ([{"namespace": NS, "name": "../db"}], "spec.secrets[0].name"),
        ({"name": "db"}, "spec.secrets"),
    ],
)
def test_bad_secret_references_name_the_field(refs, field):
    obj = function(NS, "f", package="p")
    obj["spec"]["secrets"] = copy.deepcopy(refs)
    with pytest.raises(InvalidObject) as error:
        parse_function(obj, NS)
    assert error.value.field == field


@pytest.mark.parametrize("key", ["../x", "..", ".", "a/b", "", "a b", "x" * 254])
def test_a_key_that_is_no_file_name_is_refused(key):
    with pytest.raises(InvalidObject, match="keys must be") as error:
        parse_secret(secret(NS, "db", {key: b"x"}), NS)
    assert error.value.field == f"data.{key}"
    string_data = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {key: "x"}}
    with pytest.raises(InvalidObject, match="keys must be"):
        parse_secret(string_data, NS)
    for entries in ("data", "binaryData"):
        obj = configmap(NS, "c", {}, environment_variables=False)
        obj[entries] = {key: "AA=="}
        with pytest.raises(InvalidObject, match="keys must be") as error:
            parse_configmap(obj, NS)
        assert error.value.field == f"{entries}.{key}"


def test_a_secret_holds_at_most_a_mebibyte():
    assert parse_secret(secret(NS, "db", {"a": b"x" * 1000, "b.txt": PASSWORD}), NS).data["b.txt"] == PASSWORD
    with pytest.raises(InvalidObject, match="at most 1048576 bytes") as error:
        parse_secret(secret(NS, "db", {"big": b"x" * volumes.MAX_OBJECT_BYTES}), NS)
    assert error.value.field == "data"


# ---------------------------------------------------------------- the worker's rules and layout


def _request(files: Mapping[str, bytes]) -> dict[str, str]:
    return volumes.encoded(files)


def test_the_worker_checks_the_files_again():
    files = {"/secrets/faas-acme/db/password": PASSWORD, "/configs/faas-acme/c/a.json": b"{}"}
    assert volumes.checked(_request(files)) == files
    assert volumes.checked(None) == {}


@pytest.mark.parametrize(
    "files",
    [
        {"/secrets/ns/db/../x": "AA=="},
        {"/secrets/ns/../x": "AA=="},
        {"/secrets/ns/db/a/b": "AA=="},
        {"/etc/ns/db/x": "AA=="},
        {"secrets/ns/db/x": "AA=="},
        {"/secrets/ns/db/x": "not base64!"},
        {"/secrets/ns/db/x": 3},
        ["/secrets/ns/db/x"],
        {"/secrets/ns/db/big": base64.b64encode(b"x" * (volumes.MAX_FUNCTION_BYTES + 1)).decode()},
    ],
)
def test_bad_files_are_refused_naming_no_content(files):
    with pytest.raises(ValueError, match="mounted_files") as error:
        volumes.checked(files)
    assert "AA==" not in str(error.value)
    assert "not base64!" not in str(error.value)


def test_the_digest_names_paths_and_contents():
    one = volumes.digest({"/secrets/ns/a/k": b"1"})
    assert one == volumes.digest({"/secrets/ns/a/k": b"1"})
    assert one != volumes.digest({"/secrets/ns/a/k": b"2"})
    assert one != volumes.digest({"/secrets/ns/b/k": b"1"})
    assert volumes.digest({}) != one


def test_the_files_are_laid_out_read_only(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    root.mkdir()
    files = {"/secrets/ns/db/password": PASSWORD, "/secrets/ns/db/user": b"", "/secrets/ns/api/token": b"t"}
    volumes.write(str(root), volumes.by_root(files)["/secrets"])
    assert (root / "ns" / "db" / "password").read_bytes() == PASSWORD
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "ns/api/token", "ns/db/password", "ns/db/user",
    ]  # fmt: skip
    assert {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()} == {0o444}
    assert {stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")] if p.is_dir()} == {0o555}


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[server.Worker, list[Any]]]:
    """An isolated worker in this process; ``confine`` records what it would mount."""
    userfunc = tmp_path / "userfunc"
    userfunc.mkdir()
    (userfunc / "one.py").write_text("def main():\n    return 'one'\n")
    mounted: list[Any] = []

    def confine(filepath: str, files: Mapping[str, bytes] | None = None) -> str:
        _, inside = isolation.package_root(filepath)
        mounted.append(dict(files or {}))
        return str(userfunc / inside)

    monkeypatch.setattr(isolation, "USERFUNC", str(userfunc))
    monkeypatch.setattr(isolation, "confine", confine)
    yield server.Worker(None, 1, isolated=True), mounted
    sys.modules.pop("one", None)


def _v2(files: Mapping[str, bytes]) -> bytes:
    body = {"filepath": "/packages/aaa/one.py", "functionName": "", "mounted_files": _request(files)}
    return json.dumps(body).encode()


def test_an_isolated_worker_mounts_its_files_once(isolated):
    worker, mounted = isolated
    files = {"/secrets/faas-acme/db/password": PASSWORD}
    assert in_process(worker, "POST", "/v2/specialize", _v2(files)).code == 200
    assert mounted == [files]

    assert in_process(worker, "POST", "/v2/specialize", _v2(files)).code == 200  # the same: fine
    other = in_process(worker, "POST", "/v2/specialize", _v2({"/secrets/faas-acme/db/password": b"new"}))
    assert other.code == 409
    assert in_process(worker, "POST", "/specialize", b"{}").code == 409  # v1 without them: other files
    assert mounted == [files]  # never mounted twice: it has no capability left
    assert PASSWORD.decode(errors="replace") not in other.body.decode(errors="replace")


def test_a_worker_that_is_not_isolated_refuses_files(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("def main():\n    return 'one'\n")
    worker = server.Worker(None, 1)
    body = {"filepath": str(tmp_path / "one.py"), "mounted_files": _request({"/configs/ns/c/k": b"v"})}
    refused = in_process(worker, "POST", "/v2/specialize", json.dumps(body).encode())
    assert (refused.code, b"isolated" in refused.body) == (400, True)
    assert worker.function is None
    sys.modules.pop("one", None)


# ---------------------------------------------------------------- the runtime, end to end


def _ok(response: httpx.Response) -> None:
    assert response.status_code in (200, 201), response.text


def _deploy(runtime: RuntimeProcess, name: str, *, namespace: str = NS, **fn: Any) -> None:
    _ok(runtime.apply(environment(namespace, "python", poolsize=1)))
    _ok(runtime.apply(package_literal(namespace, "reader-pkg", READER)))
    _ok(runtime.apply(function(namespace, name, package="reader-pkg", **fn)))
    root = "/" + namespace.removeprefix("faas-")
    _ok(runtime.apply(httptrigger(namespace, name, f"{root}/{name}", function_name=name, methods=("POST",))))


def _read(runtime: RuntimeProcess, name: str, namespace: str = NS, **asked: Any) -> dict[str, Any]:
    root = "/" + namespace.removeprefix("faas-")
    response = httpx.post(f"{runtime.router}{root}/{name}", json=asked, timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _contents(seen: dict[str, Any]) -> dict[str, bytes]:
    return {path: base64.b64decode(file["content"]) for path, file in seen["files"].items()}


def _probe(runtime: RuntimeProcess, name: str, namespace: str = NS) -> httpx.Response:
    url = f"{runtime.control}/apis/fission.io/v1/namespaces/{namespace}/functions/{name}/specialize"
    return httpx.post(url, headers=AUTH, timeout=60)


def _core(runtime: RuntimeProcess, plural: str, name: str, namespace: str = NS) -> str:
    return f"{runtime.control}/api/v1/namespaces/{namespace}/{plural}/{name}"


def _settings(logo: bytes = LOGO) -> dict[str, Any]:
    settings = configmap(NS, "settings", {"config.json": '{"level": "é"}'}, environment_variables=False)
    settings["binaryData"] = {"logo.png": base64.b64encode(logo).decode()}
    return settings


@pytest.mark.parametrize("executor", ["poolmgr", "newdeploy"])
def test_a_function_reads_its_files_and_the_next_call_sees_a_change(runtime, executor):
    _ok(runtime.apply(secret(NS, "db", {"password": PASSWORD, "user": b"app"})))
    _ok(runtime.apply(_settings()))
    _ok(runtime.apply(configmap(NS, "reader-env", {"GREETING": "hi"})))
    _deploy(runtime, "reader", executor=executor, secrets=("db",), configmaps=("settings", "reader-env"))

    seen = _read(runtime, "reader")

    assert seen["listing"] == {"/secrets": [NS], "/configs": [NS]}
    assert _contents(seen) == {
        f"/secrets/{NS}/db/password": PASSWORD,
        f"/secrets/{NS}/db/user": b"app",
        f"/configs/{NS}/settings/config.json": '{"level": "é"}'.encode(),
        f"/configs/{NS}/settings/logo.png": LOGO,
        f"/configs/{NS}/reader-env/GREETING": b"hi",  # Fission mounts it too
    }
    assert {file["mode"] for file in seen["files"].values()} == {0o444}
    assert {file["uid"] for file in seen["files"].values()} == {seen["uid"]} == {runtime.tenant_uid(NS)}
    # In memory, read-only, in the worker's own mount namespace (seen from the host).
    mounts = Path(f"/proc/{host_pid(seen['whoami'])}/mountinfo").read_text().splitlines()
    for root in ("/secrets", "/configs"):
        line = [line for line in mounts if line.split()[4] == root][-1]  # the one on top
        assert line.split()[5].split(",")[0] == "ro"
        assert line.split(" - ")[1].startswith("tmpfs ")

    _ok(runtime.apply(secret(NS, "db", {"password": b"rotated"})))
    _ok(runtime.apply(_settings(logo=b"GIF89a")))
    changed = _contents(_read(runtime, "reader"))
    assert changed[f"/secrets/{NS}/db/password"] == b"rotated"
    assert f"/secrets/{NS}/db/user" not in changed
    assert changed[f"/configs/{NS}/settings/logo.png"] == b"GIF89a"

    # The Function stops referencing them: the next call sees none.
    _ok(runtime.apply(function(NS, "reader", package="reader-pkg", executor=executor)))
    assert _read(runtime, "reader")["listing"] == {"/secrets": [], "/configs": []}
    log = runtime.log_path.read_bytes()
    assert b"rotated" not in log  # never logged
    assert PASSWORD not in log
    assert base64.b64encode(PASSWORD) not in log


@pytest.mark.parametrize("executor", ["poolmgr", "newdeploy"])
def test_the_files_are_read_only(runtime, executor):
    _ok(runtime.apply(secret(NS, "db", {"password": PASSWORD})))
    _ok(runtime.apply(_settings()))
    _deploy(runtime, "reader", executor=executor, secrets=("db",), configmaps=("settings",))
    password, directory = f"/secrets/{NS}/db/password", f"/secrets/{NS}/db"
    attempts = [
        ["write", password], ["truncate", password], ["chmod", password], ["unlink", password],
        ["rename", password], ["create", directory], ["mkdir", directory], ["symlink", directory],
        ["chmod", directory], ["rmdir", directory], ["create", "/secrets"], ["create", "/configs"],
        ["write", f"/configs/{NS}/settings/logo.png"], ["unlink", f"/configs/{NS}/settings/logo.png"],
    ]  # fmt: skip

    seen = _read(runtime, "reader", attempts=attempts)

    assert set(seen["attempts"].values()) <= {"EROFS", "EACCES", "EPERM"}, seen["attempts"]
    assert len(seen["attempts"]) == len(attempts)
    assert _contents(_read(runtime, "reader"))[password] == PASSWORD  # unchanged


def test_no_other_function_sees_the_files(runtime):
    _ok(runtime.apply(secret(NS, "db", {"password": PASSWORD})))
    _ok(runtime.apply(_settings()))
    _deploy(runtime, "reader", secrets=("db",), configmaps=("settings",))
    _deploy(runtime, "neighbour")  # same tenant, references nothing
    _deploy(runtime, "outsider", namespace=OTHER)
    assert _contents(_read(runtime, "reader"))  # its worker is alive, its files mounted

    for name, namespace in (("neighbour", NS), ("outsider", OTHER)):
        seen = _read(runtime, name, namespace)
        assert seen["listing"] == {"/secrets": [], "/configs": []}, name
        assert seen["files"] == {}
        # Not through another worker's /proc/<pid>/root either (no ptrace access).
        assert [listing for listing in seen["others"].values() if listing] == [], seen["others"]

    # The same names in its own namespace are other objects, which do not exist.
    _ok(runtime.apply(function(OTHER, "outsider", package="reader-pkg", secrets=("db",))))
    assert _probe(runtime, "outsider", OTHER).status_code == 404


def test_a_function_waits_for_its_secret(runtime):
    _deploy(runtime, "reader", secrets=("later",))
    assert _probe(runtime, "reader").status_code == 404
    assert httpx.post(f"{runtime.router}/acme/reader", timeout=60).status_code == 502

    _ok(runtime.apply(secret(NS, "later", {"token": b"at last"})))
    assert _contents(_read(runtime, "reader")) == {f"/secrets/{NS}/later/token": b"at last"}

    assert httpx.delete(_core(runtime, "secrets", "later"), headers=AUTH).status_code == 200
    assert httpx.post(f"{runtime.router}/acme/reader", timeout=60).status_code == 502  # workers retired


def test_the_control_api_refuses_references_across_namespaces_and_keys_that_leave_their_directory(runtime):
    across = function(NS, "thief", package="reader-pkg")
    across["spec"]["secrets"] = [{"namespace": OTHER, "name": "db"}]
    refused = runtime.apply(across)
    assert refused.status_code == 422
    assert refused.json()["error"]["detail"] == {"field": "spec.secrets[0].namespace"}

    for obj, field in (
        (secret(NS, "evil", {"../x": b"x"}), "data.../x"),
        (configmap(NS, "evil", {"../x": "x"}, environment_variables=False), "data.../x"),
    ):
        response = runtime.apply(obj)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["detail"] == {"field": field}
        assert httpx.get(_core(runtime, f"{obj['kind'].lower()}s", "evil"), headers=AUTH).status_code == 404


def test_a_function_may_mount_at_most_four_mebibytes(runtime):
    chunk = os.urandom(volumes.MAX_OBJECT_BYTES - 1024)
    names = tuple(f"part-{index}" for index in range(5))
    for name in names:
        _ok(runtime.apply(secret(NS, name, {"chunk": chunk})))
    _deploy(runtime, "reader", secrets=names)

    refused = _probe(runtime, "reader")

    assert refused.status_code == 404
    assert f"more than the {volumes.MAX_FUNCTION_BYTES}" in refused.json()["error"]["message"]
    assert "more than the 4194304 a function may have" in runtime.log_tail()
    _ok(runtime.apply(function(NS, "reader", package="reader-pkg", secrets=names[:4])))
    assert len(_contents(_read(runtime, "reader"))) == 4


def test_without_the_sandbox_the_files_are_not_mounted(tmp_path: Path) -> None:
    runtime = RuntimeProcess(state_dir=tmp_path / "runtime", env={"RUNTIME_SANDBOX": "off"}).start()
    try:
        _ok(runtime.apply(secret(NS, "db", {"password": PASSWORD})))
        _deploy(runtime, "plain", secrets=("db",))
        response = httpx.post(f"{runtime.router}/acme/plain", timeout=60)
        assert response.status_code == 500  # the host has no /secrets: the function cannot read it
        assert "not mounted as files: that needs the sandbox" in runtime.log_tail()
    finally:
        runtime.stop()
