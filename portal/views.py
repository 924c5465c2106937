"""Pages outside tenants: sign-in, home, health, error handlers."""

from __future__ import annotations

import logging
import sys
import unicodedata
from typing import Any

import redis
from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_ratelimit.decorators import ratelimit
from django_tenants.utils import get_public_schema_name, schema_context, tenant_context

from core.errors import error_response, wants_json
from core.feedback import error_page, same_site_path
from core.middleware import too_large_message
from core.visibility import hide_tenant, in_a_tenant
from tenants.access import effective_role, member_role
from tenants.auth import bearer_from_header
from tenants.models import Tenant
from tenants.selectors import tenant_list_for_user, token_resolve

log = logging.getLogger(__name__)


def rate_limited(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = "Too many sign-in attempts. Wait a minute and try again."
    if wants_json(request):
        return error_response(429, "throttled", message)
    return render(request, "registration/login.html", {"rate_limited": message}, status=429)


def signin_name(group: str, request: HttpRequest) -> str:
    """The name a sign-in is for, as Django's sign-in form reads it (stripped, then NFKC-folded:
    " bob", "bob " and "bob" in full-width letters all sign in as bob), so that each spelling counts
    against the same per-username limit."""
    return unicodedata.normalize("NFKC", request.POST.get("username", "").strip()).strip()


@ratelimit(key="ip", rate=settings.LOGIN_IP_RATE, method="POST", block=False)
@ratelimit(key=signin_name, rate=settings.LOGIN_RATE, method="POST", block=False)
def login_view(request: HttpRequest) -> HttpResponseBase:
    """Django's login, rate-limited per username and per client address."""
    if getattr(request, "limited", False):
        return rate_limited(request)
    return auth_views.LoginView.as_view(redirect_authenticated_user=True)(request)


def logout_view(request: HttpRequest) -> HttpResponseBase:
    return auth_views.LogoutView.as_view()(request)


class NewPasswordChangeForm(PasswordChangeForm):
    """Django's form, refusing the current password as the new one: "changing" a one-time
    password to itself would release its user while whoever added them still knows it."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("new_password2")
        if password and self.user.check_password(password):
            error = forms.ValidationError(
                "Choose a password other than the current one.", code="password_unchanged"
            )
            self.add_error("new_password2", error)
        return cleaned


@login_required
def password_change(request: HttpRequest) -> HttpResponseBase:
    view = auth_views.PasswordChangeView.as_view(success_url="/", form_class=NewPasswordChangeForm)
    response = view(request)
    if request.method == "POST" and response.status_code == 302:
        from django.contrib import messages

        messages.success(request, "Your password was changed.")
    return response


@login_required
def home(request: HttpRequest) -> HttpResponse:
    tenants = list(tenant_list_for_user(request.user))
    if len(tenants) == 1 and tenants[0].is_ready:
        return redirect(f"/t/{tenants[0].slug}/")
    return render(request, "portal/home.html", {"tenants": tenants})


@require_GET
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return type(exc).__name__
    return None


def _check_redis() -> str | None:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return type(exc).__name__
    return None


@require_GET
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """200 when PostgreSQL and Redis answer, 503 naming what does not."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    failing = {name: error for name, error in checks.items() if error}
    if failing:
        log.warning("not ready: %s", failing)
        return error_response(503, "not_ready", "Dependencies are unavailable.", failing)
    return JsonResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok")})


def _member_tenant(request: HttpRequest) -> Tenant | None:
    """The tenant the request was made in, if the caller is one of its members."""
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if not isinstance(tenant, Tenant) or user is None or tenant.schema_name == get_public_schema_name():
        return None
    return tenant if member_role(user, tenant) is not None else None


def _outsider(request: HttpRequest) -> bool:
    """The request is in a real tenant whose paths its caller may not see: not signed in, not a
    member, or (the API) with a token of another tenant."""
    if not in_a_tenant(request):
        return False
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION")) if wants_json(request) else None
    if raw is not None:  # the token decides alone, as the API's authentication does
        token = token_resolve(raw)
        return token is None or effective_role(token.user, tenant, token) is None
    return member_role(getattr(request, "user", AnonymousUser()), tenant) is None


def _framed(request: HttpRequest, status: int, code: str, message: str | None = None) -> HttpResponse:
    """An error page in the frame of the tenant it was asked in (its navigation), for its members.

    Under ASGI, Django runs these handlers on another thread, whose connection is in the public
    schema, so the tenant is entered here; for anyone else the frame is the public one, as for a
    tenant that does not exist (UnknownTenantMiddleware), so the page does not tell them apart.
    """
    if wants_json(request):
        return error_page(request, status, code, message)
    tenant = _member_tenant(request)
    with tenant_context(tenant) if tenant is not None else schema_context(get_public_schema_name()):
        return error_page(request, status, code, message)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        # Django's own limits (a body without Content-Length, read past DATA_UPLOAD_MAX_MEMORY_SIZE):
        # the same 413 as the body limit's, not a 400 that does not say why.
        return _framed(request, 413, "too_large", too_large_message(request))
    return _framed(request, 400, "bad_request", "The request could not be understood.")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _framed(request, 403, "permission_denied", "You do not have permission to do this.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _outsider(request):
        hide_tenant(request)  # answered as for a tenant that does not exist (UnknownTenantMiddleware)
    if wants_json(request):
        return error_response(404, "not_found", "Not found.")
    return _framed(request, 404, "not_found")  # the page's own wording, and the address


# An outage of PostgreSQL or Redis is not a bug: it is 503, and the client may retry.
_OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, redis.ConnectionError)


def server_error(request: HttpRequest, *args: Any) -> HttpResponse:
    """Django calls this while handling the exception, so it can tell outages from bugs."""
    if isinstance(sys.exc_info()[1], _OUTAGES):
        message = "A service the portal depends on is unavailable. Retry shortly."
        response = (
            error_response(503, "unavailable", message)
            if wants_json(request)
            else render(
                request, "500.html", {"message": message, "back": same_site_path(request)}, status=503
            )
        )
        response["Retry-After"] = "5"
        return response
    if wants_json(request):
        return error_response(500, "server_error", "Internal error. It has been logged.")
    return render(request, "500.html", {"back": same_site_path(request)}, status=500)
