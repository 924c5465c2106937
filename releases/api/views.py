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
from functions.api.views import FunctionChildViewSet
from releases import selectors, services
from releases.api import serializers as s
from releases.models import Rollout


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
