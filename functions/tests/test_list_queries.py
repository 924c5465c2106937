"""What the function list page, the workspace's Code tab and the API's function list read: a
fixed number of queries, whatever the number of functions (or of a function's deployments,
builds and triggers); and the faster ways they read it show what they showed before (the
page's times as Django's ``date`` filter writes them, the API's rows as FunctionSerializer
shows a Function).

The counts include what every request reads (django-tenants' two ``SET search_path``, the
tenant, the session or token, the user) and each page's own; see each constant."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.template.defaultfilters import date as date_filter
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework.renderers import JSONRenderer

from functions import selectors
from functions.api.serializers import FunctionSerializer
from functions.models import Build, BuildState, Deployment, DeploymentState, Function, Trigger
from functions.services import configuration
from functions.services import functions as function_services
from tenants import services as tenant_services

pytestmark = pytest.mark.django_db

# search_path (public), the tenant, search_path (its schema), the session, the user, the
# memberships (the role here and the tenant switcher's tenants, in one query), the page's rows
# (one query: their environments and newest deployments joined in; no count when the page is
# the last, core.paging), and for a developer the new function form's environments (once:
# forms.read_environments_once).
LIST_PAGE_QUERIES = 8
# As the list page up to the memberships; then the function (with its environment and draft),
# its HTTP triggers (the header's URLs), the Code tab's deployments (the newest of them is the
# header's state) and builds.
CODE_TAB_QUERIES = 10
# search_path, the tenant, search_path, the token, the membership, the rows (their
# environments' names and newest deployments' states joined in); no count for a page that is
# not full (core.api.pagination.Pagination).
API_LIST_QUERIES = 6


def _add_functions(world: Any, count: int, *, deployed: int = 0) -> None:
    """``count`` functions in acme, the first ``deployed`` of them with a live deployment."""
    with schema_context(world.acme.schema_name):
        start = Function.objects.count()
        for index in range(start, start + count):
            function = function_services.function_create(name=f"fn-{index:03d}")
            if index < deployed:
                Deployment.objects.create(function=function, state=DeploymentState.LIVE, cause="test")


def test_the_list_page_reads_the_same_queries_for_3_and_30_functions(
    world, client, django_assert_num_queries
):
    client.force_login(world.bob)
    client.get("/t/acme/functions/")  # the session's first request may note things in it
    for count, more in ((3, 3), (30, 27)):
        _add_functions(world, more, deployed=2)
        with django_assert_num_queries(LIST_PAGE_QUERIES):
            response = client.get("/t/acme/functions/")
        assert response.status_code == 200
        assert len(re.findall(r'<a href="fn-\d{3}/">', response.content.decode())) == count


def test_the_code_tab_reads_the_same_queries_however_much_the_function_has(
    world, client, hello, django_assert_num_queries
):
    client.force_login(world.bob)
    client.get("/t/acme/functions/hello/")
    for round_, (deployments, builds, triggers, others) in enumerate(((1, 1, 1, 3), (11, 6, 4, 27))):
        with schema_context(world.acme.schema_name):
            for index in range(deployments):
                Deployment.objects.create(function=hello, state=DeploymentState.LIVE, cause=f"test {index}")
            for index in range(builds):
                Build.objects.create(function=hello, draft_revision=index + 1, state=BuildState.SUCCEEDED)
            for index in range(triggers):
                Trigger.objects.create(
                    function=hello, name=f"t{round_}-{index}", path=f"/r{round_}/{index}", methods=["GET"]
                )
            shown_urls = Trigger.objects.filter(function=hello).count()
        _add_functions(world, others)
        with django_assert_num_queries(CODE_TAB_QUERIES):
            response = client.get("/t/acme/functions/hello/")
        assert response.status_code == 200
        assert response.content.decode().count("data-function-url=") == shown_urls


def test_the_api_list_reads_the_same_queries_for_3_and_30_functions(
    world, api, token_for, django_assert_num_queries
):
    caller = api(token=token_for(world.bob, world.acme, "viewer"))
    caller.get("/t/acme/api/v1/functions/")  # the token's first use is noted (last_used_at)
    for count, more in ((3, 3), (30, 27)):
        _add_functions(world, more, deployed=2)
        with django_assert_num_queries(API_LIST_QUERIES):
            response = caller.get("/t/acme/api/v1/functions/?limit=100")
        assert response.status_code == 200
        assert len(response.json()["results"]) == count


def test_the_api_list_shows_each_function_as_its_serializer_does(world, api, token_for):
    """The list writes its rows out directly (serializers.function_rows_shown); one function
    read alone goes through FunctionSerializer. Both say the same, every setting set."""
    with schema_context(world.acme.schema_name):
        configuration.secret_save(name="db", data={"password": "pw"})
        configuration.configmap_save(name="app", data={"mode": "fast"})
        plain = function_services.function_create(name="plain")
        tuned = function_services.function_create(name="tuned")
        function_services.function_update(
            function=tuned, entrypoint="handler.run", executor="newdeploy", min_scale=1, max_scale=4,
            target_cpu=50, concurrency=7, requests_per_pod=2, timeout_s=30, idle_timeout_s=300,
            memory_mb=256, cpu_millis=500, async_retries=0, async_max_event_age_s=600,
            environment_variables={"MODE": "fast", "EMPTY": ""}, secrets=["db"], configmaps=["app"],
        )  # fmt: skip
        Deployment.objects.create(function=plain, state=DeploymentState.FAILED, cause="test")
        Deployment.objects.create(function=tuned, state=DeploymentState.LIVE, cause="test")
        expected = FunctionSerializer(selectors.function_queryset(), many=True).data
    caller = api(token=token_for(world.bob, world.acme, "viewer"))
    listed = caller.get("/t/acme/api/v1/functions/").json()["results"]
    assert listed == json.loads(JSONRenderer().render(expected))
    assert [list(row) for row in listed] == [list(row) for row in expected]  # the same keys, in order
    assert {row["name"]: row["last_deployment_state"] for row in listed} == {
        "plain": "failed",
        "tuned": "live",
    }
    one = caller.get("/t/acme/api/v1/functions/tuned/").json()
    assert one == next(row for row in listed if row["name"] == "tuned")


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Chatham"])  # +12:45 or +13:45: minutes move too
def test_the_list_page_writes_times_as_the_date_filter_does(world, client, zone):
    _add_functions(world, 2, deployed=1)
    with schema_context(world.acme.schema_name):
        deployed = Deployment.objects.get(function__name="fn-000").created_at
        updated = dict(Function.objects.values_list("name", "updated_at"))
    client.force_login(world.vera)
    with timezone.override(zone):
        html = client.get("/t/acme/functions/").content.decode()
        deployed_at, first_updated, second_updated = (
            date_filter(timezone.localtime(moment), "Y-m-d H:i")
            for moment in (deployed, updated["fn-000"], updated["fn-001"])
        )
    first, second = (re.search(rf'<a href="{name}/">.*?</tr>', html, re.S) for name in ("fn-000", "fn-001"))
    assert first
    assert second
    assert '<a href="../environments/python/">python</a>' in first.group(0)  # from /t/acme/functions/
    assert f'<span class="badge state-live">live</span> <small>{deployed_at}</small>' in first.group(0)
    assert f"<td>{first_updated}</td>" in first.group(0)
    assert "never deployed" in second.group(0)
    assert f"<td>{second_updated}</td>" in second.group(0)


def test_the_header_says_failed_without_claiming_a_previous_deployment(
    world, client, hello, django_assert_num_queries
):
    with schema_context(world.acme.schema_name):
        Deployment.objects.create(function=hello, state=DeploymentState.FAILED, reason="bad wheel", cause="t")
    client.force_login(world.bob)
    client.get("/t/acme/functions/hello/")
    # The header asks whether an older deployment still answers only when the newest failed.
    with django_assert_num_queries(CODE_TAB_QUERIES + 1):
        html = client.get("/t/acme/functions/hello/").content.decode()
    reason = re.search(r"data-function-state-reason[^>]*>([^<]*)<", html)
    assert 'data-function-state="failed"' in html
    assert reason
    assert reason.group(1).strip() == "bad wheel"  # no older deployment answers: nothing more said


def test_the_list_page_shows_fifty_at_a_time_and_finds_by_name(world, client, django_assert_num_queries):
    tenant_services.tenant_set_quota(tenant=world.acme, quota={"functions": 60})
    _add_functions(world, 60, deployed=2)
    client.force_login(world.vera)
    first = client.get("/t/acme/functions/").content.decode()
    assert re.findall(r'<a href="(fn-\d{3})/">', first) == [f"fn-{i:03d}" for i in range(50)]
    assert "Functions 1\N{EN DASH}50 of 60" in first
    assert "Page 1 of 2" in first
    assert '<a href="?page=2" rel="next">Next</a>' in first
    assert 'rel="prev"' not in first
    with django_assert_num_queries(LIST_PAGE_QUERIES - 1):  # a viewer has no new function form
        second = client.get("/t/acme/functions/?page=2").content.decode()  # the last: no count
    assert re.findall(r'<a href="(fn-\d{3})/">', second) == [f"fn-{i:03d}" for i in range(50, 60)]
    assert '<a href="?page=1" rel="prev">Previous</a>' in second
    assert 'rel="next"' not in second
    for odd, first in (
        ("?page=99", 50),
        ("?page=last", 0),
        ("?page=-1", 0),
        ("?page=1e9", 0),
        ("?page=0", 0),
    ):
        names = re.findall(r'<a href="(fn-\d{3})/">', client.get(f"/t/acme/functions/{odd}").content.decode())
        assert names[0] == f"fn-{first:03d}", odd  # past the end: the last page; else the first
    found = client.get("/t/acme/functions/?q=FN-05").content.decode()
    assert re.findall(r'<a href="(fn-\d{3})/">', found) == [f"fn-{i:03d}" for i in range(50, 60)]
    assert "10 of the functions match." in found
    assert 'value="FN-05"' in found
    assert "data-pager" not in found
    nothing = client.get("/t/acme/functions/?q=<nope>").content.decode()
    assert "No function's name contains “&lt;nope&gt;”." in nothing


@pytest.mark.parametrize(
    ("query", "names", "counted", "more"),
    [
        ("limit=2", ["fn-000", "fn-001"], True, True),  # more follow: counted
        ("limit=2&offset=4", ["fn-004"], False, False),  # the last page tells the count
        ("limit=5", [f"fn-{i:03d}" for i in range(5)], False, False),  # full, and nothing after it
        ("limit=4", [f"fn-{i:03d}" for i in range(4)], True, True),
        ("limit=2&offset=9", [], True, False),  # past the end: counted
        ("limit=10", [f"fn-{i:03d}" for i in range(5)], False, False),
    ],
)
def test_the_api_count_is_right_on_every_page(world, api, token_for, query, names, counted, more):
    _add_functions(world, 5)
    caller = api(token=token_for(world.bob, world.acme, "viewer"))
    with CaptureQueriesContext(connection) as queries:
        page = caller.get(f"/t/acme/api/v1/functions/?{query}").json()
    assert [row["name"] for row in page["results"]] == names
    assert page["count"] == 5
    assert (page["next"] is not None) == more
    assert any("COUNT(" in q["sql"] for q in queries.captured_queries) == counted


def test_the_list_rows_escape_what_they_show(world, client):
    """The rows are written by functions/templatetags/function_tags.py, not the template
    engine: every value is still escaped (a name cannot hold markup, an environment's can)."""
    from functions.models import Environment

    with schema_context(world.acme.schema_name):
        env = Environment.objects.create(name="py<b>x", runtime_version="3.11")
        function_services.function_create(name="odd", environment=env)
    client.force_login(world.vera)
    html = client.get("/t/acme/functions/").content.decode()
    assert '<a href="../environments/py&lt;b&gt;x/">py&lt;b&gt;x</a>' in html
    assert "py<b>x" not in html
    assert "<td>never deployed</td>" in html
