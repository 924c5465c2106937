"""DRF exception handler: every error leaves in the one shape of core.errors."""

from __future__ import annotations

from typing import Any

from django.core import exceptions as django_exceptions
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import DomainError, error_body
from core.visibility import hide_tenant, in_a_tenant

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def _from_api_exception(exc: exceptions.APIException) -> tuple[int, str, str, Any]:
    code = _CODES.get(exc.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        return exc.status_code, "invalid", "The request has invalid fields.", exc.detail
    if isinstance(exc, exceptions.ParseError):
        return exc.status_code, "malformed", str(exc.detail), None
    detail = exc.detail
    message = str(detail) if not isinstance(detail, (dict, list)) else "Request failed."
    return exc.status_code, code, message, detail if isinstance(detail, (dict, list)) else None


def _translate(exc: Exception) -> tuple[int, str, str, Any] | None:
    if isinstance(exc, DomainError):
        return exc.status, exc.code, exc.message, exc.detail
    if isinstance(exc, Http404):
        return 404, "not_found", "Not found.", None
    if isinstance(exc, django_exceptions.RequestDataTooBig):
        return 413, "too_large", "The request body is too large.", None
    if isinstance(exc, django_exceptions.PermissionDenied):
        return 403, "permission_denied", "You do not have permission to do this.", None
    if isinstance(exc, django_exceptions.ValidationError):
        return 400, "invalid", "The request has invalid fields.", exc.messages
    if isinstance(exc, exceptions.APIException):
        return _from_api_exception(exc)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    translated = _translate(exc)
    if translated is None:
        return None  # a bug: let Django log it and answer 500
    status_code, code, message, detail = translated
    headers = {}
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
        status_code = status.HTTP_401_UNAUTHORIZED
        request = getattr(context.get("request"), "_request", None)
        if request is not None and in_a_tenant(request):
            hide_tenant(request)  # a tenant's 401 is the one a tenant that does not exist gets
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(int(wait))
    set_rollback()
    return Response(error_body(code, message, detail), status=status_code, headers=headers)
