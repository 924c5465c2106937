from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import ERRORS, error_responses
from core.api.views import valid_data
from core.errors import PermissionDenied
from core.users import User, is_platform_admin
from tenants import selectors, services
from tenants.access import member_role
from tenants.api import serializers as s
from tenants.api.base import TenantViewSet
from tenants.api.permissions import PlatformAdmin, PublicAuthenticated
from tenants.models import ApiToken, Membership, Tenant
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
            {"slug": t.slug, "name": t.name, "state": t.state, "role": member_role(user, t)}
            for t in selectors.tenant_list_for_user(user)
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
    """Members of the tenant. Everyone reads; tenant admins change."""

    serializer_class = s.MembershipSerializer
    write_role = Role.ADMIN

    def get_queryset(self) -> QuerySet[Membership]:
        if self.schema_only:
            return Membership.objects.none()
        return selectors.membership_list(tenant=self.tenant)

    @extend_schema(
        summary="Add a member (creates the user when new)",
        request=s.MembershipCreateSerializer,
        responses={201: s.MembershipCreatedSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        data = valid_data(s.MembershipCreateSerializer, request)
        new = services.membership_add(tenant=self.tenant, **data)
        body = {**s.MembershipSerializer(new.membership).data, "initial_password": new.initial_password}
        return Response(body, status=status.HTTP_201_CREATED)

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
