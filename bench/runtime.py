"""Benchmark of the local runtime (not a test): warm latency and throughput through the router
and straight to a worker, cold starts for poolmgr and newdeploy, and what the sandbox costs.

Two runtimes run side by side, one with the sandbox (the default) and one with
``RUNTIME_SANDBOX=off``, and are measured in interleaved rounds (the order alternates), so that
both see the same machine: these machines are shared and noisy, and only figures of one run compare.
Each figure is the median over the rounds (cold starts: over every sample), with the range of the
round medians; CPU steal during the run is reported.

Run with ``make bench`` (or ``.venv/bin/python bench/runtime.py [--rounds N]``). Load comes from
``wrk`` (Debian package; ``make bench`` installs it). Prints a table, then one JSON object.
Targets (same run): the sandbox adds at most 2 ms to the poolmgr and newdeploy cold start p50 and
costs less than 10% of warm throughput at 32 connections. A poolmgr cold start specializes a worker of
the warm pool; a newdeploy one (``MinScale: 0``) forks a worker and specializes it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.embedded import free_port
from runtime import interpreters
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.runtime import METRICS_TOKEN, RuntimeProcess

NS = "faas-bench"
ROOT = "/bench"  # the namespace's tenant root: its routes live under it
HELLO = "def main():\n    return 'hello, world'\n"
DURATION = "5s"
POOLSIZE = 3
MODES = ("sandbox", "nosandbox")
SAMPLES = {"poolmgr": 60, "newdeploy": 30}  # cold starts per mode, over all rounds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


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
    text.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    body = text.getresponse().read().decode()
    match = re.search(rf'runtime_pool_warm_workers\{{environment="python",namespace="{NS}"\}} ([\d.]+)', body)
    return bool(match) and float(match.group(1)) >= size  # type: ignore[union-attr]


def deploy(runtime: RuntimeProcess, name: str, **fn: object) -> None:
    for obj in (
        package_literal(NS, f"{name}-pkg", HELLO),
        function(NS, name, package=f"{name}-pkg", **fn),  # type: ignore[arg-type]
        httptrigger(NS, name, f"{ROOT}/{name}", function_name=name, methods=("GET",)),
    ):
        response = runtime.apply(obj)
        if response.status_code not in (200, 201):
            raise SystemExit(f"deploy failed: {response.text}")


class ColdStarts:
    """Cold starts of fresh functions (each name used once per runtime)."""

    def __init__(self) -> None:
        self.counter = 0

    def measure(self, runtime: RuntimeProcess, executor: str, count: int) -> list[float]:
        times = []
        for _ in range(count):
            self.counter += 1
            name = f"cold-{executor}-{self.counter}"
            deploy(runtime, name, executor=executor, min_scale=0, max_scale=1)
            deadline = time.monotonic() + 30
            while executor == "poolmgr" and not warm_pool_ready(runtime, POOLSIZE):
                if time.monotonic() > deadline:
                    raise SystemExit("the warm pool did not refill")
                time.sleep(0.01)
            elapsed, status = timed_get(runtime.router_port, f"{ROOT}/{name}")
            if status != 200:
                raise SystemExit(f"cold start of {name} answered {status}")
            times.append(elapsed)
        return times


def direct_worker(code_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    # The runtime's default Python (as its workers have), not the portal's: the same interpreter
    # on both sides of the router-overhead comparison.
    runtimes = interpreters.installed()
    assert runtimes.default is not None, runtimes.describe()
    worker = subprocess.Popen(
        [str(runtimes.found[runtimes.default].python), "-m", "runtime.worker", "--port", str(port)],
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


def start_runtimes(tmp: Path, runtimes: dict[str, RuntimeProcess]) -> None:
    """Both runtimes, each with a warm ``hello``; added to ``runtimes`` as they start (the caller
    stops them whatever happens)."""
    for mode in MODES:
        env = {"RUNTIME_SANDBOX": "off"} if mode == "nosandbox" else {}
        runtime = runtimes[mode] = RuntimeProcess(state_dir=tmp / mode, env=env)
        runtime.start()
        runtime.apply(environment(NS, "python", poolsize=POOLSIZE))
        deploy(runtime, "hello", concurrency=0, requests_per_pod=0)
        wrk(f"{runtime.router}{ROOT}/hello", 32)  # warm: a worker per connection, caches filled


def run_rounds(rounds: int, runtimes: dict[str, RuntimeProcess], direct: str) -> dict[str, list]:
    """Every figure of every round. The modes' order alternates from round to round, and cold
    starts alternate sample by sample, so that both modes see the same moments of the machine."""
    samples: dict[str, list] = defaultdict(list)
    cold = {mode: ColdStarts() for mode in MODES}
    counts = {kind: max(1, total // rounds) for kind, total in SAMPLES.items()}
    for index in range(rounds):
        order = MODES if index % 2 == 0 else tuple(reversed(MODES))
        samples["direct_c1"].append(wrk(direct, 1))
        samples["direct_c32"].append(wrk(direct, 32))
        for mode in order:
            url = f"{runtimes[mode].router}{ROOT}/hello"
            samples[f"{mode}_c1"].append(wrk(url, 1))
            samples[f"{mode}_c32"].append(wrk(url, 32))
        for executor, count in counts.items():
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(count):
                for mode in order:
                    times[mode] += cold[mode].measure(runtimes[mode], executor, 1)
            for mode in MODES:
                samples[f"{mode}_{executor}"].append(times[mode])
    return samples


def summarize(samples: dict[str, list], steal_cores: float, rounds: int) -> dict[str, object]:
    def median_of(key: str, field: str) -> float:
        return statistics.median(s[field] for s in samples[key])

    def spread(key: str, field: str) -> list[float]:
        values = [s[field] for s in samples[key]]
        return [round(min(values), 3), round(max(values), 3)]

    def cold(key: str) -> list[float]:
        return [t for round_times in samples[key] for t in round_times]

    def cold_spread(key: str) -> list[float]:
        medians = [statistics.median(times) for times in samples[key]]
        return [round(min(medians), 2), round(max(medians), 2)]

    result: dict[str, object] = {"bench": "runtime", "rounds": rounds, "steal_cores": round(steal_cores, 2)}
    for mode in MODES:
        suffix = "" if mode == "sandbox" else "_nosandbox"
        pool, newdeploy = cold(f"{mode}_poolmgr"), cold(f"{mode}_newdeploy")
        result.update({
            f"router_p50_ms{suffix}": round(median_of(f"{mode}_c1", "p50"), 3),
            f"router_p99_ms{suffix}": round(median_of(f"{mode}_c1", "p99"), 3),
            f"rps_c1{suffix}": round(median_of(f"{mode}_c1", "rps")),
            f"rps_c32{suffix}": round(median_of(f"{mode}_c32", "rps")),
            f"rps_c32_range{suffix}": spread(f"{mode}_c32", "rps"),
            f"router_c32_p50_ms{suffix}": round(median_of(f"{mode}_c32", "p50"), 3),
            f"router_c32_p99_ms{suffix}": round(median_of(f"{mode}_c32", "p99"), 3),
            f"poolmgr_cold_p50_ms{suffix}": round(statistics.median(pool), 2),
            f"poolmgr_cold_p99_ms{suffix}": round(percentile(pool, 99), 2),
            f"poolmgr_cold_p50_range_ms{suffix}": cold_spread(f"{mode}_poolmgr"),
            f"newdeploy_cold_p50_ms{suffix}": round(statistics.median(newdeploy), 2),
            f"newdeploy_cold_p99_ms{suffix}": round(percentile(newdeploy, 99), 2),
            f"newdeploy_cold_p50_range_ms{suffix}": cold_spread(f"{mode}_newdeploy"),
        })  # fmt: skip
    result.update({
        "direct_p50_ms": round(median_of("direct_c1", "p50"), 3),
        "direct_p99_ms": round(median_of("direct_c1", "p99"), 3),
        "direct_rps_c1": round(median_of("direct_c1", "rps")),
        "direct_rps_c32": round(median_of("direct_c32", "rps")),
        "cold_starts": {kind: len(cold(f"sandbox_{kind}")) for kind in SAMPLES},
    })  # fmt: skip
    figures = {key: value for key, value in result.items() if isinstance(value, (int, float))}

    def minus(key: str, reference: str, digits: int = 2) -> float:
        return round(figures[key] - figures[reference], digits)

    result["router_overhead_p50_ms"] = minus("router_p50_ms", "direct_p50_ms", 3)
    for kind in ("poolmgr", "newdeploy"):
        result[f"sandbox_cost_{kind}_cold_p50_ms"] = minus(
            f"{kind}_cold_p50_ms", f"{kind}_cold_p50_ms_nosandbox"
        )
    result["sandbox_rps_c32_ratio"] = round(figures["rps_c32"] / figures["rps_c32_nosandbox"], 3)
    return result


def report(r: dict[str, object]) -> None:
    rows = []
    for mode in MODES:
        s = "" if mode == "sandbox" else "_nosandbox"
        rows += [
            (f"{mode}: warm, router, c=1", r[f"router_p50_ms{s}"], r[f"router_p99_ms{s}"], r[f"rps_c1{s}"], ""),
            (f"{mode}: warm, router, c=32", r[f"router_c32_p50_ms{s}"], r[f"router_c32_p99_ms{s}"],
             r[f"rps_c32{s}"], r[f"rps_c32_range{s}"]),
            (f"{mode}: cold, poolmgr", r[f"poolmgr_cold_p50_ms{s}"], r[f"poolmgr_cold_p99_ms{s}"], "",
             r[f"poolmgr_cold_p50_range_ms{s}"]),
            (f"{mode}: cold, newdeploy", r[f"newdeploy_cold_p50_ms{s}"], r[f"newdeploy_cold_p99_ms{s}"], "",
             r[f"newdeploy_cold_p50_range_ms{s}"]),
        ]  # fmt: skip
    rows += [
        ("direct to a worker, c=1", r["direct_p50_ms"], r["direct_p99_ms"], r["direct_rps_c1"], ""),
        ("direct to a worker, c=32", "", "", r["direct_rps_c32"], ""),
        ("router overhead (sandbox)", r["router_overhead_p50_ms"], "", "", ""),
    ]
    print(f"{'':<32}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}  range of round medians")
    for label, p50, p99, rps, spread in rows:
        print(f"{label:<32}{p50!s:>10}{p99!s:>10}{rps!s:>10}  {spread}")
    cost_pool, cost_nd = r["sandbox_cost_poolmgr_cold_p50_ms"], r["sandbox_cost_newdeploy_cold_p50_ms"]
    print(f"sandbox cost: cold start p50 +{cost_pool} ms (poolmgr), +{cost_nd} ms (newdeploy), target <= 2 ms;"
          f" warm throughput c=32 x{r['sandbox_rps_c32_ratio']}, target >= 0.9;"
          f" {r['rounds']} rounds, CPU steal {r['steal_cores']} cores")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    steal_before, total_before = cpu_times()
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        runtimes: dict[str, RuntimeProcess] = {}
        worker = None
        try:
            start_runtimes(Path(tmp), runtimes)
            worker, port = direct_worker(Path(tmp))
            samples = run_rounds(args.rounds, runtimes, f"http://127.0.0.1:{port}/")
        finally:
            if worker is not None:
                worker.terminate()
            for runtime in runtimes.values():
                runtime.stop()
    steal_after, total_after = cpu_times()
    steal = (steal_after - steal_before) / max(1, total_after - total_before) * (os.cpu_count() or 1)
    result = summarize(samples, steal, args.rounds)
    report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
