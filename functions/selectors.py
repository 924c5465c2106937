"""Reads about functions, in the current tenant's schema."""

from __future__ import annotations

from datetime import timedelta

from django.core.cache import cache
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from functions import compilecheck, runtimes
from functions.models import (
    FINAL_DEPLOYMENT_STATES,
    Alias,
    Build,
    BuildState,
    ConfigMap,
    Deployment,
    Draft,
    Environment,
    Function,
    Invocation,
    Secret,
    Trigger,
    Version,
)  # fmt: skip


def function_list() -> QuerySet[Function]:
    last = Deployment.objects.filter(function=OuterRef("pk")).order_by("-created_at")
    return Function.objects.select_related("environment").annotate(
        last_deployment_state=Subquery(last.values("state")[:1]),
        last_deployment_at=Subquery(last.values("created_at")[:1]),
    )


def environment_list() -> QuerySet[Environment]:
    return Environment.objects.all()


def environment_usage() -> dict[str, list[str]]:
    """Each environment's name -> the functions that deploy it (sorted names): those set to it,
    and those with a deployed version (one an alias or trigger references) published with it,
    since a version keeps the environment it was published with."""
    usage: dict[str, set[str]] = {name: set() for name in Environment.objects.values_list("name", flat=True)}
    for function_name, environment_name in Function.objects.values_list("name", "environment__name"):
        usage[environment_name].add(function_name)
    for function in Function.objects.filter(versions__isnull=False).distinct():
        for version in referenced_versions(function=function):
            published_on = version.settings.get("environment")
            if published_on in usage:
                usage[published_on].add(function.name)
    return {name: sorted(names) for name, names in usage.items()}


def version_list(*, function: Function) -> QuerySet[Version]:
    return Version.objects.filter(function=function).select_related("build")


def alias_list(*, function: Function) -> QuerySet[Alias]:
    return Alias.objects.filter(function=function).select_related("version", "canary_version")


def trigger_list(*, function: Function) -> QuerySet[Trigger]:
    return Trigger.objects.filter(function=function).select_related("alias", "version")


def build_list(*, function: Function) -> QuerySet[Build]:
    return Build.objects.filter(function=function)


def deployment_list(*, function: Function) -> QuerySet[Deployment]:
    return Deployment.objects.filter(function=function)


def invocation_list(*, function: Function) -> QuerySet[Invocation]:
    return Invocation.objects.filter(function=function)


def referenced_versions(*, function: Function) -> list[Version]:
    """The versions an alias or trigger of ``function`` points at: what a deployment applies."""
    numbers: set[int] = set()
    for alias in function.aliases.select_related("version", "canary_version"):
        numbers.update(alias.weights())
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


def deployments_stuck(*, older_than: timedelta) -> list[int]:
    """Ids of the unfinished deployments that have not moved for ``older_than``."""
    cutoff = timezone.now() - older_than
    unfinished = Deployment.objects.exclude(state__in=FINAL_DEPLOYMENT_STATES)
    return list(unfinished.filter(updated_at__lt=cutoff).values_list("pk", flat=True))


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
