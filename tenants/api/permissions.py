"""API permissions: tenant roles (via tenants.access) and the platform admin."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from core.errors import Conflict, NotFound, PermissionDenied
from core.users import is_platform_admin
from core.visibility import hide_tenant
from tenants.access import effective_role
from tenants.models import ApiToken
from tenants.roles import Role, at_least
from tenants.selectors import current_tenant


class TenantRole(permissions.BasePermission):
    """Reads need ``view.read_role``, writes ``view.write_role`` (default viewer / developer).

    A caller who is not a member gets 404, as for a tenant that does not exist; a member
    with too small a role gets 403; writes to a suspended tenant get 403 ``tenant_suspended``.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        tenant = current_tenant()  # NotFound (404) outside a tenant
        if not request.user or not request.user.is_authenticated:
            hide_tenant(request._request)  # 401, as for a tenant that does not exist
            return False  # DRF answers 401
        token = request.auth if isinstance(request.auth, ApiToken) else None
        role = effective_role(request.user, tenant, token)
        if role is None:
            hide_tenant(request._request)  # 404, byte for byte as for a tenant that does not exist
            raise NotFound("Not found.")
        if not tenant.is_ready:
            raise Conflict(f"The tenant is {tenant.state}.", code="tenant_not_ready")
        safe = request.method in permissions.SAFE_METHODS
        needed = getattr(view, "read_role" if safe else "write_role", Role.VIEWER if safe else Role.DEVELOPER)
        if not at_least(role, needed):
            raise PermissionDenied(f"This needs the {Role(needed).label} role or higher.")
        if tenant.suspended and not safe:
            raise PermissionDenied(
                "The tenant is suspended: it can be read but not changed.", code="tenant_suspended"
            )
        request.tenant_role = role  # type: ignore[attr-defined]
        return True


class PlatformAdmin(permissions.BasePermission):
    """Session of a platform admin, or a platform token (tenant tokens never qualify)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if isinstance(request.auth, ApiToken) and request.auth.tenant_id is not None:
            raise PermissionDenied("A tenant token cannot use the platform API.")
        if not is_platform_admin(user):
            raise PermissionDenied("This needs the platform admin role.")
        return True


class PublicAuthenticated(permissions.BasePermission):
    """Any signed-in user; a tenant token is accepted (it identifies its user)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)
