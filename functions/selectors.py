"""Reads about functions, in the current tenant's schema."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from functions.models import Alias, Build, Deployment, Environment, Function, Invocation, Trigger, Version


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
