"""The websocket gate: Origin check, bearer-token auth and tenant resolution from the path.

django-tenants' middleware does not run for websockets, so the tenant is resolved here
from ``/t/<tenant>/ws/...``; consumers authorize against it (CONVENTIONS.md 9).

Cross-site websocket hijacking rides on cookies, so a session is only trusted with an
allowed ``Origin``; a connection without ``Origin`` (not a browser) must bring a token.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from django_tenants.utils import schema_context

from tenants.auth import bearer_from_header
from tenants.models import ApiToken, Tenant
from tenants.selectors import tenant_queryset, token_resolve

_TENANT_PATH = re.compile(r"^/t/([a-z0-9-]+)/ws/")


def origin_allowed(origin: str) -> bool:
    parsed = urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    if origin.rstrip("/") in settings.CSRF_TRUSTED_ORIGINS:
        return True
    return validate_host(parsed.hostname, settings.ALLOWED_HOSTS)


@database_sync_to_async
def _resolve(slug: str | None, raw_token: str | None) -> tuple[Tenant | None, ApiToken | None]:
    with schema_context("public"):
        tenant = tenant_queryset().filter(slug=slug).first() if slug else None
        token = token_resolve(raw_token) if raw_token else None
        return tenant, token


class WebsocketGate(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = {key.lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        origin = headers.get(b"origin")
        raw = bearer_from_header(headers.get(b"authorization"))
        if (origin is not None and not origin_allowed(origin)) or (origin is None and raw is None):
            return await WebsocketDenier()(scope, receive, send)
        match = _TENANT_PATH.match(scope.get("path", ""))
        tenant, token = await _resolve(match.group(1) if match else None, raw)
        scope = dict(scope, tenant=tenant, token=token)
        if raw is not None:
            # A bearer header replaces the session entirely, even if it is wrong.
            scope["user"] = token.user if token is not None else AnonymousUser()
        return await super().__call__(scope, receive, send)
