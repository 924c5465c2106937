"""Benchmark of the local runtime (not a test): warm latency and throughput through the router
and straight to a worker, cold starts for poolmgr and newdeploy, and what the sandbox costs, against
a reference measured in the same run: Fission's Python environment in its serving mode.

The targets: two runtimes, one with the sandbox (the default: "the router" below) and one with
``RUNTIME_SANDBOX=off``; a worker called directly; the floor, ``bench/floor_proxy.py`` (a proxy
that only copies bytes between the client and that worker: what the extra hop alone costs, with
no target of its own); the HTTP floor, the same proxy with ``--http`` (the router's own HTTP
layer, ``runtime.http``, parsing, framing and forwarding, and nothing else: what the router's HTTP
layer costs beyond the hop, no target either); the reference, ``bench/reference_env.py`` (a
Flask app under bjoern) in its virtualenv ``.build/bench-ref`` (``make bench-ref``) made from the
workers' default interpreter, specialized with the same hello-world code. They run in interleaved
rounds (3 by default), the order of all targets rotating per round, so that all see the same
machine: these machines are shared and noisy, and only figures of one run compare. Warm figures:
``wrk`` (``make bench`` installs it), 5 s at 1 and at 32 connections. Cold starts alternate sample
by sample, each taken once every warm pool is full: poolmgr specializes a worker of the warm pool,
newdeploy (``MinScale: 0``) forks one and specializes it; the reference's specialization (what
Fission's warm pool pod does) is the ``POST /v2/specialize`` of a fresh function file plus the
first ``GET``, on a fresh reference process already listening (a pool is started ahead).

A figure is the median over the rounds (cold starts: over all samples) with the range of the round
medians. A ratio to a reference (``*_vs_*``) is the median of the per-round ratios, with their
range as ``<key>_range``; ``sandbox_rps_c32_ratio`` is a ratio of medians. CPU steal during the run:
``steal_cores`` (/proc/stat). Targets, within the run: the router >= 1.0x the reference's req/s
at 1 and at 32 connections; router overhead p50 <= 25% of a direct call's
(``router_overhead_vs_direct`` = (router p50 - direct p50) / direct p50 <= 0.25); poolmgr cold
start p50 <= the reference's specialization p50 (``poolmgr_cold_vs_ref_specialize`` <= 1.0); the
sandbox adds <= 2 ms to the cold start p50s and keeps >= 0.9x the req/s at 32 connections.
Every server measured (each runtime, the worker, the floors, the reference) runs in a session of
its own, as ``make run`` (honcho) starts the runtime: where the kernel groups CPU time by session
(autogroup), none shares wrk's CPU group. Run with ``make bench`` or
``.venv/bin/python bench/runtime.py [--rounds N]``: prints a table and the targets with
PASS/FAIL, then one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from operator import truediv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.embedded import free_port
from runtime import interpreters
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.runtime import METRICS_TOKEN, RuntimeProcess

REPO = Path(__file__).resolve().parent.parent
REFERENCE_PYTHON = REPO / ".build" / "bench-ref" / "bin" / "python"  # make bench-ref
NS = "faas-bench"
ROOT = "/bench"  # the namespace's tenant root: its routes live under it
HELLO = "def main():\n    return 'hello, world'\n"
DURATION = "5s"
POOLSIZE = 3  # the runtimes' warm pools and the reference's pool of listening processes
MODES = ("sandbox", "nosandbox")
# bench/floor_proxy.py, without and with --http: each floor's key prefix, and its name in the table.
FLOORS = {"floor": "floor: byte-copying proxy", "http_floor": "HTTP floor: runtime.http"}
WARM_TARGETS = (*MODES, "direct", *FLOORS, "ref")
COLD_TARGETS = {"poolmgr": (*MODES, "ref"), "newdeploy": MODES}
SAMPLES = {"poolmgr": 60, "newdeploy": 30}  # cold starts per target, over all rounds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rotated(targets: Sequence[str], index: int) -> tuple[str, ...]:
    """``targets`` rotated by ``index``: each target leads (and follows each other) in turn."""
    shift = index % len(targets)
    return (*targets[shift:], *targets[:shift])


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def steal_since(before: tuple[int, int]) -> float:
    """The CPU steal since ``before`` (``cpu_times()``), in cores."""
    steal, total = cpu_times()
    return (steal - before[0]) / max(1, total - before[1]) * (os.cpu_count() or 1)


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


def request(port: int, method: str, path: str, body: str | None = None) -> int:
    """One request on a new connection (as the router and Fission's fetcher make them); the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def timed_get(port: int, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    status = request(port, "GET", path)
    return (time.perf_counter() - started) * 1000, status


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def warm_pool_ready(runtime: RuntimeProcess, size: int) -> bool:
    text = http.client.HTTPConnection("127.0.0.1", runtime.control_port)
    text.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    body = text.getresponse().read().decode()
    match = re.search(rf'runtime_pool_warm_workers\{{environment="python",namespace="{NS}"\}} ([\d.]+)', body)
    return bool(match) and float(match.group(1)) >= size  # type: ignore[union-attr]


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not ready after {timeout} s")
        time.sleep(0.01)


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

    def measure(self, runtime: RuntimeProcess, executor: str) -> float:
        self.counter += 1
        name = f"cold-{executor}-{self.counter}"
        deploy(runtime, name, executor=executor, min_scale=0, max_scale=1)
        if executor == "poolmgr":
            wait_for(lambda: warm_pool_ready(runtime, POOLSIZE), "the warm pool")
        elapsed, status = timed_get(runtime.router_port, f"{ROOT}/{name}")
        if status != 200:
            raise SystemExit(f"cold start of {name} answered {status}")
        return elapsed


def start_reference() -> tuple[subprocess.Popen[bytes], int]:
    """A reference process (not specialized yet) and its port; it may not be listening yet."""
    port = free_port()
    process = subprocess.Popen(
        [str(REFERENCE_PYTHON), str(REPO / "bench" / "reference_env.py"), "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    return process, port


class ReferencePool:
    """Reference processes started ahead and listening, as Fission's warm pool pods: each one
    specializes once, then is replaced. ``stop`` ends them all."""

    def __init__(self, code_dir: Path, size: int) -> None:
        self.code_dir, self.counter = code_dir, 0
        self.members = [start_reference() for _ in range(size)]

    def ready(self) -> bool:
        return all(listening(port) for _, port in self.members)

    def measure(self) -> float:
        """One specialization: POST /v2/specialize of a fresh function file, then the first GET."""
        wait_for(self.ready, "the reference's pool")
        self.counter += 1
        source = self.code_dir / f"ref_{self.counter}.py"
        source.write_text(HELLO)
        process, port = self.members.pop(0)
        body = json.dumps({"filepath": str(source), "functionName": "main"})
        started = time.perf_counter()
        statuses = (request(port, "POST", "/v2/specialize", body), request(port, "GET", "/"))
        elapsed = (time.perf_counter() - started) * 1000
        process.terminate()
        process.wait()
        self.members.append(start_reference())
        if statuses != (200, 200):
            raise SystemExit(f"the reference's specialization answered {statuses}")
        return elapsed

    def stop(self) -> None:
        for process, _ in self.members:
            process.terminate()


def specialize_when_up(port: int, body: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if request(port, "POST", "/v2/specialize", body) == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def direct_worker(code_dir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """A worker on a TCP port and a unix socket (the floor proxy's way in), specialized with
    ``HELLO``: the process, its port and its socket."""
    port, socket_path = free_port(), code_dir / "direct.sock"
    # The runtime's default Python (as its workers have), not the portal's: the same interpreter
    # on both sides of the router-overhead comparison.
    runtimes = interpreters.installed()
    assert runtimes.default is not None, runtimes.describe()
    worker = subprocess.Popen(
        [str(runtimes.found[runtimes.default].python), "-m", "runtime.worker", "--port", str(port),
         "--socket", str(socket_path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    (code_dir / "main.py").write_text(HELLO)
    body = json.dumps({"filepath": str(code_dir), "functionName": "main", "FunctionMetadata": {"name": "d"}})
    specialize_when_up(port, body)
    return worker, port, socket_path


def floor_proxy(socket_path: Path, http: bool) -> tuple[subprocess.Popen[bytes], int]:
    """``bench/floor_proxy.py`` (``--http``: the HTTP floor) in front of the direct worker's
    socket, on the router's interpreter (this one), listening once this returns."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "floor_proxy.py"), "--port", str(port), "--socket", str(socket_path),
         *(["--http"] if http else [])],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_for(lambda: listening(port), "the floor proxy")
    return process, port


def warm_reference(code_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The reference specialized with ``HELLO``, for the warm figures."""
    process, port = start_reference()
    source = code_dir / "ref_warm.py"
    source.write_text(HELLO)
    specialize_when_up(port, json.dumps({"filepath": str(source), "functionName": "main"}))
    return process, port


def start_runtimes(tmp: Path, runtimes: dict[str, RuntimeProcess]) -> None:
    """Both runtimes, each with a warm ``hello``; added to ``runtimes`` as they start (the caller
    stops them whatever happens)."""
    for mode in MODES:
        env = {"RUNTIME_SANDBOX": "off"} if mode == "nosandbox" else {}
        runtime = runtimes[mode] = RuntimeProcess(state_dir=tmp / mode, env=env, own_session=True)
        runtime.start()
        runtime.apply(environment(NS, "python", poolsize=POOLSIZE))
        deploy(runtime, "hello", concurrency=0, requests_per_pod=0)
        wrk(f"{runtime.router}{ROOT}/hello", 32)  # warm: a worker per connection, caches filled


def run_rounds(
    rounds: int, runtimes: dict[str, RuntimeProcess], urls: dict[str, str], pool: ReferencePool
) -> dict[str, list]:
    """Every figure of every round. The targets' order rotates from round to round, and cold
    starts alternate sample by sample, each taken once every warm pool is full (a refill never
    runs during another target's sample), so that all targets see the same moments of the machine."""
    samples: dict[str, list] = defaultdict(list)
    cold = {mode: ColdStarts() for mode in MODES}
    counts = {kind: max(1, total // rounds) for kind, total in SAMPLES.items()}

    def settled() -> bool:
        return pool.ready() and all(warm_pool_ready(runtime, POOLSIZE) for runtime in runtimes.values())

    for index in range(rounds):
        for target in rotated(WARM_TARGETS, index):
            samples[f"{target}_c1"].append(wrk(urls[target], 1))
            samples[f"{target}_c32"].append(wrk(urls[target], 32))
        for executor, count in counts.items():
            order = rotated(COLD_TARGETS[executor], index)
            times: dict[str, list[float]] = {target: [] for target in order}
            for _ in range(count):
                for target in order:
                    wait_for(settled, "the warm pools")
                    if target == "ref":
                        times[target].append(pool.measure())
                    else:
                        times[target].append(cold[target].measure(runtimes[target], executor))
            for target in order:
                key = "ref_specialize" if target == "ref" else f"{target}_{executor}"
                samples[key].append(times[target])
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
            f"rps_c1_range{suffix}": spread(f"{mode}_c1", "rps"),
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
    specialize = cold("ref_specialize")
    result.update({
        "direct_p50_ms": round(median_of("direct_c1", "p50"), 3),
        "direct_p99_ms": round(median_of("direct_c1", "p99"), 3),
        "direct_rps_c1": round(median_of("direct_c1", "rps")),
        "direct_rps_c1_range": spread("direct_c1", "rps"),
        "direct_rps_c32": round(median_of("direct_c32", "rps")),
        "direct_rps_c32_range": spread("direct_c32", "rps"),
        "ref_p50_ms": round(median_of("ref_c1", "p50"), 3),
        "ref_p99_ms": round(median_of("ref_c1", "p99"), 3),
        "ref_rps_c1": round(median_of("ref_c1", "rps")),
        "ref_rps_c1_range": spread("ref_c1", "rps"),
        "ref_rps_c32": round(median_of("ref_c32", "rps")),
        "ref_rps_c32_range": spread("ref_c32", "rps"),
        "ref_c32_p50_ms": round(median_of("ref_c32", "p50"), 3),
        "ref_c32_p99_ms": round(median_of("ref_c32", "p99"), 3),
        "ref_specialize_p50_ms": round(statistics.median(specialize), 2),
        "ref_specialize_p99_ms": round(percentile(specialize, 99), 2),
        "ref_specialize_p50_range_ms": cold_spread("ref_specialize"),
        "cold_starts": {kind: len(cold(f"sandbox_{kind}")) for kind in SAMPLES},
    })  # fmt: skip
    for floor in FLOORS:
        result.update({
            f"{floor}_p50_ms": round(median_of(f"{floor}_c1", "p50"), 3),
            f"{floor}_rps_c1": round(median_of(f"{floor}_c1", "rps")),
            f"{floor}_rps_c1_range": spread(f"{floor}_c1", "rps"),
            f"{floor}_rps_c32": round(median_of(f"{floor}_c32", "rps")),
            f"{floor}_rps_c32_range": spread(f"{floor}_c32", "rps"),
        })  # fmt: skip
    result.update(differences(result))
    result.update(ratios(samples))
    result["targets"] = {key: meets(key, result[key]) for key in TARGETS}  # type: ignore[arg-type]
    return result


def differences(result: dict[str, object]) -> dict[str, object]:
    """The sandbox's costs and the router's overhead, in ms and as a ratio of medians."""
    figures = {key: value for key, value in result.items() if isinstance(value, (int, float))}

    def minus(key: str, reference: str, digits: int = 2) -> float:
        return round(figures[key] - figures[reference], digits)

    costs: dict[str, object] = {"router_overhead_p50_ms": minus("router_p50_ms", "direct_p50_ms", 3)}
    for kind in ("poolmgr", "newdeploy"):
        costs[f"sandbox_cost_{kind}_cold_p50_ms"] = minus(
            f"{kind}_cold_p50_ms", f"{kind}_cold_p50_ms_nosandbox"
        )
    costs["sandbox_rps_c32_ratio"] = round(figures["rps_c32"] / figures["rps_c32_nosandbox"], 3)
    return costs


def ratios(samples: dict[str, list]) -> dict[str, object]:
    """The ratios to the references: medians of the per-round ratios, with their range."""

    def warm(key: str, field: str) -> list[float]:
        return [s[field] for s in samples[key]]

    def cold(key: str) -> list[float]:
        return [statistics.median(times) for times in samples[key]]

    def overhead(router: float, direct: float) -> float:  # the issue's: router - direct <= 0.25 x direct
        return (router - direct) / direct

    per_round: dict[str, list[float]] = {
        "router_vs_ref_rps_c1": list(map(truediv, warm("sandbox_c1", "rps"), warm("ref_c1", "rps"))),
        "router_vs_ref_rps_c32": list(map(truediv, warm("sandbox_c32", "rps"), warm("ref_c32", "rps"))),
        "worker_vs_ref_rps_c32": list(map(truediv, warm("direct_c32", "rps"), warm("ref_c32", "rps"))),
        "router_overhead_vs_direct": list(map(overhead, warm("sandbox_c1", "p50"), warm("direct_c1", "p50"))),
        "poolmgr_cold_vs_ref_specialize": list(map(truediv, cold("sandbox_poolmgr"), cold("ref_specialize"))),
    }
    for floor in FLOORS:  # what the hop alone costs, and the hop with the HTTP layer: same references
        per_round.update({
            f"{floor}_overhead_vs_direct": list(map(overhead, warm(f"{floor}_c1", "p50"), warm("direct_c1", "p50"))),
            f"{floor}_vs_ref_rps_c1": list(map(truediv, warm(f"{floor}_c1", "rps"), warm("ref_c1", "rps"))),
            f"{floor}_vs_ref_rps_c32": list(map(truediv, warm(f"{floor}_c32", "rps"), warm("ref_c32", "rps"))),
        })  # fmt: skip
    result: dict[str, object] = {}
    for key, values in per_round.items():
        result[key] = round(statistics.median(values), 3)
        result[f"{key}_range"] = [round(min(values), 3), round(max(values), 3)]
    return result


# Each target of the run, by its JSON key (module docstring): what it compares, and its bound.
TARGETS: dict[str, tuple[str, str, float]] = {
    "router_vs_ref_rps_c1": ("router req/s c=1 / reference's", ">=", 1.0),
    "router_vs_ref_rps_c32": ("router req/s c=32 / reference's", ">=", 1.0),
    "router_overhead_vs_direct": ("(router p50 - direct p50) / direct p50", "<=", 0.25),
    "poolmgr_cold_vs_ref_specialize": ("poolmgr cold p50 / reference specialize p50", "<=", 1.0),
    "sandbox_cost_poolmgr_cold_p50_ms": ("sandbox cost, poolmgr cold p50 (ms)", "<=", 2),
    "sandbox_cost_newdeploy_cold_p50_ms": ("sandbox cost, newdeploy cold p50 (ms)", "<=", 2),
    "sandbox_rps_c32_ratio": ("sandbox req/s c=32 / no sandbox's", ">=", 0.9),
}


def meets(key: str, value: float) -> bool:
    _, op, bound = TARGETS[key]
    return value >= bound if op == ">=" else value <= bound


def report(r: dict[str, object]) -> None:
    rows = []
    for mode in MODES:
        s = "" if mode == "sandbox" else "_nosandbox"
        rows += [
            (f"{mode}: warm, router, c=1", r[f"router_p50_ms{s}"], r[f"router_p99_ms{s}"], r[f"rps_c1{s}"], r[f"rps_c1_range{s}"]),
            (f"{mode}: warm, router, c=32", r[f"router_c32_p50_ms{s}"], r[f"router_c32_p99_ms{s}"],
             r[f"rps_c32{s}"], r[f"rps_c32_range{s}"]),
            (f"{mode}: cold, poolmgr", r[f"poolmgr_cold_p50_ms{s}"], r[f"poolmgr_cold_p99_ms{s}"], "",
             r[f"poolmgr_cold_p50_range_ms{s}"]),
            (f"{mode}: cold, newdeploy", r[f"newdeploy_cold_p50_ms{s}"], r[f"newdeploy_cold_p99_ms{s}"], "",
             r[f"newdeploy_cold_p50_range_ms{s}"]),
        ]  # fmt: skip
    rows += [
        ("direct to a worker, c=1", r["direct_p50_ms"], r["direct_p99_ms"], r["direct_rps_c1"], r["direct_rps_c1_range"]),
        ("direct to a worker, c=32", "", "", r["direct_rps_c32"], r["direct_rps_c32_range"]),
        ("router overhead (sandbox)", r["router_overhead_p50_ms"], "", "", ""),
    ]  # fmt: skip
    for floor, name in FLOORS.items():
        rows += [
            (f"{name}, c=1", r[f"{floor}_p50_ms"], "", r[f"{floor}_rps_c1"], r[f"{floor}_rps_c1_range"]),
            (f"{name}, c=32", "", "", r[f"{floor}_rps_c32"], r[f"{floor}_rps_c32_range"]),
        ]
    rows += [
        ("reference (Flask+bjoern), c=1", r["ref_p50_ms"], r["ref_p99_ms"], r["ref_rps_c1"], r["ref_rps_c1_range"]),
        ("reference, c=32", r["ref_c32_p50_ms"], r["ref_c32_p99_ms"], r["ref_rps_c32"], r["ref_rps_c32_range"]),
        ("reference: specialize", r["ref_specialize_p50_ms"], r["ref_specialize_p99_ms"], "",
         r["ref_specialize_p50_range_ms"]),
    ]  # fmt: skip
    print(f"{'':<32}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}  range of round medians")
    for label, p50, p99, rps, spread in rows:
        print(f"{label:<32}{p50!s:>10}{p99!s:>10}{rps!s:>10}  {spread}")
    print(
        f"worker req/s c=32 / reference's: x{r['worker_vs_ref_rps_c32']} (range {r['worker_vs_ref_rps_c32_range']})"
    )
    for floor, name in FLOORS.items():
        print(
            f"{name} (no target): overhead / direct p50 x{r[f'{floor}_overhead_vs_direct']}"
            f" {r[f'{floor}_overhead_vs_direct_range']}, req/s / reference's c=1 x{r[f'{floor}_vs_ref_rps_c1']}"
            f" {r[f'{floor}_vs_ref_rps_c1_range']}, c=32 x{r[f'{floor}_vs_ref_rps_c32']}"
            f" {r[f'{floor}_vs_ref_rps_c32_range']}"
        )
    passed: dict[str, bool] = r["targets"]  # type: ignore[assignment]
    print(f"targets ({r['rounds']} rounds, CPU steal {r['steal_cores']} cores):")
    for key, ok in passed.items():
        spread = r.get(f"{key}_range", "")
        text, op, bound = TARGETS[key]
        print(f"  {'PASS' if ok else 'FAIL'}  {f'{text} {op} {bound}':<56}{r[key]!s:>9}  {spread}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    if not REFERENCE_PYTHON.exists():
        raise SystemExit(f"the reference's virtualenv is missing: make bench-ref ({REFERENCE_PYTHON})")
    before = cpu_times()
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        runtimes: dict[str, RuntimeProcess] = {}
        processes: list[subprocess.Popen[bytes]] = []
        pool = None
        try:
            start_runtimes(Path(tmp), runtimes)
            worker, worker_port, worker_socket = direct_worker(Path(tmp))
            processes.append(worker)
            floor_ports = {}
            for floor in FLOORS:
                process, floor_ports[floor] = floor_proxy(worker_socket, http=floor == "http_floor")
                processes.append(process)
            reference, reference_port = warm_reference(Path(tmp))
            processes.append(reference)
            pool = ReferencePool(Path(tmp), POOLSIZE)
            urls = {mode: f"{runtimes[mode].router}{ROOT}/hello" for mode in MODES}
            urls.update(
                direct=f"http://127.0.0.1:{worker_port}/",
                **{floor: f"http://127.0.0.1:{port}/" for floor, port in floor_ports.items()},
                ref=f"http://127.0.0.1:{reference_port}/",
            )
            samples = run_rounds(args.rounds, runtimes, urls, pool)
        finally:
            if pool is not None:
                pool.stop()
            for process in processes:
                process.terminate()
            for runtime in runtimes.values():
                runtime.stop()
    steal = steal_since(before)
    result = summarize(samples, steal, args.rounds)
    report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
