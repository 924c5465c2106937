"""The cold-start what-if (metrics/coldstarts.py) against hand computations.

The recorded sequence SEQ, with idle timeout 10 s and one request per worker, worked by hand
(the rules are the module's docstring):

    start  dur   k=0 newdeploy                     k=2 newdeploy
    0.0    1     cold A (busy to 1)                P1 warm (to 1)
    0.5    1     A busy: cold B (to 1.5)           P2 warm (to 1.5)
    5.0    1     A free (idle 4 s): warm (to 6)    P1 warm (to 6)
    30.0   1     A, B idle > 10 s: reaped; cold C  P1, P2 idle but the minimum: P1 warm (to 31)
    30.2   1     C busy: cold D                    P2 warm (to 31.2)
    30.4   1     C, D busy: cold E                 both busy: cold X (to 31.4)
    100.0  2     all reaped: cold F                P1 reaped (3 > 2), P2 serves: warm
                 = 6 cold starts                   = 1 cold start
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from metrics.coldstarts import (
    Call,
    Recorded,
    Scaling,
    measure,
    percentile,
    simulate,
    suggestions,
)

SEQ = [Call(0.0, 1), Call(0.5, 1), Call(5.0, 1), Call(30.0, 1), Call(30.2, 1), Call(30.4, 1), Call(100.0, 2)]


def newdeploy(k: int, **kw: float) -> Scaling:
    return Scaling(executor="newdeploy", idle_timeout=kw.pop("idle", 10), min_scale=k, **kw)  # type: ignore[arg-type]


def poolmgr(p: int, **kw: float) -> Scaling:
    return Scaling(executor="poolmgr", idle_timeout=kw.pop("idle", 10), pool_size=p, pool_refill_s=2, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("k", "cold"), [(0, 6), (1, 3), (2, 1), (3, 0), (10, 0)])
def test_min_scale_k_keeps_k_workers_warm(k: int, cold: int) -> None:
    # k=1: P warm at 0; 0.5 cold B; 5 P warm; 30 P reaped (oldest), B warm; 30.2 cold; 30.4 cold;
    # 100 all idle: two reaped, one left warm
    outcome = simulate(SEQ, newdeploy(k))
    assert (outcome.calls, outcome.cold_starts, outcome.queued) == (7, cold, 0)


def test_the_order_of_the_calls_given_does_not_matter() -> None:
    assert simulate(list(reversed(SEQ)), newdeploy(0)).cold_starts == 6


def test_an_idle_gap_longer_than_the_timeout_costs_a_cold_start_and_a_shorter_one_does_not() -> None:
    calls = [Call(0, 1), Call(11, 1), Call(22.5, 1)]  # idle 10 s, then 10.5 s
    assert simulate(calls, newdeploy(0, idle=10)).cold_starts == 2  # 11-1 = 10, not more: warm
    assert simulate(calls, newdeploy(0, idle=9.9)).cold_starts == 3
    assert simulate(calls, newdeploy(0, idle=11)).cold_starts == 1


def test_a_call_ending_when_the_next_starts_has_freed_its_worker() -> None:
    assert simulate([Call(0, 1), Call(1, 1)], newdeploy(0)).cold_starts == 1


def test_requests_per_pod_lets_a_worker_take_overlapping_calls() -> None:
    # 0 cold A; 0.5 A has one slot left: warm; 5 warm; 30 reaped: cold B; 30.2 warm on B;
    # 30.4 B full: cold C; 100 all reaped: cold D
    assert simulate(SEQ, newdeploy(0, requests_per_pod=2)).cold_starts == 4
    assert simulate(SEQ, newdeploy(0, requests_per_pod=3)).cold_starts == 3


def test_newdeploy_at_max_scale_queues_instead_of_cold_starting() -> None:
    # max 1: 0 cold A (to 1); 0.5 waits for A: 1..2; 5 warm; 30 reaped: cold; 30.2 waits (31..32);
    # 30.4 waits (32..33); 100 cold
    outcome = simulate(SEQ, newdeploy(0, max_workers=1))
    assert (outcome.cold_starts, outcome.queued, outcome.refused) == (3, 3, 0)


def test_a_queued_call_holds_its_worker_from_when_it_got_it() -> None:
    # max 1, idle 1.5: 0 cold (to 1); 0.1 waits, holds 1..3; 4.4 warm: idle since 3 (1.4 s)
    calls = [Call(0, 1), Call(0.1, 2), Call(4.4, 1)]
    assert simulate(calls, newdeploy(0, max_workers=1, idle=1.5)).cold_starts == 1


@pytest.mark.parametrize(("p", "empty"), [(0, 6), (1, 3), (2, 1), (3, 0)])
def test_pool_size_changes_how_many_cold_starts_find_the_pool_empty_not_how_many_there_are(
    p: int, empty: int
) -> None:
    # Cold starts as newdeploy k=0: at 0, 0.5, 30, 30.2, 30.4, 100. Refill 2 s. p=1: 0 takes,
    # 0.5 empty (refilled at 2), 30 takes, 30.2 and 30.4 empty, 100 takes: 3 empty.
    # p=2: 0, 0.5 take; 30, 30.2 take; 30.4 empty; 100 takes: 1 empty.
    outcome = simulate(SEQ, poolmgr(p))
    assert (outcome.cold_starts, outcome.from_empty_pool) == (6, empty)


def test_poolmgr_at_its_concurrency_refuses() -> None:
    # concurrency 2: 30 and 30.2 cold, 30.4 refused (429), 100 cold
    outcome = simulate(SEQ, poolmgr(3, max_workers=2))
    assert (outcome.cold_starts, outcome.refused, outcome.queued) == (5, 1, 0)


def test_poolmgr_has_no_minimum_even_with_a_pool() -> None:
    assert simulate([Call(0, 1), Call(50, 1)], poolmgr(5)).cold_starts == 2


def test_a_burst_needs_as_many_workers_as_it_overlaps() -> None:
    burst = [Call(0.01 * i, 1) for i in range(10)] + [Call(3, 1)]  # 10 overlapping, then one
    assert simulate(burst, newdeploy(0)).cold_starts == 10
    assert simulate(burst, newdeploy(4)).cold_starts == 6
    assert simulate(burst, newdeploy(0, requests_per_pod=4)).cold_starts == 3


def test_no_calls_no_cold_starts() -> None:
    outcome = simulate([], newdeploy(0))
    assert (outcome.calls, outcome.cold_starts, outcome.cold_start_rate) == (0, 0, None)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="executor"):
        Scaling(executor="nope", idle_timeout=1)
    with pytest.raises(ValueError, match="requests_per_pod"):
        Scaling(executor="poolmgr", idle_timeout=1, requests_per_pod=0)


def test_measured_rate_and_latency_of_recorded_calls() -> None:
    calls = [
        Recorded(0, 0.3, 0.25, "pool", 200),
        Recorded(1, 0.01, 0.0, "", 200),
        Recorded(2, 0.02, 0.0, "", 500),
        Recorded(3, 1.2, 1.0, "new", 200),
    ]
    measured = measure(calls)
    assert (measured.calls, measured.cold_starts, measured.from_pool, measured.new_workers) == (4, 2, 1, 1)
    assert measured.cold_start_rate == 0.5
    assert measured.latency_ms == {"p50": 250.0, "p95": 1000.0, "max": 1000.0}
    assert measured.warm_ms == {"p50": 10.0, "p95": 20.0}
    # The what-if replays what the worker was busy with, without the cold start's wait.
    assert calls[0].service.duration == pytest.approx(0.05)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3, 1, 2, 4], 50) == 2
    assert percentile(list(range(1, 101)), 95) == 95


def test_suggestions_include_the_current_value() -> None:
    assert suggestions("newdeploy", 7) == [0, 1, 2, 3, 5, 7]
    assert suggestions("poolmgr", 3) == [0, 1, 3, 5, 10]


# --- the page and the API, on a recorded sequence ------------------------------------------------
# SEQ recorded for acme's ``hello`` (its draft, ``hello-draft``), an hour ago, with the cold flags
# the runtime would have written under newdeploy, MinScale 0, idle timeout 10 s: 6 cold of 7.
# Each call waited ``startup`` for its worker (0.5 s when cold), which the what-if takes off.

COLD = [True, True, False, True, True, True, True]


def _seed(namespace: str, function: str, base: float) -> None:
    from django.conf import settings

    from runtime.calls import stream_name

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(stream_name(namespace))
    for call, cold in zip(SEQ, COLD, strict=True):
        startup = 0.5 if cold else 0.0
        fields = {"function": function, "time": f"{base + call.start:.6f}",
                  "duration": f"{call.duration + startup:.6f}", "startup": f"{startup:.6f}",
                  "cold": "new" if cold else "", "status": "200"}  # fmt: skip
        entry_id = f"{int((base + call.start + call.duration + startup) * 1000)}-0"  # appended at its end
        client.xadd(stream_name(namespace), fields, id=entry_id)  # type: ignore[arg-type]
    client.close()


@pytest.fixture
def recorded(world: Any, hello: Any) -> float:
    """``hello`` in acme, made newdeploy (MinScale 0, MaxScale 10, idle 10 s), created two hours
    ago with its tenant; SEQ recorded an hour ago. Globex has a ``hello`` with calls of its own."""
    from django_tenants.utils import schema_context

    from functions.models import Function
    from functions.services.functions import function_create
    from tenants.models import Tenant

    born = timezone.now() - timedelta(hours=2)
    Tenant.objects.filter(pk__in=[world.acme.pk, world.globex.pk]).update(created_at=born)
    with schema_context(world.acme.schema_name):
        Function.objects.filter(name="hello").update(
            executor="newdeploy", min_scale=0, max_scale=10, idle_timeout_s=10, requests_per_pod=1,
            created_at=born,
        )  # fmt: skip
    with schema_context(world.globex.schema_name):
        function_create(name="hello")
        Function.objects.filter(name="hello").update(created_at=born)
    base = time.time() - 3600
    _seed("faas-acme", "hello-draft", base)
    _seed("faas-globex", "hello-draft", base - 100)  # not acme's: never counted there
    from django.conf import settings

    from runtime.calls import stream_name

    client = redis.Redis.from_url(settings.REDIS_URL)
    for i in range(20):  # globex's busier: 27 calls
        client.xadd(stream_name("faas-globex"), {"function": "hello-draft", "time": f"{base + 200 + i}",
                    "duration": "0.1", "startup": "0.1", "cold": "new", "status": "200"})  # fmt: skip
    client.close()
    return base


PANEL = "/t/acme/functions/hello/coldstarts/"
API = "/t/acme/api/v1/functions/hello/coldstarts/"


@pytest.mark.django_db
def test_the_panel_shows_the_hand_computed_what_if(world: Any, client: Any, recorded: float) -> None:
    client.force_login(world.vera)
    page = client.get(PANEL)
    assert page.status_code == 200
    text = page.content.decode()
    # Measured, per version: 7 calls, 6 cold (86%), cold start p50 500 ms.
    row = text.split('data-version="draft"', 1)[1].split("</tr>", 1)[0]
    assert "<td>7</td>" in row
    assert "<td data-measured-cold-starts>6</td>" in row
    assert "86%" in row
    assert "500.0 / 500.0 / 500.0" in row
    # The what-if at the current MinScale 0 replays to the recorded 6; the table by hand: k=0: 6,
    # k=1: 3, k=2: 1, k=3: 0.
    assert "<strong data-whatif-cold-starts>6</strong>" in text
    for k, cold in ((0, 6), (1, 3), (2, 1), (3, 0), (5, 0)):
        table_row = text.split(f'data-whatif-row="{k}"', 1)[1].split("</tr>", 1)[0]
        assert f"<td>{cold}</td>" in table_row, (k, table_row)
    assert f'hx-get="{PANEL}"' in text  # the form answers in place

    page = client.get(PANEL, {"value": 2})
    assert "<strong data-whatif-value>2</strong>" in page.content.decode()
    assert "<strong data-whatif-cold-starts>1</strong>" in page.content.decode()
    # A longer idle timeout (40 s) keeps A and B from 5 s to 30 s: only 0, 0.5, 30.4 and 100 cold.
    page = client.get(PANEL, {"value": 0, "idle_timeout_s": 40})
    assert "<strong data-whatif-cold-starts>4</strong>" in page.content.decode()


@pytest.mark.django_db
def test_poolmgr_shows_the_pool_as_what_it_changes(world: Any, client: Any, recorded: float) -> None:
    from django_tenants.utils import schema_context

    from functions.models import Function

    with schema_context(world.acme.schema_name):
        Function.objects.filter(name="hello").update(executor="poolmgr", concurrency=10)
    client.force_login(world.vera)
    text = client.get(PANEL, {"value": 1}).content.decode()
    # Pool size 1, refill 1 s: 0 takes it, 0.5 finds it empty, 30 takes it, 30.2 and 30.4 empty,
    # 100 takes it: 6 cold starts whatever the pool, 3 of them from an empty pool.
    assert "<strong data-whatif-cold-starts>6</strong>" in text
    assert "<strong data-whatif-empty-pool>3</strong>" in text
    assert "A pool does not avoid cold starts" in text


@pytest.mark.django_db
def test_the_panel_refuses_a_bad_value_and_says_why(world: Any, client: Any, recorded: float) -> None:
    client.force_login(world.vera)
    page = client.get(PANEL, {"value": 101})
    assert page.status_code == 400
    assert b"value must be between 0 and 100" in page.content
    assert client.get(PANEL, {"idle_timeout_s": "x"}).status_code == 400


@pytest.mark.django_db
def test_the_panel_is_for_members_only(world: Any, client: Any, recorded: float) -> None:
    client.force_login(world.oscar)
    assert client.get(PANEL).status_code == 404
    client.force_login(world.vera)
    assert client.get("/t/acme/functions/nope/coldstarts/").status_code == 404


@pytest.mark.django_db
def test_the_api_gives_the_same_figures(world: Any, api: Any, recorded: float) -> None:
    body = api(world.vera).get(API, {"value": 2}).json()
    assert (body["recorded"], body["executor"], body["knob"]) == (True, "newdeploy", "min_scale")
    assert (body["whatif"]["value"], body["whatif"]["total"]["cold_starts"]) == (2, 1)
    assert [(r["value"], r["cold_starts"]) for r in body["whatif"]["table"]] == [
        (0, 6), (1, 3), (2, 1), (3, 0), (5, 0)
    ]  # fmt: skip
    [draft] = body["versions"]
    assert (draft["version"], draft["calls"], draft["cold_starts"], draft["new_workers"]) == (
        "draft",
        7,
        6,
        6,
    )
    assert draft["cold_start_ms"] == {"p50": 500.0, "p95": 500.0, "max": 500.0}
    assert (body["current"]["min_scale"], body["current"]["idle_timeout_s"]) == (0, 10)
    # Globex's own hello has its own calls: 27, not acme's 7.
    globex = api(world.oscar).get("/t/globex/api/v1/functions/hello/coldstarts/").json()
    assert globex["versions"][0]["calls"] == 27


@pytest.mark.django_db
def test_the_api_matrix(world: Any, api: Any, recorded: float) -> None:
    from testsupport.matrix import assert_access

    assert_access(world, api, lambda t: f"/t/{t}/api/v1/functions/hello/coldstarts/", "get", None,
                  allowed="vera", ok=200, refused={})  # fmt: skip
    assert api(world.vera).get("/t/acme/api/v1/functions/nope/coldstarts/").status_code == 404


@pytest.mark.django_db
def test_the_api_refuses_bad_values_in_the_error_shape(world: Any, api: Any, recorded: float) -> None:
    from testsupport.fixtures import error_of

    response = api(world.vera).get(API, {"value": -1})
    assert response.status_code == 400
    assert "value" in error_of(response)["detail"]


@pytest.mark.django_db
def test_without_a_call_record_kubernetes_says_so(world: Any, client: Any, api: Any, hello: Any,
                                                  monkeypatch: Any) -> None:  # fmt: skip
    from dataplane.backends.k8s import KubernetesBackend
    from metrics import coldstart_insight

    backend = KubernetesBackend.__new__(KubernetesBackend)  # its calls() needs no cluster
    monkeypatch.setattr(coldstart_insight, "get_backend", lambda: backend)
    client.force_login(world.vera)
    page = client.get(PANEL)
    assert page.status_code == 200
    assert b"data-coldstarts-not-recorded" in page.content
    assert b"Call times are not recorded on Kubernetes" in page.content
    body = api(world.vera).get(API).json()
    assert (body["recorded"], body["versions"]) == (False, [])
    assert "not recorded" in body["note"]


@pytest.mark.django_db
def test_with_the_record_unreadable_the_page_says_so_and_the_api_is_503(
    world: Any, client: Any, api: Any, hello: Any, monkeypatch: Any
) -> None:
    from dataplane.backends import redis_calls

    monkeypatch.setattr(redis_calls, "_client", lambda: redis.Redis(port=1, socket_timeout=1))
    client.force_login(world.vera)
    page = client.get(PANEL)
    assert page.status_code == 200
    assert b"data-coldstarts-unavailable" in page.content
    response = api(world.vera).get(API)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cold_starts_unavailable"


@pytest.mark.django_db
def test_the_endpoint_is_in_the_openapi_document(client: Any) -> None:
    document = client.get("/api/schema/?format=json").json()
    operation = document["paths"]["/t/{tenant}/api/v1/functions/{function_name}/coldstarts/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"value", "idle_timeout_s"}
    assert "503" in operation["responses"]


# --- the portal's reading of a real runtime's record ---------------------------------------------


def test_the_backend_reads_a_namespaces_recorded_calls_only_and_the_what_if_replays_them(
    runtime: Any,
) -> None:
    from dataplane.backends.local import LocalBackend
    from runtime.calls import stream_name
    from runtime.tests.core import gauge
    from runtime.tests.test_calls import deploy, recorded
    from testsupport.processes import wait_until
    from testsupport.runtime import TOKEN

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(stream_name("faas-acme"), stream_name("faas-globex"))
    client.close()
    backend = LocalBackend(control_url=runtime.control, router_url=runtime.router, token=TOKEN)
    since = time.time()
    deploy(runtime, "faas-acme", "f", idle_timeout=600)
    deploy(runtime, "faas-globex", "f", idle_timeout=600)
    pool = {"namespace": "faas-acme", "environment": "python"}
    wait_until(lambda: gauge(runtime, "runtime_pool_warm_workers", **pool) == 2, timeout=30)
    for _ in range(2):
        assert runtime.call("/acme/f").status_code == 200
    assert runtime.call("/globex/f").status_code == 200
    recorded("faas-acme", "f", 2)
    recorded("faas-globex", "f", 1)

    acme = backend.calls("faas-acme", ["f"], since)
    assert [(c.function, c.cold, c.status) for c in acme] == [("f", "pool", 200), ("f", "", 200)]
    assert len(backend.calls("faas-globex", ["f"], since)) == 1  # the same name, another tenant's
    assert backend.calls("faas-acme", ["f"], time.time() + 1) == []  # since bounds it
    assert backend.calls("faas-acme", ["other"], since) == []  # and the function names
    # The what-if of the recorded sequence, as by hand: two calls one after the other, a long idle
    # timeout: without a worker kept the first cold starts and the second finds it warm; with one
    # kept neither does; with the idle timeout shorter than the gap between them, both do.
    calls = [Call(c.time, c.duration - c.startup) for c in acme]
    gap = calls[1].start - (calls[0].start + calls[0].duration)
    assert simulate(calls, Scaling(executor="newdeploy", idle_timeout=600)).cold_starts == 1
    assert simulate(calls, Scaling(executor="newdeploy", idle_timeout=600, min_scale=1)).cold_starts == 0
    assert simulate(calls, Scaling(executor="newdeploy", idle_timeout=gap / 2)).cold_starts == 2

    backend.delete_namespace("faas-globex")  # a deleted tenant's calls go with it
    assert backend.calls("faas-globex", ["f"], since) == []
    assert len(backend.calls("faas-acme", ["f"], since)) == 2


@pytest.mark.django_db
def test_a_function_without_calls_says_so(world: Any, client: Any, hello: Any) -> None:
    from django.conf import settings

    from runtime.calls import stream_name

    redis.Redis.from_url(settings.REDIS_URL).delete(stream_name("faas-acme"))
    client.force_login(world.vera)
    text = client.get(PANEL).content.decode()
    assert "No calls recorded in the last 24 h." in text
    assert "<strong data-whatif-cold-starts>0</strong>" in text
    assert "<strong data-whatif-value>3</strong>" in text  # poolmgr: its environment's poolsize
