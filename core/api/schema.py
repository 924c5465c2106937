"""OpenAPI pieces shared by every API view: the error shape and its responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "detail": serializers.JSONField(allow_null=True),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Invalid input",
    401: "Not authenticated",
    403: "Not allowed (role, suspended tenant)",
    404: "Not found (or not visible to you)",
    409: "Conflict (state, duplicate)",
    413: "Body too large",
    503: "A dependency is unavailable (Prometheus, the log store); retry later",
}


def error_responses(*codes: int) -> dict[int, Any]:
    return {code: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[code]) for code in codes}


ERRORS = error_responses(400, 401, 403, 404, 409)
