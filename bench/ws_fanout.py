"""Benchmark of the live metrics fan-out (not a test): N websocket clients subscribed to one
function's metrics, each frame's delivery lag (from the moment the server publishes it to the
moment a client has it), and the ASGI server's CPU time, for N = 100 and N = 1,000.

It runs the real stack in a temporary directory: embedded PostgreSQL and Redis, the local
runtime, Debian's Prometheus (``make bench`` installs it) scraping it every second, and
uvicorn serving portal.asgi; the clients are ``websockets`` connections in this process. Run
with ``make bench`` or ``.venv/bin/python bench/ws_fanout.py``. Prints a table, then one JSON
object on the last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import uvloop
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal import embedded  # noqa: E402
from testsupport.processes import stop_process  # noqa: E402

SIZES = (100, 1000)
INTERVAL_S = 1  # the fastest live interval: the most frames per second
MEASURE_S = 15  # frames counted per size: N x 15
CONNECT_BATCH = 50
TARGET_P99_MS = 250


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def start_services(tmp: Path, stack: contextlib.ExitStack) -> None:
    """PostgreSQL, Redis, the runtime and Prometheus, each stopped by ``stack`` when it closes."""
    os.environ["DATABASE_URL"] = embedded.start_postgres(tmp / "postgres", on_exit="delete")
    redis = embedded.start_redis(tmp / "redis", persist=False)
    stack.callback(redis.stop)
    os.environ.update(
        REDIS_URL=redis.url, PORTAL_SECRET_KEY="bench-only-" + "x" * 40, DJANGO_SETTINGS_MODULE="portal.settings",
        PORTAL_MEDIA_ROOT=str(tmp / "media"), METRICS_SCRAPE_INTERVAL_S="1", METRICS_JOB="runtime",
    )  # fmt: skip
    from testsupport.runtime import METRICS_TOKEN, TOKEN, RuntimeProcess

    runtime = RuntimeProcess(state_dir=tmp / "runtime", own_session=True).start()
    stack.callback(runtime.stop)
    os.environ.update(RUNTIME_URL=runtime.control, RUNTIME_ROUTER_URL=runtime.router, RUNTIME_TOKEN=TOKEN)
    binary = embedded.prometheus_binary()
    if binary is None:
        raise SystemExit("prometheus is not installed: run `make bench` (it installs Debian's prometheus)")
    token = embedded.write_private(tmp / "runtime-token", METRICS_TOKEN)
    target = embedded.ScrapeTarget("runtime", f"127.0.0.1:{runtime.control_port}", token_file=token)
    auth = ("bench", secrets.token_urlsafe(32))  # basic auth, as make run's Prometheus asks for
    config, web_config = embedded.write_prometheus_files(tmp, [target], interval_s=1, users=dict([auth]))
    port = embedded.free_port()
    prometheus = subprocess.Popen(
        embedded.prometheus_command(binary, config, tmp / "prometheus", port, web_config=web_config,
                                    retention="1d"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(stop_process, prometheus)
    os.environ.update(PROMETHEUS_URL=f"http://127.0.0.1:{port}", PROMETHEUS_USERNAME=auth[0],
                      PROMETHEUS_PASSWORD=auth[1])  # fmt: skip


def set_up_tenant() -> str:
    """Schema, tenant ``bench`` with function ``hello``, and a viewer's token (returned)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    from django_tenants.utils import schema_context

    from functions.services.functions import function_create
    from portal.models import User
    from tenants import provisioning, services
    from tenants.models import Tenant, TenantState

    Tenant.objects.get_or_create(
        schema_name="public", defaults={"slug": "_public", "name": "public", "state": TenantState.READY}
    )
    user = User.objects.create_user(username="bench")  # signs in with a token only
    tenant = services.tenant_create(slug="bench", name="Bench", admin=user)
    provisioning.tenant_provision(tenant_id=tenant.pk)
    tenant.refresh_from_db()
    with schema_context(tenant.schema_name):
        function_create(name="hello")
    return services.token_create(tenant=tenant, user=user, name="bench", role="viewer").secret


