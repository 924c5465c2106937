"""The whole OpenAPI document against the running portal: schemathesis generates requests for
every operation, and no answer may be a 500 or differ from what the document says (its status
code or its body).

The portal runs as in production (uvicorn serving portal.asgi, the test PostgreSQL, the session's
runtime, a real Prometheus), and the requests carry a tenant admin's API token for ``acme``. The
tenant and the function are fixed; other path parameters name the scene's objects (the coverage
phase makes up ones that do not exist); strings in paths and queries are now and then one of the
EDGES. The run is bounded and reproducible: a fixed seed, derandomized, no example database, the
coverage phase's positive boundary values, then EXAMPLES generated requests per operation
(RICH_EXAMPLES for those with rich input). Every operation must answer 2xx at least once.

Operations that start data-plane work stay in: a deployment or a build is queued (no Celery
worker runs here), a test call goes through the runtime's router to a function that is not
deployed. They must answer a documented 2xx or 4xx like the rest.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import schemathesis
from celery import current_app
from django_tenants.utils import schema_context
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from functions import tasks
from functions.models import (
    Build,
    BuildState,
    Deployment,
    Draft,
    Environment,
    Invocation,
    QueueTrigger,
    TimeTrigger,
    Trigger,
)  # fmt: skip
from functions.services import functions, versions
from releases.services import replays as replay_services
from releases.services import rollouts as rollout_services
from tenants import invitations, services
from tenants.models import Membership
from testsupport.captures import captured_request
from testsupport.fixtures import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

TENANT = "/t/{tenant}/api/v1"
SEED = 20260601
EXAMPLES = 5  # generated per operation, beyond the coverage phase's boundary values
RICH_EXAMPLES = 25
# Values that broke APIs before, drawn now and then for any string in a path or a query: NUL
# (which PostgreSQL refuses in text; schemathesis itself keeps it out of paths), non-ASCII, and
# the ends of the date-time range.
EDGES = ["\x00", "a\x00b", "é", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
STRINGS = {"string": {"dictionary": "edges", "probability": 0.2}}
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
# A zipped spec folder (spec/apply/) is sent as the bytes generated for it, as any binary body.
schemathesis.serializer.alias("application/zip", "application/octet-stream")
# Each operation must answer 2xx at least once, or the run only saw refusals (a revoked token,
# a deleted fixture) and proved little; but for these, which answer 2xx to no generated request.
PLATFORM = ("GET /", "POST /", "GET /{slug}/", "PATCH /{slug}/", "DELETE /{slug}/", "POST /{slug}/retry/")
NEVER_2XX = {
    **{
        label.replace(" /", " /api/v1/tenants/", 1): "the platform API refuses a tenant token"
        for label in PLATFORM
    },
    f"POST {TENANT}/functions/{{name}}/upload/": "a generated file is named neither *.py nor *.zip",
    f"POST {TENANT}/spec/apply/": "a generated body is not a zip of a Fission spec folder",
    "GET /api/v1/audit/": "the platform API refuses a tenant token",
    "GET /api/v1/audit/export/": "the platform API refuses a tenant token",
}


def _scene(world: World, capture: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Alice's admin token for acme, and the objects the path parameters name: function
    ``hello`` with a build, version 1, alias ``live``, trigger ``hello``, a deployment and a test
    call; what DELETE and PATCH may remove, revoke or demote: function ``scratch``, environment
    ``spare``, a spare token and Vera's membership (never the token the run uses, nor Alice)."""
    with schema_context(world.acme.schema_name):
        hello = functions.function_create(name="hello")
        functions.function_create(name="scratch", entrypoint="")  # "": main.main, as documented
        Environment.objects.create(name="spare")
        draft = Draft.objects.get(function=hello)
        build = Build.objects.create(
            function=hello, draft_revision=draft.revision, state=BuildState.SUCCEEDED, sha256="a" * 64,
            python_version=hello.environment.runtime_version, source_files=draft.files,
        )  # fmt: skip
        versions.version_publish(function=hello)
        versions.alias_set(function=hello, name="live", version=1)
        functions.function_update(function=hello, idle_timeout_s=90)
        versions.version_publish(function=hello)  # v2: what the rollouts move to
        functions.function_update(function=hello, idle_timeout_s=100)  # a draft that can be published
        rollouts = _rollouts(hello)
        functions.function_create(name="kept")  # whose captured request one DELETE removes
        replay = replay_services.replay_create(function=hello, version=1)
        Trigger.objects.create(function=hello, name="hello", methods=["GET"], path="/hello")
        TimeTrigger.objects.create(function=hello, name="tick", cron="@hourly")
        QueueTrigger.objects.create(function=hello, name="orders", mq_type="redis", topic="orders")
        deployment = Deployment.objects.create(function=hello, state="live", cause="fixture")
        call = Invocation.objects.create(function=hello, method="GET", path="/hello", request_id="r1")
    token = services.token_create(tenant=world.acme, user=world.alice, name="fuzz", role="admin")
    spare = services.token_create(tenant=world.acme, user=world.alice, name="spare", role="viewer")
    vera = Membership.objects.get(tenant=world.acme, user=world.vera)
    # Pending invitations: one to read, one to withdraw (a withdrawn one is no longer found).
    shown, withdrawn = (
        invitations.invitation_create(tenant=world.acme, email=email, role="viewer", invited_by=world.alice)
        for email in ("shown@example.org", "withdrawn@example.org")
    )
    functions_ = "/functions/{function_name}"
    # Every phase and example: what the deleting, revoking and demoting operations may remove
    # (schemathesis reuses ids it saw in answers, and would remove the run's token or its
    # admin), and the objects the other operations on one function work on.
    pinned = {
        # Each way of steering a rollout on a rollout of its own, in the state it can leave.
        **{f"POST {functions_}/rollouts/{{id}}/{verb}/": {"path.id": pk} for verb, pk in rollouts.items()},
        f"GET {functions_}/versions/compare/": {"query.base": "v1", "query.head": "draft"},
        # Not hello's: the purge of hello's captured requests may come first.
        f"DELETE {functions_}/captures/{{capture_id}}/": {
            "path.function_name": "kept",
            "path.capture_id": capture,
        },
        f"POST {functions_}/versions/{{number}}/restore/": {"path.number": 1},
        f"DELETE {functions_}/aliases/{{name}}/": {"path.name": "live"},
        f"DELETE {functions_}/triggers/{{name}}/": {"path.name": "hello"},
        **{
            f"{method} {functions_}/{kind}/{{name}}/": {"path.name": name}
            for method in ("PUT", "DELETE")
            for kind, name in (("time-triggers", "tick"), ("queue-triggers", "orders"))
        },
        "DELETE /functions/{name}/": {"path.name": "scratch"},
        **{
            f"{method} /environments/{{name}}/": {"path.name": "spare"}
            for method in ("PUT", "PATCH", "DELETE")
        },
        **{f"{method} /members/{{id}}/": {"path.id": vera.pk} for method in ("PATCH", "DELETE")},
        "DELETE /tokens/{id}/": {"path.id": spare.token.pk},
        "DELETE /invitations/{id}/": {"path.id": withdrawn.invitation.pk},
        **{
            f"{method} /functions/{{name}}/{action}": {"path.name": "hello"}
            for method, action in (
                ("GET", ""),
                ("PATCH", ""),
                ("GET", "code/"),
                ("PUT", "code/"),
                ("POST", "invoke/"),
                ("POST", "upload/"),
                ("GET", "dead-letters/"),
                ("POST", "dead-letters/redrive/"),
                ("POST", "dead-letters/purge/"),
            )
        },
    }
    # The fuzzing phase's examples: an existing object (the coverage phase, which ignores these,
    # makes up hostile ones), or a body that can succeed, half of the time.
    drawn = {
        f"GET {functions_}/aliases/{{name}}/": {"path.name": ("live", 1.0)},
        f"GET {functions_}/triggers/{{name}}/": {"path.name": ("hello", 1.0)},
        f"GET {functions_}/versions/{{number}}/": {"path.number": (1, 1.0)},
        f"GET {functions_}/rollouts/{{id}}/": {"path.id": (rollouts["pause"], 1.0)},
        f"GET {functions_}/replays/{{id}}/": {"path.id": (replay.pk, 1.0)},
        f"POST {functions_}/replays/": {"body.version": (1, 0.8)},
        f"PUT {functions_}/capture/": {"body.max_requests": (10, 0.5), "body.max_body_bytes": (1024, 0.5)},
        f"POST {functions_}/rollouts/": {"body.alias": ("r-start", 0.8), "body.to_version": (2, 0.8),
                                         "body.increment": (50, 0.5), "body.interval_s": (60, 0.8)},
        f"GET {functions_}/builds/{{id}}/": {"path.id": (build.pk, 1.0)},
        f"GET {functions_}/deployments/{{id}}/": {"path.id": (deployment.pk, 1.0)},
        f"GET {functions_}/invocations/{{id}}/": {"path.id": (call.pk, 1.0)},
        "GET /members/{id}/": {"path.id": (vera.pk, 1.0)},
        "GET /tokens/{id}/": {"path.id": (spare.token.pk, 1.0)},
        "GET /invitations/{id}/": {"path.id": (shown.invitation.pk, 1.0)},
        "GET /environments/{name}/": {"path.name": ("python", 1.0)},
        f"POST {functions_}/aliases/": {"body.name": ("beta", 0.5), "body.version": (1, 0.5)},
        f"POST {functions_}/triggers/": {"body.name": ("fuzz", 0.5), "body.path": ("/fuzz", 0.5)},
        f"GET {functions_}/time-triggers/{{name}}/": {"path.name": ("tick", 1.0)},
        f"GET {functions_}/queue-triggers/{{name}}/": {"path.name": ("orders", 1.0)},
        # A body that can succeed; a PUT always keeps the trigger's name (a rename would leave
        # nothing for the DELETE pinned to it).
        **{
            label: {"body.name": name, "body.cron": ("@hourly", 0.5), "body.subpath": ("/", 0.5),
                    "body.target_kind": ("draft", 0.5)}
            for label, name in ((f"POST {functions_}/time-triggers/", ("fuzz", 0.5)),
                                (f"PUT {functions_}/time-triggers/{{name}}/", ("tick", 1.0)))
        },
        **{
            label: {"body.name": name, "body.mq_type": ("redis", 0.5), "body.topic": ("in", 0.5),
                    "body.target_kind": ("draft", 0.5), "body.min_replicas": (0, 0.5),
                    "body.max_replicas": (10, 0.5)}
            for label, name in ((f"POST {functions_}/queue-triggers/", ("fuzz", 0.5)),
                                (f"PUT {functions_}/queue-triggers/{{name}}/", ("orders", 1.0)))
        },
    }  # fmt: skip
    return token.secret, pinned, drawn


