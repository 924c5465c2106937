"""Benchmark of the portal at scale (not a test; issue 19): tenant creation, a no-op
``migrate_schemas`` over 200 and 1,000 tenants, and the REST API's list of 1,000 functions.

Everything runs here, in a temporary directory, as ``make run`` would start it: an embedded
PostgreSQL and Redis, and the local runtime (the default data plane: creating a tenant applies
its namespace there). ``bench/scale.py`` calls ``run(args)`` (flags from ``add_arguments``) and
prints ``rows(result)``; ``python bench/scale_portal.py`` prints the same table, then the JSON.

- **Tenant creation** (``--tenants-create``, 50): the product's path, timed from the request's
  service (``tenants.services.tenant_create``: the row, its domain, its admin, its audit record)
  through the provisioning task's service, run here in this process rather than by a Celery
  worker (``tenants.provisioning.tenant_provision``: the schema, a copy of the template; the
  namespace applied on the runtime; the schema's defaults; the state ``ready``) until the tenant
  reads ``ready``. The queue's latency is left out. Reference, interleaved (every fifth tenant,
  ``--tenants-reference`` in all): the same path with the schema made by migrating, as before
  the template. Also: where the time goes (median seconds of each step).
- **No-op migrate** (``--migrate-tenants``, 200,1000): the whole ``manage.py migrate_schemas``
  (the shared schema, the template, every tenant) when nothing is to do, ``--rounds`` times
  (3) at each size; median and range. The tenants beyond those created above are made the
  fast way the product has: a row each (``bulk_create``) and its schema copied from the template
  (``tenants.schemas.schema_create``; that time is reported too). Reference in the same run, at
  the sizes up to ``--migrate-reference-max`` (200): django-tenants' own standard executor
  (every tenant through the migrate command), in the first ``--reference-rounds`` (1) rounds,
  alternating with the product's.
- **API list** (``--functions``, 1,000): a tenant with that many functions (made by
  ``function_create``), ``GET /t/<tenant>/api/v1/functions/`` (the first page: 50, the API's
  default) and its last page, by bearer token, in this process (``django.test.Client``, the whole
  middleware stack; server time as ``bench/pages.py`` measures it), against the bare DRF view of
  ``bench/pages_urls.py`` by the same token, in slices that take turns, ``--rounds`` rounds;
  p50 (median of the rounds'), p99, and where the time goes (queries, their time, the rest).

Targets (PASS/FAIL, never asserted): tenant creation p50 <= 0.5 s; no-op migrate over 1,000
tenants <= 120 s; API list of 1,000 functions p50 <= 20 ms. Also printed: CPU steal.
"""

from __future__ import annotations

import argparse
import atexit
import json
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pages import Services, close_database, io_meter, span, start_services, timed_gets
from bench.runtime import cpu_times, percentile, steal_since

