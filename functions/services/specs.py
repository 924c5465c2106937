"""From models to the manifest inputs of functions/manifests.py."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from functions.manifests import ArchiveRef, EnvironmentSpec, FunctionSpec
from functions.models import Build, Environment, Function
from functions.packages import package_url


def environment_spec(environment: Environment) -> EnvironmentSpec:
    return EnvironmentSpec(
        name=environment.name, image=environment.image, builder_image=environment.builder_image or None,
        poolsize=environment.poolsize, memory_mb=environment.memory_mb, cpu_millis=environment.cpu_millis,
    )  # fmt: skip


def function_spec(function: Function) -> FunctionSpec:
    return FunctionSpec(
        name=function.name, environment=function.environment.name, entrypoint=function.entrypoint,
        executor=function.executor,  # type: ignore[arg-type]
        min_scale=function.min_scale, max_scale=function.max_scale, target_cpu=function.target_cpu,
        concurrency=function.concurrency, requests_per_pod=function.requests_per_pod,
        timeout_s=function.timeout_s, idle_timeout_s=function.idle_timeout_s,
        memory_mb=function.memory_mb, cpu_millis=function.cpu_millis,
    )  # fmt: skip


def spec_from_config(config: dict[str, Any]) -> FunctionSpec:
    return FunctionSpec(**config)


def archive_ref(build: Build, schema: str) -> ArchiveRef:
    return ArchiveRef(
        url=package_url(settings.PORTAL_INTERNAL_URL, schema, build.pk, build.sha256), sha256=build.sha256
    )
