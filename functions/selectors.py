"""Reads about functions, in the current tenant's schema."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any, TypedDict

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import BooleanField, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from core.errors import Conflict, NotFound, ValidationFailed
from core.paging import page_and_count
from functions import compilecheck, config, diffs, runtimes
from functions.models import (
    Alias,
    Build,
    BuildState,
    ConfigMap,
    Deployment,
    Draft,
    Environment,
    Function,
    Invocation,
    QueueTrigger,
    Secret,
    TargetKind,
    TimeTrigger,
    Trigger,
    Version,
)  # fmt: skip
from functions.specs import function_spec


def _newest_deployment(field: str) -> Subquery:
    """``field`` of the function's newest deployment (None without one), for ``annotate``."""
    newest = Deployment.objects.filter(function=OuterRef("pk")).order_by("-created_at")
    return Subquery(newest.values(field)[:1])


def function_queryset() -> QuerySet[Function]:
    """The functions with their environment, ``last_deployment_state`` and
    ``last_deployment_at``: what the API reads one function from (and changes it through)."""
    return Function.objects.select_related("environment").annotate(
        last_deployment_state=_newest_deployment("state"),
        last_deployment_at=_newest_deployment("created_at"),
    )


class FunctionRow(TypedDict):
    """One row of the function list page; its times as the page writes them (``_minute``)."""

    name: str
    executor: str
    environment: str  # its name
    last_deployment_state: str | None  # of the newest deployment; None for none
    deployed: str  # when the newest deployment was made; "" for none
    updated: str


FUNCTIONS_PER_PAGE = 50  # the function list page's, as NetBox's lists


@dataclass(frozen=True)
class FunctionListPage:
    """One page of the function list: its rows and where it is among the others."""

    rows: list[FunctionRow]
    page: Page[Any]
    search: str


def function_list(*, search: str = "", page: str | None = None) -> FunctionListPage:
    """The function list page's rows, by name, those whose name contains ``search`` (any case),
    ``FUNCTIONS_PER_PAGE`` at a time: page ``page`` (a number; the first for none or not one,
    the last past the end). Two queries whatever their number: the count, the page's rows.

    Plain rows rather than model instances, their times already written out: for a long list,
    making a Function and its Environment per row, and Django's ``date`` filter per time, cost
    more than the rest of the page (bench/pages.py)."""
    zone = timezone.get_current_timezone()
    found = Function.objects.values_list(
        "name", "executor", F("environment__name"), _newest_deployment("state"),
        _newest_deployment("created_at"), "updated_at",
    ).order_by("name")  # fmt: skip
    if search:
        found = found.filter(name__icontains=search)
    shown = _page(found, page)
    rows = [
        FunctionRow(
            name=name, executor=executor, environment=environment, last_deployment_state=state,
            deployed=_minute(deployed_at, zone), updated=_minute(updated_at, zone),
        )
        for name, executor, environment, state, deployed_at, updated_at in shown.object_list
    ]  # fmt: skip
    return FunctionListPage(rows, shown, search)


def _page(found: QuerySet[Any, Any], asked: str | None) -> Page[Any]:
    """Page ``asked`` of ``found`` (Paginator.get_page's: the first for none or not a number,
    the last past the end), its rows read with the count when they tell it (core.paging)."""
    paginator: Paginator[Any] = Paginator(found, FUNCTIONS_PER_PAGE)
    digits = asked is not None and asked.isascii() and asked.isdigit() and len(asked) < 9
    number = max(int(asked), 1) if asked is not None and digits else 1
    offset = (number - 1) * FUNCTIONS_PER_PAGE
    rows, paginator.count = page_and_count(found, offset, FUNCTIONS_PER_PAGE)
    if rows or number == 1:
        return Page(rows, number, paginator)
    return paginator.get_page(number)  # past the end: the last page


