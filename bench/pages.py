"""Benchmark of the portal's pages (not a test): the server time of the function list with 100
functions (its first page, of 50), a function's workspace (its Code tab, the function's page),
its Monitor tab (which loads its figures after it) and that tab with its figures (what the tab
costs without JavaScript; reported, no target), and the API list of 100 functions, against a
bare Django view and a bare DRF view measured in the same run.

Everything runs here, as ``make run`` would start it but in a temporary directory: an embedded
PostgreSQL and Redis, the local runtime (tenant provisioning applies the namespace there; of the
workspace's tabs only Triggers asks it something, the function's dead letters and trigger
states, and it is not measured) and, when Debian's ``prometheus`` is installed, a Prometheus
scraping the runtime (the Monitor tab's figures query it; without it they only say that metrics
are unavailable). One tenant, one user (its admin), 100 functions with their hello-world drafts
(never deployed), one API token (role admin).

"Server time" is the time ``django.test.Client`` takes to answer a GET in this process: the
request built, the whole middleware stack (the tenant's lookup, the session, the user, CSRF, the
portal's metrics), the view, its queries and template (DRF: its JSON rendering), the response
closed. It leaves out the socket, the ASGI server, and the database connection a server opens per
request (``CONN_MAX_AGE`` is 0; the client keeps one connection for the run). Pages sign in by
session (``force_login``), the API by ``Authorization: Bearer <token>``, as scripts do. The two
references live in ``bench/pages_urls.py`` (this process's URLconf: the tenant URLconf's
patterns and two more), under ``/t/<tenant>/`` like the pages, so that they pay the same
middleware: the Django one answers "ok" by session, the DRF one a three-item JSON list with the
project's default authentication and permission, by the same token as the API list.

Each target is warmed up, then measured ``--requests`` times (200) in each of ``--rounds``
rounds (3), in slices of 20 requests that take turns (a slice of each target, then the next), the
order of the turns rotating from round to round: all targets see the same moments of the machine
(these machines are shared and noisy: only figures of one run compare). Figures: p50 = the
median of the rounds' p50s (with their range); p99 = over every request of the run (with the
range of the rounds' p99s); a ratio = the median over rounds of the target's p50 / its
reference's p50 in that round (with their range). Also printed, from 10 more requests of each
target before the rounds: where its time goes (medians): its SQL queries and their time, its
HTTP calls to the runtime and to Prometheus and their time on the wire, and the rest (Python:
middleware, view, template or serializer). And the CPU steal during the rounds (/proc/stat).
Targets (PASS/FAIL, never asserted): every page's p50 <= 4x the bare Django view's; the API
list's <= 3x the bare DRF view's. Logging is at WARNING (``PORTAL_LOG_LEVEL``), else each call
to the runtime prints a line here.
Run with ``make bench`` (or ``.venv/bin/python bench/pages.py [--rounds N] [--requests N]``);
prints a table, then one JSON object. ``--profile TARGET`` prints where one target's time goes
(cProfile) instead.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtime import cpu_times, percentile, steal_since
from core.crypto import generate_key
from portal import embedded
from testsupport.runtime import METRICS_TOKEN, TOKEN, RuntimeProcess

SLUG = "bench"
FUNCTIONS = 100
FUNCTION = "fn-000"  # whose workspace (Code tab) and Monitor tab are measured
HOST = "127.0.0.1"  # in ALLOWED_HOSTS by default
REQUESTS = 200  # per target and round ...
SLICE = 20  # ... in slices of this many, the targets taking turns
WARM_UP = 20  # per target, before the rounds
IO_REQUESTS = 10  # per target, to see where its time goes
SCRAPE_INTERVAL_S = 5  # as make run's Prometheus
PROMETHEUS_AUTH = ("bench", secrets.token_urlsafe(32))  # its basic auth, as make run's asks for


@dataclass(frozen=True)
class Target:
    label: str
    path: str
    auth: str  # "session" or "token"
    reference: str | None = None  # the target it is compared with
    limit: float | None = None  # its target: p50 <= limit x the reference's


TARGETS: dict[str, Target] = {
    "bare_django": Target("bare Django view (ref)", f"/t/{SLUG}/bare/django/", "session"),
    "bare_drf": Target("bare DRF view (ref)", f"/t/{SLUG}/bare/drf/", "token"),
    "function_list": Target(
        f"function list ({FUNCTIONS}, page 1)", f"/t/{SLUG}/functions/", "session", "bare_django", 4.0
    ),
    "workspace": Target(
        "workspace (Code tab)", f"/t/{SLUG}/functions/{FUNCTION}/", "session", "bare_django", 4.0
    ),
    "metrics_tab": Target(
        "Monitor tab", f"/t/{SLUG}/functions/{FUNCTION}/metrics/", "session", "bare_django", 4.0
    ),
    # What the Monitor tab loads after it (htmx): without JavaScript, this URL is the tab with its
    # figures in place, the most it can cost (two requests to Prometheus). No target of its own.
    "metrics_figures": Target(
        "Monitor tab + figures", f"/t/{SLUG}/functions/{FUNCTION}/metrics/figures/", "session", "bare_django"
    ),
    "api_list": Target(
        f"API list ({FUNCTIONS})", f"/t/{SLUG}/api/v1/functions/?limit={FUNCTIONS}", "token", "bare_drf", 3.0
    ),
}


# -- services -------------------------------------------------------------------------------------


@dataclass
class Services:
    redis: embedded.Redis | None = None
    runtime: RuntimeProcess | None = None
    prometheus: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.prometheus is not None and self.prometheus.poll() is None:
            self.prometheus.terminate()
            try:
                self.prometheus.wait(15)
            except subprocess.TimeoutExpired:
                self.prometheus.kill()
        if self.runtime is not None:
            self.runtime.stop()
        if self.redis is not None:
            self.redis.stop()


def start_prometheus(tmp: Path, runtime: RuntimeProcess) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Debian's Prometheus scraping the runtime (the job the metrics pages read), or None."""
    binary = embedded.prometheus_binary()
    if binary is None:
        print("prometheus is not installed: the Monitor tab says metrics are unavailable", file=sys.stderr)
        return None, ""
    home = tmp / "prometheus"
    home.mkdir()
    token = embedded.write_private(home / "runtime-token", METRICS_TOKEN)
    target = embedded.ScrapeTarget("runtime", f"127.0.0.1:{runtime.control_port}", token_file=token)
    config, web_config = embedded.write_prometheus_files(
        home, [target], interval_s=SCRAPE_INTERVAL_S, users=dict([PROMETHEUS_AUTH])
    )
    port = embedded.free_port()
    command = embedded.prometheus_command(
        binary, config, home / "data", port, web_config=web_config, retention="1d"
    )
    with (home / "prometheus.log").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"prometheus exited: see {home / 'prometheus.log'}")
        try:
            if httpx.get(f"{url}/-/ready", auth=PROMETHEUS_AUTH, timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("prometheus did not become ready within 60 s")


def start_services(tmp: Path, services: Services, *, prometheus: bool = True) -> None:
    """PostgreSQL (stopped at exit), Redis, the runtime and (unless ``prometheus`` is False)
    Prometheus; then the environment the portal's settings read, as ``make run`` sets it
    (portal/up.py). The runtime starts before the portal's keys are in the environment: it must
    not hold them (nor does it under make run)."""
    database_url = embedded.start_postgres(tmp / "postgres", on_exit="stop")
    services.redis = embedded.start_redis(tmp / "redis", persist=False)
    services.runtime = RuntimeProcess(
        state_dir=tmp / "runtime", env={"REDIS_URL": services.redis.url}, own_session=True
    )
    services.runtime.start()
    if prometheus:
        services.prometheus, prometheus_url = start_prometheus(tmp, services.runtime)
        os.environ.update({
            "PROMETHEUS_URL": prometheus_url,
            "PROMETHEUS_USERNAME": PROMETHEUS_AUTH[0],
            "PROMETHEUS_PASSWORD": PROMETHEUS_AUTH[1],
            "METRICS_JOB": "runtime",
            "METRICS_SCRAPE_INTERVAL_S": str(SCRAPE_INTERVAL_S),
        })  # fmt: skip
    multiproc = tmp / "metrics-multiproc"  # make run's portal processes sum their metrics there
    multiproc.mkdir()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": services.redis.url,
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(50),
        "PORTAL_SECRETS_KEYS": generate_key(),
        "RUNTIME_URL": services.runtime.control,
        "RUNTIME_ROUTER_URL": services.runtime.router,
        "RUNTIME_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PORTAL_MEDIA_ROOT": str(tmp / "media"),
        "PORTAL_BEAT_SCHEDULE": str(tmp / "celerybeat-schedule"),
        "PORTAL_LOG_LEVEL": "WARNING",  # not a line per call to the runtime on this terminal
    })  # fmt: skip
    os.environ.pop("PORTAL_DEBUG", None)  # as make run: the portal's own error pages, no debug page


