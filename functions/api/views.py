"""The functions API under ``/t/<tenant>/api/v1/``: reads need viewer, writes developer.

Every query runs in the tenant's schema (django-tenants set it from the path), so another
tenant's objects do not exist here; TenantRole answers 404 to non-members before that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.schema import ERRORS
from core.api.views import valid_data
from core.errors import Conflict, ValidationFailed
from functions import quotas, selectors
from functions.api import serializers as s
from functions.fission_spec import apply as spec_apply
from functions.fission_spec import export as spec_export
from functions.models import (
    Alias,
    Build,
    ConfigMap,
    Deployment,
    Draft,
    Environment,
    Function,
    Invocation,
    QueueTrigger,
    Secret,
    TimeTrigger,
    Trigger,
    Version,
)
from functions.services import builds as build_services
from functions.services import (
    changes,
    configuration,
    deadletters,
    deployments,
    events,
    functions,
    invocations,
    versions,
)
from tenants.api.base import TenantViewSet


def _username(request: Request) -> str:
    return str(getattr(request.user, "username", ""))


@extend_schema_view(
    list=extend_schema(summary="List environments", responses={200: s.EnvironmentSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get an environment", responses={200: s.EnvironmentSerializer, **ERRORS}),
)
class EnvironmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = s.EnvironmentSerializer
    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"

    def get_queryset(self) -> QuerySet[Environment]:
        return selectors.environment_list()

    def get_serializer_context(self) -> dict[str, Any]:
        # Which functions use each environment, asked once for a whole list.
        usage = {} if self.schema_only else selectors.environment_usage()
        return {**super().get_serializer_context(), "usage": usage}

    @extend_schema(summary="Create an environment", request=s.EnvironmentCreateSerializer,
                   responses={201: s.EnvironmentSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request) -> Response:
        environment = functions.environment_create(**valid_data(s.EnvironmentCreateSerializer, request))
        return Response(self._shown(environment), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change an environment (redeploys the functions that use it)",
        request=s.EnvironmentSerializer,
        responses={200: s.EnvironmentSerializer, **ERRORS},
    )
    def update(self, request: Request, name: str) -> Response:
        return self._change(request, partial=False)

    @extend_schema(
        summary="Change some of an environment (redeploys the functions that use it)",
        request=s.EnvironmentSerializer,
        responses={200: s.EnvironmentSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, name: str) -> Response:
        return self._change(request, partial=True)

    @extend_schema(summary="Delete an environment no function uses (409 names those that do)",
                   responses={204: None, **ERRORS})  # fmt: skip
    def destroy(self, request: Request, name: str) -> Response:
        functions.environment_delete(environment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _change(self, request: Request, *, partial: bool) -> Response:
        environment = self.get_object()
        serializer = s.EnvironmentSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        environment = changes.environment_update_and_deploy(
            environment=environment, user=_username(request), **serializer.validated_data
        )
        return Response(self._shown(environment))

    def _shown(self, environment: Environment) -> dict[str, Any]:
        return dict(s.EnvironmentSerializer(environment, context=self.get_serializer_context()).data)


class _TenantObjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """A tenant's Secrets or ConfigMaps: create (409 when the name is taken), replace the values
    (redeploys the functions that use it), delete (409 naming the functions that use it)."""

    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"
    create_serializer: type[Any]
    update_serializer: type[Any]
    save_and_deploy: Callable[..., Any]  # changes.secret_save_and_deploy or changes.configmap_save_and_deploy

    def create(self, request: Request) -> Response:
        values = valid_data(self.create_serializer, request)
        if self.get_queryset().filter(name=values["name"]).exists():
            raise Conflict(
                f"{values['name']} exists: PUT replaces its values.", detail={"name": ["Already taken."]}
            )
        saved = self._save(values["name"], values["data"], request)
        return Response(self.get_serializer(saved).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, name: str) -> Response:
        obj = self.get_object()
        values = valid_data(self.update_serializer, request)
        return Response(self.get_serializer(self._save(obj.name, values["data"], request)).data)

    def destroy(self, request: Request, name: str) -> Response:
        configuration.delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _save(self, name: str, data: dict[str, str], request: Request) -> Any:
        return type(self).save_and_deploy(name=name, data=data, user=_username(request))


@extend_schema_view(
    list=extend_schema(summary="List the tenant's Secrets (names and keys)",
                       responses={200: s.SecretSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a Secret (its keys; values are never shown)",
                           responses={200: s.SecretSerializer, **ERRORS}),
    create=extend_schema(summary="Create a Secret", request=s.SecretCreateSerializer,
                         responses={201: s.SecretSerializer, **ERRORS}),
    update=extend_schema(summary="Replace a Secret's values (redeploys the functions that use it)",
                         request=s.SecretUpdateSerializer, responses={200: s.SecretSerializer, **ERRORS}),
    destroy=extend_schema(summary="Delete a Secret no function uses (409 names those that do)",
                          responses={204: None, **ERRORS}),
)  # fmt: skip
class SecretViewSet(_TenantObjectViewSet):
    serializer_class = s.SecretSerializer
    create_serializer = s.SecretCreateSerializer
    update_serializer = s.SecretUpdateSerializer
    save_and_deploy = changes.secret_save_and_deploy

    def get_queryset(self) -> QuerySet[Secret]:
        return Secret.objects.all()


@extend_schema_view(
    list=extend_schema(summary="List the tenant's ConfigMaps",
                       responses={200: s.ConfigMapSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a ConfigMap", responses={200: s.ConfigMapSerializer, **ERRORS}),
    create=extend_schema(summary="Create a ConfigMap", request=s.ConfigMapCreateSerializer,
                         responses={201: s.ConfigMapSerializer, **ERRORS}),
    update=extend_schema(summary="Replace a ConfigMap's values (redeploys the functions that use it)",
                         request=s.ConfigMapUpdateSerializer,
                         responses={200: s.ConfigMapSerializer, **ERRORS}),
    destroy=extend_schema(summary="Delete a ConfigMap no function uses (409 names those that do)",
                          responses={204: None, **ERRORS}),
)  # fmt: skip
class ConfigMapViewSet(_TenantObjectViewSet):
    serializer_class = s.ConfigMapSerializer
    create_serializer = s.ConfigMapCreateSerializer
    update_serializer = s.ConfigMapUpdateSerializer
    save_and_deploy = changes.configmap_save_and_deploy

    def get_queryset(self) -> QuerySet[ConfigMap]:
        return ConfigMap.objects.all()


@extend_schema_view(
    list=extend_schema(summary="List functions", responses={200: s.FunctionSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a function", responses={200: s.FunctionSerializer, **ERRORS}),
)
class FunctionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = s.FunctionSerializer
    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"

    def get_queryset(self) -> QuerySet[Function]:
        return selectors.function_queryset()

    # ListModelMixin's list, from dicts rather than model instances (selectors.function_rows),
    # shown as FunctionSerializer shows them (s.function_rows_shown): the same answer, without
    # a Function and a serializer pass per row. (A comment: a docstring would become the
    # operation's OpenAPI description.)
    def list(self, request: Request) -> Response:
        rows = selectors.function_rows()
        page = self.paginate_queryset(rows)
        if page is not None:
            return self.get_paginated_response(s.function_rows_shown(page))
        return Response(s.function_rows_shown(rows))

    @extend_schema(summary="Create a function (with a hello-world draft)", request=s.FunctionCreateSerializer,
                   responses={201: s.FunctionSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request) -> Response:
        function = functions.function_create(**valid_data(s.FunctionCreateSerializer, request))
        return Response(s.FunctionSerializer(function).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a function's settings (redeploys)", request=s.FunctionUpdateSerializer,
                   responses={200: s.FunctionSerializer, **ERRORS})  # fmt: skip
    def partial_update(self, request: Request, name: str) -> Response:
        function = changes.function_update_and_deploy(
            function=self.get_object(),
            user=_username(request),
            **valid_data(s.FunctionUpdateSerializer, request),
        )
        return Response(s.FunctionSerializer(function).data)

    @extend_schema(
        summary="Delete a function and remove it from the data plane", responses={204: None, **ERRORS}
    )
    def destroy(self, request: Request, name: str) -> Response:
        deployments.function_delete(function=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="The draft's files", responses={200: s.CodeSerializer, **ERRORS})
    @action(detail=True, methods=["get"])
    def code(self, request: Request, name: str) -> Response:
        return Response(_code(self.get_object()))

    @extend_schema(summary="Replace the draft's files", request=s.CodeSerializer,
                   responses={200: s.CodeSerializer, **ERRORS})  # fmt: skip
    @code.mapping.put
    def put_code(self, request: Request, name: str) -> Response:
        function = self.get_object()
        functions.draft_update_files(function=function, files=valid_data(s.CodeSerializer, request)["files"])
        return Response(_code(function))

    @extend_schema(
        summary="Upload the draft: one .py file or a .zip",
        request={"multipart/form-data": s.UploadSerializer},
        responses={200: s.CodeSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser])
    def upload(self, request: Request, name: str) -> Response:
        upload = valid_data(s.UploadSerializer, request)["file"]
        function = self.get_object()
        functions.draft_upload(function=function, filename=upload.name or "", data=upload.read())
        return Response(_code(function))

    @extend_schema(summary="Call the function through the router (a test call)", request=s.InvokeSerializer,
                   responses={201: s.InvocationSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"])
    def invoke(self, request: Request, name: str) -> Response:
        invocation = invocations.invocation_create(
            function=self.get_object(), user=_username(request), **valid_data(s.InvokeSerializer, request)
        )
        return Response(s.InvocationSerializer(invocation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Dead letters: asynchronous invocations that failed for good, newest first",
        parameters=[
            OpenApiParameter("limit", int, description=f"At most {deadletters.MAX_PAGE} (default 50)."),
            OpenApiParameter("cursor", str, description="The previous page's next."),
        ],
        responses={200: s.DeadLetterPageSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"], url_path="dead-letters")
    def dead_letters(self, request: Request, name: str) -> Response:
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit():
            raise ValidationFailed("limit is a number.", detail={"limit": [limit]})
        page = deadletters.dead_letter_page(
            function=self.get_object(), limit=int(limit), cursor=_cursor(request.query_params.get("cursor"))
        )
        return Response(page)

    @extend_schema(summary="Queue dead letters again as new invocations", request=s.RedriveSerializer,
                   responses={200: s.RedriveResultSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"], url_path="dead-letters/redrive")
    def redrive(self, request: Request, name: str) -> Response:
        data = valid_data(s.RedriveSerializer, request)
        request_ids = deadletters.dead_letters_redrive(
            function=self.get_object(), ids=data["ids"], to=data["to"]
        )
        return Response({"request_ids": request_ids})

    @extend_schema(summary="Drop dead letters", request=s.DeadLetterSelectionSerializer,
                   responses={200: s.PurgeResultSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"], url_path="dead-letters/purge")
    def purge(self, request: Request, name: str) -> Response:
        data = valid_data(s.DeadLetterSelectionSerializer, request)
        return Response(
            {"purged": deadletters.dead_letters_purge(function=self.get_object(), ids=data["ids"])}
        )


def _cursor(value: str | None) -> str | None:
    """A dead-letter cursor is a data-plane id (``<ms>-<seq>``), nothing else."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]{1,20}-[0-9]{1,20}", value):
        raise ValidationFailed("cursor is the next of a previous page.", detail={"cursor": [value]})
    return value


