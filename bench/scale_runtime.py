"""Benchmark of the local runtime at scale (not a test): router throughput with 10 and with 10,000
HTTP triggers, a restart restoring 10,000 functions, what an idle function costs the runtime
process, and the PSS of a warm worker forked from the zygote.

Figures (issue 19), each with its reference from the same run:

- ``router_rps_10_routes`` / ``router_rps_10000_routes``: wrk (32 connections) on one hello-world
  function, through a runtime whose table holds 10 triggers and one whose table holds 10,000
  (spread over ``NAMESPACES`` tenants: exact paths, ``{var}`` templates and prefixes); the measured
  route is a prefix, the kind the router tries last. Interleaved rounds (the order alternates);
  median and range of the rounds. Target: the 10,000-route figure >= 0.9x the 10-route one.
  ``router_cpu_us_per_request_*``: the runtime process' CPU time per request in the same runs,
  which the other loads of a shared machine disturb less than its throughput.
- ``restore_10000_s``: a restart of a runtime holding 10,000 functions (each with its package, its
  environment and an HTTP trigger; its namespace's Secret and ConfigMap), from the process start
  until a restored route answers 200. Its packages were unpacked by an earlier start (whose time is
  ``restore_10000_first_s``). Target <= 10 s.
- ``idle_function_kib``: the PSS of the runtime process with N idle functions (deployed, each with
  its package and HTTP trigger, no worker) minus that of the 10-route runtime, over the difference
  in functions; both read right after start, before any load. Target <= 16 KiB.
- ``warm_worker_pss_kib``: the mean PSS (``/proc/<pid>/smaps_rollup``) of ``--warm-workers`` warm
  workers of one environment's pool, all forked from one zygote. Target <= 8 MiB.

The states of the big runtimes are written with the runtime's own ``Store`` (the control API
applies every object as it comes, which is the slow way to load 30,000 of them); everything else
is what a restart of the runtime does with them. Run alone with
``.venv/bin/python bench/scale_runtime.py [--routes N ...]``: a table, then one JSON object; or
through ``bench/scale.py`` (``run``, ``rows`` and ``add_arguments``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtime import cpu_times, steal_since
from runtime.objects import HTTPTrigger, Parsed
from runtime.store import Store
from runtime.tenancy import check_trigger
from testsupport.fission import configmap, environment, function, httptrigger, package_literal, secret
from testsupport.processes import command_line, process_fields
from testsupport.runtime import METRICS_TOKEN, TOKEN, RuntimeProcess

PREFIX = "faas"  # the runtime's default namespace prefix (PORTAL_NAMESPACE_PREFIX)
NAMESPACES = 100  # tenants the big tables are spread over
HOT = "s-hot"  # the tenant of the measured function: the last one the builder writes
HELLO = "def main():\n    return 'hello, world'\n"
POOLSIZE = 3
CONNECTIONS = 32
DURATION = "5s"
START_TIMEOUT_S = 300.0
WARM_NAMESPACE = f"{PREFIX}-warm"


# ------------------------------------------------------------------ measuring


def pss_kib(pid: int) -> int:
    """The process' proportional set size (KiB), from /proc/<pid>/smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    match = re.search(r"^Pss:\s+(\d+) kB$", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


