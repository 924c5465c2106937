"""End-to-end helpers: the whole stack (Celery worker, ASGI server, runtime) and the API calls
that create, deploy and route a function through it."""

from __future__ import annotations

from typing import Any

import pytest

from testsupport.processes import wait_until


def functions_api(tenant: str = "acme") -> str:
    return f"/t/{tenant}/api/v1/functions"


@pytest.fixture
def stack(celery_worker_process: Any, live_server_url: str, runtime_session: Any) -> Any:
    """The session's runtime, with empty tenant namespaces: what earlier tests deployed is not ours."""
    for namespace in ("faas-acme", "faas-globex"):
        runtime_session.wipe(namespace)
    return runtime_session


def latest_deployment(client: Any, name: str, tenant: str = "acme") -> dict[str, Any]:
    return client.get(f"{functions_api(tenant)}/{name}/deployments/").json()["results"][0]


def deploy_and_finish(client: Any, name: str, tenant: str = "acme") -> dict[str, Any]:
    """Queue a deployment and return it once it is live or failed."""
    api = functions_api(tenant)
    response = client.post(f"{api}/{name}/deployments/")
    assert response.status_code == 202, response.content
    deployment_id = response.json()["id"]

    def finished() -> dict[str, Any] | None:
        body = client.get(f"{api}/{name}/deployments/{deployment_id}/").json()
        return body if body["state"] in ("live", "failed") else None

    return dict(wait_until(finished, timeout=120, interval=0.2, message="the deployment did not finish"))


def deploy_and_wait(client: Any, name: str, tenant: str = "acme") -> dict[str, Any]:
    deployment = deploy_and_finish(client, name, tenant)
    assert deployment["state"] == "live", deployment
    assert [s["state"] for s in deployment["steps"]][-3:] == ["applying", "waiting", "live"]
    return deployment


def create_function(client: Any, name: str, files: dict[str, str], path: str, tenant: str = "acme") -> None:
    api = functions_api(tenant)
    assert client.post(f"{api}/", {"name": name}, format="json").status_code == 201
    assert client.put(f"{api}/{name}/code/", {"files": files}, format="json").status_code == 200
    trigger = {"name": name, "methods": ["GET", "POST"], "path": path, "target_kind": "draft"}
    assert client.post(f"{api}/{name}/triggers/", trigger, format="json").status_code == 201
