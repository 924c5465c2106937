"""The sandbox, attacked: a hostile function in each of two tenants, on a real runtime, called
through the router, on both executors. Each test names what a function tried, and checks that
it was refused, while what a function may do (read its own files, write /tmp, print, allocate
within its limit) still works.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from runtime.logs import stream_name
from runtime.tests.core import AUTH, gauge, quota_used
from testsupport.fission import environment, function, httptrigger, package_literal, zip_bytes
from testsupport.hostile import (
    ALLOWED_DEV,
    NO_CAPABILITIES,
    PROBE,
    OutsideHost,
    attempt,
    denied,
    host_address,
    postgres_targets,
    read_mode,
    redis_address,
    succeeded,
)
from testsupport.processes import command_line, process_fields, processes_of, wait_until
from testsupport.runtime import ROOT as REPO
from testsupport.runtime import TOKEN, WHOAMI, RuntimeProcess, free_port, host_pid

A, B = "faas-acme", "faas-globex"
ROOTS = {A: "/acme", B: "/globex"}
Mi = 2**20
README = "the probe's own file\n"


@dataclass
class Tenants:
    runtime: RuntimeProcess
    executor: str

    def probe(self, namespace: str, probes: dict[str, Any]) -> dict[str, Any]:
        return attempt(self.runtime.router, f"{ROOTS[namespace]}/probe", probes)

    def package_dir(self, namespace: str) -> Path:
        directories = list((self.runtime.state_dir / "packages" / namespace).iterdir())
        return next(d for d in directories if (d / "deploy" / "README.txt").exists())


def deploy_probe(runtime: RuntimeProcess, namespace: str, executor: str, **fn: object) -> None:
    archive = zip_bytes({"main.py": PROBE, "README.txt": README})
    for obj in (
        environment(namespace, "python", poolsize=1),
        package_literal(namespace, "probe-pkg", archive),
        function(namespace, "probe", package="probe-pkg", executor=executor, memory="128Mi", **fn),  # type: ignore[arg-type]
        httptrigger(namespace, "probe", f"{ROOTS[namespace]}/probe", methods=("POST",)),
        package_literal(namespace, "whoami-pkg", WHOAMI),
        function(namespace, "whoami", package="whoami-pkg", executor=executor),
        httptrigger(namespace, "whoami", f"{ROOTS[namespace]}/whoami"),
    ):
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text


@pytest.fixture(params=["poolmgr", "newdeploy"])
def tenants(request: pytest.FixtureRequest, runtime: RuntimeProcess) -> Tenants:
    """Two tenants, each with the probe and a function that tells its pid, running at once."""
    for namespace in (A, B):
        deploy_probe(runtime, namespace, request.param)
    return Tenants(runtime, request.param)


def other_worker(tenants: Tenants, namespace: str) -> int:
    """The host pid of a live worker of ``namespace``."""
    return host_pid(tenants.runtime.call(f"{ROOTS[namespace]}/whoami").text)


# ------------------------------------------------------------------ identity and processes


def test_workers_are_batch_scheduled_so_a_request_never_preempts_the_runtime(tenants: Tenants) -> None:
    """runtime.worker.zygote._batch_scheduling: inherited by every worker, in a sandbox too."""
    for namespace in (A, B):
        assert os.sched_getscheduler(other_worker(tenants, namespace)) == os.SCHED_BATCH


def test_each_tenant_shares_the_cpu_as_one_group_beside_the_runtime(tenants: Tenants) -> None:
    """runtime.sandbox.cgroups: a worker's cpu group is inside its tenant's, every tenant's group
    weighs the same, and the runtime's subtree weighs 1024 a CPU (as the kubelet's group of pods
    does): a tenant's many busy workers get one tenant's share, and leave the runtime its own."""
    instance = hashlib.sha256(str(tenants.runtime.state_dir.resolve()).encode()).hexdigest()[:12]
    root = Path(f"/sys/fs/cgroup/cpu{own_cgroup('cpu')}/faas-runtime-{instance}")
    for namespace in (A, B):
        worker = other_worker(tenants, namespace)
        group = cgroup_of(worker, "cpu")
        assert group.parent == root / namespace
        assert str(worker) in (group / "cgroup.procs").read_text().split()
    assert shares(root / A) == shares(root / B) == 1024
    assert shares(root) == 1024 * len(os.sched_getaffinity(0))
    process = tenants.runtime.process
    assert process is not None
    assert cgroup_of(process.pid, "cpu") == root.parent  # the runtime itself is not in it


FIELDS_MODULE = "import sys\ndef main():\n    return sys.modules['runtime.worker.server'].Fields.__module__\n"


def test_a_sandboxed_worker_reads_headers_with_the_compiled_collector(runtime: RuntimeProcess) -> None:
    """runtime/worker/_fields.c (make workerext) comes into the sandbox with the worker's code."""
    for obj in (
        environment(A, "python", poolsize=1),
        package_literal(A, "fields-pkg", FIELDS_MODULE),
        function(A, "fields", package="fields-pkg"),
        httptrigger(A, "fields", f"{ROOTS[A]}/fields"),
    ):
        response = runtime.apply(obj)
        assert response.status_code in (200, 201), response.text
    assert runtime.call(f"{ROOTS[A]}/fields").text == "runtime.worker._fields"


