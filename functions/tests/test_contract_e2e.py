"""The function contract end to end (issue 12): through the portal's API, a real Celery worker, the
build, the local runtime's router and sandboxed workers, a function sees what Fission's Python
environment and router give it, and a deployment is live only when its code loads.

What Fission does, for each assertion, is read off its sources: fission/environments
``python/server.py`` (the worker) and fission/fission ``pkg/router`` (``rewrite.go``,
``requesthHeader.go``), as of Fission 1.27.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from testsupport.e2e import create_function, deploy_and_finish, deploy_and_wait, functions_api
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
API = functions_api()
LOGS = "/t/acme/api/v1/logs/"

# Imports at module level inside an app context (Fission imports it in the specialize request),
# logs through the app's logger at DEBUG, and echoes what it was given.
ECHO = """\
import sys
from flask import current_app, request

current_app.logger.info("echo imported inside the specialize request")


def main():
    current_app.logger.debug("debug line for %s", request.method)
    seen = {
        "path": request.path,
        "full_path": request.full_path,
        "method": request.method,
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "version": "%d.%d" % sys.version_info[:2],
    }
    return seen, 200, {"X-Method": request.method}
"""


def _trigger(client: Any, function: str, name: str, path: str, methods: list[str], **extra: Any) -> None:
    body = {"name": name, "methods": methods, "path": path, "target_kind": "draft", **extra}
    response = client.post(f"{API}/{function}/triggers/", body, format="json")
    assert response.status_code == 201, response.content


def _deploy_failed(client: Any, name: str) -> dict[str, Any]:
    deployment = deploy_and_finish(client, name)
    assert deployment["state"] == "failed", deployment
    return deployment


@pytest.fixture
def echo(world: Any, api: Any, stack: Any) -> Any:
    """``echo`` deployed with an exact trigger (/echo) and a prefix trigger (/pre)."""
    alice = api(world.alice)
    create_function(alice, "echo", {"main.py": ECHO}, "/echo")
    alice.delete(f"{API}/echo/triggers/echo/")
    _trigger(alice, "echo", "exact", "/echo", ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    _trigger(alice, "echo", "prefix", "/pre", ["GET"], is_prefix=True)
    deploy_and_wait(alice, "echo")
    return alice


def test_the_path_is_relative_to_the_trigger_and_the_query_is_kept(echo, stack):
    # rewrite.go: an exact relativeurl forwards "/", a prefix forwards the rest after it.
    exact = httpx.get(f"{stack.router}/acme/echo?x=1&y=2", timeout=30).json()
    assert (exact["path"], exact["full_path"]) == ("/", "/?x=1&y=2")
    prefixed = httpx.get(f"{stack.router}/acme/pre/a/b?z=3", timeout=30).json()
    assert (prefixed["path"], prefixed["full_path"]) == ("/a/b", "/a/b?z=3")
    bare = httpx.get(f"{stack.router}/acme/pre", timeout=30).json()
    assert bare["path"] == "/"


def test_the_router_sets_fissions_headers(echo, stack):
    response = httpx.get(f"{stack.router}/acme/echo?x=1", timeout=30)
    headers = response.json()["headers"]
    # requesthHeader.go: function metadata and the full URL; rewrite.go: the forwarded host.
    assert headers["x-fission-function-name"] == "echo-draft"
    assert headers["x-fission-function-namespace"] == "faas-acme"
    assert len(headers["x-fission-function-uid"]) >= 32
    assert headers["x-fission-function-resourceversion"].isdigit()
    assert headers["x-fission-full-url"] == "/acme/echo?x=1"
    host = urlsplit(stack.router).netloc
    assert headers["x-forwarded-host"] == host
    assert headers["forwarded"] == f"host={host};"
    again = httpx.get(f"{stack.router}/acme/echo", timeout=30).json()["headers"]
    assert again["x-fission-function-uid"] == headers["x-fission-function-uid"]  # an identity, not a nonce


def test_a_client_cannot_forge_the_function_headers(echo, stack):
    forged = {"X-Fission-Function-Uid": "forged", "X-Fission-Function-Name": "other"}
    headers = httpx.get(f"{stack.router}/acme/echo", headers=forged, timeout=30).json()["headers"]
    assert headers["x-fission-function-uid"] != "forged"
    assert headers["x-fission-function-name"] == "echo-draft"


def test_head_reaches_the_function_as_head_and_patch_is_405(echo, stack):
    head = httpx.head(f"{stack.router}/acme/echo", timeout=30)
    assert (head.status_code, head.headers["x-method"], head.content) == (200, "HEAD", b"")
    # server.py routes GET, POST, PUT, HEAD, OPTIONS and DELETE only.
    patch = httpx.patch(f"{stack.router}/acme/echo", content=b"{}", timeout=30)
    assert patch.status_code == 405
    for method in ("OPTIONS", "DELETE", "PUT"):
        answer = httpx.request(method, f"{stack.router}/acme/echo", timeout=30)
        assert (answer.status_code, answer.headers["x-method"]) == (200, method)


def test_the_app_logs_at_debug_and_python_is_3_13(echo, stack):
    call = echo.post(f"{API}/echo/invoke/", {"method": "GET", "path": "/echo"}, format="json").json()
    assert call["status"] == 200
    assert '"version":"3.13"' in call["response_body"].replace(" ", "")
    messages = [line["message"] for line in call["logs"]]
    # server.py: a handler on the app's logger at DEBUG: '%(asctime)s - %(levelname)s - %(message)s'.
    assert any(m.endswith(" - DEBUG - debug line for GET") for m in messages), messages


def test_the_module_was_imported_inside_an_app_context(echo, stack):
    page = echo.get(LOGS, {"function": "echo", "q": "imported inside the specialize request"}).json()
    assert page["results"], "the import-time log line is missing: the module did not load in an app context"


def test_a_single_uploaded_file_keeps_its_name(world, api, stack):
    alice = api(world.alice)
    assert alice.post(f"{API}/", {"name": "greet"}, format="json").status_code == 201
    source = b"def hello():\n    return 'hello from ' + __file__.rsplit('/', 1)[-1]\n"
    upload = alice.post(
        f"{API}/greet/upload/", {"file": SimpleUploadedFile("greet.py", source)}, format="multipart"
    )
    assert upload.status_code == 200, upload.content
    assert list(upload.json()["files"]) == ["greet.py"]
    _trigger(alice, "greet", "greet", "/greet", ["GET"])
    # Fission loads a single file as the module and uses only the function part of the entrypoint.
    for entrypoint in ("greet.hello", "hello"):
        assert alice.patch(f"{API}/greet/", {"entrypoint": entrypoint}, format="json").status_code == 200
        deploy_and_wait(alice, "greet")
        response = httpx.get(f"{stack.router}/acme/greet", timeout=30)
        assert (response.status_code, response.text.startswith("hello from ")) == (200, True), response.text


def test_modules_are_fissions_image_not_the_portals(world, api, stack):
    alice = api(world.alice)
    code = (
        "import importlib\n\n"
        "def main():\n"
        "    found = {}\n"
        "    names = ('flask', 'requests', 'gevent', 'redis', 'sentry_sdk', 'dateutil', 'django', 'celery')\n"
        "    for name in names:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "            found[name] = True\n"
        "        except ImportError:\n"
        "            found[name] = False\n"
        "    return found\n"
    )
    create_function(alice, "imports", {"main.py": code}, "/imports")
    deploy_and_wait(alice, "imports")
    found = httpx.get(f"{stack.router}/acme/imports", timeout=30).json()
    image = ("flask", "requests", "gevent", "redis", "sentry_sdk", "dateutil")
    assert {name: found[name] for name in image} == dict.fromkeys(image, True)
    # The portal's own packages are not on the function's path.
    assert (found["django"], found["celery"]) == (False, False)


def test_three_environments_run_their_own_python(world, api, stack):
    alice = api(world.alice)
    code = "import sys\n\ndef main():\n    return sys.version\n"
    for version in ("3.11", "3.12", "3.13"):
        name = "py" + version.replace(".", "")
        environment = {"name": name, "runtime_version": version}
        created = alice.post("/t/acme/api/v1/environments/", environment, format="json")
        assert created.status_code == 201, created.content
        function = {"name": f"v{name}", "environment": name}
        assert alice.post(f"{API}/", function, format="json").status_code == 201
        assert (
            alice.put(f"{API}/v{name}/code/", {"files": {"main.py": code}}, format="json").status_code == 200
        )
        _trigger(alice, f"v{name}", f"v{name}", f"/v{name}", ["GET"])
        deploy_and_wait(alice, f"v{name}")
    for version in ("3.11", "3.12", "3.13"):
        name = "vpy" + version.replace(".", "")
        response = httpx.get(f"{stack.router}/acme/{name}", timeout=30)
        assert response.status_code == 200
        assert response.text.startswith(version + "."), response.text


def test_a_syntax_error_is_shown_on_save_and_fails_the_build_with_its_line(world, api, stack):
    alice = api(world.alice)
    create_function(alice, "broken", {"main.py": "def main():\n    return 'fine'\n"}, "/broken")
    files = {"main.py": "def main():\n    return (1,\n"}
    saved = alice.put(f"{API}/broken/code/", {"files": files}, format="json")
    assert saved.status_code == 200
    (problem,) = saved.json()["problems"]
    assert (problem["file"], problem["line"]) == ("main.py", 2)
    assert 'File "main.py", line 2\n    return (1,\n           ^' in problem["text"]
    deployment = _deploy_failed(alice, "broken")
    assert "main.py, line 2" in deployment["reason"]
    build = alice.get(f"{API}/broken/builds/").json()["results"][0]
    assert build["state"] == "failed"
    log = alice.get(f"{API}/broken/builds/{build['id']}/").json()["log"]
    assert 'File "main.py", line 2\n    return (1,\n           ^' in log


def test_an_import_error_fails_the_deployment_with_the_traceback(world, api, stack):
    alice = api(world.alice)
    code = "import helper\n\ndef main():\n    return 'never'\n"
    helper = "import no_such_module_anywhere\n"
    create_function(alice, "importfail", {"main.py": code, "helper.py": helper}, "/importfail")
    deployment = _deploy_failed(alice, "importfail")
    reason = deployment["reason"]
    assert "importfail-draft does not load" in reason
    assert "ModuleNotFoundError: No module named 'no_such_module_anywhere'" in reason
    assert 'helper.py", line 1' in reason  # the traceback, not only its last line
    steps = [step["state"] for step in deployment["steps"]]
    assert "live" not in steps


# Loads for the deployment's own specialization, fails for any later cold start: Fission imports
# the module inside the specialize request, so the module can read that request's id.
COLD = """\
import os
from flask import request

