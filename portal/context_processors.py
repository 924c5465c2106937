from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenants.selectors import current_tenant_or_none, tenant_list_for_user


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The tenant switcher's choices and the current tenant, for the base layout."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "switcher_tenants": tenant_list_for_user(user).only("slug", "name", "state"),
        "current_tenant": current_tenant_or_none(),
        "tenant_role": getattr(request, "tenant_role", None),
    }
