from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions as drf_exceptions
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors as audit_selectors
from audit.models import AuditRecord
from audit.selectors import Filters, as_dict
from core.api.schema import ERRORS, error_responses
from core.api.views import valid_data
from core.errors import PermissionDenied, ValidationFailed
from core.users import User, is_platform_admin
from tenants import invitations, selectors, services
from tenants.api import serializers as s
from tenants.api.base import TenantViewSet
from tenants.api.permissions import PlatformAdmin, PublicAuthenticated
from tenants.models import ApiToken, Invitation, Membership, Tenant
from tenants.roles import Role, at_least

# ------------------------------------------------------------ platform API: tenants


@extend_schema_view(
    list=extend_schema(summary="List tenants", responses={200: s.TenantSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a tenant", responses={200: s.TenantSerializer, **ERRORS}),
)
class PlatformTenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tenants of the platform (platform admins only)."""

    permission_classes = [PlatformAdmin]
    serializer_class = s.TenantSerializer
    lookup_field = "slug"
    lookup_value_regex = "[a-z0-9-]+"

    def get_queryset(self) -> QuerySet[Tenant]:
        return selectors.tenant_queryset()

    @extend_schema(
        summary="Create a tenant (provisioned asynchronously)",
        request=s.TenantCreateSerializer,
        responses={202: s.TenantSerializer, **error_responses(400, 401, 403, 409)},
    )
    def create(self, request: Request) -> Response:
        data = valid_data(s.TenantCreateSerializer, request)
        tenant = services.tenant_create(slug=data["slug"], name=data["name"], admin=_user(request))
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Rename, suspend or resume a tenant, or change its quota and internet egress",
        request=s.TenantUpdateSerializer,
        responses={200: s.TenantSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, slug: str) -> Response:
        data = valid_data(s.TenantUpdateSerializer, request)
        tenant = services.tenant_update(tenant=self.get_object(), **data)
        return Response(s.TenantSerializer(tenant).data)

    @extend_schema(
        summary="Delete a tenant and drop its schema",
        parameters=[OpenApiParameter("confirm", str, required=True, description="The tenant's slug.")],
        responses={202: s.TenantSerializer, **ERRORS},
    )
    def destroy(self, request: Request, slug: str) -> Response:
        tenant = services.tenant_delete_request(
            tenant=self.get_object(), confirm=request.query_params.get("confirm", "")
        )
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Retry a failed provisioning", request=None, responses={202: s.TenantSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, slug: str) -> Response:
        tenant = services.tenant_retry(tenant=self.get_object())
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_202_ACCEPTED)


class MeView(APIView):
    """The signed-in user and their tenants."""

    permission_classes = [PublicAuthenticated]

    @extend_schema(summary="The current user", responses={200: s.MeSerializer, **error_responses(401)})
    def get(self, request: Request) -> Response:
        user = _user(request)
        tenants = [
            {"slug": t.slug, "name": t.name, "state": t.state, "role": role}
            for t, role in selectors.tenant_roles_for_user(user)
        ]
        body = {
            "username": user.username,
            "email": user.email,
            "is_platform_admin": is_platform_admin(user),
            "tenants": tenants,
        }
        return Response(s.MeSerializer(body).data)


# ------------------------------------------------------------ tenant API


class TenantMeViewSet(TenantViewSet):
    pagination_class = None  # one object (TenantMeSerializer), not a page

    @extend_schema(
        summary="The caller's role in this tenant", responses={200: s.TenantMeSerializer, **ERRORS}
    )
    def list(self, request: Request) -> Response:
        body = {
            "username": _user(request).username,
            "tenant": self.tenant.slug,
            "role": self.role,
            "token_role": self.token.role if self.token else None,
        }
        return Response(s.TenantMeSerializer(body).data)


@extend_schema_view(
    list=extend_schema(summary="List members", responses={200: s.MembershipSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get a member", responses={200: s.MembershipSerializer, **ERRORS}),
)
class MembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Members of the tenant. Everyone reads; tenant admins change roles and remove. Nobody is
    added here: people join by accepting an invitation (InvitationViewSet)."""

    serializer_class = s.MembershipSerializer
    write_role = Role.ADMIN

    def get_queryset(self) -> QuerySet[Membership]:
        if self.schema_only:
            return Membership.objects.none()
        return selectors.membership_list(tenant=self.tenant)

    @extend_schema(
        summary="Change a member's role",
        request=s.MembershipUpdateSerializer,
        responses={200: s.MembershipSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        data = valid_data(s.MembershipUpdateSerializer, request)
        membership = services.membership_set_role(membership=self.get_object(), role=data["role"])
        return Response(s.MembershipSerializer(membership).data)

    @extend_schema(summary="Remove a member", responses={204: None, **ERRORS})
    def destroy(self, request: Request, pk: str) -> Response:
        services.membership_remove(membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List pending invitations", responses={200: s.InvitationSerializer, **ERRORS}),
    retrieve=extend_schema(
        summary="Get a pending invitation", responses={200: s.InvitationSerializer, **ERRORS}
    ),
)
class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Invitations to join the tenant, for tenant admins only: they name e-mail addresses, not
    accounts, and their links are in the creating answer only (tenants/invitations.py)."""

    serializer_class = s.InvitationSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def get_queryset(self) -> QuerySet[Invitation]:
        if self.schema_only:
            return Invitation.objects.none()
        return invitations.pending(tenant=self.tenant)

    @extend_schema(
        summary="Invite an e-mail address (the link is in this answer only)",
        request=s.InvitationCreateSerializer,
        responses={201: s.InvitationCreatedSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        data = valid_data(s.InvitationCreateSerializer, request)
        issued = invitations.invitation_create(tenant=self.tenant, invited_by=_user(request), **data)
        body = {
            **s.InvitationSerializer(issued.invitation).data,
            "url": invitations.link(request, issued.secret),
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Withdraw an invitation (its link stops working)", responses={204: None, **ERRORS})
    def destroy(self, request: Request, pk: str) -> Response:
        invitations.invitation_revoke(invitation=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List API tokens", responses={200: s.TokenSerializer, **ERRORS}),
    retrieve=extend_schema(summary="Get an API token", responses={200: s.TokenSerializer, **ERRORS}),
)
class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """API tokens. Members manage their own; tenant admins see and revoke all."""

    serializer_class = s.TokenSerializer
    write_role = Role.VIEWER

    def get_queryset(self) -> QuerySet[ApiToken]:
        if self.schema_only:
            return ApiToken.objects.none()
        owner = None if at_least(self.role, Role.ADMIN) else _user(self.request)
        return selectors.token_list(tenant=self.tenant, user=owner)

    @extend_schema(
        summary="Create an API token (the secret is in this answer only)",
        request=s.TokenCreateSerializer,
        responses={201: s.TokenCreatedSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        data = valid_data(s.TokenCreateSerializer, request)
        if self.token is not None and not at_least(self.token.role, data["role"]):
            raise PermissionDenied("A token cannot create a token with more rights than itself.")
        issued = services.token_create(tenant=self.tenant, user=_user(request), **data)
        body = {**s.TokenSerializer(issued.token).data, "token": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Revoke an API token", responses={204: None, **ERRORS})
    def destroy(self, request: Request, pk: str) -> Response:
        services.token_revoke(token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def _user(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


# ------------------------------------------------------------ the audit trail (read only)


class AuditPagination(CursorPagination):
    """Newest first, by id: a page never repeats or skips a record while new ones arrive."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    cursor_query_description = "From the `next` (older) or `previous` (newer) link of a page"
    page_size_query_description = "Records per page: 50 unless given, at most 500"

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except drf_exceptions.NotFound as exc:  # DRF's answer to a cursor it never gave: a bad request
            detail = {"cursor": ["Pass back the cursor of a `next` or `previous` link."]}
            raise ValidationFailed("Invalid cursor.", detail=detail) from exc


class JsonLinesRenderer(BaseRenderer):
    """``application/x-ndjson``: the export streams its records itself; this renders only what
    else the export may answer (an error) as one JSON line."""

    media_type = "application/x-ndjson"
    format = "jsonl"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return b"" if data is None else (json.dumps(data) + "\n").encode()


class ErrorsAsJson(DefaultContentNegotiation):
    """The export streams JSON lines itself; what DRF renders for it is only a refusal, always
    JSON, whatever ``Accept`` or ``?format=`` asks (DRF would answer an unknown ``format`` with a
    404, about a page that exists). The parameter is left out of the document (``_NO_FORMAT``)."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = JSONRenderer()
        return renderer, renderer.media_type


_NO_FORMAT = OpenApiParameter("format", exclude=True)
EXPORT_BATCH = 500


def _audit_filters(request: Request) -> Filters:
    query = s.AuditQuery(data=request.query_params)
    if not query.is_valid():
        raise ValidationFailed("Invalid filters.", detail=query.errors)
    return query.filters()


def _json_lines(values: Iterator[dict[str, Any]]) -> Iterator[str]:
    for record in values:
        yield json.dumps(record, ensure_ascii=False) + "\n"


async def _in_batches(lines: Iterator[str]) -> AsyncIterator[str]:
    """The same lines for an ASGI server, read EXPORT_BATCH at a time in the request's thread.
    Django would read a plain iterator into one list before sending the first byte."""
    take = sync_to_async(lambda: "".join(islice(lines, EXPORT_BATCH)), thread_sensitive=True)
    try:
        while batch := await take():
            yield batch
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()


class AuditTrailViewSet(viewsets.GenericViewSet):
    """Reading one trail: a page of it (cursor pagination) and all of it as JSON lines.

    Subclasses say which trail (``trail``), how a record is shown to their readers (``show``)
    and the export's file name. Nothing here writes: a record is never changed or removed.
    """

    pagination_class = AuditPagination

    def trail(self, filters: Filters) -> QuerySet[AuditRecord]:
        raise NotImplementedError

    def show(self, record: AuditRecord) -> dict[str, Any]:
        return as_dict(record)

    def export_label(self) -> str:
        """The trail's name in the export's file name."""
        raise NotImplementedError

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.trail(_audit_filters(request)))
        return self.get_paginated_response([self.show(record) for record in page or []])

    @action(
        detail=False, renderer_classes=[JSONRenderer, JsonLinesRenderer], pagination_class=None,
        content_negotiation_class=ErrorsAsJson,
    )  # fmt: skip
    def export(self, request: Request) -> StreamingHttpResponse:
        records = self.trail(_audit_filters(request)).order_by("id")  # oldest first: a file reads on
        lines = _json_lines(self.show(r) for r in records.iterator(chunk_size=EXPORT_BATCH))
        # One path per server kind: an ASGI server (the portal's) gets an async iterator.
        asgi = isinstance(request._request, ASGIRequest)
        response = StreamingHttpResponse(
            _in_batches(lines) if asgi else lines, content_type=JsonLinesRenderer.media_type
        )
        day = datetime.now(UTC).date().isoformat()
        response["Content-Disposition"] = f'attachment; filename="audit-{self.export_label()}-{day}.jsonl"'
        return response


def _export_responses(label: str, *errors: int) -> dict[Any, Any]:
    """The export's answer: JSON lines when it works, the error shape (JSON) when it does not."""
    lines = OpenApiResponse(
        s.AuditRecordSerializer,
        description="JSON lines: one record per line, oldest first, every record the filters select "
        f"(no pages), sent as the attachment `audit-{label}-<UTC date>.jsonl`.",
    )
    refusals = {(code, "application/json"): response for code, response in error_responses(*errors).items()}
    return {(200, JsonLinesRenderer.media_type): lines, **refusals}


_EXPORT_DESCRIPTION = "Streams as it reads: any size, same filters as the list."
_PLATFORM_ERRORS = error_responses(400, 401, 403)


@extend_schema_view(
    list=extend_schema(
        summary="The tenant's audit trail, newest first",
        description="Every change in the tenant, by its users, tokens or the system, and the platform's "
        "changes of it (creation, suspension, quota). Tenant admins only. Pages by `cursor`; `limit` "
        "up to 500.",
        parameters=[s.AuditQuery], responses={200: s.AuditRecordSerializer, **ERRORS},
    ),
    export=extend_schema(
        summary="Export the tenant's audit trail as JSON lines", description=_EXPORT_DESCRIPTION,
        parameters=[s.AuditQuery, _NO_FORMAT],
        responses=_export_responses("<tenant>", 400, 401, 403, 404, 409),
    ),
)  # fmt: skip
class TenantAuditViewSet(AuditTrailViewSet, TenantViewSet):
    """The tenant's trail, for its admins."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def export_label(self) -> str:
        return self.tenant.slug

    def trail(self, filters: Filters) -> QuerySet[AuditRecord]:
        return audit_selectors.tenant_trail(self.tenant.pk, filters)

    def show(self, record: AuditRecord) -> dict[str, Any]:
        return audit_selectors.as_tenant_sees(as_dict(record))


@extend_schema_view(
    list=extend_schema(
        summary="The platform's audit trail, newest first",
        description="The platform's own chain: tenants created, suspended, resumed, re-quotaed, deleted, "
        "platform tokens. Platform admins only. Pages by `cursor`; `limit` up to 500.",
        parameters=[s.AuditQuery], responses={200: s.AuditRecordSerializer, **_PLATFORM_ERRORS},
    ),
    export=extend_schema(
        summary="Export the platform's audit trail as JSON lines", description=_EXPORT_DESCRIPTION,
        parameters=[s.AuditQuery, _NO_FORMAT], responses=_export_responses("platform", 400, 401, 403),
    ),
)  # fmt: skip
class PlatformAuditViewSet(AuditTrailViewSet):
    """The platform's trail, for platform admins."""

    permission_classes = [PlatformAdmin]

    def export_label(self) -> str:
        return "platform"

    def trail(self, filters: Filters) -> QuerySet[AuditRecord]:
        return audit_selectors.platform_trail(filters)