def test_each_tenant_runs_as_its_own_unprivileged_uid_with_no_capabilities(tenants: Tenants) -> None:
    seen = {ns: tenants.probe(ns, {"me": ["identity"]})["me"]["value"] for ns in (A, B)}

    uids = {ns: int(me["Uid"].split()[0]) for ns, me in seen.items()}
    assert uids == {ns: tenants.runtime.tenant_uid(ns) for ns in (A, B)}
    assert uids[A] != uids[B]
    for ns, me in seen.items():
        assert set(me["Uid"].split()) == {str(uids[ns])}  # real, effective, saved, filesystem
        assert set(me["Gid"].split()) == {str(uids[ns])}
        assert me["Groups"] == ""
        assert {key: me[key] for key in NO_CAPABILITIES} == NO_CAPABILITIES
        assert me["NoNewPrivs"] == "1"


def test_a_warm_worker_keeps_only_the_capability_it_needs_to_drop_the_last(runtime: RuntimeProcess) -> None:
    """A pooled worker, before any specialization, has dropped every capability from its
    bounding set but CAP_SETPCAP (isolation.narrow_bounding_set): nothing can gain one back."""
    assert runtime.apply(environment(A, "python", poolsize=2)).status_code in (200, 201)

    def bounding_sets() -> list[str]:
        if not (runtime.state_dir / "sandbox" / "uids.json").exists():
            return []  # the tenant's sandbox is not made yet
        uid = runtime.tenant_uid(A)
        workers = [pid for pid in processes_of(uid) if b"runtime.worker.zygote" in command_line(pid)]
        # The workers are the zygote's children (its own parent, bubblewrap, runs as root).
        return [
            process_fields(pid).get("CapBnd", "")
            for pid in workers
            if int(process_fields(pid).get("PPid", "0")) in workers
        ]

    # Pooled: the runtime counts a worker warm once it serves, after it narrowed the set (a
    # child caught just after its fork still has the zygote's).
    wait_until(lambda: gauge(runtime, "runtime_pool_warm_workers", namespace=A, environment="python") == 2,
               timeout=30)  # fmt: skip
    assert bounding_sets() == ["0000000000000100", "0000000000000100"]  # bit 8: CAP_SETPCAP only


def test_a_function_sees_and_signals_no_process_outside_its_tenant(tenants: Tenants) -> None:
    neighbour = other_worker(tenants, B)
    results = tenants.probe(A, {
        "processes": ["processes"],
        "signal_runtime": ["signal", tenants.runtime.process.pid],  # type: ignore[union-attr]
        "signal_neighbour": ["signal", neighbour],
        "ptrace_zygote": ["ptrace", 1],
        "siblings": ["signal_siblings"],
        "environ_zygote": ["read", "/proc/1/environ"],
        "setuid_root": ["setuid", 0],
        "user_namespace": ["unshare_user"],
        "mount": ["mount", "/tmp"],
    })  # fmt: skip

    processes = results["processes"]["value"]
    assert all("runtime.worker.zygote" in cmdline for cmdline in processes.values()), processes
    assert len(processes) <= 6  # the zygote and this tenant's few workers
    denied(results, "signal_runtime", "signal_neighbour", "ptrace_zygote", "environ_zygote", "setuid_root",
           "user_namespace", "mount")  # fmt: skip
    assert "No such process" in results["signal_neighbour"]["error"]  # not even visible
    # Its own tenant's other processes are listed in /proc, but out of reach: a pid namespace each.
    assert results["siblings"]["value"] == []
    assert tenants.probe(A, {"alive": ["getpid"]})["alive"]["ok"]