def _minute(moment: datetime | None, zone: tzinfo) -> str:
    """``moment`` in ``zone`` as the ``date:"Y-m-d H:i"`` filter writes it; "" for None."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def function_rows() -> QuerySet[Function, dict[str, Any]]:
    """The functions as the API lists them, by name: dicts of FunctionSerializer's fields, the
    environment's name as ``environment_name`` (functions/api/serializers.py:
    ``function_rows_shown``). Dicts rather than model instances: for a long list, making a
    Function and its Environment per row costs more than the rest of the request."""
    return Function.objects.values(
        "name", *config.NAMES, "created_at", "updated_at",
        environment_name=F("environment__name"), last_deployment_state=_newest_deployment("state"),
    )  # fmt: skip


def environment_list() -> QuerySet[Environment]:
    return Environment.objects.all()


def environment_usage() -> dict[str, list[str]]:
    """Each environment's name -> the functions that deploy it (sorted names): those set to it,
    and those with a deployed version (one an alias or trigger references) published with it,
    since a version keeps the environment it was published with."""
    usage: dict[str, set[str]] = {name: set() for name in Environment.objects.values_list("name", flat=True)}
    for function_name, environment_name in Function.objects.values_list("name", "environment__name"):
        usage[environment_name].add(function_name)
    for function_name, frozen in _referenced_version_configs():
        published_on = config.thawed(frozen).get("environment")
        if published_on in usage:
            usage[published_on].add(function_name)
    return {name: sorted(names) for name, names in usage.items()}


def object_usages() -> dict[str, dict[str, list[str]]]:
    """For ``secrets`` and ``configmaps``: each name -> the functions that use it (sorted):
    those naming it now, and those with a deployed version published naming it (what
    functions.services.configuration.usages answers). Two queries whatever the number of
    functions: the functions (their settings name them), their referenced versions."""
    found: dict[str, dict[str, set[str]]] = {"secrets": {}, "configmaps": {}}
    configs = [(f.name, config.current(f)) for f in Function.objects.all()]
    configs += [(name, config.thawed(frozen)) for name, frozen in _referenced_version_configs()]
    for function_name, settings_ in configs:
        for setting, names in found.items():
            for name in settings_.get(setting) or []:
                names.setdefault(name, set()).add(function_name)
    return {setting: {name: sorted(f) for name, f in names.items()} for setting, names in found.items()}


def referenced_version_configs() -> dict[str, list[dict[str, Any]]]:
    """Function name -> the stored configurations of the versions its aliases and triggers
    reference (``referenced_versions``' versions), for every function in one query."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, frozen in _referenced_version_configs():
        found.setdefault(name, []).append(frozen)
    return found


def _referenced_version_configs() -> list[tuple[str, dict[str, Any]]]:
    """(function name, frozen config) of every version an alias or trigger references: what
    ``referenced_versions`` answers for each function, in one query for them all (a list of
    environments must not read five queries per function). An alias and a trigger reference
    versions of their own function only (functions/services/versions.py, triggers.py)."""
    referenced = (
        Q(pk__in=Alias.objects.values("version_id"))
        | Q(pk__in=Alias.objects.filter(canary_version__isnull=False).values("canary_version_id"))
        | Q(pk__in=Trigger.objects.filter(version__isnull=False).values("version_id"))
        | Q(pk__in=TimeTrigger.objects.filter(version__isnull=False).values("version_id"))
        | Q(pk__in=QueueTrigger.objects.filter(version__isnull=False).values("version_id"))
    )
    return list(Version.objects.filter(referenced).order_by().values_list("function__name", "config"))


def version_list(*, function: Function) -> QuerySet[Version]:
    return Version.objects.filter(function=function).select_related("build")


def alias_list(*, function: Function) -> QuerySet[Alias]:
    return Alias.objects.filter(function=function).select_related("version", "canary_version")


def trigger_list(*, function: Function) -> QuerySet[Trigger]:
    return Trigger.objects.filter(function=function).select_related("alias", "version")


def router_base_url() -> str:
    """Where callers reach functions: PORTAL_PUBLIC_ROUTER_URL, else the data plane's router."""
    kubernetes = settings.PORTAL_BACKEND == "kubernetes"
    router = settings.KUBERNETES_ROUTER_URL if kubernetes else settings.RUNTIME_ROUTER_URL
    return str(settings.PUBLIC_ROUTER_URL or router).rstrip("/")


@dataclass(frozen=True)
class FunctionUrl:
    """One HTTP trigger as a caller sees it: the full URL (``prefix``: and every path below it),
    its methods and what it calls (the draft, ``v3``, or ``alias live``)."""

    trigger: str
    url: str
    methods: list[str]
    prefix: bool
    target: str


def function_urls(*, triggers: list[Trigger], tenant_slug: str) -> list[FunctionUrl]:
    """A function's URLs, one per HTTP trigger (``trigger_list``: in the order of their paths)."""
    base = router_base_url()
    return [
        FunctionUrl(
            trigger=trigger.name,
            url=f"{base}/{tenant_slug}{trigger.path}",
            methods=list(trigger.methods),
            prefix=trigger.is_prefix,
            target=_target_label(trigger),
        )
        for trigger in triggers
    ]


def _target_label(trigger: Trigger) -> str:
    if trigger.target_kind == TargetKind.ALIAS and trigger.alias is not None:
        return f"alias {trigger.alias.name}"
    if trigger.target_kind == TargetKind.VERSION and trigger.version is not None:
        return f"v{trigger.version.number}"
    return "the draft"


def build_list(*, function: Function) -> QuerySet[Build]:
    """The function's builds, without their archives (a list must not read megabytes per row;
    the deployment reads the build it deploys whole)."""
    return Build.objects.filter(function=function).defer("archive")


def deployment_list(*, function: Function) -> QuerySet[Deployment]:
    return Deployment.objects.filter(function=function)


def invocation_list(*, function: Function) -> QuerySet[Invocation]:
    return Invocation.objects.filter(function=function)


def referenced_versions(*, function: Function) -> list[Version]:
    """The versions an alias or trigger of ``function`` points at: what a deployment applies."""
    numbers: set[int] = set()
    for alias in function.aliases.select_related("version", "canary_version"):
        numbers.update(alias.weights())
        if alias.canary_version is not None:  # a canary at 0 % is deployed, with no traffic yet
            numbers.add(alias.canary_version.number)
    for triggers in (function.triggers, function.time_triggers, function.queue_triggers):
        numbers.update(triggers.filter(version__isnull=False).values_list("version__number", flat=True))
    return list(Version.objects.select_related("build").filter(function=function, number__in=numbers))


def build_current(*, function: Function) -> Build | None:
    """The succeeded build of the draft as it is now, for its environment's Python as it is now
    (after a version change the draft is built again), if there is one."""
    revision = Draft.objects.values_list("revision", flat=True).get(function=function)
    python = Environment.objects.values_list("runtime_version", flat=True).get(pk=function.environment_id)
    return (
        Build.objects.filter(
            function=function, draft_revision=revision, state=BuildState.SUCCEEDED, python_version=python
        )
        .order_by("-created_at")
        .first()
    )


def draft_problems(*, function: Function) -> list[compilecheck.Problem]:
    """The syntax errors of the draft's inline files with its environment's Python: what the build
    would fail with, shown on save. Cached per draft revision and Python version (the cache is per
    tenant schema); an uploaded zip is checked by its build. Empty when the check cannot run (the
    build reports why)."""
    draft, version = function.draft, function.environment.runtime_version
    if not draft.files:
        return []
    key = f"draft-problems:{function.pk}:{draft.revision}:{version}"
    found = cache.get(key)
    if found is None:
        try:
            report = compilecheck.check(dict(draft.files), runtimes.interpreter(version))
        except compilecheck.CheckUnavailable:
            return []
        found = [problem.as_dict() for problem in report.problems]
        cache.set(key, found, timeout=24 * 3600)
    return [compilecheck.Problem(**problem) for problem in found]


def secret_list() -> QuerySet[Secret]:
    return Secret.objects.all()


def configmap_list() -> QuerySet[ConfigMap]:
    return ConfigMap.objects.all()


# ---------------------------------------------------------------- comparing versions and the draft

DRAFT = "draft"
CODE_SOURCE_NOT_KEPT = "source_not_kept"
_REF = re.compile(r"v?([1-9][0-9]{0,8})")


def draft_settings(*, function: Function) -> dict[str, Any]:
    """The draft's configuration as a version freezes it (name, environment and every setting
    of functions/config.py): what version_publish stores, and what a comparison shows."""
    return asdict(function_spec(function))


def version_ref(value: str, *, field: str) -> int | None:
    """A side of a comparison: "draft" (None), or a version as "v3" or "3" (its number).
    ValidationFailed naming ``field`` otherwise."""
    if value == DRAFT:
        return None
    match = _REF.fullmatch(value)
    if match is None:
        raise ValidationFailed(
            f'{field} is "draft" or a version ("v3" or 3).', detail={field: [value[:40] or "(empty)"]}
        )
    return int(match.group(1))


def version_source(version: Version) -> diffs.Source:
    """The code ``version`` was built from; Conflict (code source_not_kept) when its build was
    made before the portal kept the code it built."""
    build = version.build
    if build.source_archive is None and not build.source_files:
        raise Conflict(
            f"Version {version.number} was built before the portal kept the code of its builds: it "
            "cannot be compared or restored. Versions published from now on can.",
            code=CODE_SOURCE_NOT_KEPT,
            detail={"version": version.number},
        )
    archive = bytes(build.source_archive) if build.source_archive is not None else None
    return diffs.Source(dict(build.source_files), archive, build.source_archive_name)


def draft_source(*, function: Function) -> diffs.Source:
    draft = Draft.objects.get(function=function)
    archive = bytes(draft.archive) if draft.archive else None
    return diffs.Source({} if archive else dict(draft.files), archive, draft.archive_name)


def version_of(*, function: Function, number: int) -> Version:
    """Version ``number`` of ``function`` with its build; NotFound when there is none."""
    version = Version.objects.select_related("build").filter(function=function, number=number).first()
    if version is None:
        raise NotFound(f"Version {number} does not exist.", detail={"version": [str(number)]})
    return version


def version_compare(*, function: Function, base: str, head: str) -> diffs.Comparison:
    """``base`` -> ``head``, each "draft" or a version ("v3" or "3"): per file, the unified diff,
    and the settings that differ. ValidationFailed for a bad reference, NotFound for a version
    that does not exist, Conflict for one whose code was not kept (``version_source``)."""
    sides = [_side(function, value, field) for value, field in ((base, "base"), (head, "head"))]
    (base_label, base_source, base_settings), (head_label, head_source, head_settings) = sides
    return diffs.compare(
        base_source, head_source, base_label=base_label, head_label=head_label,
        base_settings=base_settings, head_settings=head_settings,
    )  # fmt: skip


def _side(function: Function, value: str, field: str) -> tuple[str, diffs.Source, dict[str, Any]]:
    number = version_ref(value, field=field)
    if number is None:
        return DRAFT, draft_source(function=function), draft_settings(function=function)
    version = version_of(function=function, number=number)
    return f"v{number}", version_source(version), version.settings


def version_rows(*, function: Function) -> QuerySet[Version]:
    """``version_list`` for a table: without the code each build keeps (large), and with
    ``source_kept``, whether the version can be compared and restored (``version_source``)."""
    kept = Q(build__source_archive__isnull=False) | ~Q(build__source_files={})
    return (
        version_list(function=function)
        .defer("build__source_files", "build__source_archive", "build__log")
        .annotate(source_kept=ExpressionWrapper(kept, output_field=BooleanField()))
    )
