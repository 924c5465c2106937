"""Hostile functions through the whole product: written by two tenants' developers, built and
deployed by the portal (real Celery worker, real runtime), called through the router, on both
executors, both tenants running at once. Each test lists what a function tried; every attempt on
the host or on the other tenant is refused, and what a function may do still works.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from django.conf import settings

from testsupport.e2e import create_function, deploy_and_wait, functions_api
from testsupport.hostile import (
    ALLOWED_DEV,
    NO_CAPABILITIES,
    PROBE,
    OutsideHost,
    attempt,
    denied,
    host_address,
    postgres_targets,
    redis_address,
    succeeded,
)
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, WHOAMI, host_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]
TENANTS = ("acme", "globex")
Mi = 2**20
# Ports of this machine's own services (their standard ones): none may be reachable either.
MACHINE_SERVICES = {"postgres": 5432, "redis": 6379, "rabbitmq": 5672, "mosquitto": 1883, "nats": 4222}


@dataclass
class Deployed:
    router: str
    executor: str

    def probe(self, tenant: str, probes: dict[str, Any]) -> dict[str, Any]:
        return attempt(self.router, f"/{tenant}/probe", probes)

    def worker_pid(self, tenant: str) -> int:
        return host_pid(httpx.get(f"{self.router}/{tenant}/whoami", timeout=30).text)


@pytest.fixture(params=["poolmgr", "newdeploy"])
def deployed(request: pytest.FixtureRequest, world: Any, api: Any, stack: Any) -> Deployed:
    """The probe and a function that tells its pid, in acme (by Bob) and in globex (by Oscar)."""
    for tenant, user in (("acme", world.bob), ("globex", world.oscar)):
        client = api(user)
        for name, code in (("probe", PROBE), ("whoami", WHOAMI)):
            create_function(client, name, {"main.py": code}, f"/{name}", tenant=tenant)
            settings_ = {"executor": request.param, "memory_mb": 128}
            response = client.patch(f"{functions_api(tenant)}/{name}/", settings_, format="json")
            assert response.status_code == 200, response.content
            deploy_and_wait(client, name, tenant=tenant)
    return Deployed(stack.router, request.param)


def _uid(results: dict[str, Any]) -> int:
    return int(results["me"]["value"]["Uid"].split()[0])


def test_functions_run_as_their_tenants_own_unprivileged_uid(deployed: Deployed) -> None:
    seen = {tenant: deployed.probe(tenant, {"me": ["identity"]}) for tenant in TENANTS}

    assert _uid(seen["acme"]) != _uid(seen["globex"])
    for results in seen.values():
        me = results["me"]["value"]
        assert _uid(results) >= 1000
        assert len(set(me["Uid"].split())) == 1
        assert {key: me[key] for key in NO_CAPABILITIES} == NO_CAPABILITIES
        assert me["NoNewPrivs"] == "1"


def test_a_function_sees_and_signals_no_process_outside_its_tenant(
    deployed: Deployed, stack: Any, celery_worker_process: Any
) -> None:
    targets = {
        "processes": ["processes"],
        "other_tenant": ["signal", deployed.worker_pid("globex")],
        "runtime": ["signal", stack.process.pid],
        "celery": ["signal", celery_worker_process.pid],
        "tests": ["signal", os.getpid()],
        "ptrace_zygote": ["ptrace", 1],
        "user_namespace": ["unshare_user"],
    }
    results = deployed.probe("acme", targets)

    assert all("runtime.worker.zygote" in cmd for cmd in results["processes"]["value"].values())
    denied(results, *(name for name in targets if name != "processes"))
    for name in ("other_tenant", "runtime", "celery", "tests"):
        assert "No such process" in results[name]["error"]


def test_a_function_reads_only_its_own_package_and_writes_only_its_tmp(
    deployed: Deployed, stack: Any
) -> None:
    media = Path(settings.MEDIA_ROOT)
    archives = sorted(str(p) for p in (media / "packages").iterdir())
    assert archives  # both tenants' built packages are there, on the host
    targets = {
        # One main.py deploys as the file itself (Fission's single-file code): the runtime keeps it
        # as function.py in the package the worker sees at /userfunc.
        "own": ["read", "/userfunc/function.py"],
        "tmp": ["write", "/tmp/mine", 100],
        "dev": ["listdir", "/dev"],
        "shadow": ["read", "/etc/shadow"],
        "archives": ["listdir", str(media)],
        "an_archive": ["read", archives[0]],
        "runtime_state": ["listdir", str(stack.state_dir)],
        "packages_on_host": ["listdir", str(stack.state_dir / "packages")],
        "portal_source": ["read", str(Path(settings.BASE_DIR) / "portal" / "settings.py")],
        "secret_key_env": ["read", f"/proc/{os.getpid()}/environ"],
        "other_packages": ["listdir", "/packages"],
        "write_root": ["write", "/owned"],
        "write_package": ["write", "/userfunc/function.py"],
        "tmp_overflow": ["write", "/tmp/huge", 80 * Mi],
    }
    results = deployed.probe("acme", targets)

    succeeded(results, "own", "tmp", "dev", "other_packages")
    assert "import ctypes" in results["own"]["value"]
    assert set(results["dev"]["value"]) <= ALLOWED_DEV
    assert results["other_packages"]["value"] == []
    denied(results, *(name for name in targets if name not in ("own", "tmp", "dev", "other_packages")))


def test_a_function_reaches_no_service_of_the_host(
    deployed: Deployed, stack: Any, live_server_url: str
) -> None:
    here = host_address()
    redis_host, redis_port = redis_address()
    portal = urlparse(live_server_url)
    prometheus = urlparse(settings.PROMETHEUS_URL)
    targets: dict[str, list[Any]] = {
        "redis": ["tcp", redis_host, redis_port],
        "portal": ["tcp", portal.hostname, portal.port],
        "portal_on_host_address": ["tcp", here, portal.port],
        "runtime_control": ["tcp", "127.0.0.1", stack.control_port],
        "router": ["tcp", "127.0.0.1", stack.router_port],
        "prometheus": ["tcp", prometheus.hostname, prometheus.port],
        "dns": ["resolve", "example.com"],
        **{name: ["tcp", "127.0.0.1", port] for name, port in MACHINE_SERVICES.items()},
        **{f"{name}_on_host_address": ["tcp", here, port] for name, port in MACHINE_SERVICES.items()},
        **postgres_targets(),
    }
    results = deployed.probe("globex", targets)

    denied(results, *targets)


def test_internet_egress_is_the_tenants_setting(deployed: Deployed, world: Any, api: Any,
                                                outside_host: OutsideHost, stack: Any) -> None:  # fmt: skip
    targets = {
        "outside": ["tcp", outside_host.address, outside_host.port],
        "router_on_host_address": ["tcp", host_address(), stack.router_port],
        "router": ["tcp", "127.0.0.1", stack.router_port],
    }
    denied(deployed.probe("acme", targets), "outside")  # off by default

    _set_egress(api(world.admin), stack, "acme", on=True)
    results = deployed.probe("acme", targets)
    succeeded(results, "outside")
    assert results["outside"]["value"] == f"connected: {outside_host.banner}"
    denied(results, "router", "router_on_host_address")  # never the host
    denied(deployed.probe("globex", targets), "outside")  # its own setting: off

    _set_egress(api(world.admin), stack, "acme", on=False)
    denied(deployed.probe("acme", targets), "outside")


def _set_egress(admin: Any, stack: Any, tenant: str, *, on: bool) -> None:
    response = admin.patch(f"/api/v1/tenants/{tenant}/", {"internet_egress": on}, format="json")
    assert response.status_code == 200, response.content
    names = lambda: {p["metadata"]["name"] for p in _policies(stack, f"faas-{tenant}")}  # noqa: E731
    wait_until(lambda: ("allow-internet-egress" in names()) == on, timeout=60,
               message="the tenant's network policy did not reach the runtime")  # fmt: skip


def _policies(stack: Any, namespace: str) -> list[dict[str, Any]]:
    url = f"{stack.control}/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    items: list[dict[str, Any]] = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).json()["items"]
    return items


def test_what_a_function_prints_reaches_its_own_tenants_logs(
    deployed: Deployed, world: Any, api: Any
) -> None:
    probes = {"say": ["print", "hello from the sandbox"], "sub": ["subprocess", "from a subprocess"]}
    call = api(world.bob).post(
        f"{functions_api('acme')}/probe/invoke/",
        {"method": "POST", "path": "/probe", "headers": {"Content-Type": "application/json"},
         "body": json.dumps(probes)},
        format="json",
    )  # fmt: skip
    assert call.status_code == 201, call.content
    assert call.json()["status"] == 200
    assert "hello from the sandbox" in [line["message"] for line in call.json()["logs"]]

    def lines(user: Any, tenant: str) -> list[str]:
        body = api(user).get(f"/t/{tenant}/api/v1/logs/?function=probe").json()
        return [record["message"] for record in body["results"]]

    wait_until(lambda: "from a subprocess" in lines(world.bob, "acme"), timeout=30,
               message="a subprocess's output did not reach the logs")  # fmt: skip
    assert "hello from the sandbox" not in lines(world.oscar, "globex")


def test_hitting_a_limit_fails_only_that_request(deployed: Deployed) -> None:
    succeeded(deployed.probe("acme", {"allocate": ["allocate", 32]}), "allocate")

    oom = httpx.post(f"{deployed.router}/acme/probe", json={"a": ["allocate", 512]}, timeout=60)
    assert oom.status_code >= 500  # over its 128 MiB: that call failed
    denied(deployed.probe("acme", {"threads": ["threads", 1000]}), "threads")  # over its pids limit

    succeeded(deployed.probe("acme", {"allocate": ["allocate", 32]}), "allocate")  # the next one works
    succeeded(deployed.probe("globex", {"allocate": ["allocate", 32]}), "allocate")


def test_no_route_of_one_tenant_serves_another(deployed: Deployed, stack: Any) -> None:
    # Even with the runtime's control token (which no function can read), a namespace cannot
    # claim another tenant's URL.
    stolen = {
        "apiVersion": "fission.io/v1", "kind": "HTTPTrigger",
        "metadata": {"name": "stolen", "namespace": "faas-acme"},
        "spec": {"relativeurl": "/globex/probe", "methods": ["POST"],
                 "functionref": {"type": "name", "name": "probe-draft"}},
    }  # fmt: skip
    url = f"{stack.control}/apis/fission.io/v1/namespaces/faas-acme/httptriggers"
    response = httpx.post(url, json=stolen, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422
    assert response.json()["error"]["detail"] == {"field": "spec.relativeurl"}

    uids = {tenant: _uid(deployed.probe(tenant, {"me": ["identity"]})) for tenant in TENANTS}
    assert uids["acme"] != uids["globex"]  # /globex/probe is globex's function, /acme/probe acme's
    assert deployed.probe("globex", {"me": ["identity"]})["me"]["value"]["Uid"].startswith(
        str(uids["globex"])
    )


def test_every_worker_is_gone_with_its_tenant(deployed: Deployed, world: Any, api: Any) -> None:
    pid = deployed.worker_pid("globex")
    assert pid > 0
    response = api(world.admin).delete("/api/v1/tenants/globex/?confirm=globex")
    assert response.status_code in (202, 204), response.content
    wait_until(lambda: not _alive(pid), timeout=60, message="the deleted tenant's worker still runs")
    succeeded(deployed.probe("acme", {"alive": ["getpid"]}), "alive")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