def test_what_a_function_starts_ends_with_its_worker(tenants: Tenants) -> None:
    uid = tenants.runtime.tenant_uid(A)
    results = tenants.probe(A, {"sleeper": ["detach", 301], "pid": ["getpid"], "ns": ["pidns"]})
    wait_until(lambda: _sleepers(uid), message="the detached process did not start")

    worker = host_pid(f"{results['pid']['value']} {results['ns']['value']}")
    os.kill(worker, signal.SIGKILL)  # as the kernel's OOM killer, or a crash, would end it

    wait_until(lambda: not _sleepers(uid), message="the function's process outlived its worker")
    succeeded(tenants.probe(A, {"alive": ["getpid"]}), "alive")


def _sleepers(uid: int) -> list[int]:
    return [pid for pid in processes_of(uid) if command_line(pid).startswith(b"/usr/bin/sleep")]


# ------------------------------------------------------------------ files


def test_a_function_sees_its_own_package_and_a_private_tmp_and_nothing_else(tenants: Tenants) -> None:
    state = tenants.runtime.state_dir
    theirs = tenants.package_dir(B)
    results = tenants.probe(A, {
        "root": ["listdir", "/"],
        "dev": ["listdir", "/dev"],
        "own_file": ["read", "/userfunc/deploy/README.txt"],
        "own_package": ["listdir", "/userfunc/deploy"],
        "packages": ["listdir", "/packages"],
        "tmp_write": ["write", "/tmp/scratch", 1000],
        "tmp_read": ["read", "/tmp/scratch"],
        "shadow": ["read", "/etc/shadow"],
        "passwd": ["read", "/etc/passwd"],
        "token": ["read", str(state / "token")],
        "uids": ["read", str(state / "sandbox" / "uids.json")],
        "state": ["listdir", str(state)],
        "their_package": ["read", str(theirs / "deploy" / "main.py")],
        "their_package_in_view": ["listdir", f"/packages/{theirs.name}"],
        "portal_source": ["read", str(Path(__file__).resolve().parents[2] / "portal" / "settings.py")],
        "worker_code": ["listdir", "/opt/faas/runtime"],
        "import_package": ["import", "werkzeug.middleware.proxy_fix"],  # not imported by the zygote
        "import_stdlib": ["import", "xml.dom.minidom"],
        "host_proc": ["read", f"/proc/{os.getpid()}/environ"],
        "root_write": ["write", "/evil"],
        "package_write": ["write", "/userfunc/deploy/main.py"],
        "usr_write": ["write", "/usr/evil"],
        "tmp_overflow": ["write", "/tmp/big", 80 * Mi],  # the runtime's default /tmp is 64 MiB
    })  # fmt: skip

    succeeded(results, "own_file", "own_package", "tmp_write", "tmp_read", "passwd", "worker_code",
              "import_package", "import_stdlib")  # fmt: skip
    assert results["own_file"]["value"] == README
    assert results["own_package"]["value"] == ["README.txt", "main.py"]
    assert results["packages"]["value"] == []  # the tenant's other packages are hidden
    assert results["worker_code"]["value"] == ["__init__.py", "worker"]
    assert set(results["root"]["value"]) <= {"bin", "configs", "dev", "etc", "lib", "lib32", "lib64",
                                             "libx32", "opt", "packages", "proc", "root", "sbin", "secrets",
                                             "tmp", "userfunc", "usr", "work"}  # fmt: skip
    assert set(results["dev"]["value"]) <= ALLOWED_DEV
    assert str(tenants.runtime.tenant_uid(A)) in results["passwd"]["value"]
    denied(results, "shadow", "token", "uids", "state", "their_package", "their_package_in_view")
    denied(results, "portal_source", "host_proc", "root_write", "package_write", "usr_write", "tmp_overflow")
    assert "No space left" in results["tmp_overflow"]["error"]