def start_server(tmp: Path, stack: contextlib.ExitStack) -> tuple[str, int]:
    """uvicorn serving portal.asgi as ``make run`` does; its websocket URL and pid."""
    port = embedded.free_port()
    command = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--ws", "websockets-sansio", "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    log = stack.enter_context((tmp / "web.log").open("wb"))
    server = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    stack.callback(stop_process, server)
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return f"ws://127.0.0.1:{port}/t/bench/ws/live/", server.pid
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the ASGI server did not start:\n" + (tmp / "web.log").read_text()[-2000:])


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.lags: list[float] = []
        self.recording = False
        self.socket: Any = None

    async def open(self) -> None:
        self.socket = await websockets.connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=60
        )
        subscription = {"type": "subscribe", "stream": "metrics", "function": "hello", "interval": INTERVAL_S,
                        "range": "5m"}  # fmt: skip
        await self.socket.send(json.dumps(subscription))
        reply = json.loads(await self.socket.recv())
        if reply.get("type") != "subscribed":
            raise SystemExit(f"subscription refused: {reply}")

    async def listen(self) -> None:
        async for message in self.socket:
            received = time.time()
            frame = json.loads(message)
            if self.recording and frame.get("type") == "metrics":
                if "error" in frame:
                    raise SystemExit(f"the server could not poll Prometheus: {frame['error']}")
                self.lags.append((received - frame["at"]) * 1000)


async def measure(url: str, token: str, size: int, server: psutil.Process) -> dict[str, float]:
    clients = [Client(url, token) for _ in range(size)]
    listeners = []
    for start in range(0, size, CONNECT_BATCH):
        batch = clients[start : start + CONNECT_BATCH]
        await asyncio.gather(*(c.open() for c in batch))
        # Read at once: a client that leaves its frames unread stops answering the server's pings
        # (its queue is full) and is dropped long before the others have connected.
        listeners += [asyncio.create_task(c.listen()) for c in batch]
    await asyncio.sleep(2 * INTERVAL_S)  # every client has had its first frames
    before, own_before = server.cpu_times(), psutil.Process().cpu_times()
    for client in clients:
        client.recording = True
    await asyncio.sleep(MEASURE_S)
    for client in clients:
        client.recording = False
    after, own_after = server.cpu_times(), psutil.Process().cpu_times()
    await asyncio.gather(*(c.socket.close() for c in clients), return_exceptions=True)
    for task in listeners:
        task.cancel()
    lags = [lag for c in clients for lag in c.lags]
    dropped = sum(1 for c in clients if c.socket.close_code not in (None, 1000))
    expected = size * MEASURE_S // INTERVAL_S
    return {
        "frames": len(lags),
        "expected": expected,
        "p50": statistics.median(lags),
        "p99": percentile(lags, 99),
        "max": max(lags),
        "cpu_s": (after.user + after.system) - (before.user + before.system),
        "client_cpu_s": (own_after.user + own_after.system) - (own_before.user + own_before.system),
        "dropped": dropped,
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ws-fanout-"))
    with contextlib.ExitStack() as stack:  # every process stops, whatever fails
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        start_services(tmp, stack)
        token = set_up_tenant()
        url, pid = start_server(tmp, stack)
        server = psutil.Process(pid)
        # uvloop for the clients too: 1,000 of them in one process must not be the bottleneck measured
        results = {size: uvloop.run(measure(url, token, size, server)) for size in SIZES}
    report(results)


def report(results: dict[int, dict[str, float]]) -> None:
    print(f"Live metrics fan-out: one function, interval {INTERVAL_S} s, {MEASURE_S} s measured per size")
    print(f"{'clients':>8} {'frames':>14} {'lag p50 ms':>11} {'lag p99 ms':>11} {'max ms':>8} {'server CPU s':>13}"
          f" {'clients CPU s':>14} {'dropped':>8}")  # fmt: skip
    for size, r in results.items():
        frames = f"{r['frames']}/{r['expected']}"
        print(f"{size:>8} {frames:>14} {r['p50']:>11.1f} {r['p99']:>11.1f} {r['max']:>8.1f} {r['cpu_s']:>13.2f}"
              f" {r['client_cpu_s']:>14.2f} {r['dropped']:>8}")  # fmt: skip
    verdict = "meets" if results[1000]["p99"] <= TARGET_P99_MS else "MISSES"
    print(f"target: lag p99 <= {TARGET_P99_MS} ms at 1,000 clients: {verdict} it")
    summary = {
        "bench": "ws_fanout",
        "lag_p50_ms_100": round(results[100]["p50"], 2),
        "lag_p99_ms_100": round(results[100]["p99"], 2),
        "lag_p50_ms_1000": round(results[1000]["p50"], 2),
        "lag_p99_ms_1000": round(results[1000]["p99"], 2),
        "server_cpu_s_1000": round(results[1000]["cpu_s"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
