"""Base API views: the tenant scoping lives here, once (CONVENTIONS.md 3)."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets
from rest_framework.request import Request

from portal.api.permissions import TenantRole, request_tenant
from tenants.models import ApiToken, Tenant
from tenants.roles import Role


class TenantViewSet(viewsets.GenericViewSet):
    """A viewset inside ``/t/<tenant>/api/v1/``: TenantRole checks every request."""

    permission_classes = [TenantRole]
    read_role: Role = Role.VIEWER
    write_role: Role = Role.DEVELOPER

    @property
    def schema_only(self) -> bool:
        """True while drf-spectacular inspects the view without a request."""
        return bool(getattr(self, "swagger_fake_view", False))

    @property
    def tenant(self) -> Tenant:
        tenant = request_tenant(self.request)
        assert tenant is not None  # TenantRole refused the request otherwise
        return tenant

    @property
    def role(self) -> Role:
        return Role(self.request.tenant_role)  # type: ignore[attr-defined]

    @property
    def token(self) -> ApiToken | None:
        auth: Any = self.request.auth
        return auth if isinstance(auth, ApiToken) else None


def valid_data(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    """The request body validated by ``serializer_class`` (400 in the error shape otherwise)."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