def _rollouts(function: Any) -> dict[str, int]:
    """A rollout per steering verb (v1 to v2), each on an alias of its own, running (paused for
    resume); and alias ``r-start``, on v1, for rollouts the run starts."""
    found = {}
    # Their first step's deployment and tick are not queued: a worker running them would end the
    # rollouts (the scene's builds have no archive to deploy) before the run steers them.
    with (
        mock.patch.object(tasks.deploy_task, "delay") as deploy,
        mock.patch.object(current_app, "send_task") as tick,  # the app releases.services.rollouts sends with
    ):
        for verb in ("pause", "resume", "promote", "abort", "start"):
            versions.alias_set(function=function, name=f"r-{verb}", version=1)
            if verb != "start":
                found[verb] = rollout_services.rollout_start(
                    function=function, alias=f"r-{verb}", to_version=2, interval_s=60
                )
        rollout_services.rollout_pause(rollout=found["resume"])
    assert deploy.call_count == tick.call_count == 4  # held here, not sent to a worker
    return {verb: rollout.pk for verb, rollout in found.items()}


# Operations whose input is rich (free-form dictionaries, text, dates, settings): the ones worth
# more examples than the rest.
RICH = (
    "POST /functions/{name}/invoke/", "PUT /functions/{name}/code/", "GET /logs/", "POST /functions/",
    "PATCH /functions/{name}/", "POST /functions/{function_name}/triggers/", "POST /tokens/",
    "POST /invitations/", "POST /functions/{function_name}/time-triggers/",
    "POST /functions/{function_name}/queue-triggers/", "PUT /functions/{function_name}/time-triggers/{name}/",
    "PUT /functions/{function_name}/queue-triggers/{name}/",
)  # fmt: skip


