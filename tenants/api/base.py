"""Base API views: the tenant scoping lives here, once (CONVENTIONS.md 3)."""

from __future__ import annotations

from typing import Any

from rest_framework import viewsets

from tenants.api.permissions import TenantRole
from tenants.models import ApiToken, Tenant
from tenants.roles import Role
from tenants.selectors import current_tenant


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
        return current_tenant()

    @property
    def role(self) -> Role:
        return Role(self.request.tenant_role)  # type: ignore[attr-defined]

    @property
    def token(self) -> ApiToken | None:
        auth: Any = self.request.auth
        return auth if isinstance(auth, ApiToken) else None
