"""Request middleware: NULs in URLs, tenant resolution from ``/t/<tenant>/``,
unknown tenants."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import clear_url_caches, set_urlconf
from django_tenants.middleware.subfolder import TenantSubfolderMiddleware
from django_tenants.urlresolvers import get_subfolder_urlconf
from django_tenants.utils import (
    get_public_schema_name,
    get_subfolder_prefix,
    get_tenant_domain_model,
    schema_context,
)

from core.errors import error_response, wants_json
from core.visibility import is_hidden
from portal import views
from tenants.auth import bearer_from_header
from tenants.models import Tenant
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


class TenantUrlConfs:
    """Each tenant's URLconf (every route under ``/t/<slug>/``), made once per process.

    django-tenants makes a new URLconf module for every request and clears Django's URL caches,
    so every request built a URL resolver from scratch: the largest part of a small page's time
    (bench/pages.py). A module per tenant, kept, lets Django's resolver cache (keyed by the
    module) hold one resolver per tenant, and no other tenant's prefix can leak into it. At most
    ``size`` are kept; when one is dropped, Django's caches are cleared, so that they hold no
    resolver of a module no longer used."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._modules: OrderedDict[str, ModuleType] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: Tenant) -> ModuleType:
        """The URLconf of ``tenant``, reached at ``/t/<its domain_subfolder>/``."""
        slug: str = getattr(tenant, "domain_subfolder")  # noqa: B009 (set by the middleware)
        with self._lock:
            module = self._modules.get(slug)
            if module is not None:
                self._modules.move_to_end(slug)
                return module
            module = self._modules[slug] = get_subfolder_urlconf(tenant)
            if len(self._modules) > self.size:
                self._modules.popitem(last=False)
                clear_url_caches()
            return module


TENANT_URLCONFS = TenantUrlConfs(settings.TENANT_URLCONF_CACHE_SIZE)


class TenantPathMiddleware(TenantSubfolderMiddleware):
    """django-tenants' path routing, with two changes.

    - The tenant's URLconf is made once per process (``TenantUrlConfs``), not per request.
    - An unknown tenant is not answered here. Whether ``/t/<x>/`` exists must not be
      inferable, so the answer for an unknown tenant is decided after authentication, by
      UnknownTenantMiddleware, to match what the same caller would get for a tenant they are
      not a member of.
    """

    def process_request(self, request: HttpRequest) -> None:
        """TenantSubfolderMiddleware's, without a new URLconf and ``clear_url_caches()`` per
        request. Django sets the default URLconf again at the start of every request."""
        if hasattr(request, "tenant"):
            return None
        connection.set_schema_to_public()  # type: ignore[attr-defined]
        prefix = f"/{get_subfolder_prefix()}/"
        if not request.path.startswith(prefix):
            try:
                tenant = Tenant.objects.get(schema_name=get_public_schema_name())
            except Tenant.DoesNotExist:
                raise Http404("No public tenant: run migrate_schemas.") from None
            self.setup_url_routing(request, force_public=True)
        else:
            subfolder = request.path[len(prefix) :].split("/")[0]
            domain_model = get_tenant_domain_model()
            try:
                tenant = self.get_tenant(domain_model=domain_model, hostname=subfolder)
            except domain_model.DoesNotExist:
                return self.no_tenant_found(request, subfolder)
            tenant.domain_subfolder = subfolder
            request.urlconf = TENANT_URLCONFS.get(tenant)  # type: ignore[attr-defined]
            set_urlconf(request.urlconf)  # type: ignore[attr-defined]
        tenant.domain_url = self.hostname_from_request(request)
        request.tenant = tenant  # type: ignore[attr-defined]
        connection.set_tenant(tenant)  # type: ignore[attr-defined]
        return None

    def no_tenant_found(self, request: HttpRequest, hostname: str) -> None:
        request.unknown_tenant = hostname  # type: ignore[attr-defined]
        return None


class UnknownTenantMiddleware:
    """Answer every request for a tenant the caller may not see exactly as one for a tenant
    that does not exist: the same status, headers and bytes.

    Unknown tenants are answered here (TenantPathMiddleware left them). For a real tenant, the
    view decides (tenants.pages.tenant_page, tenants.api.permissions.TenantRole, the API's
    401s in core.api.errors, the 404 handler), marks the request (core.visibility.hide_tenant),
    and its answer is replaced here on the way out by the one an unknown tenant gets. Every
    middleware outside this one treats both alike; none inside it leaves a trace
    (portal/tests/test_hidden_tenants.py).
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if getattr(request, "unknown_tenant", None) is not None:
            return self.not_found(request)
        response = self.get_response(request)
        return self.not_found(request) if is_hidden(request) else response

    @staticmethod
    def not_found(request: HttpRequest) -> HttpResponse:
        """401 (API) or the sign-in page for a caller not signed in, else 404; in the public
        frame. The API takes a session or a token; pages only a session."""
        with schema_context(get_public_schema_name()):
            if wants_json(request):
                # A bearer token decides alone, as the API's authentication does (the session
                # is then not read: reading it would add "Vary: Cookie").
                raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
                token_ok = raw is not None and token_resolve(raw) is not None
                if token_ok or (raw is None and request.user.is_authenticated):
                    return error_response(404, "not_found", "Not found.")
                message = "Invalid, expired or revoked token." if raw is not None else (
                    "Authentication credentials were not provided."
                )  # fmt: skip
                response = error_response(401, "not_authenticated", message)
                response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            return render(request, "404.html", status=404)
