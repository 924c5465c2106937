"""Reads about functions, in the current tenant's schema."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from functions.models import (
    FINAL_DEPLOYMENT_STATES,
    Alias,
    Build,
    BuildState,
    Deployment,
    Draft,
    Environment,
    Function,
    Invocation,
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
    numbers.update(function.triggers.filter(version__isnull=False).values_list("version__number", flat=True))
    return list(Version.objects.select_related("build").filter(function=function, number__in=numbers))


def build_current(*, function: Function) -> Build | None:
    """The succeeded build of the draft as it is now, if there is one."""
    revision = Draft.objects.values_list("revision", flat=True).get(function=function)
    return (
        Build.objects.filter(function=function, draft_revision=revision, state=BuildState.SUCCEEDED)
        .order_by("-created_at")
        .first()
    )


def deployments_stuck(*, older_than: timedelta) -> list[int]:
    """Ids of the unfinished deployments that have not moved for ``older_than``."""
    cutoff = timezone.now() - older_than
    unfinished = Deployment.objects.exclude(state__in=FINAL_DEPLOYMENT_STATES)
    return list(unfinished.filter(updated_at__lt=cutoff).values_list("pk", flat=True))
