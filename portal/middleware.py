"""Request middleware: NULs in URLs, tenant resolution from ``/t/<tenant>/``,
unknown tenants."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django_tenants.middleware.subfolder import TenantSubfolderMiddleware

from core.errors import error_response, wants_json
from portal import views
from tenants.auth import bearer_from_header
from tenants.selectors import token_resolve

Handler = Callable[[HttpRequest], HttpResponse]
NUL = "\x00"


class HealthMiddleware:
    """Answer ``/healthz`` and ``/readyz`` first: they must not depend on the tenant lookup
    (a database query) that every other request starts with."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz":
            return views.healthz(request)
        if request.path == "/readyz":
            return views.readyz(request)
        return self.get_response(request)


class NulInUrlMiddleware:
    """Refuse a NUL in the path or the query string with 400 before anything looks it up:
    PostgreSQL compares no text that holds one, so the tenant's lookup (or any later one) would
    fail with a 500."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = (item for pair in request.GET.lists() for item in (pair[0], *pair[1]))
        if NUL in request.path or any(NUL in item for item in query):
            message = "The URL contains a NUL character (%00)."
            if wants_json(request):
                return error_response(400, "malformed", message)
            return HttpResponseBadRequest(message, content_type="text/plain")
        return self.get_response(request)


class TenantPathMiddleware(TenantSubfolderMiddleware):
    """django-tenants' path routing, except that an unknown tenant is not answered here.

    Whether ``/t/<x>/`` exists must not be inferable, so the answer for an unknown
    tenant is decided after authentication, by UnknownTenantMiddleware, to match what the
    same caller would get for a tenant they are not a member of.
    """

    def no_tenant_found(self, request: HttpRequest, hostname: str) -> None:
        request.unknown_tenant = hostname  # type: ignore[attr-defined]
        return None


class UnknownTenantMiddleware:
    """Answer requests for unknown tenants exactly like those for a foreign tenant."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if getattr(request, "unknown_tenant", None) is None:
            return self.get_response(request)
        raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
        authenticated = request.user.is_authenticated or (raw is not None and token_resolve(raw) is not None)
        if wants_json(request):
            if not authenticated:
                response = error_response(
                    401,
                    "not_authenticated",
                    "Invalid, expired or revoked token."
                    if raw is not None
                    else "Authentication credentials were not provided.",
                )
                response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response
            return error_response(404, "not_found", "Not found.")
        if not authenticated:
            return redirect_to_login(request.get_full_path())
        return render(request, "404.html", status=404)