# -- the tenant and its functions -----------------------------------------------------------------


@dataclass
class Clients:
    session: Any  # django.test.Client signed in by session
    token: Any  # django.test.Client sending the API token

    def of(self, target: Target) -> Any:
        return self.session if target.auth == "session" else self.token


def start_django() -> None:
    """Django with this script's URLconf, and the database migrated."""
    # Imported here, not at the top: settings are read only once start_services() has put the
    # services' addresses in the environment.
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.ROOT_URLCONF = "bench.pages_urls"  # this process only: adds the two references
    call_command("migrate_schemas", interactive=False, verbosity=0)


def set_up_tenant() -> Clients:
    """The tenant, its admin, its functions and an API token; the two signed-in clients."""
    # Imported here, not at the top: models can be imported only once django.setup() has run.
    from django.test import Client
    from django_tenants.utils import get_public_schema_name, schema_context

    from functions.services.functions import function_create
    from portal.models import User
    from tenants import provisioning, services
    from tenants.models import Tenant, TenantState
    from tenants.roles import Role

    Tenant.objects.get_or_create(
        schema_name=get_public_schema_name(),
        defaults={"slug": "_public", "name": "public", "state": TenantState.READY},
    )
    user = User.objects.create_user(username="bench", password=secrets.token_urlsafe(16))
    tenant = services.tenant_create(slug=SLUG, name="Bench", admin=user)
    provisioning.tenant_provision(tenant_id=tenant.pk)
    tenant.refresh_from_db()
    services.tenant_set_quota(tenant=tenant, quota={"functions": FUNCTIONS})
    with schema_context(tenant.schema_name):
        for index in range(FUNCTIONS):
            function_create(name=f"fn-{index:03d}")
    secret = services.token_create(tenant=tenant, user=user, name="bench", role=Role.ADMIN).secret
    session = Client(HTTP_HOST=HOST)
    session.force_login(user)
    token = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_ACCEPT="application/json")
    return Clients(session=session, token=token)