def test_tmp_is_private_to_each_worker(runtime: RuntimeProcess) -> None:
    deploy_probe(runtime, A, "newdeploy", min_scale=2, max_scale=2, requests_per_pod=1)
    # Every worker is pid 1 of its own pid namespace: the namespace tells them apart.
    writer = {"write": ["write", "/tmp/mine", 3], "read": ["read", "/tmp/mine"], "hold": ["sleep", 2],
              "worker": ["pidns"]}  # fmt: skip
    reader = {"read": ["read", "/tmp/mine"], "worker": ["pidns"]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(attempt, runtime.router, "/acme/probe", writer)
        wait_until(lambda: quota_used(runtime, A, "concurrency") == 1, message="the first call did not start")
        second = attempt(runtime.router, "/acme/probe", reader)  # the other worker: the first is busy
        wrote = first.result()

    succeeded(wrote, "write", "read")
    assert wrote["worker"]["value"] != second["worker"]["value"]
    denied(second, "read")  # its /tmp is its own, and empty


# ------------------------------------------------------------------ network


def test_a_function_reaches_nothing_on_the_host(tenants: Tenants) -> None:
    redis_host, redis_port = redis_address()
    runtime, here = tenants.runtime, host_address()
    worker_sockets = sorted(str(p) for p in (runtime.state_dir / "run" / "workers").glob("*.sock"))
    assert worker_sockets
    targets = {
        "redis": ["tcp", redis_host, redis_port],
        "redis_on_host_address": ["tcp", here, redis_port],
        "control": ["tcp", "127.0.0.1", runtime.control_port],
        "router": ["tcp", "127.0.0.1", runtime.router_port],
        "router_on_host_address": ["tcp", here, runtime.router_port],
        "machine_postgres": ["tcp", "127.0.0.1", 5432],
        "slirp_gateway": ["tcp", "10.0.2.2", runtime.router_port],
        "worker_socket": ["unix", worker_sockets[0]],
        "dns": ["resolve", "pypi.org"],
        **postgres_targets(),
    }
    results = tenants.probe(A, targets)

    denied(results, *targets)


def test_egress_follows_the_namespace_network_policy(tenants: Tenants, outside_host: OutsideHost) -> None:
    runtime, here = tenants.runtime, host_address()
    targets = {
        "outside": ["tcp", outside_host.address, outside_host.port],
        "router": ["tcp", "127.0.0.1", runtime.router_port],
        "router_on_host_address": ["tcp", here, runtime.router_port],
        "slirp_gateway": ["tcp", "10.0.2.2", runtime.router_port],
        "private": ["tcp", "10.0.2.3", 53],
    }
    denied(tenants.probe(A, targets), "outside")

    assert runtime.apply(internet_egress(A)).status_code == 201
    results = tenants.probe(A, targets)

    succeeded(results, "outside", "private")  # 10.0.2.3 is slirp4netns's own DNS forwarder
    assert results["outside"]["value"] == f"connected: {outside_host.banner}"
    denied(results, "router", "router_on_host_address", "slirp_gateway")
    denied(tenants.probe(B, targets), "outside")  # the other tenant's policy did not change

    url = f"{runtime.control}/apis/networking.k8s.io/v1/namespaces/{A}/networkpolicies/allow-internet-egress"
    assert httpx.delete(url, headers=AUTH).status_code == 200
    denied(tenants.probe(A, targets), "outside")


def internet_egress(namespace: str) -> dict[str, object]:
    """The portal's internet egress policy (dataplane/namespaces.py): the public internet only."""
    block = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                               "169.254.0.0/16", "100.64.0.0/10"]}  # fmt: skip
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-internet-egress", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": block}]}]},
    }  # fmt: skip


# ------------------------------------------------------------------ limits


