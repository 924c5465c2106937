"""OpenAPI pieces shared by every API view: the error shape and its responses, and a
post-processing hook of the generated document (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""

from __future__ import annotations

import re
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


def blank_matches_once(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular documents a string field that may be blank and has a pattern as
    ``oneOf: [{pattern}, {maxLength: 0}]``. Where the pattern admits "" itself (an entrypoint:
    "" means main.main), "" matches both branches, and ``oneOf`` wants exactly one: keep the
    pattern alone, which already says what is valid."""
    _collapse_blank_branch(result)
    return result


_BLANK = {"type": "string", "maxLength": 0}


def _collapse_blank_branch(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _collapse_blank_branch(item)
    if not isinstance(node, dict):
        return
    branches = node.get("oneOf")
    if isinstance(branches, list) and len(branches) == 2 and _BLANK in branches:
        other = branches[1 - branches.index(_BLANK)]
        if other.get("type") == "string" and re.search(other.get("pattern", "(?!)"), ""):
            del node["oneOf"]
            node.update(other)
    for value in node.values():
        _collapse_blank_branch(value)