# -- measuring ------------------------------------------------------------------------------------


def timed_gets(client: Any, path: str, count: int) -> list[float]:
    """``count`` GETs of ``path`` one after the other: each one's server time in ms."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}: {response.content[:500]!r}")
        times.append(elapsed)
    return times


def check_pages(clients: Clients, prometheus: bool) -> None:
    """The pages show what they are measured for: the list its first page of functions (of all
    of them); the Monitor tab its charts (with Prometheus), not its "unavailable" note."""
    from functions.selectors import FUNCTIONS_PER_PAGE

    listed = clients.session.get(TARGETS["function_list"].path).content.decode()
    missing = [index for index in range(FUNCTIONS_PER_PAGE) if f"fn-{index:03d}" not in listed]
    if missing or f"of {FUNCTIONS}</small>" not in listed:
        raise SystemExit(
            f"the function list does not show the first {FUNCTIONS_PER_PAGE} of {FUNCTIONS} functions"
        )
    api = clients.token.get(TARGETS["api_list"].path).json()
    if len(api["results"]) != FUNCTIONS:
        raise SystemExit(f"the API list holds {len(api['results'])} functions, not {FUNCTIONS}")
    metrics = clients.session.get(TARGETS["metrics_figures"].path).content.decode()
    if prometheus and "data-metrics-unavailable" in metrics:
        raise SystemExit("the Monitor tab says metrics are unavailable, with Prometheus running")


def warm_up(clients: Clients) -> None:
    """Templates compiled, URL resolvers and connections (database, Redis, the runtime,
    Prometheus) made, the session's once-per-session checks done."""
    for target in TARGETS.values():
        timed_gets(clients.of(target), target.path, WARM_UP)