class FunctionChildViewSet(TenantViewSet):
    """A viewset under ``functions/<function_name>/``."""

    @property
    def function(self) -> Function:
        if self.schema_only:
            return Function()
        return get_object_or_404(Function, name=self.kwargs["function_name"])


@extend_schema_view(
    list=extend_schema(summary="List builds", responses={200: s.BuildSerializer, **ERRORS}),
    retrieve=extend_schema(
        summary="Get a build with its log", responses={200: s.BuildDetailSerializer, **ERRORS}
    ),
)
class BuildViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    def get_serializer_class(self) -> type[Any]:
        return s.BuildDetailSerializer if self.action == "retrieve" else s.BuildSerializer

    def get_queryset(self) -> QuerySet[Build]:
        return Build.objects.none() if self.schema_only else selectors.build_list(function=self.function)

    @extend_schema(
        summary="Build the draft (queued)", request=None, responses={202: s.BuildSerializer, **ERRORS}
    )
    def create(self, request: Request, function_name: str) -> Response:
        build = build_services.build_create(function=self.function)
        return Response(s.BuildSerializer(build).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="List versions", responses={200: s.VersionSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a version", responses={200: s.VersionSerializer, **ERRORS}),
)
class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.VersionSerializer
    lookup_field = "number"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[Version]:
        return Version.objects.none() if self.schema_only else selectors.version_rows(function=self.function)

    @extend_schema(summary="Publish the built draft as the next version", request=s.PublishSerializer,
                   responses={201: s.VersionSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.PublishSerializer, request)
        version = versions.version_publish(function=self.function, user=_username(request), **data)
        return Response(s.VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Compare two versions, or a version and the draft: per-file unified diffs and the "
        "settings that differ (409 for a version built before the portal kept its code)",
        parameters=[
            OpenApiParameter("base", str, required=True, description='"draft", or a version: "v3" or "3".'),
            OpenApiParameter("head", str, required=True, description='"draft", or a version: "v3" or "3".'),
        ],
        responses={200: s.CompareSerializer, **ERRORS},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def compare(self, request: Request, function_name: str) -> Response:
        comparison = selectors.version_compare(
            function=self.function,
            base=request.query_params.get("base", ""),
            head=request.query_params.get("head", ""),
        )
        return Response(s.CompareSerializer(comparison).data)

    @extend_schema(
        summary="Restore a version into the draft: its code and configuration (redeploys the draft; "
        "409 for a version built before the portal kept its code)",
        request=None,
        responses={200: s.CodeSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, function_name: str, number: str) -> Response:
        function = self.function
        changes.version_restore_and_deploy(function=function, number=int(number), user=_username(request))
        return Response(_code(function))


@extend_schema_view(
    list=extend_schema(summary="List aliases", responses={200: s.AliasSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get an alias", responses={200: s.AliasSerializer, **ERRORS}),
)
class AliasViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.AliasSerializer
    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"

    def get_queryset(self) -> QuerySet[Alias]:
        return Alias.objects.none() if self.schema_only else selectors.alias_list(function=self.function)

    @extend_schema(summary="Create or change an alias (redeploys)", request=s.AliasWriteSerializer,
                   responses={200: s.AliasSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.AliasWriteSerializer, request)
        alias = changes.alias_set_and_deploy(function=self.function, user=_username(request), **data)
        return Response(s.AliasSerializer(alias).data)

    @extend_schema(summary="Delete an alias (redeploys)", responses={204: None, **ERRORS})
    def destroy(self, request: Request, function_name: str, name: str) -> Response:
        changes.alias_delete_and_deploy(alias=self.get_object(), user=_username(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List HTTP triggers", responses={200: s.TriggerSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get an HTTP trigger", responses={200: s.TriggerSerializer, **ERRORS}),
)
class TriggerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.TriggerSerializer
    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"

    def get_queryset(self) -> QuerySet[Trigger]:
        return Trigger.objects.none() if self.schema_only else selectors.trigger_list(function=self.function)

    @extend_schema(summary="Create an HTTP trigger (redeploys)", request=s.TriggerWriteSerializer,
                   responses={201: s.TriggerSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.TriggerWriteSerializer, request)
        trigger = changes.trigger_save_and_deploy(function=self.function, user=_username(request), **data)
        return Response(s.TriggerSerializer(trigger).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Delete an HTTP trigger (redeploys)", responses={204: None, **ERRORS})
    def destroy(self, request: Request, function_name: str, name: str) -> Response:
        changes.trigger_delete_and_deploy(trigger=self.get_object(), user=_username(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _EventTriggerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    """Shared by time and queue triggers: ``status`` comes from the data plane, once per request."""

    lookup_field = "name"
    lookup_value_regex = "[a-z0-9-]+"
    kind = ""  # the Fission kind, for the data plane's status

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if not self.schema_only and self.action in ("list", "retrieve", "create", "update"):
            context["statuses"] = events.event_statuses(self.kind)
        return context

    def _saved(self, trigger: Any, code: int) -> Response:
        return Response(self.get_serializer(trigger).data, status=code)


@extend_schema_view(
    list=extend_schema(summary="List time triggers", responses={200: s.TimeTriggerSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a time trigger", responses={200: s.TimeTriggerSerializer, **ERRORS}),
)
class TimeTriggerViewSet(_EventTriggerViewSet):
    serializer_class = s.TimeTriggerSerializer
    kind = "TimeTrigger"

    def get_queryset(self) -> QuerySet[TimeTrigger]:
        if self.schema_only:
            return TimeTrigger.objects.none()
        return self.function.time_triggers.select_related("alias", "version")

    @extend_schema(summary="Create a time trigger (redeploys)", request=s.TimeTriggerWriteSerializer,
                   responses={201: s.TimeTriggerSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.TimeTriggerWriteSerializer, request)
        trigger = changes.time_trigger_save_and_deploy(
            function=self.function, user=_username(request), **data
        )
        return self._saved(trigger, status.HTTP_201_CREATED)

    @extend_schema(summary="Replace a time trigger (redeploys)", request=s.TimeTriggerWriteSerializer,
                   responses={200: s.TimeTriggerSerializer, **ERRORS})  # fmt: skip
    def update(self, request: Request, function_name: str, name: str) -> Response:
        data = valid_data(s.TimeTriggerWriteSerializer, request)
        trigger = changes.time_trigger_save_and_deploy(
            function=self.function, user=_username(request), trigger=self.get_object(), **data
        )
        return self._saved(trigger, status.HTTP_200_OK)

    @extend_schema(summary="Delete a time trigger (redeploys)", responses={204: None, **ERRORS})
    def destroy(self, request: Request, function_name: str, name: str) -> Response:
        changes.event_trigger_delete_and_deploy(trigger=self.get_object(), user=_username(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="List message-queue triggers", responses={200: s.QueueTriggerSerializer, **ERRORS}
    ),
    retrieve=extend_schema(
        summary="Get a message-queue trigger", responses={200: s.QueueTriggerSerializer, **ERRORS}
    ),
)
class QueueTriggerViewSet(_EventTriggerViewSet):
    serializer_class = s.QueueTriggerSerializer
    kind = "MessageQueueTrigger"

    def get_queryset(self) -> QuerySet[QueueTrigger]:
        if self.schema_only:
            return QueueTrigger.objects.none()
        return self.function.queue_triggers.select_related("alias", "version")

    @extend_schema(
        summary="Create a message-queue trigger (redeploys)", request=s.QueueTriggerWriteSerializer,
        responses={201: s.QueueTriggerSerializer, **ERRORS},
    )  # fmt: skip
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.QueueTriggerWriteSerializer, request)
        trigger = changes.queue_trigger_save_and_deploy(
            function=self.function, user=_username(request), **data
        )
        return self._saved(trigger, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Replace a message-queue trigger (redeploys; a connection left out is kept)",
        request=s.QueueTriggerWriteSerializer, responses={200: s.QueueTriggerSerializer, **ERRORS},
    )  # fmt: skip
    def update(self, request: Request, function_name: str, name: str) -> Response:
        data = valid_data(s.QueueTriggerWriteSerializer, request)
        trigger = changes.queue_trigger_save_and_deploy(
            function=self.function, user=_username(request), trigger=self.get_object(), **data
        )
        return self._saved(trigger, status.HTTP_200_OK)

    @extend_schema(summary="Delete a message-queue trigger (redeploys)", responses={204: None, **ERRORS})
    def destroy(self, request: Request, function_name: str, name: str) -> Response:
        changes.event_trigger_delete_and_deploy(trigger=self.get_object(), user=_username(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List deployments", responses={200: s.DeploymentSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a deployment", responses={200: s.DeploymentSerializer, **ERRORS}),
)
class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.DeploymentSerializer

    def get_queryset(self) -> QuerySet[Deployment]:
        return (
            Deployment.objects.none()
            if self.schema_only
            else selectors.deployment_list(function=self.function)
        )

    @extend_schema(summary="Deploy: build the draft if needed, apply, wait until it serves", request=None,
                   responses={202: s.DeploymentSerializer, **ERRORS})  # fmt: skip
    def create(self, request: Request, function_name: str) -> Response:
        deployment = deployments.deployment_create(
            function=self.function, cause="deploy", user=_username(request)
        )
        return Response(s.DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="Test-call history", responses={200: s.InvocationSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a test call", responses={200: s.InvocationSerializer, **ERRORS}),
)
class InvocationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.InvocationSerializer

    def get_queryset(self) -> QuerySet[Invocation]:
        return (
            Invocation.objects.none()
            if self.schema_only
            else selectors.invocation_list(function=self.function)
        )


class QuotaViewSet(TenantViewSet):
    pagination_class = None  # one object (QuotaUsageSerializer), not a page

    @extend_schema(
        summary="The tenant's quota and what it uses of it",
        responses={200: s.QuotaUsageSerializer, **ERRORS},
    )
    def list(self, request: Request) -> Response:
        body = {"suspended": self.tenant.suspended, "items": quotas.usage()}
        return Response(s.QuotaUsageSerializer(body).data)


def _code(function: Function) -> dict[str, Any]:
    """The draft as the code endpoints answer it, with what does not compile (``problems``)."""
    draft = Draft.objects.get(function=function)
    function.draft = draft
    problems = [p.as_dict() for p in selectors.draft_problems(function=function)]
    return {"files": draft.files, "revision": draft.revision, "archive_name": draft.archive_name,
            "problems": problems}  # fmt: skip


# --- Fission spec folders (functions/fission_spec) -------------------------------------------------


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "")
    if value not in ("", "0", "1", "false", "true"):
        raise ValidationFailed(f"{name} is 1 or 0.", detail={name: ["1, 0, true or false."]})
    return value in ("1", "true")


_SPEC_FLAGS = [
    OpenApiParameter("dry_run", bool, description="Plan only: change nothing."),
    OpenApiParameter(
        "delete", bool, description="Also delete what this folder (its uid) created and no longer has."
    ),
]


# The answer of spec/apply/ (the shared API contract); here, not in serializers.py, as it only
# documents the schema: the answer is built by fission_spec.apply.Outcome.shown.
_SPEC_PLAN = inline_serializer("SpecApply", {
    "dry_run": serializers.BooleanField(), "changed": serializers.BooleanField(),
    "plan": inline_serializer("SpecPlanStep", {
        "action": serializers.ChoiceField(choices=["create", "update", "delete", "unchanged"]),
        "kind": serializers.CharField(), "name": serializers.CharField(),
        "file": serializers.CharField(allow_null=True),
    }, many=True),
    "deployments": serializers.ListField(child=serializers.IntegerField()),
})  # fmt: skip


class SpecViewSet(TenantViewSet):
    """``spec/apply/`` (developer) and ``spec/export/`` (viewer): a tenant as a Fission spec folder."""

    @extend_schema(
        summary="Apply a Fission spec folder (a zip of specs/ and its sources): create, update, delete",
        request={"application/zip": {"type": "string", "format": "binary"}},
        parameters=_SPEC_FLAGS,
        responses={200: _SPEC_PLAN, **ERRORS},
    )
    @action(detail=False, methods=["post"], url_path="apply")
    def apply(self, request: Request) -> Response:
        outcome = spec_apply.spec_apply(
            data=request.body, dry_run=_flag(request, "dry_run"), delete=_flag(request, "delete"),
            user=_username(request),
        )  # fmt: skip
        return Response(outcome.shown())

    @extend_schema(
        summary="Export the tenant, or one function and what it needs, as a Fission spec folder (a zip)",
        parameters=[
            OpenApiParameter("function", str, description="Only this function (its environment, triggers).")
        ],
        responses={(200, "application/zip"): {"type": "string", "format": "binary"}, **ERRORS},
    )
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request: Request) -> HttpResponse:
        name = request.query_params.get("function")
        function = get_object_or_404(selectors.function_queryset(), name=name) if name is not None else None
        response = HttpResponse(spec_export.spec_export(function=function), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="specs.zip"'
        return response
