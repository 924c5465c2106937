"""Functions end to end: API -> real Celery worker -> build -> local runtime -> router."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import pytest

from testsupport.e2e import create_function as _create
from testsupport.e2e import deploy_and_wait as _deploy_and_wait
from testsupport.e2e import latest_deployment as _latest_deployment
from testsupport.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
API = "/t/acme/api/v1/functions"


def test_create_deploy_call_and_test_call(world, api, stack):
    alice = api(world.alice)
    code = (
        "from flask import request\n\ndef main():\n    print('hello log', request.args.get('who'))\n"
        "    return 'hi ' + request.args.get('who', 'nobody')\n"
    )
    _create(alice, "hello", {"main.py": code}, "/hello")
    _deploy_and_wait(alice, "hello")

    response = httpx.get(f"{stack.router}/acme/hello?who=curl", timeout=30)
    assert (response.status_code, response.text) == (200, "hi curl")

    call = alice.post(f"{API}/hello/invoke/", {"method": "GET", "path": "/hello?who=panel"}, format="json")
    assert call.status_code == 201
    body = call.json()
    assert (body["status"], body["response_body"]) == (200, "hi panel")
    assert body["duration_ms"] > 0
    assert [line["message"] for line in body["logs"]] == ["hello log panel"]
    history = alice.get(f"{API}/hello/invocations/").json()
    assert history["count"] == 1


def test_zip_with_requirements_is_built_with_pip(world, api, stack):
    alice = api(world.alice)
    assert alice.post(f"{API}/", {"name": "withsix"}, format="json").status_code == 201
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("main.py", "import six\n\ndef main():\n    return 'six ' + six.__version__\n")
        z.writestr("requirements.txt", "six==1.16.0\n")
    upload = alice.post(
        f"{API}/withsix/upload/", {"file": _named(archive.getvalue(), "fn.zip")}, format="multipart"
    )
    assert upload.status_code == 200, upload.content
    trigger = {"name": "withsix", "methods": ["GET"], "path": "/six", "target_kind": "draft"}
    assert alice.post(f"{API}/withsix/triggers/", trigger, format="json").status_code == 201
    _deploy_and_wait(alice, "withsix")
    build = alice.get(f"{API}/withsix/builds/").json()["results"][0]
    log = alice.get(f"{API}/withsix/builds/{build['id']}/").json()["log"]
    assert "six" in log
    response = httpx.get(f"{stack.router}/acme/six", timeout=30)
    assert (response.status_code, response.text) == (200, "six 1.16.0")


def test_alias_90_10_splits_2000_calls(world, api, stack):
    alice = api(world.alice)
    _create(alice, "canary", {"main.py": "def main():\n    return 'v1'\n"}, "/canary-draft")
    _deploy_and_wait(alice, "canary")
    assert alice.post(f"{API}/canary/versions/", {"description": "first"}, format="json").status_code == 201
    alice.put(f"{API}/canary/code/", {"files": {"main.py": "def main():\n    return 'v2'\n"}}, format="json")
    _deploy_and_wait(alice, "canary")
    assert alice.post(f"{API}/canary/versions/", {}, format="json").json()["number"] == 2
    alias = {"name": "live", "version": 1, "canary_version": 2, "canary_weight": 10}
    assert alice.post(f"{API}/canary/aliases/", alias, format="json").status_code == 200
    trigger = {
        "name": "canary-live",
        "methods": ["GET"],
        "path": "/canary",
        "target_kind": "alias",
        "alias": "live",
    }
    assert alice.post(f"{API}/canary/triggers/", trigger, format="json").status_code == 201
    _deploy_and_wait(alice, "canary")
    with httpx.Client(base_url=stack.router, timeout=30) as client:
        answers = [client.get("/acme/canary").text for _ in range(2000)]
    share = answers.count("v1") / 2000
    assert abs(share - 0.9) <= 0.03, share
    assert set(answers) == {"v1", "v2"}


def _named(data: bytes, name: str) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/zip")


def test_a_deployment_left_by_a_killed_worker_completes(world, api, stack):
    """As if a worker died mid-deployment: the beat task re-queues it and it goes live."""
    from datetime import timedelta

    from django.utils import timezone
    from django_tenants.utils import schema_context

    from functions.models import Deployment, Function
    from functions.tasks import resume_stuck_deployments

    alice = api(world.alice)
    _create(alice, "orphan", {"main.py": "def main():\n    return 'recovered'\n"}, "/orphan")
    with schema_context(world.acme.schema_name):
        function = Function.objects.get(name="orphan")
        wait_until(
            lambda: not Deployment.objects.filter(function=function).exclude(state__in=["live", "failed"])
        )
        stuck = Deployment.objects.create(function=function, state="applying", cause="killed worker")
        Deployment.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert resume_stuck_deployments() >= 1
    with schema_context(world.acme.schema_name):
        wait_until(lambda: Deployment.objects.get(pk=stuck.pk).state == "live", timeout=60)
    assert httpx.get(f"{stack.router}/acme/orphan", timeout=30).text == "recovered"


def test_a_deployment_whose_worker_is_killed_mid_run_is_resumed_in_seconds(
    world, api, stack, celery_worker_process
):
    """SIGKILL while the deployment loads slow code: the worker's database session ends and lets
    the function's lock go, so the sweep resumes it after 20 quiet seconds, not 2 minutes."""
    from django_tenants.utils import schema_context

    from functions.models import Deployment
    from functions.tasks import resume_stuck_deployments

    alice = api(world.alice)
    _create(alice, "slowstart", {"main.py": "def main():\n    return 'first'\n"}, "/slowstart")
    _deploy_and_wait(alice, "slowstart")  # the trigger's own deployment is over: ours runs alone
    slow = "import time\ntime.sleep(8)\n\ndef main():\n    return 'slow start'\n"  # new code: a fresh load
    code = alice.put("/t/acme/api/v1/functions/slowstart/code/", {"files": {"main.py": slow}}, format="json")
    assert code.status_code == 200, code.content
    response = alice.post("/t/acme/api/v1/functions/slowstart/deployments/")
    assert response.status_code == 202, response.content
    url = f"/t/acme/api/v1/functions/slowstart/deployments/{response.json()['id']}/"
    seen: list[str] = []

    def waiting() -> bool:
        seen.append(alice.get(url).json()["state"])
        return seen[-1] == "waiting"

    try:
        wait_until(waiting, timeout=120, interval=0.1)
    except AssertionError:
        raise AssertionError(f"never seen waiting: {seen[-20:]}") from None
    celery_worker_process.kill()
    celery_worker_process.start()
    with schema_context(world.acme.schema_name):
        killed = Deployment.objects.get(pk=response.json()["id"])
        assert killed.state == "waiting", killed.steps
    resumed = wait_until(resume_stuck_deployments, timeout=60, interval=2, message="not resumed within 60 s")
    assert resumed >= 1
    body = wait_until(lambda: (b := alice.get(url).json())["state"] in ("live", "failed") and b, timeout=90)
    assert body["state"] == "live", body
    assert "resumed: no worker was running it" in [s["message"] for s in body["steps"]]
    assert httpx.get(f"{stack.router}/acme/slowstart", timeout=30).text == "slow start"