def profile(clients: Clients, target: Target, count: int) -> None:
    """``count`` GETs of ``target`` under cProfile: the 40 functions with the most time of their
    own, then the 40 with the most time in all (a developer's view; no JSON line)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(timed_gets, clients.of(target), target.path, count)
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(40)


@dataclass
class Io:
    """What one request waited for: SQL queries and outgoing HTTP calls (the runtime's control
    API through httpx, Prometheus through requests), counts and seconds."""

    queries: int = 0
    sql_s: float = 0.0
    calls: int = 0
    http_s: float = 0.0


@contextmanager
def io_meter() -> Iterator[Io]:
    """Counts and times the SQL and HTTP of the block (bench instrumentation: it wraps the
    database connection's execution and the two HTTP clients' ``send``)."""
    from django.db import connection

    io = Io()

    def sql(execute: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(*args)
        finally:
            io.queries += 1
            io.sql_s += time.perf_counter() - started

    def timed(send: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return send(self, *args, **kwargs)
            finally:
                io.calls += 1
                io.http_s += time.perf_counter() - started

        return wrapper

    with (
        connection.execute_wrapper(sql),
        mock.patch.object(httpx.Client, "send", timed(httpx.Client.send)),
        mock.patch.object(requests.Session, "send", timed(requests.Session.send)),
    ):
        yield io


def where_time_goes(clients: Clients) -> dict[str, dict[str, float]]:
    """For each target, the medians over ``IO_REQUESTS`` requests of its SQL statements
    (django-tenants' ``SET search_path`` included), their time, its HTTP calls, their time on the
    wire (``send``: making a client is in the rest), and the rest (Python: middleware, view,
    template or serializer)."""
    found = {}
    for name, target in TARGETS.items():
        rows = []
        for _ in range(IO_REQUESTS):
            with io_meter() as io:
                total_ms = timed_gets(clients.of(target), target.path, 1)[0]
            sql_ms, http_ms = io.sql_s * 1000, io.http_s * 1000
            rows.append((io.queries, sql_ms, io.calls, http_ms, total_ms - sql_ms - http_ms))
        columns = ("queries", "sql_ms", "http_calls", "http_ms", "rest_ms")
        found[name] = {
            key: round(statistics.median(row[i] for row in rows), 2) for i, key in enumerate(columns)
        }
    return found


def run_rounds(clients: Clients, rounds: int, requests: int) -> dict[str, list[list[float]]]:
    """Every target ``requests`` times a round, in slices of ``SLICE`` requests that take turns
    (a slice of each target, then the next), so that every target sees the same moments of the
    machine within the round; the order of the turns rotates from round to round."""
    names = list(TARGETS)
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index * max(1, len(names) // rounds) % len(names)
        order = names[shift:] + names[:shift]
        print(f"round {index + 1}/{rounds}: {', '.join(order)}", file=sys.stderr, flush=True)
        times: dict[str, list[float]] = {name: [] for name in names}
        for start in range(0, requests, SLICE):
            for name in order:
                target = TARGETS[name]
                times[name] += timed_gets(clients.of(target), target.path, min(SLICE, requests - start))
        for name in names:
            samples[name].append(times[name])
    return samples


# -- the report -----------------------------------------------------------------------------------


def span(values: list[float], digits: int = 2) -> list[float]:
    return [round(min(values), digits), round(max(values), digits)]


def summarize(samples: dict[str, list[list[float]]], io: dict[str, dict[str, float]]) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "pages"}
    round_p50s = {name: [statistics.median(times) for times in runs] for name, runs in samples.items()}
    for name, runs in samples.items():
        every = [t for times in runs for t in times]
        result[f"{name}_p50_ms"] = round(statistics.median(round_p50s[name]), 2)
        result[f"{name}_p99_ms"] = round(percentile(every, 99), 2)
        result[f"{name}_p50_range_ms"] = span(round_p50s[name])
        result[f"{name}_p99_range_ms"] = span([percentile(times, 99) for times in runs])
    targets: dict[str, bool] = {}
    for name, target in TARGETS.items():
        if target.reference is None:
            continue
        ratios = [p50 / ref for p50, ref in zip(round_p50s[name], round_p50s[target.reference], strict=True)]
        result[f"{name}_ratio"] = round(statistics.median(ratios), 2)
        result[f"{name}_ratio_range"] = span(ratios)
        if target.limit is not None:
            targets[f"{name}_le_{target.limit:g}x_{target.reference}"] = (
                result[f"{name}_ratio"] <= target.limit
            )
    result["targets"] = targets
    result["io"] = io
    return result


def report(r: dict[str, Any]) -> None:
    print(f"{'server time':<24}{'p50 ms':>9}{'p99 ms':>9}  {'p50 range':<18}{'p99 range':<18}"
          f"{'ratio':<8}{'ratio range':<16}target")  # fmt: skip
    for name, target in TARGETS.items():
        ratio, spread, verdict = "", "", ""
        if target.reference is not None:
            ratio, spread = f"x{r[f'{name}_ratio']}", str(r[f"{name}_ratio_range"])
        if target.reference is not None and target.limit is not None:
            ok = r["targets"][f"{name}_le_{target.limit:g}x_{target.reference}"]
            verdict = f"p50 <= {target.limit:g}x {target.reference}: {'PASS' if ok else 'FAIL'}"
        elif target.reference is not None:
            verdict = "(reported, no target)"
        print(f"{target.label:<24}{r[f'{name}_p50_ms']!s:>9}{r[f'{name}_p99_ms']!s:>9}"
              f"  {r[f'{name}_p50_range_ms']!s:<18}{r[f'{name}_p99_range_ms']!s:<18}{ratio:<8}{spread:<16}"
              f"{verdict}")  # fmt: skip
    print(f"\nwhere the time goes (medians of {IO_REQUESTS} requests each, before the rounds)")
    print(f"{'':<24}{'queries':>9}{'sql ms':>9}{'http calls':>12}{'http ms':>9}{'rest ms':>9}")
    for name, target in TARGETS.items():
        io = r["io"][name]
        print(f"{target.label:<24}{io['queries']!s:>9}{io['sql_ms']!s:>9}{io['http_calls']!s:>12}"
              f"{io['http_ms']!s:>9}{io['rest_ms']!s:>9}")  # fmt: skip
    print(f"\nserver time in this process (django.test.Client, the whole middleware stack); {r['rounds']} rounds"
          f" x {r['requests']} requests per target; {r['functions']} functions; Monitor tab"
          f" {'with' if r['prometheus'] else 'WITHOUT'} Prometheus; CPU steal {r['steal_cores']} cores;"
          f" {r['seconds']} s")  # fmt: skip


def close_database() -> None:
    from django.apps import apps

    if apps.ready:  # else Django was never set up
        from django.db import connections

        connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="per target and round")
    parser.add_argument(
        "--profile", choices=sorted(TARGETS), metavar="TARGET",
        help=f"instead of the rounds: where TARGET's time goes (cProfile over --requests GETs); one of {', '.join(TARGETS)}",
    )  # fmt: skip
    args = parser.parse_args()
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    # Registered before PostgreSQL registers its own stop: at exit the server stops, then this runs.
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    services = Services()
    try:
        start_services(tmp, services)
        start_django()
        clients = set_up_tenant()
        check_pages(clients, services.prometheus is not None)
        warm_up(clients)
        if args.profile:
            profile(clients, TARGETS[args.profile], args.requests)
            return
        io = where_time_goes(clients)
        before = cpu_times()
        samples = run_rounds(clients, args.rounds, args.requests)
        steal = steal_since(before)
    finally:
        close_database()
        services.stop()
    result = summarize(samples, io)
    result |= {
        "rounds": args.rounds, "requests": args.requests, "functions": FUNCTIONS,
        "prometheus": services.prometheus is not None, "steal_cores": round(steal, 2),
        "seconds": round(time.monotonic() - began),
    }  # fmt: skip
    report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