HOST = "127.0.0.1"
API_TENANT = "many"
SLICE = 20
WARM_UP = 20
IO_REQUESTS = 10
TARGETS = {"tenant_create_p50_s": 0.5, "migrate_noop_s_1000": 120.0, "api_list_p50_ms_1000_functions": 20.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants-create", type=int, default=50, help="tenants created and timed")
    parser.add_argument(
        "--tenants-reference", type=int, default=10, help="of which made by migrating (the reference)"
    )
    parser.add_argument(
        "--migrate-tenants", default="200,1000", help="tenant counts at which a no-op migrate is timed"
    )
    parser.add_argument(
        "--migrate-reference-max", type=int, default=200,
        help="up to this count, django-tenants' standard executor is timed too",
    )  # fmt: skip
    parser.add_argument(
        "--reference-rounds", type=int, default=1, help="of the standard executor (about 45 ms a tenant)"
    )
    parser.add_argument("--functions", type=int, default=1000, help="functions in the API list's tenant")
    parser.add_argument("--rounds", type=int, default=3, help="of the migrate and the API measurements")
    parser.add_argument("--requests", type=int, default=200, help="API requests per target and round")


# -- services ---------------------------------------------------------------------------------------


def start_django() -> None:
    # Imported here: settings are read once start_services() has set the environment.
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.ROOT_URLCONF = "bench.pages_urls"  # this process only: adds the bare DRF view
    call_command("migrate_schemas", interactive=False, verbosity=0)  # and makes the template
    from tenants.models import Tenant, TenantState

    Tenant.objects.get_or_create(
        schema_name="public", defaults={"slug": "_public", "name": "public", "state": TenantState.READY}
    )


# -- tenant creation --------------------------------------------------------------------------------


@contextmanager
def step_timer(parts: dict[str, list[float]]) -> Iterator[None]:
    """Times the provisioning's steps (bench instrumentation: wraps its module's functions)."""
    from tenants import provisioning

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts.setdefault(name, []).append(time.perf_counter() - started)

        return wrapper

    steps = {
        "schema": "_create_schema",
        "data_plane": "tenant_apply_data_plane",
        "fill_and_ready": "_fill_and_mark_ready",
    }
    patches = {attr: timed(name, getattr(provisioning, attr)) for name, attr in steps.items()}
    with mock.patch.multiple(provisioning, **patches):  # type: ignore[call-overload]
        yield


@contextmanager
def migrating_instead() -> Iterator[None]:
    """The reference: the schema made by migrating, as before the template (the copy refused)."""
    from tenants import schemas

    def refuse(template: str) -> Any:
        raise schemas.TemplateUnsupported("reference: migrating")

    with mock.patch.object(schemas, "template_read", refuse):
        yield


def create_tenants(count: int, reference: int, admin: Any) -> dict[str, Any]:
    """``count`` tenants through the product's path; every fifth (``reference`` in all) by
    migrating, the rest from the template. Each timed until it reads ``ready``."""
    import logging

    from tenants import provisioning, services
    from tenants.models import Tenant, TenantState

    logging.getLogger("tenants.schemas").setLevel(logging.ERROR)  # the reference's warnings
    times: dict[str, list[float]] = {"template": [], "migrating": []}
    parts: dict[str, list[float]] = {}
    every = max(1, count // max(1, reference)) if reference else 0
    with step_timer(parts):
        for index in range(count):
            is_reference = bool(every) and index % every == every - 1 and len(times["migrating"]) < reference
            with migrating_instead() if is_reference else _nothing():
                started = time.perf_counter()
                tenant = services.tenant_create(slug=f"t{index:04d}", name=f"Tenant {index}", admin=admin)
                provisioning.tenant_provision(tenant_id=tenant.pk)
                state = Tenant.objects.values_list("state", flat=True).get(pk=tenant.pk)
                elapsed = time.perf_counter() - started
            if state != TenantState.READY:
                raise SystemExit(f"tenant {tenant.slug} is {state}, not ready")
            times["migrating" if is_reference else "template"].append(elapsed)
    return {"times": times, "parts": parts}


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# -- no-op migrate ----------------------------------------------------------------------------------


def add_tenant_schemas(total: int) -> float:
    """Tenant rows and schemas (copies of the template) until there are ``total`` tenants;
    returns the seconds per schema copy."""
    from django.db import transaction

    from tenants import schemas
    from tenants.models import Domain, Tenant, TenantState

    have = Tenant.objects.exclude(schema_name="public").count()
    new = [
        Tenant(slug=f"m{i:05d}", name=f"m{i}", schema_name=f"t_m{i:05d}", state=TenantState.READY)
        for i in range(have, total)
    ]
    Tenant.objects.bulk_create(new)
    created = Tenant.objects.filter(slug__in=[t.slug for t in new])
    Domain.objects.bulk_create([Domain(domain=t.slug, tenant=t, is_primary=True) for t in created])
    started = time.perf_counter()
    for tenant in new:
        with transaction.atomic():
            if not schemas.schema_create(tenant.schema_name):
                raise SystemExit(f"{tenant.schema_name} was migrated, not copied")
    return (time.perf_counter() - started) / max(1, len(new))


def migrate_noop(standard: bool) -> float:
    """Seconds of a whole ``migrate_schemas``; ``standard``: with django-tenants' own executor."""
    from django.core.management import call_command
    from django_tenants.management.commands import migrate_schemas
    from django_tenants.migration_executors import get_executor

    from tenants import schemas

    patch = (
        mock.patch.object(migrate_schemas, "GET_EXECUTOR_FUNCTION", get_executor) if standard else _nothing()
    )
    with patch:
        started = time.perf_counter()
        call_command("migrate_schemas", interactive=False, verbosity=0)
        elapsed = time.perf_counter() - started
    tenants = list(_schema_names())
    if schemas.schemas_behind(tenants):
        raise SystemExit("a tenant schema is behind after migrate_schemas")
    return elapsed


def _schema_names() -> list[str]:
    from tenants.models import Tenant

    return list(Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True))


def measure_migrate(
    sizes: list[int], rounds: int, reference_max: int, reference_rounds: int
) -> dict[str, Any]:
    found: dict[Any, Any] = {"copy_s": []}
    for size in sizes:
        found["copy_s"].append(round(add_tenant_schemas(size), 4))
        print(f"{len(_schema_names())} tenants: migrate_schemas x {rounds}", file=sys.stderr, flush=True)
        ours, theirs = [], []
        for index in range(rounds):
            ours.append(migrate_noop(standard=False))
            if size <= reference_max and index < reference_rounds:
                theirs.append(migrate_noop(standard=True))
        found[size] = {"ours": ours, "standard": theirs}
    return found


# -- the API list -----------------------------------------------------------------------------------


def api_tenant(functions: int, admin: Any) -> Any:
    """A tenant with ``functions`` functions; a client sending an admin token of it."""
    from django.test import Client
    from django_tenants.utils import schema_context

    from functions.services.functions import function_create
    from tenants import provisioning, services
    from tenants.roles import Role

    tenant = services.tenant_create(slug=API_TENANT, name="Many", admin=admin)
    provisioning.tenant_provision(tenant_id=tenant.pk)
    tenant.refresh_from_db()
    services.tenant_set_quota(tenant=tenant, quota={"functions": functions})
    with schema_context(tenant.schema_name):
        for index in range(functions):
            function_create(name=f"fn-{index:04d}")
    secret = services.token_create(tenant=tenant, user=admin, name="bench", role=Role.ADMIN).secret
    return Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_ACCEPT="application/json")


