"""Domain errors raised by services, and the one JSON error shape of the API.

Every 4xx the API sends is ``{"error": {"code", "message", "detail"}}``.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, JsonResponse

_API_PATH = re.compile(r"^/(t/[^/]*/)?api/")


class DomainError(Exception):
    """Base of errors a service raises for bad requests; mapped to a 4xx."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, detail: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code:
            self.code = code


class ValidationFailed(DomainError):
    status = 400
    code = "invalid"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PermissionDenied(DomainError):
    status = 403
    code = "permission_denied"


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


def error_response(status: int, code: str, message: str, detail: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, detail), status=status)


def wants_json(request: HttpRequest) -> bool:
    return bool(_API_PATH.match(request.path)) or request.path.startswith("/ws/")
