from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants.access import member_role
from tenants.roles import Role, at_least
from tenants.selectors import current_tenant_or_none, tenant_list_for_user


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The tenant switcher's choices, the current tenant and the caller's role in it, for the
    base layout."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    tenant = current_tenant_or_none()
    role = getattr(request, "tenant_role", None)
    if tenant is not None and role is None:  # an error page, rendered outside tenant_page
        role = member_role(user, tenant)
    return {
        "switcher_tenants": _switcher_tenants(request, user),
        # Only to its members: a foreign tenant's 404 must look like an unknown tenant's.
        "current_tenant": tenant if role is not None else None,
        "tenant_role": role,
        "tenant_admin": at_least(role, Role.ADMIN),  # the tenant's audit trail is theirs
    }


def _switcher_tenants(request: HttpRequest, user: Any) -> Any:
    """The user's tenants: as tenants.pages.tenant_page read them with the role, else read here."""
    known = getattr(request, "switcher_tenants", None)
    return known if known is not None else tenant_list_for_user(user).only("slug", "name", "state")