def api_targets(functions: int) -> dict[str, str]:
    base = f"/t/{API_TENANT}/api/v1/functions/"
    return {
        "api_list": base,
        "api_list_last_page": f"{base}?offset={max(0, functions - 50)}",
        "bare_drf": f"/t/{API_TENANT}/bare/drf/",
    }


def measure_api(client: Any, functions: int, rounds: int, requests: int) -> dict[str, Any]:
    targets = api_targets(functions)
    page = client.get(targets["api_list"]).json()
    if page["count"] != functions or len(page["results"]) != 50:
        raise SystemExit(f"the API list says {page['count']} functions, {len(page['results'])} on its page")
    for path in targets.values():
        timed_gets(client, path, WARM_UP)
    io = {}
    for name, path in targets.items():
        rows = []
        for _ in range(IO_REQUESTS):
            with io_meter() as meter:
                total = timed_gets(client, path, 1)[0]
            rows.append((meter.queries, meter.sql_s * 1000, total - meter.sql_s * 1000))
        io[name] = {
            key: round(statistics.median(row[i] for row in rows), 2)
            for i, key in enumerate(("queries", "sql_ms", "rest_ms"))
        }
    samples: dict[str, list[list[float]]] = {name: [] for name in targets}
    names = list(targets)
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        times: dict[str, list[float]] = {name: [] for name in names}
        for start in range(0, requests, SLICE):
            for name in order:
                times[name] += timed_gets(client, targets[name], min(SLICE, requests - start))
        for name in names:
            samples[name].append(times[name])
    return {"samples": samples, "io": io}


# -- the run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the services, measure, stop them; returns the figures (see the module docstring)."""
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-portal-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    services = Services()
    sizes = sorted(int(size) for size in str(args.migrate_tenants).split(",") if size)
    try:
        start_services(tmp, services, prometheus=False)  # nothing here reads it
        start_django()
        from portal.models import User

        admin = User.objects.create_user(username="bench", password=secrets.token_urlsafe(16))
        before = cpu_times()
        print(f"creating {args.tenants_create} tenants", file=sys.stderr, flush=True)
        created = create_tenants(args.tenants_create, args.tenants_reference, admin)
        print(f"API tenant with {args.functions} functions", file=sys.stderr, flush=True)
        client = api_tenant(args.functions, admin)
        api = measure_api(client, args.functions, args.rounds, args.requests)
        migrate = measure_migrate(sizes, args.rounds, args.migrate_reference_max, args.reference_rounds)
        steal = steal_since(before)
    finally:
        close_database()
        services.stop()
    result = summarize(created, migrate, api, sizes)
    result |= {
        "functions": args.functions, "rounds": args.rounds, "requests": args.requests,
        "steal_cores": round(steal, 2), "seconds": round(time.monotonic() - began),
    }  # fmt: skip
    return result


def _stats(values: list[float], digits: int = 3) -> dict[str, Any]:
    return {"p50": round(statistics.median(values), digits), "range": span(values, digits)}