def _config(token: str, pinned: dict[str, Any], drawn: dict[str, Any]) -> dict[str, Any]:
    """schemathesis.toml's settings, as a dict: the tenant and the function are fixed, so that
    every phase reaches the views rather than a 404; the scene's pinned and drawn parameters; more
    examples for the RICH operations. One ``[[operations]]`` entry per operation (when several
    match, schemathesis merges them setting by setting)."""
    dictionaries: dict[str, Any] = {"edges": {"values": EDGES}}
    parameters: dict[str, dict[str, Any]] = {label: dict(values) for label, values in pinned.items()}
    for label, values in drawn.items():
        for parameter, (value, probability) in values.items():
            name = f"object{len(dictionaries)}"
            dictionaries[name] = {"values": [value]}
            parameters.setdefault(label, {})[parameter] = {"dictionary": name, "probability": probability}
    operations = [
        {
            "include-name": _label(label), "parameters": parameters.get(label, {}),
            **({"generation": {"max-examples": RICH_EXAMPLES}} if label in RICH else {}),
        }
        for label in {**parameters, **dict.fromkeys(RICH)}
    ]  # fmt: skip
    return {
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {
            "max-examples": EXAMPLES,
            "deterministic": True,
            "database": "none",
            "dictionaries": STRINGS,
        },
        # The coverage phase's positive boundary values (the negative ones, a thousand 400s, would
        # double the run); unexpected methods only matter to the `unsupported_method` check.
        "phases": {"coverage": {"unexpected-methods": [], "generation": {"mode": "positive"}}},
        "dictionaries": dictionaries,
        "parameters": {"path.tenant": "acme", "path.function_name": "hello"},
        "operations": operations,
    }