if not request.headers.get("X-Fission-Request-ID", "").startswith("deploy-"):
    raise RuntimeError("this cold start cannot load")


def main():
    if request.path == "/crash":
        os._exit(3)  # the worker dies: the next call needs a cold start
    return "warm"
"""


def test_a_cold_start_load_error_is_found_by_its_request_id(world, api, stack):
    alice = api(world.alice)
    create_function(alice, "cold", {"main.py": COLD}, "/cold")
    alice.delete(f"{API}/cold/triggers/cold/")
    _trigger(alice, "cold", "cold", "/cold", ["GET"], is_prefix=True)
    deploy_and_wait(alice, "cold")
    assert httpx.get(f"{stack.router}/acme/cold", timeout=30).text == "warm"
    httpx.get(f"{stack.router}/acme/cold/crash", timeout=30)

    call = alice.post(f"{API}/cold/invoke/", {"method": "GET", "path": "/cold"}, format="json").json()
    assert call["status"] == 502
    shown = "\n".join(line["message"] for line in call["logs"])
    assert "Traceback (most recent call last)" in shown, shown
    assert "RuntimeError: this cold start cannot load" in shown, shown
    found = alice.get(LOGS, {"request_id": call["request_id"]}).json()["results"]
    assert any("RuntimeError: this cold start cannot load" in r["message"] for r in found), found


def test_a_function_created_under_a_deleted_ones_name_starts_without_its_logs(world, api, stack):
    alice = api(world.alice)
    code = "def main():\n    print('{}')\n    return 'ok'\n"
    create_function(alice, "reborn", {"main.py": code.format("first life")}, "/reborn")
    deploy_and_wait(alice, "reborn")
    assert httpx.get(f"{stack.router}/acme/reborn", timeout=30).text == "ok"
    wait_until(lambda: _logs(alice, "reborn", "first life"), timeout=30)

    assert alice.delete(f"{API}/reborn/").status_code == 204
    create_function(alice, "reborn", {"main.py": code.format("second life")}, "/reborn")
    deploy_and_wait(alice, "reborn")
    assert httpx.get(f"{stack.router}/acme/reborn", timeout=30).text == "ok"
    wait_until(lambda: _logs(alice, "reborn", "second life"), timeout=30)
    everything = alice.get(LOGS, {"function": "reborn"}).json()["results"]
    assert not [r for r in everything if "first life" in r["message"]], everything


def _logs(client: Any, function: str, text: str) -> list[dict[str, Any]]:
    return list(client.get(LOGS, {"function": function, "q": text}).json()["results"])


def test_a_redeploy_while_every_worker_is_busy_goes_live(world, api, stack):
    """The last step wants a worker; a function at its concurrency limit has none free (429). Its
    code already serves, so the deployment goes live and says the check waits for a call."""
    alice = api(world.alice)
    code = "import time\nfrom flask import request\n\ndef main():\n    time.sleep(float(request.args['s']))\n"
    create_function(alice, "busy", {"main.py": code + "    return 'ok'\n"}, "/busy")
    assert alice.patch(f"{API}/busy/", {"concurrency": 1}, format="json").status_code == 200
    deploy_and_wait(alice, "busy")
    # The deployments the trigger and the settings queued are over too: nothing changes under us.
    wait_until(lambda: all(d["state"] in ("live", "failed") for d in _deployments(alice, "busy")), timeout=60)
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(_hold_the_worker(stack, "/acme/busy?s=10")))
    slow.start()
    try:
        wait_until(
            lambda: _get(stack, "/acme/busy?s=0") == 429, timeout=8, message="the worker never got busy"
        )
        deployment = deploy_and_wait(alice, "busy")
    finally:
        slow.join()
    assert answers == [200]
    assert "no worker free for busy-draft" in deployment["steps"][-1]["message"]
    assert _get(stack, "/acme/busy?s=0") == 200


def _hold_the_worker(stack: Any, path: str) -> int:
    """Call ``path`` until the call gets the worker: a probe sent at the same moment may hold it
    first, and then this call is the one refused (429)."""
    for _ in range(200):
        status = _get(stack, path)
        if status != 429:
            return status
        time.sleep(0.01)
    return status


def _get(stack: Any, path: str) -> int:
    return httpx.get(f"{stack.router}{path}", timeout=30).status_code


def _deployments(client: Any, name: str) -> list[dict[str, Any]]:
    return list(client.get(f"{API}/{name}/deployments/").json()["results"])


def test_new_code_replaces_the_old_under_the_same_function_identity(echo, stack):
    """Fission updates the Function object (same uid, a new resourceVersion) and its workers load
    the new package: the next call runs the new code, never the old."""
    before = httpx.get(f"{stack.router}/acme/echo", timeout=30).json()["headers"]
    changed = ECHO.replace('"version":', '"replaced": True, "version":')
    assert echo.put(f"{API}/echo/code/", {"files": {"main.py": changed}}, format="json").status_code == 200
    deploy_and_wait(echo, "echo")
    after = httpx.get(f"{stack.router}/acme/echo", timeout=30).json()
    assert after["replaced"] is True
    assert after["headers"]["x-fission-function-uid"] == before["x-fission-function-uid"]
    new, old = (
        after["headers"]["x-fission-function-resourceversion"],
        before["x-fission-function-resourceversion"],
    )
    assert int(new) > int(old)