def summarize(
    created: dict[str, Any], migrate: dict[Any, Any], api: dict[str, Any], sizes: list[int]
) -> dict[str, Any]:
    ours, theirs = created["times"]["template"], created["times"]["migrating"]
    result: dict[str, Any] = {
        "bench": "scale_portal",
        "tenants_created": len(ours) + len(theirs),
        "tenant_create_p50_s": round(statistics.median(ours), 3),
        "tenant_create_p99_s": round(percentile(ours, 99), 3),
        "tenant_create_range_s": span(ours, 3),
        "tenant_create_parts_p50_s": {k: round(statistics.median(v), 4) for k, v in created["parts"].items()},
    }
    if theirs:
        result["tenant_create_migrating_p50_s"] = round(statistics.median(theirs), 3)
        result["tenant_create_migrating_range_s"] = span(theirs, 3)
    result["tenant_schema_copy_s"] = migrate["copy_s"]
    for size in sizes:
        runs = migrate[size]
        result[f"migrate_noop_s_{size}"] = round(statistics.median(runs["ours"]), 2)
        result[f"migrate_noop_range_s_{size}"] = span(runs["ours"])
        if runs["standard"]:
            result[f"migrate_noop_standard_s_{size}"] = round(statistics.median(runs["standard"]), 2)
            result[f"migrate_noop_standard_range_s_{size}"] = span(runs["standard"])
    for name, runs in api["samples"].items():
        round_p50s = [statistics.median(times) for times in runs]
        every = [t for times in runs for t in times]
        result[f"{name}_p50_ms"] = round(statistics.median(round_p50s), 2)
        result[f"{name}_p50_range_ms"] = span(round_p50s)
        result[f"{name}_p99_ms"] = round(percentile(every, 99), 2)
    result["api_list_p50_ms_1000_functions"] = result["api_list_p50_ms"]
    result["api_io"] = api["io"]
    result["targets"] = {key: result[key] <= limit for key, limit in TARGETS.items() if key in result}
    return result


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The human table's rows: (label, value, target)."""

    def verdict(key: str, text: str) -> str:
        if key not in result["targets"]:
            return ""
        return f"{text}: {'PASS' if result['targets'][key] else 'FAIL'}"

    table = [
        ("tenant creation p50 / p99 (s)",
         f"{result['tenant_create_p50_s']} / {result['tenant_create_p99_s']} {result['tenant_create_range_s']}",
         verdict("tenant_create_p50_s", "p50 <= 0.5 s")),
        ("  its steps p50 (s)", json.dumps(result["tenant_create_parts_p50_s"]), ""),
    ]  # fmt: skip
    if "tenant_create_migrating_p50_s" in result:
        table.append(("  ref: schema by migrating p50 (s)", str(result["tenant_create_migrating_p50_s"]), ""))
    table.append(("tenant schema copy (s each)", str(result["tenant_schema_copy_s"]), ""))
    for key in sorted(k for k in result if k.startswith("migrate_noop_s_")):
        size = key.rsplit("_", 1)[1]
        target = verdict(key, "<= 120 s") if key in result["targets"] else ""
        table.append(
            (
                f"no-op migrate_schemas, {size} tenants (s)",
                f"{result[key]} {result[f'migrate_noop_range_s_{size}']}",
                target,
            )
        )
        if f"migrate_noop_standard_s_{size}" in result:
            table.append(("  ref: django-tenants' standard executor (s)",
                          f"{result[f'migrate_noop_standard_s_{size}']} {result[f'migrate_noop_standard_range_s_{size}']}", ""))  # fmt: skip
    for name, label in (("api_list", "API list, first page"), ("api_list_last_page", "API list, last page"),
                        ("bare_drf", "  ref: bare DRF view")):  # fmt: skip
        io = result["api_io"][name]
        table.append((
            f"{label} p50 / p99 (ms)",
            f"{result[f'{name}_p50_ms']} / {result[f'{name}_p99_ms']} {result[f'{name}_p50_range_ms']}"
            f" ({io['queries']} queries, {io['sql_ms']} ms SQL)",
            verdict("api_list_p50_ms_1000_functions", "p50 <= 20 ms") if name == "api_list" else "",
        ))  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    result = run(parser.parse_args())
    for label, value, target in rows(result):
        print(f"{label:<46}{value:<52}{target}")
    print(f"CPU steal {result['steal_cores']} cores; {result['seconds']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
