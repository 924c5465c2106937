"""Every list of the REST API reads a fixed number of queries, whatever the number of rows it
lists and of the objects each row shows (issue 19). The function list is fixed in
functions/tests/test_list_queries.py; here are the others.

Every count starts with what each tenant API request reads (TENANT_API): django-tenants'
``SET search_path`` (public), the tenant, ``SET search_path`` (its schema), the token (with its
user and tenant), and the caller's membership. A platform API request reads the same up to the
token, in the public schema (PLATFORM_API); whether its user is a platform admin needs no query.
Then each list's own queries, said beside its constant. No list here fills a page (50), so none
asks for a count (core.api.pagination.Pagination, core.paging); the audit trail pages by cursor.

Lists that are not read from the database are not here: the captured requests (the data
plane's store), the logs (the runtime's log stream), the metrics and cold starts (Prometheus),
the dead letters (the data plane's async queue).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from audit.models import PLATFORM_CHAIN, AuditRecord
from functions import selectors
from functions.models import (
    Build,
    BuildState,
    ConfigMap,
    Deployment,
    DeploymentState,
    Environment,
    Function,
    Invocation,
    QueueTrigger,
    Secret,
    TargetKind,
    TimeTrigger,
    Trigger,
    Version,
)
from functions.services import configuration, versions
from functions.services import functions as function_services
from releases.models import Replay, Rollout, RolloutState
from tenants import invitations
from tenants import services as tenant_services
from tenants.models import Membership, Tenant
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

# search_path, the tenant, search_path, the token (its user and tenant joined), the membership.
TENANT_API = 5
# search_path, the public tenant, search_path, the token (its user joined).
PLATFORM_API = 4
API = "/t/acme/api/v1"


def _results(total: int) -> Any:
    def check(response: Any, expected: int) -> None:
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == total + expected

    return check


@pytest.fixture
def viewer(world: Any, api: Any, token_for: Any) -> Any:
    return api(token=token_for(world.bob, world.acme, "viewer"))


@pytest.fixture
def admin(world: Any, api: Any, token_for: Any) -> Any:
    return api(token=token_for(world.alice, world.acme, "admin"))


# ---------------------------------------------------------------- the tenant's own lists

# The environments; which functions use each: every environment's name, every function's
# environment, the versions an alias or trigger references (their settings name the
# environment they were published with): one query each (selectors.environment_usage).
ENVIRONMENTS = TENANT_API + 4


def test_the_environment_list_reads_the_same_queries_for_few_and_many(
    world, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            start = Environment.objects.count()
            for index in range(start, start + count):
                environment = Environment.objects.create(name=f"env-{index:03d}", runtime_version="3.11")
                function = function_services.function_create(name=f"fn-{index:03d}", environment=environment)
                publish_v1(world, function)
                versions.alias_set(function=function, name="live", version=1)
                Trigger.objects.create(
                    function=function,
                    name=f"t-{index:03d}",
                    path=f"/t/{index}",
                    methods=["GET"],
                    target_kind=TargetKind.VERSION,
                    version=Version.objects.get(function=function, number=1),
                )

    def check(response: Any, total: int) -> None:
        rows = response.json()["results"]
        assert len(rows) == total + 1  # and the default python
        made = {row["name"]: row["functions"] for row in rows if row["name"] != "python"}
        assert made == {name: [name.replace("env-", "fn-")] for name in made}

    assert_same_queries(
        django_assert_num_queries,
        ENVIRONMENTS,
        get=lambda: viewer.get(f"{API}/environments/"),
        grow=grow,
        check=check,
    )


def test_the_environment_list_names_the_functions_that_deploy_each(world, viewer):
    """A function moved to another environment still deploys the one its live version was
    published with: both list it (what environment_usage said before it read all at once)."""
    with schema_context(world.acme.schema_name):
        other = Environment.objects.create(name="other", runtime_version="3.12")
        moved = function_services.function_create(name="moved")
        publish_v1(world, moved)
        versions.alias_set(function=moved, name="live", version=1)
        function_services.function_update(function=moved, environment=other)
        canary = function_services.function_create(name="canary")
        publish_v1(world, canary)
        function_services.function_update(function=canary, environment=other, timeout_s=59)
        add_versions(canary, 1)
        Version.objects.filter(function=canary, number=2).update(
            config={**Version.objects.get(function=canary, number=1).config, "environment": "other"}
        )
        versions.alias_set(function=canary, name="live", version=2, canary_version=1, canary_weight=0)
        pinned_by: list[tuple[str, Any, dict[str, Any]]] = [
            ("queued", QueueTrigger, {"mq_type": "redis", "topic": "orders"}),
            ("timed", TimeTrigger, {"cron": "@hourly"}),
            ("routed", Trigger, {"path": "/routed", "methods": ["GET"]}),
        ]
        for name, model, fields in pinned_by:
            pinned = function_services.function_create(name=name)
            publish_v1(world, pinned)
            model.objects.create(
                function=pinned,
                name=f"{name}-t",
                target_kind=TargetKind.VERSION,
                version=Version.objects.get(function=pinned, number=1),
                **fields,
            )
            function_services.function_update(function=pinned, environment=other)
        unused = function_services.function_create(name="unused")
        publish_v1(world, unused)  # a version nothing points at deploys nothing
        function_services.function_update(function=unused, environment=other)
        usage = selectors.environment_usage()
        # What it answered when it asked for each function's referenced versions in turn.
        each: dict[str, set[str]] = {"python": set(), "other": set()}
        for function in Function.objects.all():
            each[function.environment.name].add(function.name)
            for version in selectors.referenced_versions(function=function):
                each[version.settings["environment"]].add(function.name)
    pinned_names = ["canary", "moved", "queued", "routed", "timed"]
    assert usage == {name: sorted(names) for name, names in each.items()}
    assert usage == {"python": pinned_names, "other": [*pinned_names, "unused"]}
    rows = {row["name"]: row["functions"] for row in viewer.get(f"{API}/environments/").json()["results"]}
    assert rows == usage
    assert viewer.get(f"{API}/environments/python/").json()["functions"] == pinned_names


SECRETS = TENANT_API + 1  # the rows


@pytest.mark.parametrize(("kind", "save"), [("secrets", "secret_save"), ("configmaps", "configmap_save")])
def test_secrets_and_configmaps_read_the_same_queries_for_few_and_many(
    world, viewer, django_assert_num_queries, kind, save
):
    tenant_services.tenant_set_quota(tenant=world.acme, quota={"secrets": 40, "configmaps": 40})

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            start = (Secret if kind == "secrets" else ConfigMap).objects.count()
            for index in range(start, start + count):
                getattr(configuration, save)(name=f"o-{index:03d}", data={"a": "1", "b": "2"})

    assert_same_queries(
        django_assert_num_queries,
        SECRETS,
        get=lambda: viewer.get(f"{API}/{kind}/"),
        grow=grow,
        check=_results(0),
    )


# ---------------------------------------------------------------- a function's lists

# The function (FunctionChildViewSet.function), the rows.
FUNCTION_CHILD = TENANT_API + 2


@pytest.fixture
def live(world: Any, hello: Any) -> Version:
    """``hello`` published (v1) with alias ``live``."""
    version = publish_v1(world, hello)
    with schema_context(world.acme.schema_name):
        versions.alias_set(function=hello, name="live", version=1)
    return version


def test_the_build_list_reads_the_same_queries_for_few_and_many(
    world, hello, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for index in range(count):
                Build.objects.create(
                    function=hello, draft_revision=index + 1, state=BuildState.FAILED, log="x"
                )

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/builds/"),
        grow=grow,
        check=_results(0),
    )


def test_the_version_list_reads_the_same_queries_for_few_and_many(
    world, live, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            add_versions(live.function, count)

    def check(response: Any, total: int) -> None:
        _results(1)(response, total)
        rows = response.json()["results"]
        assert rows[0]["sha256"] == f"{total + 1:064x}"  # each version's own build, newest first
        assert rows[-1]["config"]["environment"] == "python"

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/versions/"),
        grow=grow,
        check=check,
    )


def test_the_alias_list_reads_the_same_queries_for_few_and_many(
    world, live, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for index, version in enumerate(add_versions(live.function, count)):
                name = f"a-{version.number:03d}"
                versions.alias_set(
                    function=live.function,
                    name=name,
                    version=version.number,
                    canary_version=1,
                    canary_weight=index % 50,
                )

    def check(response: Any, total: int) -> None:
        _results(1)(response, total)
        assert {row["canary_version"] for row in response.json()["results"]} == {None, 1}

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/aliases/"),
        grow=grow,
        check=check,
    )


def test_the_http_trigger_list_reads_the_same_queries_for_few_and_many(
    world, live, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            start = Trigger.objects.count()
            for index in range(start, start + count):
                Trigger.objects.create(
                    function=live.function,
                    name=f"h-{index:03d}",
                    path=f"/h/{index}",
                    methods=["GET"],
                    **targets(live.function, index),
                )

    def check(response: Any, total: int) -> None:
        _results(0)(response, total)
        assert {(row["alias"], row["version"]) for row in response.json()["results"]} == {
            ("live", None),
            (None, 1),
            (None, None),
        }

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/triggers/"),
        grow=grow,
        check=check,
    )


@pytest.mark.parametrize("kind", ["time-triggers", "queue-triggers"])
def test_the_event_trigger_lists_read_the_same_queries_for_few_and_many(
    world, live, viewer, django_assert_num_queries, kind
):
    tenant_services.tenant_set_quota(
        tenant=world.acme, quota={"timetriggers": 40, "messagequeuetriggers": 40}
    )

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            model = TimeTrigger if kind == "time-triggers" else QueueTrigger
            start = model.objects.count()
            for index in range(start, start + count):
                fields = (
                    {"cron": "@hourly"}
                    if model is TimeTrigger
                    else {"mq_type": "redis", "topic": f"q{index}", "connection": {"address": "x:1"}}
                )
                model.objects.create(
                    function=live.function, name=f"e-{index:03d}", **fields, **targets(live.function, index)
                )

    def check(response: Any, total: int) -> None:
        _results(0)(response, total)
        assert {(row["alias"], row["version"]) for row in response.json()["results"]} == {
            ("live", None),
            (None, 1),
            (None, None),
        }

    # The trigger statuses come from the data plane (one call, no query).
    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/{kind}/"),
        grow=grow,
        check=check,
    )


def test_the_deployment_list_reads_the_same_queries_for_few_and_many(
    world, live, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            build = Build.objects.filter(function=live.function).first()
            for index in range(count):
                Deployment.objects.create(
                    function=live.function,
                    state=DeploymentState.LIVE,
                    cause=f"t{index}",
                    build=build,
                    steps=[{"step": "apply"}],
                )

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/deployments/"),
        grow=grow,
        check=_results(0),
    )


def test_the_invocation_list_reads_the_same_queries_for_few_and_many(
    world, hello, viewer, django_assert_num_queries
):
    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for index in range(count):
                Invocation.objects.create(
                    function=hello, method="GET", path="/", request_id=f"r{index}", status=200
                )

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/invocations/"),
        grow=grow,
        check=_results(0),
    )


def test_the_rollout_list_reads_the_same_queries_for_few_and_many(
    world, live, viewer, django_assert_num_queries
):
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
                    decisions=[
                        {
                            "at": "2026-01-01T00:00:00Z",
                            "step": 1,
                            "weight": 10,
                            "action": "pass",
                            "message": "B within bounds",
                        }
                    ],
                )

    def check(response: Any, total: int) -> None:
        _results(0)(response, total)
        assert response.json()["results"][0]["to_version"] == total + 1

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: viewer.get(f"{API}/functions/hello/rollouts/"),
        grow=grow,
        check=check,
    )


def test_the_replay_list_reads_the_same_queries_for_few_and_many(
    world, live, api, token_for, django_assert_num_queries
):
    developer = api(token=token_for(world.bob, world.acme, "developer"))  # captures' bodies: not viewers

    def grow(count: int) -> None:
        with schema_context(world.acme.schema_name):
            for version in add_versions(live.function, count):
                Replay.objects.create(
                    function=live.function,
                    version=version,
                    captures=["1-0"],
                    results=[{"capture": "1-0", "state": "done", "passed": True}],
                )

    def check(response: Any, total: int) -> None:
        _results(0)(response, total)
        assert response.json()["results"][0]["version"] == total + 1

    assert_same_queries(
        django_assert_num_queries,
        FUNCTION_CHILD,
        get=lambda: developer.get(f"{API}/functions/hello/replays/"),
        grow=grow,
        check=check,
    )


# ---------------------------------------------------------------- people, tokens, the trail


MEMBERS = TENANT_API + 1  # the rows, their users joined


def test_the_member_list_reads_the_same_queries_for_few_and_many(world, viewer, django_assert_num_queries):
    assert_same_queries(
        django_assert_num_queries,
        MEMBERS,
        get=lambda: viewer.get(f"{API}/members/"),
        grow=lambda count: add_members(world, count),
        check=_results(3),  # alice, bob, vera
    )


INVITATIONS = TENANT_API + 1  # the pending rows, who invited joined


def test_the_invitation_list_reads_the_same_queries_for_few_and_many(world, admin, django_assert_num_queries):
    def grow(count: int) -> None:
        start = Membership.objects.filter(tenant=world.acme).count()
        add_members(world, count)
        inviters = Membership.objects.filter(tenant=world.acme).order_by("pk")[start:]
        for index, membership in enumerate(inviters, start):  # each invited by another admin
            membership.role = Role.ADMIN
            membership.save()
            invitations.invitation_create(
                tenant=world.acme, email=f"i{index}@example.com", role="viewer", invited_by=membership.user
            )

    assert_same_queries(
        django_assert_num_queries,
        INVITATIONS,
        get=lambda: admin.get(f"{API}/invitations/"),
        grow=grow,
        check=_results(0),
    )


TOKENS = TENANT_API + 1  # the rows, their users joined


def test_the_token_list_reads_the_same_queries_for_few_and_many(
    world, admin, token_for, django_assert_num_queries
):
    def grow(count: int) -> None:
        add_members(world, count)
        for membership in Membership.objects.filter(tenant=world.acme, user__api_tokens__isnull=True):
            token_for(membership.user, world.acme, "viewer", expires_at=timezone.now() + timedelta(days=1))

    def check(response: Any, total: int) -> None:
        rows = response.json()["results"]
        assert len(rows) == total + 3  # alice's; bob's and vera's, made by the first grow
        assert all(row["username"] for row in rows)

    assert_same_queries(
        django_assert_num_queries,
        TOKENS,
        get=lambda: admin.get(f"{API}/tokens/"),
        grow=grow,
        check=check,
    )


AUDIT = TENANT_API + 1  # the page of records (by cursor: no count)


def test_the_tenant_audit_trail_reads_the_same_queries_for_few_and_many(
    world, admin, django_assert_num_queries
):
    before = len(admin.get(f"{API}/audit/").json()["results"])

    def check(response: Any, total: int) -> None:
        assert len(response.json()["results"]) == before + total

    assert_same_queries(
        django_assert_num_queries,
        AUDIT,
        get=lambda: admin.get(f"{API}/audit/"),
        grow=lambda count: add_audit_records(count, tenant=world.acme),
        check=check,
    )


# ---------------------------------------------------------------- the platform's lists


@pytest.fixture
def platform(world: Any, api: Any) -> Any:
    return api(
        token=tenant_services.token_create(
            tenant=None, user=world.admin, name="p", role="platform_admin"
        ).secret
    )


TENANTS = PLATFORM_API + 1  # the tenants


def test_the_platform_tenant_list_reads_the_same_queries_for_few_and_many(
    world, platform, django_assert_num_queries
):
    assert_same_queries(
        django_assert_num_queries,
        TENANTS,
        get=lambda: platform.get("/api/v1/tenants/"),
        grow=add_tenants,
        check=_results(2),  # acme and globex
    )


PLATFORM_AUDIT = PLATFORM_API + 1  # the page of records


def test_the_platform_audit_trail_reads_the_same_queries_for_few_and_many(
    world, platform, django_assert_num_queries
):
    before = len(platform.get("/api/v1/audit/").json()["results"])

    def check(response: Any, total: int) -> None:
        assert len(response.json()["results"]) == before + total

    assert_same_queries(
        django_assert_num_queries,
        PLATFORM_AUDIT,
        get=lambda: platform.get("/api/v1/audit/"),
        grow=lambda count: add_audit_records(count, tenant=None),
        check=check,
    )


# search_path, the public tenant, search_path, the session, the user, the tenants with the
# caller's role in each (one query: selectors.tenant_roles_for_user).
ME = 6


def test_me_lists_the_callers_tenants_in_the_same_queries_for_few_and_many(
    world, api, django_assert_num_queries
):
    caller = api(world.vera)

    def grow(count: int) -> None:
        add_tenants(count)
        for tenant in Tenant.objects.filter(memberships__isnull=True).exclude(schema_name="public"):
            Membership.objects.create(user=world.vera, tenant=tenant, role=Role.DEVELOPER)

    def check(response: Any, total: int) -> None:
        tenants = response.json()["tenants"]
        assert len(tenants) == total + 1  # and acme
        assert {t["role"] for t in tenants} == {"viewer", "developer"}

    assert_same_queries(
        django_assert_num_queries, ME, get=lambda: caller.get("/api/v1/me/"), grow=grow, check=check
    )


# ---------------------------------------------------------------- every list is a bounded page


def test_a_functions_list_answers_50_rows_unless_asked_and_never_more_than_500(world, hello, viewer):
    with schema_context(world.acme.schema_name):
        Invocation.objects.bulk_create(
            Invocation(function=hello, method="GET", path="/", request_id=f"r{index}", status=200)
            for index in range(501)
        )
    first = viewer.get(f"{API}/functions/hello/invocations/").json()
    assert len(first["results"]) == 50  # core.api.pagination.Pagination.default_limit
    assert first["count"] == 501
    assert first["next"] is not None
    assert len(viewer.get(f"{API}/functions/hello/invocations/?limit=100").json()["results"]) == 100
    capped = viewer.get(f"{API}/functions/hello/invocations/?limit=10000").json()
    assert len(capped["results"]) == 500  # max_limit
    assert capped["next"] is not None
    last = viewer.get(f"{API}/functions/hello/invocations/?limit=500&offset=500").json()
    assert len(last["results"]) == 1
    assert last["next"] is None


@pytest.mark.parametrize("trail", ["tenant", "platform"])
def test_an_audit_trail_answers_50_records_unless_asked_and_never_more_than_500(
    world, admin, platform, trail
):
    # Records written directly (a chain of their own, or past the platform chain's): the
    # listing reads records, not their links.
    tenant_id, chain = (world.acme.pk, 10**9) if trail == "tenant" else (None, PLATFORM_CHAIN)
    AuditRecord.objects.bulk_create(
        AuditRecord(
            chain=chain, seq=10**6 + index, at=timezone.now(), tenant_id=tenant_id, actor_type="system",
            actor_name="test", object_type="test", object_name=f"n{index}", action="test.change",
            prev_hash="", hash=f"{trail}-{index}",
        )
        for index in range(501)
    )  # fmt: skip
    caller, path = (admin, f"{API}/audit/") if trail == "tenant" else (platform, "/api/v1/audit/")
    first = caller.get(path).json()
    assert len(first["results"]) == 50  # tenants.api.views.AuditPagination.page_size
    assert first["next"] is not None
    capped = caller.get(f"{path}?limit=10000").json()
    assert len(capped["results"]) == 500  # max_page_size
    following = caller.get(capped["next"]).json()["results"]
    assert following
    assert {r["object_name"] for r in capped["results"]}.isdisjoint(r["object_name"] for r in following)