def test_hitting_a_limit_fails_only_that_request(tenants: Tenants) -> None:
    within = tenants.probe(A, {"allocate": ["allocate", 32], "threads": ["threads", 20]})
    succeeded(within, "allocate", "threads")

    too_many = tenants.probe(A, {"threads": ["threads", 1000]})  # pids.max is 128 + requestsPerPod
    denied(too_many, "threads")
    assert "can't start new thread" in too_many["threads"]["error"]

    oom = httpx.post(f"{tenants.runtime.router}/acme/probe", json={"a": ["allocate", 512]}, timeout=60)
    assert oom.status_code >= 500  # the memory cgroup killed the worker: that request failed
    again = tenants.probe(A, {"allocate": ["allocate", 32]})
    succeeded(again, "allocate")  # and the next one was served by a new worker
    succeeded(tenants.probe(B, {"alive": ["getpid"]}), "alive")


# ------------------------------------------------------------------ routes


@pytest.mark.parametrize("prefix", [False, True])
def test_the_control_api_refuses_routes_outside_the_tenant(runtime: RuntimeProcess, prefix: bool) -> None:
    for path in ("/globex/stolen", "/acme-evil/x", "/x", "/acmex"):
        response = runtime.apply(httptrigger(A, "stolen", path, function_name="probe", prefix=prefix))
        assert response.status_code == 422, (path, response.text)
        field = "spec.prefix" if prefix else "spec.relativeurl"
        assert response.json()["error"]["detail"] == {"field": field}
    outsider = runtime.apply(httptrigger("not-a-tenant", "t", "/not-a-tenant/x", function_name="f"))
    assert outsider.status_code == 422
    assert (
        runtime.apply(httptrigger(A, "fine", "/acme/x", function_name="f", prefix=prefix)).status_code == 201
    )


def test_a_route_stored_outside_its_tenant_is_never_served(runtime: RuntimeProcess) -> None:
    deploy_probe(runtime, A, "poolmgr")
    runtime.stop()
    # What an older runtime (or a hand-edited state directory) might hold.
    stolen = httptrigger(A, "stolen", "/globex/probe", function_name="probe", methods=("POST",))
    stolen["metadata"].update(resourceVersion="99", uid="x", creationTimestamp="2026-01-01T00:00:00Z")
    path = runtime.state_dir / "objects" / "httptriggers" / A / "stolen.json"
    path.write_text(json.dumps(stolen))
    runtime.start()

    assert httpx.post(f"{runtime.router}/globex/probe", json={}, timeout=30).status_code == 404
    assert "skipping unreadable object" in runtime.log_tail()
    assert "stolen.json" in runtime.log_tail()
    assert httpx.post(f"{runtime.router}/acme/probe", json={}, timeout=30).status_code == 200


def test_secrets_of_the_runtime_are_its_own(runtime: RuntimeProcess) -> None:
    deploy_probe(runtime, A, "poolmgr")
    runtime.call("/acme/whoami")
    state = runtime.state_dir
    assert read_mode(state) == 0o700
    assert read_mode(state / "run") == 0o700
    assert read_mode(state / "run" / "workers") == 0o700
    sockets = [p for p in state.rglob("*") if p.is_socket()]
    assert sockets
    assert all(p.parent == state / "run" / "workers" for p in sockets)  # no zygote socket
    assert all(read_mode(p) == 0o600 for p in sockets)


# ------------------------------------------------------------------ logs


def test_logs_are_attributed_by_the_runtime(runtime: RuntimeProcess) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    client.delete(stream_name(A), stream_name(B))  # the suite's Redis: earlier tests wrote there too
    deploy_probe(runtime, A, "poolmgr")
    deploy_probe(runtime, B, "poolmgr")
    forged = json.dumps({"namespace": B, "function": "victim", "request_id": "forged", "message": "x"})
    response = httpx.post(f"{runtime.router}/acme/probe", timeout=30,
                          json={"p": ["print", "plain line"], "s": ["subprocess", "from a subprocess"],
                                "f": ["print", forged]})  # fmt: skip
    request_id = response.headers["x-fission-request-id"]

    def records(namespace: str) -> list[dict[str, str]]:
        return [fields for _, fields in client.xrange(stream_name(namespace))]  # type: ignore[union-attr,misc]

    wait_until(lambda: len(records(A)) >= 4, timeout=10, message="the lines did not arrive")
    mine = records(A)
    assert {(r["function"], r["namespace"]) for r in mine} == {("probe", A)}
    assert {"request_id": request_id, "stream": "stdout", "message": "plain line"}.items() <= next(
        r for r in mine if r["message"] == "plain line"
    ).items()
    raw = {(r["stream"], r["message"]) for r in mine if r["request_id"] == ""}
    assert ("stdout", "from a subprocess") in raw
    assert ("stderr", "from a subprocess raw stderr") in raw
    assert any(r["message"] == forged for r in mine)  # kept as text, in its own tenant's stream
    assert records(B) == []


