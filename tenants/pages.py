"""Access control for tenant pages: the page twin of tenants.api.permissions.TenantRole."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.visibility import hide_tenant
from tenants.access import member_role_and_tenants
from tenants.roles import Role, at_least
from tenants.selectors import current_tenant_or_none

View = Callable[..., HttpResponse]
SAFE = ("GET", "HEAD", "OPTIONS")


def tenant_page(
    *, read_role: Role = Role.VIEWER, write_role: Role = Role.DEVELOPER
) -> Callable[[View], View]:
    """Decorate a tenant page: sign-in, membership (404 if none), role (403), suspension.

    The view receives ``request.tenant_role``.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            tenant = current_tenant_or_none()
            if not request.user.is_authenticated:
                hide_tenant(request)  # whether it exists is not told before sign-in either
                return redirect_to_login(request.get_full_path())
            role, switcher = member_role_and_tenants(request.user, tenant) if tenant else (None, None)
            if switcher is not None:  # portal.context_processors.navigation need not read them again
                request.switcher_tenants = switcher  # type: ignore[attr-defined]
            if tenant is None or role is None:
                hide_tenant(request)
                return render(request, "404.html", status=404)
            if not tenant.is_ready:
                return render(request, "tenants/not_ready.html", {"tenant": tenant}, status=409)
            safe = request.method in SAFE
            if not at_least(role, read_role if safe else write_role):
                return render(request, "403.html", {"message": "Your role does not allow this."}, status=403)
            if tenant.suspended and not safe:
                message = "This tenant is suspended: it can be read but not changed."
                return render(request, "403.html", {"message": message}, status=403)
            request.tenant_role = role  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
