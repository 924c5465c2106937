"""Every list page reads a fixed number of queries, whatever the number of rows it lists and of
the objects each row shows (issue 19). The function list and the Code tab are fixed in
functions/tests/test_list_queries.py; here are the others.

Every tenant page starts with what tenant_page reads (TENANT_PAGE): django-tenants' ``SET
search_path`` (public), the tenant, ``SET search_path`` (its schema), the session, the user,
and the memberships (the role here and the tenant switcher's tenants, in one query). A
platform page reads the same up to the user (PLATFORM_PAGE); a platform admin's switcher lists
every tenant (one query). Then each page's own, said beside its constant.

Pages whose rows come from elsewhere are not here: the logs (the runtime's log stream), the
captured requests (the data plane's store), the metrics (Prometheus).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django_tenants.utils import schema_context

from functions.models import (
    Deployment,
    DeploymentState,
    Environment,
    Invocation,
    QueueTrigger,
    TimeTrigger,
    Trigger,
    Version,
)
from functions.services import configuration, versions
from functions.services import functions as function_services
from releases.models import Replay, Rollout, RolloutState
from tenants import invitations
from tenants import services as tenant_services
from tenants.models import Membership
from tenants.roles import Role
from testsupport.list_queries import (
    add_audit_records,
    add_members,
    add_tenants,
    add_versions,
    assert_same_queries,
    publish_v1,
    targets,
)

pytestmark = pytest.mark.django_db

# search_path, the tenant, search_path, the session, the user, the memberships.
TENANT_PAGE = 6
# search_path, the public tenant, search_path, the session, the user.
PLATFORM_PAGE = 5


def _html(response: Any) -> str:
    assert response.status_code == 200, response.content[:500]
    return str(response.content.decode())


def _signed_in(client: Any, user: Any) -> Any:
    client.force_login(user)
    return client


# ---------------------------------------------------------------- the tenant's pages

# The rows (their users joined), the pending invitations (who invited joined).
MEMBERS_PAGE = TENANT_PAGE + 2


def test_the_members_page_reads_the_same_queries_for_few_and_many(world, client, django_assert_num_queries):
    _signed_in(client, world.alice)

    def grow(count: int) -> None:
        start = Membership.objects.filter(tenant=world.acme).count()
        add_members(world, count)
        for index, membership in enumerate(
            Membership.objects.filter(tenant=world.acme).order_by("pk")[start:]
        ):
            membership.role = Role.ADMIN  # each invitation by another admin
            membership.save()
            invitations.invitation_create(
                tenant=world.acme,
                email=f"i{start + index}@example.com",
                role="viewer",
                invited_by=membership.user,
            )

    def check(response: Any, total: int) -> None:
        html = _html(response)
        assert len(re.findall(r'name="membership" value="\d+"', html)) >= total + 3
        assert len(re.findall(r"<tr data-invitation=", html)) == total

    assert_same_queries(
        django_assert_num_queries,
        MEMBERS_PAGE,
        get=lambda: client.get("/t/acme/members/"),
        grow=grow,
        check=check,
    )


TOKENS_PAGE = TENANT_PAGE + 1  # the rows, their users joined


def test_the_tokens_page_reads_the_same_queries_for_few_and_many(
    world, client, token_for, django_assert_num_queries
):
    _signed_in(client, world.alice)

    def grow(count: int) -> None:
        add_members(world, count)
        for membership in Membership.objects.filter(tenant=world.acme, user__api_tokens__isnull=True):
            token_for(membership.user, world.acme, "viewer")

    def check(response: Any, total: int) -> None:
        html = _html(response)
        shown = re.findall(r"<td>(m\d{3})</td>", html)  # each token's owner
        assert len(shown) == total

    assert_same_queries(
        django_assert_num_queries,
        TOKENS_PAGE,
        get=lambda: client.get("/t/acme/tokens/"),
        grow=grow,
        check=check,
    )


AUDIT_PAGE = TENANT_PAGE + 1  # the page of records


def test_the_audit_page_reads_the_same_queries_for_few_and_many(world, client, django_assert_num_queries):
    _signed_in(client, world.alice)
    before = _html(client.get("/t/acme/audit/")).count("test.change")

    def check(response: Any, total: int) -> None:
        assert _html(response).count("test.change") == before + total

    assert_same_queries(
        django_assert_num_queries,
        AUDIT_PAGE,
        get=lambda: client.get("/t/acme/audit/"),
        grow=lambda count: add_audit_records(count, tenant=world.acme),
        check=check,
    )


# Which functions use each environment (every environment's name, every function's environment,
# the versions an alias or trigger references: selectors.environment_usage), the environments.
ENVIRONMENTS_PAGE = TENANT_PAGE + 4


def test_the_environments_page_reads_the_same_queries_for_few_and_many(
    world, client, django_assert_num_queries
):
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            start = Environment.objects.count()
            for index in range(start, start + count):
                environment = Environment.objects.create(name=f"env-{index:03d}", runtime_version="3.11")
                function = function_services.function_create(name=f"fn-{index:03d}", environment=environment)
                publish_v1(world, function)
                versions.alias_set(function=function, name="live", version=1)

    def check(response: Any, total: int) -> None:
        html = _html(response)
        assert len(set(re.findall(r"env-\d{3}", html))) == total
        assert len(set(re.findall(r"fn-\d{3}", html))) == total

    assert_same_queries(
        django_assert_num_queries,
        ENVIRONMENTS_PAGE,
        get=lambda: client.get("/t/acme/environments/"),
        grow=grow,
        check=check,
    )


# The Secrets, the ConfigMaps; which functions use each: the functions, their referenced
# versions (selectors.object_usages).
CONFIGURATION_PAGE = TENANT_PAGE + 4


def test_the_configuration_page_reads_the_same_queries_for_few_and_many(
    world, client, django_assert_num_queries
):
    tenant_services.tenant_set_quota(tenant=world.acme, quota={"secrets": 40, "configmaps": 40})
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            start = Environment.objects.count() + Version.objects.count()
            for index in range(start, start + count):
                configuration.secret_save(name=f"s-{index:03d}", data={"a": "1"})
                configuration.configmap_save(name=f"c-{index:03d}", data={"a": "1"})
                function = function_services.function_create(name=f"fn-{index:03d}")
                function_services.function_update(
                    function=function, secrets=[f"s-{index:03d}"], configmaps=[f"c-{index:03d}"]
                )
                publish_v1(world, function)
                versions.alias_set(function=function, name="live", version=1)

    def check(response: Any, total: int) -> None:
        html = _html(response)
        assert len(set(re.findall(r"\bs-\d{3}\b", html))) == total
        assert len(set(re.findall(r"\bc-\d{3}\b", html))) == total
        assert len(set(re.findall(r"\bfn-\d{3}\b", html))) == total

    assert_same_queries(
        django_assert_num_queries,
        CONFIGURATION_PAGE,
        get=lambda: client.get("/t/acme/configuration/"),
        grow=grow,
        check=check,
    )


def test_the_configuration_page_names_each_objects_users_as_before(world, client):
    """selectors.object_usages answers what configuration.usages does (one function at a time)."""
    from functions import selectors

    with schema_context(world.acme.schema_name):
        for name in ("a", "b", "c"):
            configuration.secret_save(name=f"s{name}", data={"k": "v"})
            configuration.configmap_save(name=f"c{name}", data={"k": "v"})
        pinned = function_services.function_create(name="pinned")
        function_services.function_update(function=pinned, secrets=["sa"], configmaps=["ca"])
        publish_v1(world, pinned)
        versions.alias_set(function=pinned, name="live", version=1)
        function_services.function_update(function=pinned, secrets=["sb"], configmaps=[])  # v1 still uses sa
        loose = function_services.function_create(name="loose")
        function_services.function_update(function=loose, secrets=["sc"], configmaps=["ca", "cc"])
        publish_v1(world, loose)  # nothing points at v1: only the draft's settings count
        assert selectors.object_usages() == configuration.usages()
        assert selectors.object_usages() == {
            "secrets": {"sa": ["pinned"], "sb": ["pinned"], "sc": ["loose"]},
            "configmaps": {"ca": ["loose", "pinned"], "cc": ["loose"]},
        }


# ---------------------------------------------------------------- a function's tabs and panels

# The function (its environment joined), its HTTP triggers (the header's URLs), and what the
# header shows of its state (the newest deployment).
FUNCTION_TAB = TENANT_PAGE + 3


@pytest.fixture
def live(world: Any, hello: Any) -> Version:
    version = publish_v1(world, hello)
    with schema_context(world.acme.schema_name):
        versions.alias_set(function=hello, name="live", version=1)
        Deployment.objects.create(function=hello, state=DeploymentState.LIVE, cause="test")
    return version


# The versions, the aliases (their versions joined).
VERSIONS_TAB = FUNCTION_TAB + 2


def test_the_versions_tab_reads_the_same_queries_for_few_and_many(
    world, client, live, django_assert_num_queries
):
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for index, version in enumerate(add_versions(live.function, count)):
                versions.alias_set(
                    function=live.function,
                    name=f"a-{version.number:03d}",
                    version=version.number,
                    canary_version=1,
                    canary_weight=index % 50,
                )

    def check(response: Any, total: int) -> None:
        html = _html(response)
        assert len(set(re.findall(r"\ba-\d{3}\b", html))) == total

    assert_same_queries(
        django_assert_num_queries,
        VERSIONS_TAB,
        get=lambda: client.get("/t/acme/functions/hello/versions/"),
        grow=grow,
        check=check,
    )


# The versions, the aliases, the time triggers and the queue triggers (their targets joined),
# the version numbers the dead letters may be sent again to (deadletters.dead_letter_page);
# the triggers' statuses and the dead letters come from the data plane.
TRIGGERS_TAB = FUNCTION_TAB + 5


def test_the_triggers_tab_reads_the_same_queries_for_few_and_many(
    world, client, live, django_assert_num_queries
):
    tenant_services.tenant_set_quota(
        tenant=world.acme, quota={"httptriggers": 40, "timetriggers": 40, "messagequeuetriggers": 40}
    )
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            start = Trigger.objects.count()
            for index in range(start, start + count):
                target = targets(live.function, index)
                Trigger.objects.create(
                    function=live.function,
                    name=f"h-{index:03d}",
                    path=f"/h/{index}",
                    methods=["GET"],
                    **target,
                )
                TimeTrigger.objects.create(
                    function=live.function, name=f"t-{index:03d}", cron="@hourly", **target
                )
                QueueTrigger.objects.create(
                    function=live.function,
                    name=f"q-{index:03d}",
                    mq_type="redis",
                    topic=f"q{index}",
                    **target,
                )
            add_versions(live.function, count)

    def check(response: Any, total: int) -> None:
        html = _html(response)
        for kind in "htq":
            assert len(set(re.findall(rf"\b{kind}-\d{{3}}\b", html))) == total

    assert_same_queries(
        django_assert_num_queries,
        TRIGGERS_TAB,
        get=lambda: client.get("/t/acme/functions/hello/triggers/"),
        grow=grow,
        check=check,
    )


# The newest 10 test calls, the saved events.
TEST_TAB = FUNCTION_TAB + 2


def test_the_test_tab_reads_the_same_queries_for_few_and_many(
    world, client, hello, django_assert_num_queries
):
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for index in range(count):
                Invocation.objects.create(
                    function=hello,
                    method="GET",
                    path=f"/call-{index}",
                    request_id=f"r{index}",
                    status=200,
                    request_headers={"x": "1"},
                )

    def check(response: Any, total: int) -> None:
        assert len(re.findall(r"/call-\d+", _html(response))) >= min(total, 10)

    assert_same_queries(
        django_assert_num_queries,
        TEST_TAB,
        get=lambda: client.get("/t/acme/functions/hello/test/"),
        grow=grow,
        check=check,
    )


# The function; its rollouts (their alias, versions and step joined: at most 50); the form's
# aliases and versions.
ROLLOUTS_PANEL = TENANT_PAGE + 4


def test_the_rollouts_panel_reads_the_same_queries_for_few_and_many(
    world, client, live, django_assert_num_queries
):
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            alias = live.function.aliases.get(name="live")
            step = Deployment.objects.create(function=live.function, state=DeploymentState.LIVE, cause="step")
            for version in add_versions(live.function, count):
                Rollout.objects.create(
                    function=live.function,
                    alias=alias,
                    from_version=live,
                    to_version=version,
                    weights=[10, 100],
                    interval_s=60,
                    state=RolloutState.SUCCEEDED,
                    step_deployment=step,
                )

    def check(response: Any, total: int) -> None:
        assert _html(response).count("succeeded") >= min(total, 5)

    assert_same_queries(
        django_assert_num_queries,
        ROLLOUTS_PANEL,
        get=lambda: client.get("/t/acme/functions/hello/rollouts/"),
        grow=grow,
        check=check,
    )


# The function; the replay form's versions; the recent replays (their versions joined). The
# captured requests come from the data plane.
CAPTURES_PANEL = TENANT_PAGE + 3


def test_the_captures_panel_reads_the_same_queries_for_few_and_many(
    world, client, live, django_assert_num_queries
):
    _signed_in(client, world.bob)

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for version in add_versions(live.function, count):
                Replay.objects.create(
                    function=live.function, version=version, captures=["1-0"], summary=f"r{version.number}"
                )

    def check(response: Any, total: int) -> None:
        assert len(re.findall(r"\bv\d+\b", _html(response))) >= min(total, 5)

    assert_same_queries(
        django_assert_num_queries,
        CAPTURES_PANEL,
        get=lambda: client.get("/t/acme/functions/hello/captures/"),
        grow=grow,
        check=check,
    )


# ---------------------------------------------------------------- the platform's pages

# The platform admin's switcher (every tenant), the tenants.
PLATFORM_TENANTS_PAGE = PLATFORM_PAGE + 2


def test_the_platform_tenants_page_reads_the_same_queries_for_few_and_many(
    world, client, django_assert_num_queries
):
    _signed_in(client, world.admin)

    def check(response: Any, total: int) -> None:
        assert len(re.findall(r'href="/platform/tenants/t\d{3}/"', _html(response))) == total

    assert_same_queries(
        django_assert_num_queries,
        PLATFORM_TENANTS_PAGE,
        get=lambda: client.get("/platform/tenants/"),
        grow=add_tenants,
        check=check,
    )


PLATFORM_AUDIT_PAGE = PLATFORM_PAGE + 2  # the switcher's tenants, the page of records


def test_the_platform_audit_page_reads_the_same_queries_for_few_and_many(
    world, client, django_assert_num_queries
):
    _signed_in(client, world.admin)
    before = _html(client.get("/platform/audit/")).count("test.change")

    def check(response: Any, total: int) -> None:
        assert _html(response).count("test.change") == before + total

    assert_same_queries(
        django_assert_num_queries,
        PLATFORM_AUDIT_PAGE,
        get=lambda: client.get("/platform/audit/"),
        grow=lambda count: add_audit_records(count, tenant=None),
        check=check,
    )
