"""Authentication for the API: ``Authorization: Bearer <token>`` or the browser session."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.models import ApiToken
from tenants.selectors import token_resolve
from tenants.services import token_touch


def bearer_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header value, else None."""
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or ""


def authenticate_bearer(raw: str) -> ApiToken:
    """The active token for ``raw`` (use recorded); AuthenticationFailed otherwise."""
    token = token_resolve(raw)
    if token is None:
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
    token_touch(token=token)
    return token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None:
            return None
        token = authenticate_bearer(raw)
        return token.user, token

    def authenticate_header(self, request: Request | HttpRequest) -> str:
        return 'Bearer realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """The browser session, with Django's CSRF check on unsafe methods."""


# The OpenAPI description of both schemes, next to the classes they describe.
class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API token: fpt_..."}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = SessionAuthentication
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
