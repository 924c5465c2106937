"""Rollouts under ``/t/<tenant>/api/v1/functions/<function>/rollouts/``: reads need viewer,
starting and steering one developer (the base class checks the role and the tenant)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.schema import ERRORS
from core.api.views import valid_data
from core.errors import NotFound
from functions.api.views import FunctionChildViewSet
from functions.services import captures as capture_services
from releases import selectors
from releases.api import serializers as s
from releases.models import Replay, Rollout
from releases.services import replays
from releases.services import rollouts as services
from tenants.roles import Role


def _username(request: Request) -> str:
    return str(getattr(request.user, "username", ""))


@extend_schema_view(
    list=extend_schema(
        summary="List rollouts (newest first)", responses={200: s.RolloutSerializer, **ERRORS}
    ),
    retrieve=extend_schema(
        summary="Get a rollout with its decision log", responses={200: s.RolloutSerializer, **ERRORS}
    ),
)
class RolloutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.RolloutSerializer
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[Rollout]:
        return Rollout.objects.none() if self.schema_only else selectors.rollout_list(function=self.function)

    @extend_schema(
        summary="Start a rollout: move an alias to a version in judged steps (redeploys)",
        request=s.RolloutStartSerializer,
        responses={201: s.RolloutSerializer, **ERRORS},
    )
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.RolloutStartSerializer, request)
        rollout = services.rollout_start(function=self.function, user=_username(request), **data)
        return Response(s.RolloutSerializer(rollout).data, status=status.HTTP_201_CREATED)

    def _steer(self, request: Request, service: Callable[..., Rollout]) -> Response:
        rollout = service(rollout=self.get_object(), user=_username(request))
        return Response(s.RolloutSerializer(rollout).data)

    @extend_schema(summary="Pause a running rollout (the weights stay)", request=None,
                   responses={200: s.RolloutSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, function_name: str, pk: Any) -> Response:
        return self._steer(request, services.rollout_pause)

    @extend_schema(summary="Resume a paused rollout (its step is judged afresh)", request=None,
                   responses={200: s.RolloutSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, function_name: str, pk: Any) -> Response:
        return self._steer(request, services.rollout_resume)

    @extend_schema(summary="Promote now: all calls to the new version (redeploys)", request=None,
                   responses={200: s.RolloutSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, function_name: str, pk: Any) -> Response:
        return self._steer(request, services.rollout_promote)

    @extend_schema(summary="Abort: all calls back to the old version (redeploys)", request=None,
                   responses={200: s.RolloutSerializer, **ERRORS})  # fmt: skip
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, function_name: str, pk: Any) -> Response:
        return self._steer(request, services.rollout_abort)


class CaptureSettingsViewSet(FunctionChildViewSet):
    """``functions/<f>/capture/``: which failed calls of the function are kept for replay."""

    pagination_class = None

    @extend_schema(
        summary="What the function captures for replay",
        responses={200: s.CaptureSettingsSerializer, **ERRORS},
    )
    def retrieve(self, request: Request, function_name: str) -> Response:
        return Response(capture_services.capture_settings(self.function))

    @extend_schema(
        summary="Set what the function captures for replay (redeploys)",
        request=s.CaptureSettingsSerializer,
        responses={200: s.CaptureSettingsSerializer, **ERRORS},
    )
    def update(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.CaptureSettingsSerializer, request)
        codes = [int(code) if code.isdigit() else code for code in data["codes"]]
        function = capture_services.capture_update_and_deploy(
            function=self.function, codes=codes, max_requests=data["max_requests"],
            max_body_bytes=data["max_body_bytes"], user=_username(request),
        )  # fmt: skip
        return Response(capture_services.capture_settings(function))


class CaptureViewSet(FunctionChildViewSet):
    """``functions/<f>/captures/``: the failed requests kept for replay. Their bodies may hold
    what callers sent: developers and admins only."""

    read_role = Role.DEVELOPER
    pagination_class = None

    @extend_schema(summary="The captured failed requests, oldest first (redacted when captured)",
                   responses={200: s.CapturedRequestSerializer(many=True), **ERRORS})  # fmt: skip
    def list(self, request: Request, function_name: str) -> Response:
        found = [] if self.schema_only else replays.captures(self.function)
        return Response([selectors.capture_shown(c) for c in found])

    @extend_schema(operation_id="captures_purge", summary="Delete every captured request", request=None,
                   responses={200: s.DeletedSerializer, **ERRORS})  # fmt: skip
    def purge(self, request: Request, function_name: str) -> Response:
        return Response({"deleted": replays.captures_delete(function=self.function)})

    @extend_schema(
        operation_id="captures_delete", summary="Delete one captured request", request=None,
        responses={204: None, **ERRORS},
    )  # fmt: skip
    def destroy(self, request: Request, function_name: str, capture_id: str) -> Response:
        if not replays.captures_delete(function=self.function, ids=[capture_id]):
            raise NotFound("No such captured request.", detail={"capture": [capture_id]})
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List replays (newest first)", responses={200: s.ReplaySerializer, **ERRORS}),
    retrieve=extend_schema(
        summary="Get a replay with its results", responses={200: s.ReplaySerializer, **ERRORS}
    ),
)
class ReplayViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FunctionChildViewSet):
    serializer_class = s.ReplaySerializer
    read_role = Role.DEVELOPER
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[Replay]:
        return Replay.objects.none() if self.schema_only else selectors.replay_list(function=self.function)

    @extend_schema(
        summary="Replay captured requests straight to a version (queued)",
        request=s.ReplayCreateSerializer,
        responses={202: s.ReplaySerializer, **ERRORS},
    )
    def create(self, request: Request, function_name: str) -> Response:
        data = valid_data(s.ReplayCreateSerializer, request)
        replay = replays.replay_create(function=self.function, version=data["version"],
                                       capture_ids=data.get("captures"), user=_username(request))  # fmt: skip
        return Response(s.ReplaySerializer(replay).data, status=status.HTTP_202_ACCEPTED)