def test_a_stopped_runtime_leaves_no_process_and_no_cgroup(runtime: RuntimeProcess) -> None:
    deploy_probe(runtime, A, "newdeploy")
    assert runtime.call("/acme/whoami").status_code == 200
    uid = runtime.tenant_uid(A)
    instance = hashlib.sha256(str(runtime.state_dir.resolve()).encode()).hexdigest()[:12]
    controllers = ("memory", "pids", "cpu")
    groups = [Path(f"/sys/fs/cgroup/{c}{own_cgroup(c)}/faas-runtime-{instance}") for c in controllers]
    assert all(group.is_dir() for group in groups)
    assert processes_of(uid)

    runtime.stop()

    assert not [group for group in groups if group.exists()]
    assert processes_of(uid) == []


def test_a_crashed_runtimes_cgroups_go_when_another_starts(runtime: RuntimeProcess, tmp_path: Path) -> None:
    """runtime.sandbox.cgroups.CgroupTree.sweep_orphans: a runtime killed outright never sweeps its
    subtree, and a restart sweeps only its own state directory's; the next runtime to start, of
    any state directory, sweeps the subtree of every runtime that is gone, and leaves a live
    runtime's (``runtime``, running meanwhile) alone."""
    deploy_probe(runtime, A, "newdeploy")
    assert runtime.call("/acme/whoami").status_code == 200
    crashed = RuntimeProcess(state_dir=tmp_path / "crashed")
    try:
        crashed.start()
        deploy_probe(crashed, B, "newdeploy")
        assert crashed.call("/globex/whoami").status_code == 200
        assert crashed.process is not None
        crashed.process.kill()  # SIGKILL: no shutdown, no sweep
        crashed.process.wait()
    finally:
        crashed.stop()
    left, live = runtime_cgroups(crashed), runtime_cgroups(runtime)
    assert all(group.is_dir() for group in left + live)

    RuntimeProcess(state_dir=tmp_path / "next").start().stop()

    assert [group for group in left if group.exists()] == []
    assert all(group.is_dir() for group in live)
    assert runtime.call("/acme/whoami").status_code == 200


def test_a_second_runtime_on_the_same_state_directory_refuses_to_start(runtime: RuntimeProcess) -> None:
    """It would sweep the first one's workers and share its store; it says why and exits 2 once
    the first one's lock stays held (runtime.sandbox.cgroups.RuntimeLock.hold)."""
    deploy_probe(runtime, A, "newdeploy")
    ports = {"RUNTIME_ROUTER_PORT": str(free_port()), "RUNTIME_CONTROL_PORT": str(free_port())}
    env = dict(os.environ, RUNTIME_STATE_DIR=str(runtime.state_dir), RUNTIME_TOKEN=TOKEN, **ports)
    command = [sys.executable, "-m", "runtime"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "another runtime uses this state directory" in done.stderr
    assert runtime.call("/acme/whoami").status_code == 200


def runtime_cgroups(runtime: RuntimeProcess) -> list[Path]:
    """The roots of ``runtime``'s subtrees, one in each controller (runtime.app: named after a
    hash of its state directory)."""
    instance = hashlib.sha256(str(runtime.state_dir.resolve()).encode()).hexdigest()[:12]
    controllers = ("memory", "pids", "cpu")
    return [Path(f"/sys/fs/cgroup/{c}{own_cgroup(c)}/faas-runtime-{instance}") for c in controllers]


def cgroup_of(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}")
    raise AssertionError(f"process {pid} has no {controller} cgroup")


def shares(group: Path) -> int:
    return int((group / "cpu.shares").read_text())


def own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise AssertionError(f"no {controller} cgroup")
