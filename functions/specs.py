"""From models to the manifest inputs of dataplane/manifests.py."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from dataplane.manifests import ArchiveRef, EnvironmentSpec, FunctionSpec
from functions import config
from functions.models import Build, Environment, Function
from functions.packages import package_url


def environment_spec(environment: Environment) -> EnvironmentSpec:
    return EnvironmentSpec(
        name=environment.name, image=environment.image, builder_image=environment.builder_image or None,
        poolsize=environment.poolsize, memory_mb=environment.memory_mb, cpu_millis=environment.cpu_millis,
        python_version=environment.runtime_version,
    )  # fmt: skip


def function_spec(function: Function) -> FunctionSpec:
    """The draft's manifest input: the function's settings as they are now."""
    return FunctionSpec(name=function.name, environment=function.environment.name, **config.current(function))


def spec_from_config(stored: dict[str, Any]) -> FunctionSpec:
    """A version's manifest input, from its stored configuration of any age (config.thawed)."""
    return FunctionSpec(**config.thawed(stored))


def archive_ref(build: Build, schema: str) -> ArchiveRef:
    return ArchiveRef(
        url=package_url(settings.PORTAL_INTERNAL_URL, schema, build.pk, build.sha256), sha256=build.sha256
    )
