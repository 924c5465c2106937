"""Whether a request asked for a tenant its caller may not see.

The code that finds out (the page decorator, the API's permission and authentication, the 404
handler) marks the request; portal.middleware.UnknownTenantMiddleware then answers it exactly as
it answers a tenant that does not exist, so no answer tells the two apart
(portal/tests/test_hidden_tenants.py)."""

from __future__ import annotations

from django.http import HttpRequest
from django_tenants.utils import get_public_schema_name


def hide_tenant(request: HttpRequest) -> None:
    """Mark ``request``: its caller may not see its tenant (or, signed out, may not see it yet)."""
    request.tenant_hidden = True  # type: ignore[attr-defined]


def is_hidden(request: HttpRequest) -> bool:
    return bool(getattr(request, "tenant_hidden", False))


def in_a_tenant(request: HttpRequest) -> bool:
    """``request`` was made under ``/t/<tenant>/`` of a tenant that exists."""
    tenant = getattr(request, "tenant", None)
    return tenant is not None and tenant.schema_name != get_public_schema_name()