def test_suspending_a_tenant_stops_its_calls_and_resuming_restores_them(world, api, stack):
    alice, admin = api(world.alice), api(world.admin)
    _create(alice, "hello", {"main.py": "def main():\n    return 'up'\n"}, "/hello")
    _deploy_and_wait(alice, "hello")
    assert httpx.get(f"{stack.router}/acme/hello", timeout=30).text == "up"

    assert admin.patch("/api/v1/tenants/acme/", {"suspended": True}, format="json").status_code == 200

    wait_until(
        lambda: httpx.get(f"{stack.router}/acme/hello", timeout=30).status_code == 404,
        timeout=60, interval=0.2, message="the suspended tenant's route still answers",
    )  # fmt: skip
    # The routes go first, then the Functions (the runtime's namespace also holds what earlier
    # tests deployed): wait for the whole scale-down, not only for the 404.
    wait_until(
        lambda: stack.list("faas-acme", "functions") == []
        and [e["spec"]["poolsize"] for e in stack.list("faas-acme", "environments")] == [0],
        timeout=60, interval=0.2, message="the suspended tenant still has functions or a warm pool",
    )  # fmt: skip
    assert stack.list("faas-acme", "httptriggers") == []
    call = alice.post(f"{API}/hello/invoke/", {"method": "GET", "path": "/hello"}, format="json")
    assert call.status_code == 403
    assert call.json()["error"]["code"] == "tenant_suspended"

    assert admin.patch("/api/v1/tenants/acme/", {"suspended": False}, format="json").status_code == 200

    wait_until(
        lambda: httpx.get(f"{stack.router}/acme/hello", timeout=30).text == "up",
        timeout=120, interval=0.2, message="the resumed tenant's route did not come back",
    )  # fmt: skip
    assert _latest_deployment(alice, "hello")["cause"] == "tenant resumed"