def _label(label: str) -> str:
    """The operation's full label: ``GET /logs/`` is ``GET /t/{tenant}/api/v1/logs/``."""
    method, path = label.split(" ", 1)
    return f"{method} {TENANT}{path}"


@pytest.fixture
def api_schema(
    request: pytest.FixtureRequest, world: World, live_server_url: str, prometheus: Any
) -> Iterator[Any]:
    """The served document, with the scene's values. Afterwards every operation (but those a
    tenant token may not use) must have answered 2xx at least once: otherwise the run only saw
    refusals, and proved little."""
    # schemathesis (4.32) renames the running node through ``_nodeid``, which pytest 9.2 no longer
    # has; with the attribute back, the per-operation subtests run (and are named by their label).
    request.node._nodeid = request.node.nodeid
    with captured_request(world.acme.namespace, "kept") as capture:
        yield from _run(world, live_server_url, capture)


def _run(world: World, live_server_url: str, capture: str) -> Iterator[Any]:
    config = schemathesis.Config.from_dict(_config(*_scene(world, capture)))
    schema = schemathesis.openapi.from_url(f"{live_server_url}/api/schema/", config=config)
    answered: dict[str, set[int]] = collections.defaultdict(set)

    @schema.hook
    def after_call(context: Any, case: Any, response: Any) -> None:
        answered[case.operation.label].add(response.status_code)

    yield schema
    operations = {result.ok().label for result in schema.get_all_operations() if isinstance(result, Ok)}
    never_ok = sorted(
        label for label in operations - set(NEVER_2XX) if not any(200 <= s < 300 for s in answered[label])
    )
    assert never_ok == [], {label: sorted(answered[label]) for label in never_ok}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_documented_and_never_500(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