def wrk_rps(url: str) -> tuple[float, int]:
    """(requests per second, requests) of a wrk run on ``url``."""
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", DURATION, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    rps, requests = re.search(r"Requests/sec:\s+([\d.]+)", out), re.search(r"(\d+) requests in", out)
    assert rps, out
    assert requests, out
    return float(rps.group(1)), int(requests.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_status(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# ------------------------------------------------------------------ state


def tenant(index: int, count: int) -> str:
    """The tenant of namespace ``index`` of ``count``; the last is the measured one."""
    return HOT if index == count - 1 else f"s{index:03d}"


def hot_path() -> str:
    """A path of the measured prefix trigger."""
    return f"/{HOT}/hello/world"


def namespace_objects(index: int, count: int, functions: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(plural, object) of one tenant: its environment, a Secret and a ConfigMap that every other
    function references, and ``functions`` functions with a package and an HTTP trigger each,
    a mix of exact paths, templates and prefixes; the measured tenant's first one is ``hello``,
    served by a prefix."""
    name = tenant(index, count)
    ns, root, hot = f"{PREFIX}-{name}", f"/{name}", name == HOT
    yield "environments", environment(ns, "python", poolsize=POOLSIZE if hot else 0)
    yield "secrets", secret(ns, "db", {"password": b"s3cret"})
    yield "configmaps", configmap(ns, "settings", {"GREETING": "hello"})
    for number in range(functions):
        fn = "hello" if hot and number == 0 else f"fn-{number}"
        code = HELLO if fn == "hello" else f"def main():\n    return 'hello from {name}/{fn}'\n"
        yield "packages", package_literal(ns, f"{fn}-pkg", code)
        refs: dict[str, Any] = {"secrets": ("db",), "configmaps": ("settings",)} if number % 2 else {}
        yield "functions", function(ns, fn, package=f"{fn}-pkg", **refs)
        if fn == "hello":
            yield "httptriggers", httptrigger(ns, fn, f"{root}/hello", function_name=fn, methods=("GET",),
                                              prefix=True)  # fmt: skip
        elif number % 4 == 1:
            yield "httptriggers", httptrigger(ns, fn, f"{root}/items/{{id}}/{fn}", function_name=fn)
        elif number % 4 == 3:
            yield "httptriggers", httptrigger(ns, fn, f"{root}/api/{fn}", function_name=fn, prefix=True)
        else:
            yield "httptriggers", httptrigger(ns, fn, f"{root}/{fn}", function_name=fn)


def write_state(state_dir: Path, functions: int, namespaces: int) -> int:
    """A runtime's state holding ``functions`` functions (and as many packages and triggers) over
    ``namespaces`` tenants, written by the runtime's ``Store``; returns the count of objects."""
    namespaces = max(1, min(namespaces, functions))

    def check(parsed: Parsed) -> None:  # the rule the runtime applies to every object it loads
        if isinstance(parsed, HTTPTrigger):
            check_trigger(parsed, PREFIX)

    store = Store(state_dir, check=check)
    written = 0
    for index in range(namespaces):
        share = functions // namespaces + (1 if index < functions % namespaces else 0)
        for plural, obj in namespace_objects(index, namespaces, share):
            store.put(plural, obj["metadata"]["namespace"], obj, create=True)
            written += 1
    return written


# ------------------------------------------------------------------ runtimes


class ScaleRuntime(RuntimeProcess):
    """A RuntimeProcess given longer to start (10,000 functions to restore), whose start is timed
    until a restored route answers."""

    def start_serving(self, path: str) -> float:
        """Start; seconds from the process start until ``path`` answers 200 through the router."""
        started = time.perf_counter()
        self._launch()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"the runtime exited:\n{self.log_tail()}")
            try:
                if get_status(self.router_port, path) == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the runtime did not serve {path}:\n{self.log_tail()}")
            time.sleep(0.02)

    def _launch(self) -> None:
        env = dict(
            os.environ, RUNTIME_STATE_DIR=str(self.state_dir), RUNTIME_ROUTER_PORT=str(self.router_port),
            RUNTIME_CONTROL_PORT=str(self.control_port), RUNTIME_TOKEN=TOKEN,
            RUNTIME_SANDBOX_UID_BASE=str(self.uid_base), RUNTIME_METRICS_TOKEN=METRICS_TOKEN, **self.env,
        )  # fmt: skip
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runtime"], cwd=Path(__file__).resolve().parent.parent, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,  # as make run starts it
            )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def warm_workers(self, namespace: str) -> int:
        body = self.metrics()
        match = re.search(
            rf'runtime_pool_warm_workers\{{environment="python",namespace="{namespace}"\}} ([\d.]+)', body
        )
        return int(float(match.group(1))) if match else 0


@contextmanager
def runtimes() -> Iterator[list[ScaleRuntime]]:
    """A list the caller adds runtimes to; each is stopped at the end, whatever happens."""
    started: list[ScaleRuntime] = []
    try:
        yield started
    finally:
        for runtime in started:
            runtime.stop()


def settle(runtime: ScaleRuntime, namespace: str, size: int, timeout: float = 120) -> None:
    """Wait until the namespace's pool holds ``size`` warm workers."""
    deadline = time.monotonic() + timeout
    while runtime.warm_workers(namespace) < size:
        if time.monotonic() > deadline:
            raise SystemExit(f"the pool of {namespace} did not reach {size}:\n{runtime.log_tail()}")
        time.sleep(0.1)


# ------------------------------------------------------------------ the figures


def restore(tmp: Path, functions: int, started: list[ScaleRuntime]) -> tuple[ScaleRuntime, dict[str, Any]]:
    """The big runtime, restarted; its restore times and objects."""
    clock = time.perf_counter()
    objects = write_state(tmp / "big", functions, NAMESPACES)
    written = time.perf_counter() - clock
    first = ScaleRuntime(state_dir=tmp / "big")
    started.append(first)
    first_s = first.start_serving(hot_path())  # unpacks every package
    first.stop()
    big = ScaleRuntime(state_dir=tmp / "big")
    started.append(big)
    restore_s = big.start_serving(hot_path())
    settle(big, f"{PREFIX}-{HOT}", POOLSIZE)
    figures = {"restore_10000_s": round(restore_s, 2), "restore_10000_first_s": round(first_s, 2),
               "restore_functions": functions, "restore_objects": objects,
               "state_write_s": round(written, 2)}  # fmt: skip
    return big, figures


def router_rounds(small: ScaleRuntime, big: ScaleRuntime, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds of wrk on the measured route of both runtimes (order alternating): the
    requests per second, and the runtime process' CPU time per request (microseconds), which the
    other loads of a shared machine disturb less."""
    pair = {"10_routes": small, "10000_routes": big}
    for runtime in pair.values():
        wrk_rps(f"{runtime.router}{hot_path()}")  # warm: a worker per connection
    samples: dict[str, list[float]] = {}
    for index in range(rounds):
        order = list(pair) if index % 2 == 0 else list(reversed(pair))
        for key in order:
            runtime = pair[key]
            before = cpu_seconds(runtime.pid())
            rps, requests = wrk_rps(f"{runtime.router}{hot_path()}")
            cpu = cpu_seconds(runtime.pid()) - before
            samples.setdefault(f"router_rps_{key}", []).append(rps)
            samples.setdefault(f"router_cpu_us_per_request_{key}", []).append(cpu / max(1, requests) * 1e6)
    return samples


def warm_worker_pss(runtime: ScaleRuntime, count: int) -> dict[str, Any]:
    """The PSS of ``count`` warm workers of one pool (one zygote's children)."""
    runtime.apply(environment(WARM_NAMESPACE, "python", poolsize=count))
    settle(runtime, WARM_NAMESPACE, count, timeout=60 + count)
    time.sleep(1)  # the last forked have set themselves up
    uid = runtime.tenant_uid(WARM_NAMESPACE) if not runtime.env.get("RUNTIME_SANDBOX") else None
    workers, zygote = zygote_children(uid)
    if len(workers) < count:
        raise SystemExit(f"found {len(workers)} warm workers of {count}")
    sizes = [pss_kib(pid) for pid in workers]
    return {"warm_worker_pss_kib": round(statistics.mean(sizes)), "warm_worker_pss_range_kib":
            [min(sizes), max(sizes)], "warm_workers": len(sizes), "zygote_pss_kib": pss_kib(zygote)}  # fmt: skip


def zygote_children(uid: int | None) -> tuple[list[int], int]:
    """(the worker pids, the zygote pid) of the one zygote whose processes run as ``uid`` (None:
    the one zygote of an unsandboxed runtime)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        fields = process_fields(entry.name) if entry.name.isdigit() else {}
        if fields and (uid is None or int(fields["Uid"].split()[0]) == uid) and is_zygote(entry.name):
            parents[int(entry.name)] = int(fields["PPid"])
    zygotes = [pid for pid, parent in parents.items() if parent not in parents]
    if len(zygotes) != 1:
        raise SystemExit(f"expected one zygote of uid {uid}, found {zygotes}")
    return [pid for pid, parent in parents.items() if parent == zygotes[0]], zygotes[0]


def is_zygote(pid: int | str) -> bool:
    return b"runtime.worker.zygote" in command_line(pid)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the module's docstring, with its range and counts."""
    before = cpu_times()
    with tempfile.TemporaryDirectory(prefix="bench-scale-runtime-") as name, runtimes() as started:
        tmp = Path(name)
        big, result = restore(tmp, args.restore_functions, started)
        big_pss = pss_kib(big.pid())
        write_state(tmp / "small", args.routes_reference, 1)
        small = ScaleRuntime(state_dir=tmp / "small")
        started.append(small)
        small.start_serving(hot_path())
        settle(small, f"{PREFIX}-{HOT}", POOLSIZE)
        small_pss = pss_kib(small.pid())
        if args.idle_functions != args.restore_functions:
            write_state(tmp / "idle", args.idle_functions, NAMESPACES)
            idle = ScaleRuntime(state_dir=tmp / "idle")
            started.append(idle)
            idle.start_serving(hot_path())
            big_pss, idle_count = pss_kib(idle.pid()), args.idle_functions
            idle.stop()
        else:
            idle_count = args.restore_functions
        if args.routes != args.restore_functions:
            big.stop()
            shutil.rmtree(tmp / "big")
            write_state(tmp / "big", args.routes, NAMESPACES)
            big = ScaleRuntime(state_dir=tmp / "big")
            started.append(big)
            big.start_serving(hot_path())
            settle(big, f"{PREFIX}-{HOT}", POOLSIZE)
        samples = router_rounds(small, big, args.rounds)
        big.stop()
        result.update(warm_worker_pss(small, args.warm_workers))
    for key, values in samples.items():
        digits = 1 if "cpu" in key else None
        result[key] = round(statistics.median(values), digits)
        result[f"{key}_range"] = [round(min(values), digits), round(max(values), digits)]
    result.update({
        "router_rps_ratio": round(result["router_rps_10000_routes"] / result["router_rps_10_routes"], 3),
        "router_cpu_ratio": round(result["router_cpu_us_per_request_10000_routes"]
                                  / result["router_cpu_us_per_request_10_routes"], 3),
        "routes": args.routes, "routes_reference": args.routes_reference, "rounds": args.rounds,
        "idle_function_kib": round((big_pss - small_pss) / max(1, idle_count - args.routes_reference), 2),
        "idle_functions": idle_count, "runtime_pss_kib": big_pss, "runtime_pss_reference_kib": small_pss,
        "steal_cores": round(steal_since(before), 2),
    })  # fmt: skip
    result["targets"] = {
        "router_rps_ratio": result["router_rps_ratio"] >= 0.9,
        "restore_10000_s": result["restore_10000_s"] <= 10,
        "idle_function_kib": result["idle_function_kib"] <= 16,
        "warm_worker_pss_kib": result["warm_worker_pss_kib"] <= 8192,
    }
    return result


def _verdict(result: dict[str, Any], key: str, text: str) -> str:
    return f"{text}: {'PASS' if result['targets'][key] else 'FAIL'}"


def rows(result: dict[str, Any]) -> list[tuple[str, object, str]]:
    """(label, value, target) for the human table."""
    return [
        (f"router req/s, {result['routes_reference']} routes (c={CONNECTIONS})",
         f"{result['router_rps_10_routes']} {result['router_rps_10_routes_range']}", "reference"),
        (f"router req/s, {result['routes']} routes (c={CONNECTIONS})",
         f"{result['router_rps_10000_routes']} {result['router_rps_10000_routes_range']}",
         ">= 0.9x reference"),
        ("router req/s ratio", result["router_rps_ratio"], _verdict(result, "router_rps_ratio", ">= 0.9")),
        (f"runtime CPU/request (us), {result['routes_reference']} / {result['routes']} routes",
         f"{result['router_cpu_us_per_request_10_routes']} / {result['router_cpu_us_per_request_10000_routes']}",
         f"ratio {result['router_cpu_ratio']}"),
        (f"restore {result['restore_functions']} functions (s)", result["restore_10000_s"],
         _verdict(result, "restore_10000_s", "<= 10 s")),
        ("  first start, unpacking packages (s)", result["restore_10000_first_s"], ""),
        (f"idle function, {result['idle_functions']} of them (KiB)", result["idle_function_kib"],
         _verdict(result, "idle_function_kib", "<= 16 KiB")),
        (f"warm worker PSS, mean of {result['warm_workers']} (KiB)",
         f"{result['warm_worker_pss_kib']} {result['warm_worker_pss_range_kib']}",
         _verdict(result, "warm_worker_pss_kib", "<= 8192 KiB")),
    ]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routes", type=int, default=10_000, help="HTTP triggers of the big table")
    parser.add_argument("--routes-reference", type=int, default=10, help="HTTP triggers of the reference")
    parser.add_argument("--restore-functions", type=int, default=10_000, help="functions to restore")
    parser.add_argument("--idle-functions", type=int, default=10_000,
                        help="idle functions (the restored runtime's, when the same count)")  # fmt: skip
    parser.add_argument("--warm-workers", type=int, default=100, help="warm workers to measure")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    result = run(args)
    for label, value, target in rows(result):
        print(f"{label:<48}{value!s:>24}  {target}")
    print(f"{args.rounds} rounds, CPU steal {result['steal_cores']} cores")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
