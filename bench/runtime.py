"""Benchmark of the local runtime (not a test): warm latency and throughput through the
router and straight to a worker, and cold starts for poolmgr and newdeploy.

Run with ``make bench`` (or ``.venv/bin/python bench/runtime.py``). Load comes from ``wrk``
(Debian package; ``make bench`` installs it). Prints a table, then one JSON object.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.embedded import free_port
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.runtime import RuntimeProcess

NS = "bench"
HELLO = "def main():\n    return 'hello, world'\n"
DURATION = "5s"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wrk(url: str, connections: int, threads: int = 1) -> dict[str, float]:
    """Run wrk; returns p50/p99 latency (ms) and requests per second."""
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", DURATION, "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return {"p50": latency("50"), "p99": latency("99"), "rps": rps}


def timed_get(port: int, path: str) -> tuple[float, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return elapsed, response.status


def warm_pool_ready(runtime: RuntimeProcess, size: int) -> bool:
    text = http.client.HTTPConnection("127.0.0.1", runtime.control_port)
    text.request("GET", "/metrics")
    body = text.getresponse().read().decode()
    match = re.search(r'runtime_pool_warm_workers\{environment="python",namespace="bench"\} ([\d.]+)', body)
    return bool(match) and float(match.group(1)) >= size  # type: ignore[union-attr]


def deploy(runtime: RuntimeProcess, name: str, **fn: object) -> None:
    for obj in (
        package_literal(NS, f"{name}-pkg", HELLO),
        function(NS, name, package=f"{name}-pkg", **fn),  # type: ignore[arg-type]
        httptrigger(NS, name, f"/{name}", function_name=name, methods=("GET",)),
    ):
        response = runtime.apply(obj)
        if response.status_code not in (200, 201):
            raise SystemExit(f"deploy failed: {response.text}")


def cold_starts(runtime: RuntimeProcess, executor: str, count: int, poolsize: int) -> list[float]:
    times = []
    for i in range(count):
        name = f"cold-{executor}-{i}"
        deploy(runtime, name, executor=executor, min_scale=0, max_scale=1)
        deadline = time.monotonic() + 30
        while executor == "poolmgr" and not warm_pool_ready(runtime, poolsize):
            if time.monotonic() > deadline:
                raise SystemExit("the warm pool did not refill")
            time.sleep(0.01)
        elapsed, status = timed_get(runtime.router_port, f"/{name}")
        if status != 200:
            raise SystemExit(f"cold start of {name} answered {status}")
        times.append(elapsed)
    return times


def direct_worker(code_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "runtime.worker", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    (code_dir / "main.py").write_text(HELLO)
    body = json.dumps({"filepath": str(code_dir), "functionName": "main", "FunctionMetadata": {"name": "d"}})
    deadline = time.monotonic() + 20
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", "/v2/specialize", body, {"Content-Type": "application/json"})
            if connection.getresponse().status == 200:
                return worker, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    poolsize = 3
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        runtime = RuntimeProcess(state_dir=Path(tmp) / "state").start()
        worker = None
        try:
            runtime.apply(environment(NS, "python", poolsize=poolsize))
            deploy(runtime, "hello", concurrency=0, requests_per_pod=0)
            url = f"{runtime.router}/hello"
            wrk(url, 32)  # warm: specialize a worker per connection, fill caches
            router_c1, router_c32 = wrk(url, 1), wrk(url, 32)
            worker, port = direct_worker(Path(tmp))
            wrk(f"http://127.0.0.1:{port}/", 1)
            direct_c1, direct_c32 = wrk(f"http://127.0.0.1:{port}/", 1), wrk(f"http://127.0.0.1:{port}/", 32)
            worker.terminate()
            worker = None
            pool = cold_starts(runtime, "poolmgr", 40, poolsize)
            newdeploy = cold_starts(runtime, "newdeploy", 20, poolsize)
        finally:
            if worker is not None:
                worker.terminate()
            runtime.stop()
    result = {
        "bench": "runtime",
        "router_p50_ms": round(router_c1["p50"], 3),
        "router_p99_ms": round(router_c1["p99"], 3),
        "direct_p50_ms": round(direct_c1["p50"], 3),
        "direct_p99_ms": round(direct_c1["p99"], 3),
        "router_overhead_p50_ms": round(router_c1["p50"] - direct_c1["p50"], 3),
        "rps_c1": round(router_c1["rps"]),
        "rps_c32": round(router_c32["rps"]),
        "direct_rps_c1": round(direct_c1["rps"]),
        "direct_rps_c32": round(direct_c32["rps"]),
        "router_c32_p50_ms": round(router_c32["p50"], 3),
        "router_c32_p99_ms": round(router_c32["p99"], 3),
        "poolmgr_cold_p50_ms": round(statistics.median(pool), 2),
        "poolmgr_cold_p99_ms": round(percentile(pool, 99), 2),
        "newdeploy_cold_p50_ms": round(statistics.median(newdeploy), 2),
        "newdeploy_cold_p99_ms": round(percentile(newdeploy, 99), 2),
    }
    r = result
    rows = [
        ("warm, router, c=1", r["router_p50_ms"], r["router_p99_ms"], r["rps_c1"]),
        ("warm, direct, c=1", r["direct_p50_ms"], r["direct_p99_ms"], r["direct_rps_c1"]),
        ("warm, router, c=32", r["router_c32_p50_ms"], r["router_c32_p99_ms"], r["rps_c32"]),
        ("warm, direct, c=32", "", "", r["direct_rps_c32"]),
        ("router overhead", r["router_overhead_p50_ms"], "", ""),
        ("cold start, poolmgr", r["poolmgr_cold_p50_ms"], r["poolmgr_cold_p99_ms"], f"n={len(pool)}"),
        (
            "cold start, newdeploy",
            r["newdeploy_cold_p50_ms"],
            r["newdeploy_cold_p99_ms"],
            f"n={len(newdeploy)}",
        ),
    ]
    print(f"{'':<24}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for label, p50, p99, rps in rows:
        print(f"{label:<24}{p50!s:>10}{p99!s:>10}{rps!s:>10}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
